package http_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	nethttp "net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

func createWithKey(t *testing.T, h *harness, who, key, body string) response {
	t.Helper()
	return h.do(t, "POST", "/v1/restaurants", ctJSON, []byte(body), append(as(who), "Idempotency-Key", key)...)
}

func TestIdempotentReplay(t *testing.T) {
	h := newHarness(t)
	first := createWithKey(t, h, operator, "key-1", validRestaurant)
	again := createWithKey(t, h, operator, "key-1", validRestaurant)
	if first.status != 201 || again.status != 201 || !bytes.Equal(first.body, again.body) {
		t.Fatalf("replay: %d %s then %d %s", first.status, first.body, again.status, again.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("Idempotent-Replayed: first %q, replay %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	if again.header.Get("Location") != first.header.Get("Location") || again.header.Get("Content-Type") != "application/json" {
		t.Fatalf("replayed headers %v, first %v", again.header, first.header)
	}
	if n := h.actors.callCount("Restaurant", "Create"); n != 1 {
		t.Fatalf("the actor was called %d times, want once", n)
	}

	// Another key, or the same key of another principal, is another request.
	other := createWithKey(t, h, operator, "key-2", validRestaurant)
	otherCaller := createWithKey(t, h, "operator:op_2", "key-1", validRestaurant)
	if other.status != 201 || otherCaller.status != 201 || bytes.Equal(first.body, other.body) || bytes.Equal(first.body, otherCaller.body) ||
		bytes.Equal(other.body, otherCaller.body) {
		t.Fatalf("distinct requests share a response:\n%s\n%s\n%s", first.body, other.body, otherCaller.body)
	}
	if n := h.actors.callCount("Restaurant", "Create"); n != 3 {
		t.Fatalf("Create called %d times, want 3", n)
	}
}

func TestIdempotencyKeyReused(t *testing.T) {
	h := newHarness(t)
	if res := createWithKey(t, h, operator, "k", validRestaurant); res.status != 201 {
		t.Fatalf("first: %d %s", res.status, res.body)
	}
	other := `{"name":"Other","position":{"lat":1,"lng":2},"cuisine":"x"}`
	wantProblem(t, createWithKey(t, h, operator, "k", other), 422, http.CodeIdempotencyKeyReused)
	// The same key on another route is reuse too.
	res := h.do(t, "POST", "/v1/dashers", ctJSON, []byte(`{"name":"D","email":"d@example.com","password":"long enough","vehicle":"bike"}`),
		append(as(operator), "Idempotency-Key", "k")...)
	wantProblem(t, res, 422, http.CodeIdempotencyKeyReused)
	if n := h.actors.callCount("Restaurant", "Create") + h.actors.callCount("Dasher", "Create"); n != 1 {
		t.Fatalf("actors called %d times, want once", n)
	}
}

// TestIdempotencyConcurrentDuplicate: a retry while the first request runs is 409 IDEMPOTENCY_KEY_IN_USE; once it
// completes, retries replay it.
func TestIdempotencyConcurrentDuplicate(t *testing.T) {
	h := newHarness(t)
	h.actors.block = make(chan struct{})
	h.actors.entered = make(chan struct{}, 1)
	var wg sync.WaitGroup
	var first response
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = createWithKey(t, h, operator, "dup", validRestaurant)
	}()
	<-h.actors.entered
	const retries = 5
	results := make([]response, retries)
	var rwg sync.WaitGroup
	for i := range retries {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			results[i] = createWithKey(t, h, operator, "dup", validRestaurant)
		}()
	}
	rwg.Wait()
	for _, res := range results {
		wantProblem(t, res, 409, http.CodeIdempotencyKeyInUse)
	}
	h.actors.entered = nil
	close(h.actors.block)
	wg.Wait()
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if res := createWithKey(t, h, operator, "dup", validRestaurant); res.status != 201 || !bytes.Equal(res.body, first.body) {
		t.Fatalf("after completion: %d %s", res.status, res.body)
	}
	if n := h.actors.callCount("Restaurant", "Create"); n != 1 {
		t.Fatalf("Create called %d times", n)
	}
}

// TestIdempotencyReplayAfterRestart: the stored response survives a restart of the node (the journal is reopened,
// the actors are new and must not be called).
func TestIdempotencyReplayAfterRestart(t *testing.T) {
	h := newHarness(t)
	first := createWithKey(t, h, operator, "restart", validRestaurant)
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	h.close(t)
	h2 := newHarness(t, withJournal(h.jpath))
	again := createWithKey(t, h2, operator, "restart", validRestaurant)
	if again.status != 201 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after restart: %d %s, want %s", again.status, again.body, first.body)
	}
	if h2.actors.count.Load() != 0 {
		t.Fatal("the restarted node called an actor for a replay")
	}
	wantProblem(t, createWithKey(t, h2, operator, "restart", `{"name":"B","position":{"lat":1,"lng":2},"cuisine":"x"}`), 422, http.CodeIdempotencyKeyReused)
}

