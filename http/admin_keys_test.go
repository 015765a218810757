package http_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/http"
)

// fakeRotator is an authorization server that records the rotations it was asked for (the real one, over the
// Account actors, is tested through this route in http/oauth and node).
type fakeRotator struct {
	mu    sync.Mutex
	calls []bool // revokePrevious of each call
	err   error
}

func (f *fakeRotator) Serve(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(404) }

func (f *fakeRotator) RotateSigningKey(_ context.Context, revokePrevious bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.calls = append(f.calls, revokePrevious)
	return "kid-" + string(rune('0'+len(f.calls))), nil
}

func (f *fakeRotator) rotations() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.calls...)
}

// TestRotateSigningKeysRoute: POST /v1/admin/signing-keys/rotate is the operator's, passes retire_previous to the
// authorization server and answers the new kid; a bad request rotates nothing.
func TestRotateSigningKeysRoute(t *testing.T) {
	rot := &fakeRotator{}
	h := newHarness(t, withOAuth(rot))
	const path = "/v1/admin/signing-keys/rotate"
	op := as("operator:platter-operator")
	var got struct {
		Kid             string `json:"kid"`
		RetiredPrevious bool   `json:"retired_previous"`
	}
	decode := func(res response) {
		t.Helper()
		if res.status != 200 {
			t.Fatalf("rotate: %d %s", res.status, res.body)
		}
		if err := json.Unmarshal(res.body, &got); err != nil {
			t.Fatal(err)
		}
	}

	decode(h.do(t, "POST", path, "", nil, op...))
	if got.Kid != "kid-1" || got.RetiredPrevious {
		t.Fatalf("ordinary rotation answered %+v", got)
	}
	decode(h.do(t, "POST", path, ctJSON, []byte(`{"retire_previous":true}`), op...))
	if got.Kid != "kid-2" || !got.RetiredPrevious {
		t.Fatalf("emergency rotation answered %+v", got)
	}
	decode(h.do(t, "POST", path, ctJSON, []byte(`{}`), op...))
	if r := rot.rotations(); len(r) != 3 || r[0] || !r[1] || r[2] {
		t.Fatalf("rotations asked %v, want [false true false]", r)
	}

	// Who may: the operator only.
	for _, who := range []string{"customer:c_1", "dasher:d_1", "restaurant:staff-1:r_1"} {
		wantProblem(t, h.do(t, "POST", path, "", nil, as(who)...), 403, http.CodePermissionDenied)
	}
	wantProblem(t, h.do(t, "POST", path, "", nil), 401, http.CodeUnauthenticated)

	// Bad requests rotate nothing.
	wantProblem(t, h.do(t, "POST", path, ctJSON, []byte(`{"retire_previous":"yes"}`), op...), 400, http.CodeInvalidArgument)
	wantProblem(t, h.do(t, "POST", path, ctJSON, []byte(`{"retire":true}`), op...), 400, http.CodeInvalidArgument)
	wantProblem(t, h.do(t, "POST", path+"?retire_previous=true", "", nil, op...), 400, http.CodeInvalidArgument)
	// The flag is part of the request's meaning: a key used for an ordinary rotation is not replayed for an
	// emergency one.
	h.do(t, "POST", path, "", nil, append(op, "Idempotency-Key", "rotate-1")...)
	wantProblem(t, h.do(t, "POST", path, ctJSON, []byte(`{"retire_previous":true}`), append(op, "Idempotency-Key", "rotate-1")...),
		422, http.CodeIdempotencyKeyReused)
	if r := rot.rotations(); len(r) != 4 || r[3] {
		t.Fatalf("rotations asked %v, want 4, the last ordinary", r)
	}

	// The server's failure is the client's answer.
	rot.mu.Lock()
	rot.err = http.Errorf(http.CodeUnavailable, "the keys are unavailable")
	rot.mu.Unlock()
	wantProblem(t, h.do(t, "POST", path, "", nil, op...), 503, http.CodeUnavailable)
}

// TestRotateSigningKeysWithoutAuthorizationServer: a node without an authorization server has no keys to rotate.
func TestRotateSigningKeysWithoutAuthorizationServer(t *testing.T) {
	h := newHarness(t)
	wantProblem(t, h.do(t, "POST", "/v1/admin/signing-keys/rotate", "", nil, as("operator:platter-operator")...), 404, http.CodeNotFound)
}
