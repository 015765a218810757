package actors_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// Account activations other than the signing keys stop after AccountConfig.PassivateAfter, except a sign-in that
// keeps throttle state: it keeps the node's PassivateAfter, so its lock outlives the short timeout.
func TestAccountPassivatesSoonerUnlessThrottled(t *testing.T) {
	deps, j, logs := nodeDeps(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{passivateAfter: time.Hour})
	deps.Accounts = actors.AccountConfig{PassivateAfter: 100 * time.Millisecond, MaxLoginFailures: 2, LoginLockout: time.Hour}
	n := startMember(t, actors.Kinds(deps), j, logs)
	account := func(id string) *messages.AccountGrainClient { return messages.GetAccountGrainClient(n.cluster, id) }
	client := func(id string) {
		t.Helper()
		cmd := &messages.CreateClient{CommandId: "create-" + id, Role: actors.RoleOperator, SecretSha256: make([]byte, 32)}
		if _, err := account(actors.AccountClientPrefix + id).CreateClient(cmd); err != nil {
			t.Fatalf("create client %s: %v", id, err)
		}
	}

	client("c1")
	waitFor(t, "the idle client to stop", 5*time.Second, func() bool { return logs.count("deactivated", "client:c1") == 1 })

	login := actors.LoginIdentity("ann@example.com")
	hash, err := argon2id.CreateHash("right password", &argon2id.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := account(login).CreateLogin(&messages.CreateLogin{CommandId: "create-ann", Role: actors.RoleCustomer, Subject: "c_ann", Email: "ann@example.com", PasswordHash: hash}); err != nil {
		t.Fatalf("create login: %v", err)
	}
	waitFor(t, "the idle sign-in to stop", 5*time.Second, func() bool { return logs.count("deactivated", login) == 1 })

	for range 2 { // MaxLoginFailures: the second failure locks the account
		if res, err := account(login).VerifyLogin(&messages.VerifyLogin{Password: "wrong"}); err != nil || res.GetOk() {
			t.Fatalf("wrong password: %v, %v", res, err)
		}
	}
	// A client created after the lock stopping shows the short timeout has passed; the locked sign-in has not.
	client("c2")
	waitFor(t, "the second client to stop", 5*time.Second, func() bool { return logs.count("deactivated", "client:c2") == 1 })
	if d := logs.count("deactivated", login); d != 1 {
		t.Fatalf("the locked sign-in stopped %d times, want 1 (before the failures only)", d)
	}
	res, err := account(login).VerifyLogin(&messages.VerifyLogin{Password: "right password"})
	if err != nil || res.GetOk() || res.GetRetryAfter() == nil {
		t.Fatalf("right password while locked: %v, %v; want a refusal with Retry-After", res, err)
	}
}