// TestIdempotencyOutcomes: refusals (4xx) are stored and replayed like successes; 5xx answers are not, so a retry
// runs again; the command id and the new entity's id derive from the key, so a retry reaches the same actor with
// the same command.
func TestIdempotencyOutcomes(t *testing.T) {
	h := newHarness(t)
	h.actors.fail = func() error { return errors.New("disk on fire") }
	wantProblem(t, createWithKey(t, h, operator, "k5", validRestaurant), 500, http.CodeInternal)
	h.actors.fail = func() error { return http.ErrUnavailable }
	wantProblem(t, createWithKey(t, h, operator, "k5", validRestaurant), 503, http.CodeUnavailable)
	h.actors.fail = nil
	ok := createWithKey(t, h, operator, "k5", validRestaurant)
	if ok.status != 201 {
		t.Fatalf("retry after 5xx: %d %s", ok.status, ok.body)
	}
	calls := h.actors.calls
	if len(calls) != 1 {
		t.Fatalf("%d recorded calls", len(calls))
	}

	h.actors.fail = func() error { return http.Errorf(http.CodeAlreadyExists, "exists") }
	wantProblem(t, createWithKey(t, h, operator, "k409", validRestaurant), 409, http.CodeAlreadyExists)
	h.actors.fail = nil
	res := createWithKey(t, h, operator, "k409", validRestaurant)
	wantProblem(t, res, 409, http.CodeAlreadyExists)
	if res.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("a refusal was not replayed")
	}
}

// TestIdempotencyDerivedIDs: with a key, the entity id and the command id derive from principal and key.
func TestIdempotencyDerivedIDs(t *testing.T) {
	h1 := newHarness(t)
	h2 := newHarness(t) // another node's store: the request runs again there, with the same ids
	a := createWithKey(t, h1, operator, "same", validRestaurant)
	b := createWithKey(t, h2, operator, "same", validRestaurant)
	if a.status != 201 || !bytes.Equal(a.body, b.body) {
		t.Fatalf("two runs of one keyed request: %s vs %s", a.body, b.body)
	}
	c1 := h1.actors.lastCall(t, "Restaurant", "Create")
	c2 := h2.actors.lastCall(t, "Restaurant", "Create")
	if c1.identity != c2.identity || c1.req.(*messages.CreateRestaurant).GetCommandId() != c2.req.(*messages.CreateRestaurant).GetCommandId() {
		t.Fatalf("ids differ: %s %v / %s %v", c1.identity, c1.req, c2.identity, c2.req)
	}
}

// TestJournalIdempotencyLeaseAndRetention drives the store directly: a claim whose request never completed
// lapses after the lease; a stored response is replayed for the retention and forgotten after it.
func TestJournalIdempotencyLeaseAndRetention(t *testing.T) {
	j, err := journal.OpenBolt(filepath.Join(t.TempDir(), "j.db"), journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	store := http.NewJournalIdempotency(j, 24*time.Hour)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lease := 30 * time.Second

	c, err := store.Begin(ctx, "key", "fp", now, lease)
	if err != nil || c.State != http.ClaimNew {
		t.Fatalf("first begin: %+v %v", c, err)
	}
	if c2, _ := store.Begin(ctx, "key", "fp", now.Add(lease-time.Second), lease); c2.State != http.ClaimInFlight || c2.Fingerprint != "fp" {
		t.Fatalf("within the lease: %+v", c2)
	}
	// The first request's node died: after the lease the key is claimed afresh, and the stale claim cannot
	// complete any more.
	c3, err := store.Begin(ctx, "key", "fp", now.Add(lease+time.Second), lease)
	if err != nil || c3.State != http.ClaimNew {
		t.Fatalf("after the lease: %+v %v", c3, err)
	}
	if err := store.Complete(ctx, c, http.StoredResponse{Status: 201, At: now}); err == nil {
		t.Fatal("a lapsed claim completed")
	}
	at := now.Add(time.Minute)
	if err := store.Complete(ctx, c3, http.StoredResponse{Status: 201, Body: []byte("first"), At: at}); err != nil {
		t.Fatal(err)
	}
	if d, _ := store.Begin(ctx, "key", "other", at.Add(23*time.Hour), lease); d.State != http.ClaimDone || d.Fingerprint != "fp" ||
		string(d.Response.Body) != "first" {
		t.Fatalf("within retention: %+v", d)
	}
	if n, _ := store.Begin(ctx, "key", "other", at.Add(24*time.Hour+time.Second), lease); n.State != http.ClaimNew {
		t.Fatalf("after retention: %+v", n)
	}

	// Racing claims: exactly one wins.
	var wg sync.WaitGroup
	states := make([]http.ClaimState, 8)
	for i := range states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := store.Begin(ctx, "race", "fp", now, lease)
			if err != nil {
				t.Error(err)
			}
			states[i] = c.State
		}()
	}
	wg.Wait()
	won := 0
	for _, s := range states {
		if s == http.ClaimNew {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d racing claims won: %v", won, states)
	}
}

