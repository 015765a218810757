package http

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/platterhq/platter/messages"
)

// Fuzz tests of the router, the request decoders and the whole handler. `go test` runs their seed corpus;
// `go test -fuzz FuzzServe ./http` explores further.

// zeroActors answers every call with the zero value of its answer type (after checking the method exists).
type zeroActors struct{}

func (zeroActors) Call(_ context.Context, kind, _, method string, req proto.Message) (proto.Message, error) {
	md, err := GrainMethod(kind, method, req)
	if err != nil {
		return nil, err
	}
	if kind == kindCustomer && method == "OrderCart" { // the actor always answers with the order it placed
		return &messages.CustomerView{LastOrder: &messages.CustomerOrder{OrderId: "o_0123456789abcdef01234567"}}, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

func (zeroActors) PollFeed(_ context.Context, kind, _ string, req *messages.PollFeed) (*messages.FeedPage, error) {
	if _, err := GrainMethod(kind, "PollFeed", req); err != nil {
		return nil, err
	}
	return &messages.FeedPage{}, nil
}

type stubCluster struct{}

func (stubCluster) Ready() bool                 { return true }
func (stubCluster) Members() []Member           { return nil }
func (stubCluster) Activations() map[string]int { return nil }
func (stubCluster) State() string               { return "serving" }
func (stubCluster) Drain(context.Context) error { return nil }

type stubStore struct{}

func (stubStore) Ping() error { return nil }

// memIdempotency is an in-memory IdempotencyStore (one process; enough for fuzzing the handler).
type memIdempotency struct {
	mu   sync.Mutex
	recs map[string]Claim
}

func (m *memIdempotency) Begin(_ context.Context, key, fp string, _ time.Time, _ time.Duration) (Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.recs[key]; ok {
		return c, nil
	}
	m.recs[key] = Claim{State: ClaimInFlight, Fingerprint: fp}
	return Claim{State: ClaimNew, Fingerprint: fp, Token: key}, nil
}

func (m *memIdempotency) Complete(_ context.Context, c Claim, res StoredResponse) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[c.Token.(string)] = Claim{State: ClaimDone, Fingerprint: c.Fingerprint, Response: res}
	return nil
}

func (m *memIdempotency) Release(_ context.Context, c Claim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, c.Token.(string))
	return nil
}

// headerAuth is the fuzz tests' Authenticator: "X-Principal: role:id[:restaurants]".
type headerAuth struct{}

func (headerAuth) Authenticate(ctx *fasthttp.RequestCtx) (Principal, error) {
	h := string(ctx.Request.Header.Peek("X-Principal"))
	if h == "" {
		return Principal{}, nil
	}
	parts := strings.SplitN(h, ":", 3)
	if len(parts) < 2 {
		return Principal{}, Errorf(CodeUnauthenticated, "bad principal")
	}
	p := Principal{Role: Role(parts[0]), ID: parts[1]}
	if len(parts) == 3 {
		p.Restaurants = strings.Split(parts[2], ",")
	}
	return p, nil
}

