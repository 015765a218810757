package http_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// fakeOAuth stands in for the authorization server: it counts the requests the edge lets through and answers
// each with an RFC 6749 error.
type fakeOAuth struct{ served atomic.Int32 }

func (o *fakeOAuth) Serve(ctx *fasthttp.RequestCtx) {
	o.served.Add(1)
	ctx.SetStatusCode(fasthttp.StatusBadRequest)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"error":"invalid_request"}`)
}

func withOAuth(o http.OAuthEndpoints) harnessOption {
	return func(_ *harness, _ *http.Config, b *http.Backend) { b.OAuth = o }
}

// wantRateLimited checks a 429 RATE_LIMITED problem whose Retry-After is retryAfter seconds.
func wantRateLimited(t *testing.T, what string, res response, retryAfter int) {
	t.Helper()
	wantProblem(t, res, 429, http.CodeRateLimited)
	if got := res.header.Get("Retry-After"); got != strconv.Itoa(retryAfter) {
		t.Fatalf("%s: Retry-After %q, want %d", what, got, retryAfter)
	}
}

// TestRateLimitOrders: placing orders counts against Config.OrderLimit per customer; a refused order never reaches
// the Customer actor, another customer has a budget of its own, and the bucket refills at its rate.
func TestRateLimitOrders(t *testing.T) {
	h := newHarness(t, withConfig(func(c *http.Config) { c.OrderLimit = http.RateLimit{Rate: 0.25, Burst: 2} }))
	h.actors.handle("Customer.OrderCart", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.CustomerView{Id: id, LastOrder: &messages.CustomerOrder{OrderId: orderID, RestaurantId: restID, TotalCents: 2500,
			Status: "PENDING_ACCEPTANCE", Items: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad Thai", Quantity: 2, PriceCents: 1250}}}}, nil
	})
	order := func(who string, key int) response {
		t.Helper()
		return h.do(t, "POST", "/v1/orders", ctJSON, []byte(`{}`), append(as(who), "Idempotency-Key", "order-"+strconv.Itoa(key))...)
	}
	for i := range 2 {
		if res := order(customer, i); res.status != 201 {
			t.Fatalf("order %d: %d %s", i, res.status, res.body)
		}
	}
	// The third order within the burst waits for a token: 1/0.25 = 4 s.
	wantRateLimited(t, "third order", order(customer, 2), 4)
	if n := h.actors.callCount("Customer", "OrderCart"); n != 2 {
		t.Fatalf("%d OrderCart calls, want 2: a refused order reached the actor", n)
	}
	if res := order("customer:c_00000000-0000-0000-0000-0000000000c2", 0); res.status != 201 {
		t.Fatalf("another customer: %d %s", res.status, res.body)
	}
	h.clock.Advance(3 * time.Second)
	wantRateLimited(t, "after 3 s", order(customer, 3), 1)
	h.clock.Advance(time.Second)
	if res := order(customer, 4); res.status != 201 {
		t.Fatalf("after 4 s: %d %s", res.status, res.body)
	}
}

// TestRateLimitLogin: the sign-in form's POST /oauth2/authorize counts against Config.LoginLimit per client
// address (sign-in is anonymous), before the authorization server sees it; sign-up shares the budget.
func TestRateLimitLogin(t *testing.T) {
	oauth := &fakeOAuth{}
	h := newHarness(t, withOAuth(oauth), withConfig(func(c *http.Config) { c.LoginLimit = http.RateLimit{Rate: 0.1, Burst: 3} }))
	form := []byte("username=ann%40example.com&password=wrong&client_id=web&response_type=code")
	signIn := func() response {
		t.Helper()
		return h.do(t, "POST", "/oauth2/authorize", "application/x-www-form-urlencoded", form)
	}
	for i := range 2 {
		if res := signIn(); res.status != 400 {
			t.Fatalf("sign-in %d: %d %s", i, res.status, res.body)
		}
	}
	// Sign-up takes the last token of the same budget.
	if res := h.do(t, "POST", "/v1/customers", ctJSON, []byte(`{"name":"Ann","email":"ann@example.com","password":"correct horse"}`)); res.status != 201 {
		t.Fatalf("sign up: %d %s", res.status, res.body)
	}
	wantRateLimited(t, "fourth sign-in", signIn(), 10)
	if n := oauth.served.Load(); n != 2 {
		t.Fatalf("the authorization server saw %d sign-ins, want 2", n)
	}
	// The form itself (GET) is not limited.
	if res := h.do(t, "GET", "/oauth2/authorize?client_id=web&response_type=code", "", nil); res.status != 400 {
		t.Fatalf("GET the form: %d %s", res.status, res.body)
	}
	h.clock.Advance(10 * time.Second)
	if res := signIn(); res.status != 400 || oauth.served.Load() != 4 {
		t.Fatalf("after 10 s: %d %s (%d served)", res.status, res.body, oauth.served.Load())
	}
}

// TestRateLimitRevoke: POST /oauth2/revoke (a token signature check per request, open to anyone as the public
// client) counts against Config.LoginLimit per client address, the sign-in form's budget, before the
// authorization server sees it; the token endpoint is not limited.
func TestRateLimitRevoke(t *testing.T) {
	oauth := &fakeOAuth{}
	h := newHarness(t, withOAuth(oauth), withConfig(func(c *http.Config) { c.LoginLimit = http.RateLimit{Rate: 0.1, Burst: 2} }))
	form := []byte("token=not-a-token&token_type_hint=refresh_token&client_id=platter-app")
	revoke := func() response {
		t.Helper()
		return h.do(t, "POST", "/oauth2/revoke", "application/x-www-form-urlencoded", form)
	}
	for i := range 2 {
		if res := revoke(); res.status != 400 {
			t.Fatalf("revoke %d: %d %s", i, res.status, res.body)
		}
	}
	wantRateLimited(t, "third revoke", revoke(), 10)
	if n := oauth.served.Load(); n != 2 {
		t.Fatalf("the authorization server saw %d revocations, want 2", n)
	}
	// The sign-in form shares the budget: it is spent.
	signIn := []byte("username=ann%40example.com&password=wrong&client_id=web&response_type=code")
	wantRateLimited(t, "sign-in after the revocations", h.do(t, "POST", "/oauth2/authorize", "application/x-www-form-urlencoded", signIn), 10)
	// The token endpoint is not limited by the edge.
	if res := h.do(t, "POST", "/oauth2/token", "application/x-www-form-urlencoded", []byte("grant_type=client_credentials")); res.status != 400 || oauth.served.Load() != 3 {
		t.Fatalf("token endpoint: %d %s (%d served)", res.status, res.body, oauth.served.Load())
	}
	h.clock.Advance(10 * time.Second)
	if res := revoke(); res.status != 400 || oauth.served.Load() != 4 {
		t.Fatalf("after 10 s: %d %s (%d served)", res.status, res.body, oauth.served.Load())
	}
}