// TestIdempotencyAnonymousScopes: anonymous callers' keys are scoped by their remote address. Two strangers who
// sign up with the same Idempotency-Key and different bodies both get 201 and two customers (one shared scope
// gave the second 422 IDEMPOTENCY_KEY_REUSED for a day, or the first one's customer id); each one's retry replays
// its own answer.
func TestIdempotencyAnonymousScopes(t *testing.T) {
	h := newHarness(t)
	ann, bob := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	signUp := func(c *nethttp.Client, name string) response {
		t.Helper()
		body := `{"name":"` + name + `","email":"` + name + `@example.com","password":"long enough"}`
		return doRequestWith(t, c, h.url, "POST", "/v1/customers", ctJSON, []byte(body), "Idempotency-Key", "1")
	}
	first := signUp(ann, "ann")
	second := signUp(bob, "bob")
	if first.status != 201 || second.status != 201 {
		t.Fatalf("sign-ups with one key from two addresses: %d %s, %d %s", first.status, first.body, second.status, second.body)
	}
	var a, b struct{ ID, Name string }
	if json.Unmarshal(first.body, &a) != nil || json.Unmarshal(second.body, &b) != nil || a.ID == b.ID || a.Name != "ann" || b.Name != "bob" {
		t.Fatalf("two strangers got %s and %s", first.body, second.body)
	}
	for _, c := range []struct {
		client *nethttp.Client
		name   string
		want   response
	}{{ann, "ann", first}, {bob, "bob", second}} {
		if again := signUp(c.client, c.name); again.status != 201 || !bytes.Equal(again.body, c.want.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s's retry: %d %s, want the replay of %s", c.name, again.status, again.body, c.want.body)
		}
	}
	if n := h.actors.callCount("Customer", "Create"); n != 2 {
		t.Fatalf("Customer.Create called %d times, want 2", n)
	}
}