func fuzzServer(t testing.TB) *Server {
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DefaultPollWait = time.Millisecond
	cfg.SearchLimit = RateLimit{Rate: 1e9, Burst: 1 << 30}
	cfg.OrderLimit, cfg.LoginLimit = cfg.SearchLimit, cfg.SearchLimit
	s, err := NewServer(cfg, Backend{Cluster: stubCluster{}, Store: stubStore{}, Actors: zeroActors{},
		Idempotency: &memIdempotency{recs: map[string]Claim{}}, Auth: headerAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func FuzzRouter(f *testing.F) {
	s := fuzzServer(f)
	for _, r := range s.Routes() {
		f.Add(r.Method, strings.NewReplacer("{id}", "r_1", "{order_id}", "o_1", "{menu_item_id}", "m1").Replace(r.Pattern))
	}
	for _, p := range []string{"", "/", "//", "/v1/", "/v1/orders/", "/v1/orders//status", "/v1/restaurants/a/orders/b/accept/c", "/\x00", "/v1/orders/%2f"} {
		f.Add("GET", p)
	}
	f.Add("PATCH", "/v1/customers/me")
	f.Add("BREW", "/healthz")
	f.Fuzz(func(t *testing.T, method, path string) {
		r, p, allow := s.router.match(method, path)
		if r != nil {
			if r.Method != method || allow != nil {
				t.Fatalf("matched %s for %s %s with allow %v", r, method, path, allow)
			}
			if strings.Count(r.Pattern, "{") != len(p) {
				t.Fatalf("params %v for %s", p, r.Pattern)
			}
			for k, v := range p {
				if v == "" || strings.Contains(v, "/") {
					t.Fatalf("param %s = %q", k, v)
				}
			}
			return
		}
		if !sort.StringsAreSorted(allow) {
			t.Fatalf("allow %v not sorted", allow)
		}
		for _, m := range allow {
			if m == method {
				t.Fatalf("allow %v lists the method that did not match", allow)
			}
		}
	})
}

// requestTypes are the body types the handlers decode.
var requestTypes = []any{
	&createCustomerRequest{}, &updateCustomerRequest{}, &addressRequest{}, &paymentMethodRequest{}, &addToCartRequest{},
	&cancelRequest{}, &createRestaurantRequest{}, &menuRequest{}, &acceptRequest{}, &rejectRequest{}, &createDasherRequest{},
	&dasherStatusRequest{}, &dasherLocationRequest{}, &declineRequest{},
}

func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"name":"A","position":{"lat":1,"lng":2},"cuisine":"x"}`, `{"items":[{"id":"m1","name":"A","price_cents":1,"tags":["t"]}]}`,
		`{"Name":1}`, `[]`, `null`, `{"a":`, `{"quantity":1e400}`, `{"online":true,"position":null}`, "{\"name\":\"\xff\"}",
		`{"items":[1,2]}`, `{"position":{"lat":"1"}}`, `{"prep_minutes":-1}`, `{} {}`, `{"card_number":"4242","exp_month":1}`,
	} {
		for i := range requestTypes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		typ := reflect.TypeOf(requestTypes[int(which)%len(requestTypes)]).Elem()
		v := reflect.New(typ).Interface()
		err := decodeJSON(body, v)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeInvalidArgument || e.Detail == "" {
			t.Fatalf("decode error %v is not an INVALID_ARGUMENT *Error", err)
		}
	})
}

// FuzzServe runs whole requests through the handler (no network): whatever the method, path, headers and body,
// the answer is never a 5xx, and every error is problem+json.
func FuzzServe(f *testing.F) {
	s := fuzzServer(f)
	principals := []string{"", "customer:c_1", "dasher:d_1", "operator:op", "restaurant:cl:r_00000000-0000-0000-0000-0000000000a1", "x"}
	bodies := []string{"", "{}", validFuzzBody, `{"prep_minutes":5}`, `{"online":true,"position":{"lat":1,"lng":2}}`, `{"x":1}`, "\xff"}
	for _, r := range s.Routes() {
		path := strings.NewReplacer("{id}", "r_00000000-0000-0000-0000-0000000000a1", "{order_id}", "o_0123456789abcdef01234567",
			"{menu_item_id}", "m1").Replace(r.Pattern)
		for i, b := range bodies {
			f.Add(r.Method, path+"?wait=0", "application/json", b, principals[i%len(principals)], "")
		}
		f.Add(r.Method, path, "text/plain", "x", "operator:op", "key-1")
	}
	f.Add("GET", "/v1/search?q=a&lat=1&lng=2&limit=3", "", "", "", "")
	f.Add("POST", "/v1/orders/o_0123456789abcdef01234567/cancel", "application/json", `{"reason":"x"}`, "customer:c_1", "k")
	f.Fuzz(func(t *testing.T, method, uri, contentType, body, principal, key string) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.SetMethod(method)
		req.SetRequestURI(uri)
		if contentType != "" {
			req.Header.SetContentType(contentType)
		}
		if principal != "" {
			req.Header.Set("X-Principal", principal)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		req.SetBodyString(body)
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		s.handle(&ctx)
		status := ctx.Response.StatusCode()
		if status >= 500 {
			t.Fatalf("%s %q answered %d: %s", method, uri, status, ctx.Response.Body())
		}
		if status >= 400 && string(ctx.Response.Header.ContentType()) != "application/problem+json" {
			t.Fatalf("%s %q answered %d as %q", method, uri, status, ctx.Response.Header.ContentType())
		}
	})
}

const validFuzzBody = `{"name":"A","email":"a@example.com","password":"long enough","position":{"lat":1,"lng":2},"cuisine":"x","vehicle":"bike"}`
