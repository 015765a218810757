package actors

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Decisions of the Account kind (the transition table in account.go), without a cluster.

var accountNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func accountCode(err error) messages.ErrorReason {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return messages.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// fold applies events to s, failing the test on a fold error.
func foldAccount(t *testing.T, s *messages.AccountState, events []proto.Message) {
	t.Helper()
	for _, ev := range events {
		if err := applyAccount(s, ev); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDecideCreateLogin(t *testing.T) {
	hash := "$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA"
	ok := &messages.CreateLogin{Role: RoleCustomer, Subject: "c_1", Email: "Ann@Example.com", PasswordHash: hash}
	s := &messages.AccountState{}
	events, err := decideCreateLogin(LoginIdentity("ann@example.com"), s, ok, accountNow)
	if err != nil || len(events) != 1 {
		t.Fatalf("create: %v %v", events, err)
	}
	foldAccount(t, s, events)
	if s.GetLogin().GetEmail() != "ann@example.com" || s.GetLogin().GetPasswordHash() != hash {
		t.Fatalf("state %v", s)
	}
	tests := []struct {
		name     string
		identity string
		cmd      *messages.CreateLogin
		want     messages.ErrorReason
	}{
		{"same subject again", LoginIdentity("ann@example.com"), ok, messages.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"another subject", LoginIdentity("ann@example.com"), &messages.CreateLogin{Role: RoleCustomer, Subject: "c_2", Email: "ann@example.com", PasswordHash: hash}, messages.ErrorReason_ALREADY_EXISTS},
		{"operator role", LoginIdentity("ann@example.com"), &messages.CreateLogin{Role: RoleOperator, Subject: "c_1", Email: "ann@example.com", PasswordHash: hash}, messages.ErrorReason_INVALID_ARGUMENT},
		{"identity of another email", LoginIdentity("bob@example.com"), ok, messages.ErrorReason_INVALID_ARGUMENT},
		{"not argon2id", LoginIdentity("ann@example.com"), &messages.CreateLogin{Role: RoleCustomer, Subject: "c_1", Email: "ann@example.com", PasswordHash: "plain"}, messages.ErrorReason_INVALID_ARGUMENT},
	}
	for _, tt := range tests {
		events, err := decideCreateLogin(tt.identity, s, tt.cmd, accountNow)
		if accountCode(err) != tt.want || len(events) != 0 {
			t.Errorf("%s: %v, %v; want %v and no event", tt.name, events, err, tt.want)
		}
	}
}

func TestDecideCreateClient(t *testing.T) {
	sum := make([]byte, 32)
	s := &messages.AccountState{}
	cmd := &messages.CreateClient{Role: RoleRestaurant, Restaurants: []string{"r_1"}, SecretSha256: sum}
	events, err := decideCreateClient("client:rs_1", s, cmd, accountNow)
	if err != nil || len(events) != 1 {
		t.Fatalf("create: %v %v", events, err)
	}
	foldAccount(t, s, events)
	if s.GetClient().GetClientId() != "rs_1" {
		t.Fatalf("client %v", s.GetClient())
	}
	other := make([]byte, 32)
	other[0] = 1
	for _, tt := range []struct {
		name string
		id   string
		cmd  *messages.CreateClient
		want messages.ErrorReason
	}{
		{"same secret again", "client:rs_1", cmd, messages.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"another secret", "client:rs_1", &messages.CreateClient{Role: RoleRestaurant, Restaurants: []string{"r_1"}, SecretSha256: other}, messages.ErrorReason_ALREADY_EXISTS},
		{"restaurant without restaurants", "client:x", &messages.CreateClient{Role: RoleRestaurant, SecretSha256: sum}, messages.ErrorReason_INVALID_ARGUMENT},
		{"customer role", "client:x", &messages.CreateClient{Role: RoleCustomer, SecretSha256: sum}, messages.ErrorReason_INVALID_ARGUMENT},
		{"short hash", "client:x", &messages.CreateClient{Role: RoleOperator, SecretSha256: sum[:16]}, messages.ErrorReason_INVALID_ARGUMENT},
		{"not a client identity", "login:x", &messages.CreateClient{Role: RoleOperator, SecretSha256: sum}, messages.ErrorReason_INVALID_ARGUMENT},
	} {
		events, err := decideCreateClient(tt.id, s, tt.cmd, accountNow)
		if accountCode(err) != tt.want || len(events) != 0 {
			t.Errorf("%s: %v, %v; want %v", tt.name, events, err, tt.want)
		}
	}
}

func TestDecideRotateSigningKey(t *testing.T) {
	s := &messages.AccountState{}
	key := func(kid string) *messages.SigningKey {
		return &messages.SigningKey{Kid: kid, Alg: "EdDSA", PrivatePkcs8: []byte{1}}
	}
	rotate := func(expected, kid string, now time.Time) ([]proto.Message, error) {
		return decideRotateSigningKey(AccountKeys, s, &messages.RotateSigningKey{ExpectedKid: expected, Key: key(kid), RetainMs: time.Hour.Milliseconds()}, now)
	}
	events, err := rotate("", "k1", accountNow)
	if err != nil || len(events) != 1 {
		t.Fatalf("first key: %v %v", events, err)
	}
	foldAccount(t, s, events)
	if events, err := rotate("", "k-late", accountNow); err != nil || len(events) != 0 {
		t.Fatalf("a second node's first key: %v %v, want no event (k1 is current)", events, err)
	}
	events, _ = rotate("k1", "k2", accountNow.Add(time.Minute))
	foldAccount(t, s, events)
	if currentKey(s).GetKid() != "k2" || s.GetKeys()[0].GetRetiredAt() == nil {
		t.Fatalf("after rotation: %v", s.GetKeys())
	}
	// Two hours later k1 (retired an hour and 59 minutes ago) is dropped; k2 is retired and kept.
	events, _ = rotate("k2", "k3", accountNow.Add(2*time.Hour))
	foldAccount(t, s, events)
	if len(s.GetKeys()) != 2 || s.GetKeys()[0].GetKid() != "k2" || currentKey(s).GetKid() != "k3" {
		t.Fatalf("after the second rotation: %v", s.GetKeys())
	}
	if _, err := decideRotateSigningKey("family:x", s, &messages.RotateSigningKey{Key: key("k")}, accountNow); accountCode(err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Fatalf("rotation on another identity: %v", err)
	}
}

// TestDecideRevokeSigningKeys: a rotation with retain_ms 0 (the emergency) retires every previous key, the current
// and the retired ones, at the Unix epoch and drops none; an ordinary rotation drops them only once the revocation
// is longer ago than its retain.
func TestDecideRevokeSigningKeys(t *testing.T) {
	s := &messages.AccountState{}
	key := func(kid string) *messages.SigningKey {
		return &messages.SigningKey{Kid: kid, Alg: "EdDSA", PrivatePkcs8: []byte{1}}
	}
	rotate := func(expected, kid string, retain time.Duration, now time.Time) {
		t.Helper()
		events, err := decideRotateSigningKey(AccountKeys, s, &messages.RotateSigningKey{ExpectedKid: expected, Key: key(kid), RetainMs: retain.Milliseconds()}, now)
		if err != nil || len(events) != 1 {
			t.Fatalf("rotate to %s: %v %v", kid, events, err)
		}
		foldAccount(t, s, events)
	}
	retired := func() map[string]time.Time {
		m := map[string]time.Time{}
		for _, k := range s.GetKeys() {
			if k.GetRetiredAt() != nil {
				m[k.GetKid()] = k.GetRetiredAt().AsTime()
			}
		}
		return m
	}
	rotate("", "k1", time.Hour, accountNow)
	rotate("k1", "k2", time.Hour, accountNow.Add(time.Minute)) // k1 retired, still published for an hour
	rotate("k2", "k3", 0, accountNow.Add(2*time.Minute))       // the emergency
	r := retired()
	if currentKey(s).GetKid() != "k3" || len(s.GetKeys()) != 3 || !r["k1"].Equal(revokedAt) || !r["k2"].Equal(revokedAt) {
		t.Fatalf("after the emergency rotation: %v", s.GetKeys())
	}
	// The state survives the journal's encoding: the epoch is a set timestamp, not an absent one.
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back messages.AccountState
	if err := proto.Unmarshal(b, &back); err != nil || back.GetKeys()[1].GetRetiredAt() == nil || currentKey(&back).GetKid() != "k3" {
		t.Fatalf("decoded state %v, %v", back.GetKeys(), err)
	}
	// An ordinary rotation soon after keeps the revoked keys listed (a node that has not re-read them would keep a
	// missing key verifying); one made retain after the revoking key was made drops them.
	rotate("k3", "k4", time.Hour, accountNow.Add(3*time.Minute))
	if len(s.GetKeys()) != 4 || !retired()["k1"].Equal(revokedAt) || retired()["k3"].Equal(revokedAt) {
		t.Fatalf("an ordinary rotation after the emergency: %v", s.GetKeys())
	}
	rotate("k4", "k5", time.Hour, accountNow.Add(3*time.Hour))
	if kids := []string{s.GetKeys()[0].GetKid(), currentKey(s).GetKid()}; len(s.GetKeys()) != 2 || kids[0] != "k4" || kids[1] != "k5" {
		t.Fatalf("hours later: %v", s.GetKeys())
	}
}

func TestTokenFamily(t *testing.T) {
	s := &messages.AccountState{}
	exp := timestamppb.New(accountNow.Add(time.Hour))
	issue := func(sig string) ([]proto.Message, error) {
		return decideIssueRefresh(s, &messages.IssueRefresh{ClientId: "platter-app", Subject: "c_1", Signature: sig, ExpiresAt: exp}, accountNow)
	}
	rotate := func(sig string) []proto.Message {
		t.Helper()
		events, err := decideRotateRefresh(s, &messages.RotateRefresh{Signature: sig}, accountNow)
		if err != nil {
			t.Fatalf("rotate %s: %v", sig, err)
		}
		return events
	}
	events, err := issue("rt1")
	if err != nil {
		t.Fatal(err)
	}
	foldAccount(t, s, events)
	if _, err := issue("rt1"); accountCode(err) != messages.ErrorReason_ALREADY_EXISTS {
		t.Fatalf("the same token twice: %v", err)
	}
	if _, err := decideIssueRefresh(s, &messages.IssueRefresh{ClientId: "other", Signature: "x", ExpiresAt: exp}, accountNow); accountCode(err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Fatalf("another client's token in the family: %v", err)
	}
	foldAccount(t, s, rotate("rt1")) // rt1 used
	events, _ = issue("rt2")
	foldAccount(t, s, events)
	if s.GetFamily().GetRevoked() {
		t.Fatal("revoked after a normal rotation")
	}
	// rt1 again: reuse revokes the family; rt2 is dead too and nothing can be issued.
	events = rotate("rt1")
	if len(events) != 1 {
		t.Fatalf("reuse: %v", events)
	}
	if _, ok := events[0].(*messages.FamilyRevoked); !ok {
		t.Fatalf("reuse decided %T, want FamilyRevoked", events[0])
	}
	foldAccount(t, s, events)
	for _, tok := range s.GetFamily().GetRefreshTokens() {
		if tok.GetActive() {
			t.Fatalf("token %s active after revocation", tok.GetSignature())
		}
	}
	if events := rotate("rt2"); len(events) != 0 {
		t.Fatalf("rotation in a revoked family: %v", events)
	}
	if _, err := issue("rt3"); accountCode(err) != messages.ErrorReason_FAILED_PRECONDITION {
		t.Fatalf("issue in a revoked family: %v", err)
	}
	if _, err := decideRotateRefresh(s, &messages.RotateRefresh{Signature: "unknown"}, accountNow); accountCode(err) != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("unknown token: %v", err)
	}
}

// TestDecideRevokeTokens: revocations are added, extended, answered again when covered, and dropped once past
// their until (at the next write), so the list holds only the last access token lifetime's revocations.
func TestDecideRevokeTokens(t *testing.T) {
	s := &messages.AccountState{}
	rev := func(id string, until time.Time) *messages.Revocation {
		return &messages.Revocation{Id: id, Until: timestamppb.New(until)}
	}
	revoke := func(now time.Time, rs ...*messages.Revocation) []proto.Message {
		t.Helper()
		events, err := decideRevokeTokens(AccountKeys, s, &messages.RevokeTokens{Revocations: rs}, now)
		if err != nil {
			t.Fatal(err)
		}
		foldAccount(t, s, events)
		return events
	}
	ids := func() map[string]time.Time {
		m := map[string]time.Time{}
		for _, r := range s.GetRevocations() {
			m[r.GetId()] = r.GetUntil().AsTime()
		}
		return m
	}
	ttl := 11 * time.Minute
	if events := revoke(accountNow, rev("f1", accountNow.Add(ttl))); len(events) != 1 {
		t.Fatalf("first revocation: %v", events)
	}
	if events := revoke(accountNow.Add(time.Second), rev("f1", accountNow.Add(ttl))); len(events) != 0 {
		t.Fatalf("a covered revocation: %v, want no event", events)
	}
	revoke(accountNow.Add(time.Minute), rev("f2", accountNow.Add(time.Minute+ttl)), rev("f1", accountNow.Add(time.Minute+ttl)))
	if m := ids(); len(m) != 2 || !m["f1"].Equal(accountNow.Add(time.Minute+ttl)) {
		t.Fatalf("after f2 and extending f1: %v", m)
	}
	// Past f1's and f2's until, the next revocation drops them.
	later := accountNow.Add(time.Minute + ttl + time.Second)
	revoke(later, rev("f3", later.Add(ttl)))
	if m := ids(); len(m) != 1 || m["f3"].IsZero() {
		t.Fatalf("after the expiry: %v, want f3 only", m)
	}
	for _, c := range []struct {
		identity string
		rs       []*messages.Revocation
	}{
		{"family:x", []*messages.Revocation{rev("f", later)}},
		{AccountKeys, nil},
		{AccountKeys, []*messages.Revocation{{Id: "f"}}},
		{AccountKeys, []*messages.Revocation{rev("", later)}},
	} {
		if _, err := decideRevokeTokens(c.identity, s, &messages.RevokeTokens{Revocations: c.rs}, later); accountCode(err) != messages.ErrorReason_INVALID_ARGUMENT {
			t.Fatalf("%s %v: %v, want INVALID_ARGUMENT", c.identity, c.rs, err)
		}
	}
}