// TestIdempotencyFingerprintKeepsNoPassword: the idempotency record of a sign-up (customers, dashers) or of a
// payment method holds neither the secret, nor its plain SHA-256, nor the plain SHA-256 of the body (which a
// guess of the secret would match); the same body under another Idempotency-Key is fingerprinted differently (the
// secret enters keyed by the Idempotency-Key, so a guess cannot be checked against a record without it); the
// secret still counts as the body: the same key with another password (card number, CVC) is 422
// IDEMPOTENCY_KEY_REUSED, and the same body is replayed.
func TestIdempotencyFingerprintKeepsNoPassword(t *testing.T) {
	h := newHarness(t)
	const password = "correct horse battery"
	const card = `"card_number":"4242424242424242","exp_month":12,"exp_year":2030`
	for _, tc := range []struct {
		who, method, path, body string
		secrets                 []string // what the records must not hold, nor their SHA-256
		otherSecret, otherField []string // bodies that differ from body in a secret, in another field
	}{
		{"", "POST", "/v1/customers", `{"name":"Ann","email":"ann@example.com","password":"` + password + `"}`,
			[]string{password},
			[]string{`{"name":"Ann","email":"ann@example.com","password":"another password"}`},
			[]string{`{"name":"Bob","email":"ann@example.com","password":"` + password + `"}`}},
		{operator, "POST", "/v1/dashers", `{"name":"Dee","email":"dee@example.com","password":"` + password + `","vehicle":"bike"}`,
			[]string{password},
			[]string{`{"name":"Dee","email":"dee@example.com","password":"another password","vehicle":"bike"}`},
			[]string{`{"name":"Eve","email":"dee@example.com","password":"` + password + `","vehicle":"bike"}`}},
		{customer, "PUT", "/v1/customers/me/payment-method", `{` + card + `,"cvc":"123"}`,
			[]string{"4242424242424242"},
			[]string{`{"card_number":"4000000000004242","exp_month":12,"exp_year":2030,"cvc":"123"}`, `{` + card + `,"cvc":"124"}`},
			[]string{`{"card_number":"4242424242424242","exp_month":11,"exp_year":2030,"cvc":"123"}`}},
	} {
		sendWith := func(key, body string) response {
			t.Helper()
			header := []string{"Idempotency-Key", key}
			if tc.who != "" {
				header = append(header, as(tc.who)...)
			}
			return h.do(t, tc.method, tc.path, ctJSON, []byte(body), header...)
		}
		send := func(body string) response { t.Helper(); return sendWith("secret-"+tc.method, body) }
		// newFingerprint runs send and returns the fingerprint of the one record it added.
		newFingerprint := func(send func() response) (response, string) {
			t.Helper()
			before := idempotencyFingerprints(t, h.journal)
			res := send()
			var added []string
			for fp := range idempotencyFingerprints(t, h.journal) {
				if !before[fp] {
					added = append(added, fp)
				}
			}
			if len(added) != 1 {
				t.Fatalf("%s: %d new fingerprints, want 1", tc.path, len(added))
			}
			return res, added[0]
		}
		first, fp := newFingerprint(func() response { return send(tc.body) })
		if first.status/100 != 2 {
			t.Fatalf("%s: %d %s", tc.path, first.status, first.body)
		}
		if _, fp2 := newFingerprint(func() response { return sendWith("secret-"+tc.method+"-2", tc.body) }); fp2 == fp {
			t.Fatalf("%s: the same body under two Idempotency-Keys has one fingerprint %s: a guess of the secret could be checked against it", tc.path, fp)
		}
		body := sha256.Sum256([]byte(tc.method + "\x00" + tc.path + "\x00" + tc.body))
		needles := [][]byte{body[:], []byte(hex.EncodeToString(body[:]))}
		for _, secret := range tc.secrets {
			sum := sha256.Sum256([]byte(secret))
			needles = append(needles, []byte(secret), sum[:], []byte(hex.EncodeToString(sum[:])))
		}
		stored := idempotencyRecords(t, h.journal)
		for _, needle := range needles {
			if bytes.Contains(stored, needle) {
				t.Fatalf("%s: the idempotency records hold %q (a secret, its plain hash or the body's)", tc.path, needle)
			}
		}

		for _, other := range append(tc.otherSecret, tc.otherField...) {
			wantProblem(t, send(other), 422, http.CodeIdempotencyKeyReused)
		}
		if again := send(tc.body); again.status != first.status || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s: retry with the same body %d %s, want the replay of %s", tc.path, again.status, again.body, first.body)
		}
	}
}

// idempotencyRecord is what the tests read of an idempotency record in the journal.
type idempotencyRecord struct {
	Fingerprint string `json:"fingerprint"`
	Response    *struct {
		Body []byte `json:"body"`
	} `json:"response"`
}

// eachIdempotencyRecord calls fn with every event of the journal's idempotency streams: its data and the record
// it holds. It returns the number of streams.
func eachIdempotencyRecord(t *testing.T, j *journal.Bolt, fn func(data []byte, rec idempotencyRecord)) int {
	t.Helper()
	ctx := context.Background()
	streams, err := j.Streams(ctx, http.IdempotencyStreamPrefix, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		events, err := j.Events(ctx, s, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			var raw wrapperspb.BytesValue
			if err := proto.Unmarshal(e.Data, &raw); err != nil {
				t.Fatalf("idempotency record %s: %v", s, err)
			}
			var rec idempotencyRecord
			if err := json.Unmarshal(raw.GetValue(), &rec); err != nil {
				t.Fatalf("idempotency record %s: %v", s, err)
			}
			fn(e.Data, rec)
		}
	}
	return len(streams)
}

// idempotencyFingerprints returns the fingerprints of the journal's idempotency records.
func idempotencyFingerprints(t *testing.T, j *journal.Bolt) map[string]bool {
	t.Helper()
	fps := make(map[string]bool)
	eachIdempotencyRecord(t, j, func(_ []byte, rec idempotencyRecord) {
		if rec.Fingerprint != "" {
			fps[rec.Fingerprint] = true
		}
	})
	return fps
}

// idempotencyRecords returns what the journal's idempotency streams hold: every event's data, and the decoded
// (base64) body of every stored response, concatenated.
func idempotencyRecords(t *testing.T, j *journal.Bolt) []byte {
	t.Helper()
	var all []byte
	n := eachIdempotencyRecord(t, j, func(data []byte, rec idempotencyRecord) {
		all = append(all, data...)
		if rec.Response != nil {
			all = append(all, rec.Response.Body...)
		}
	})
	if n == 0 {
		t.Fatal("no idempotency records in the journal")
	}
	return all
}
