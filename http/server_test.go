package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

const operator = "operator:op_1"

func TestHealthz(t *testing.T) {
	h := newHarness(t)
	h.cluster.ready.Store(false) // liveness does not depend on the cluster
	res := h.do(t, "GET", "/healthz", "", nil)
	if res.status != 200 || string(res.body) != `{"status":"ok"}` || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("healthz: %d %q %q", res.status, res.header.Get("Content-Type"), res.body)
	}
}

func TestReadyz(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name     string
		ready    bool
		storeErr error
		status   int
	}{
		{"member and store open", true, nil, 200},
		{"not a member", false, nil, 503},
		{"store closed", true, errors.New("database not open"), 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.cluster.ready.Store(tt.ready)
			h.store.set(tt.storeErr)
			res := h.do(t, "GET", "/readyz", "", nil)
			if tt.status == 200 {
				if res.status != 200 || string(res.body) != `{"status":"ready"}` {
					t.Fatalf("readyz: %d %s", res.status, res.body)
				}
				return
			}
			p := wantProblem(t, res, 503, http.CodeNotReady)
			if strings.Contains(p.Detail, "database not open") {
				t.Fatalf("detail leaks the store error: %q", p.Detail)
			}
		})
	}
}

func TestAdminCluster(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, "GET", "/v1/admin/cluster", "", nil, as(operator)...)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var got struct {
		Ready   bool `json:"ready"`
		Members []struct {
			ID, Name, Address, Status string
			RemoteAddress             string `json:"remote_address"`
			Kinds                     []string
			Self                      bool
		} `json:"members"`
		Activations map[string]int `json:"activations"`
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Ready || len(got.Members) != 2 || got.Activations["Restaurant"] != 2 {
		t.Fatalf("cluster view %s", res.body)
	}
	a := got.Members[0] // sorted by name
	if a.Name != "node-a" || a.ID != "m1" || !a.Self || a.Address != "127.0.0.1:7946" ||
		a.RemoteAddress != "127.0.0.1:8090" || a.Status != "alive" || len(a.Kinds) != 1 || a.Kinds[0] != "Restaurant" {
		t.Fatalf("first member %+v", a)
	}
	if got.Members[1].Self {
		t.Fatalf("second member claims self: %s", res.body)
	}
}

const validRestaurant = `{"name":"Thai Basil","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`

func TestCreateAndGetRestaurant(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, "POST", "/v1/restaurants", "application/json; charset=utf-8", []byte(validRestaurant), as(operator)...)
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var view struct {
		ID        string             `json:"id"`
		Name      string             `json:"name"`
		Cuisine   string             `json:"cuisine"`
		Position  map[string]float64 `json:"position"`
		Menu      []any              `json:"menu"`
		CreatedAt string             `json:"created_at"`
	}
	if err := json.Unmarshal(res.body, &view); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(view.ID, "r_") || view.Name != "Thai Basil" || view.Cuisine != "thai" ||
		view.Position["lat"] != 37.77 || view.Position["lng"] != -122.41 || view.Menu == nil || view.CreatedAt != "2026-01-02T03:04:05Z" {
		t.Fatalf("created view %s", res.body)
	}
	if loc := res.header.Get("Location"); loc != "/v1/restaurants/"+view.ID {
		t.Fatalf("Location %q", loc)
	}
	cmd := h.actors.lastCall(t, "Restaurant", "Create").req.(*messages.CreateRestaurant)
	if cmd.GetCommandId() == "" || cmd.GetName() != "Thai Basil" {
		t.Fatalf("command %v", cmd)
	}

	// Public: anyone may read a restaurant.
	got := h.do(t, "GET", "/v1/restaurants/"+view.ID, "", nil)
	if got.status != 200 || !bytes.Equal(got.body, res.body) {
		t.Fatalf("get: %d %s, want %s", got.status, got.body, res.body)
	}
}

// TestMoneyIsIntegerCents: 64-bit integers are JSON numbers (protojson would write strings).
func TestMoneyIsIntegerCents(t *testing.T) {
	h := newHarness(t)
	h.actors.handle("Restaurant.Get", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.RestaurantView{Id: id, Menu: []*messages.MenuItem{{Id: "m1", Name: "Pad Thai", PriceCents: 1250}}}, nil
	})
	res := h.do(t, "GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000001", "", nil)
	if res.status != 200 || !strings.Contains(string(res.body), `"price_cents":1250`) || !strings.Contains(string(res.body), `"position":null`) {
		t.Fatalf("view %d %s", res.status, res.body)
	}
}

// TestBodyTooLarge sends only the headers of an oversized request: the edge refuses it from its Content-Length
// without reading the body. (A client that sends the whole body may see the connection reset instead of the 413,
// as the server closes the connection with the body unread.)
func TestBodyTooLarge(t *testing.T) {
	h := newHarness(t)
	conn, err := net.Dial("tcp", h.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/restaurants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 64<<10+1)
	res, err := nethttp.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, response{status: res.StatusCode, header: res.Header, body: body}, 413, http.CodePayloadTooLarge)
	if h.actors.count.Load() != 0 {
		t.Fatal("the backend was called")
	}

	// Exactly the limit is accepted (as JSON: the padding is white space).
	padded := validRestaurant + strings.Repeat(" ", 64<<10-len(validRestaurant))
	if res := h.do(t, "POST", "/v1/restaurants", "application/json", []byte(padded), as(operator)...); res.status != 201 {
		t.Fatalf("a body of exactly the limit: %d %.200s", res.status, res.body)
	}
}

func TestBackendErrors(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		leak   string // must not appear in the response
	}{
		{"not ready", http.ErrNotReady, 503, http.CodeNotReady, ""},
		{"timeout", fmt.Errorf("request restaurant: %w", http.ErrUnavailable), 503, http.CodeUnavailable, ""},
		{"domain error", http.Errorf(http.CodeAlreadyExists, "restaurant exists"), 409, http.CodeAlreadyExists, ""},
		{"infrastructure error", errors.New("bolt: disk on fire at /secret/path"), 500, http.CodeInternal, "/secret/path"},
		{"unknown code", &http.Error{Code: "NO_SUCH_CODE", Detail: "secret detail"}, 500, http.CodeInternal, "secret detail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.actors.fail = func() error { return tt.err }
			defer func() { h.actors.fail = nil }()
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/v1/restaurants", validRestaurant},
				{"GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000", ""},
			} {
				res := h.do(t, req.method, req.path, "application/json", []byte(req.body), as(operator)...)
				p := wantProblem(t, res, tt.status, tt.code)
				if tt.leak != "" && strings.Contains(string(res.body), tt.leak) {
					t.Fatalf("response leaks %q: %s", tt.leak, res.body)
				}
				if tt.code == http.CodeInternal && p.Detail != "internal error" {
					t.Fatalf("internal detail %q", p.Detail)
				}
			}
			if tt.leak != "" && !strings.Contains(h.logs.String(), tt.leak) {
				t.Fatalf("the internal error was not logged; logs:\n%s", h.logs.String())
			}
		})
	}
}

func TestPanicIsRecovered(t *testing.T) {
	h := newHarness(t)
	h.actors.fail = func() error { panic("boom in handler") }
	res := h.do(t, "GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000", "", nil)
	p := wantProblem(t, res, 500, http.CodeInternal)
	if strings.Contains(string(res.body), "boom") || p.Detail != "internal error" {
		t.Fatalf("panic leaked: %s", res.body)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "http handler panicked") || !strings.Contains(logs, "boom in handler") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
	h.actors.fail = nil
	if res := h.do(t, "GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("server unusable after a panic: %d", res.status)
	}
}

// TestCloseDrainsInFlight checks the graceful stop: a request in flight when Close starts completes, new
// connections are refused, and Close returns once the request is done.
func TestCloseDrainsInFlight(t *testing.T) {
	h := newHarness(t)
	h.actors.block = make(chan struct{})
	h.actors.entered = make(chan struct{}, 1)

	type result struct {
		status int
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		req, _ := nethttp.NewRequest("POST", h.url+"/v1/restaurants", strings.NewReader(validRestaurant))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Test-Principal", operator)
		res, err := client.Do(req)
		if err != nil {
			inflight <- result{err: err}
			return
		}
		res.Body.Close()
		inflight <- result{status: res.StatusCode}
	}()
	<-h.actors.entered

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- h.srv.Close(ctx)
	}()
	addr := h.srv.Addr().String()
	waitFor(t, 5*time.Second, 10*time.Millisecond, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in flight", err)
	default:
	}
	close(h.actors.block)
	if r := <-inflight; r.err != nil || r.status != 201 {
		t.Fatalf("in-flight request: %d %v", r.status, r.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestCloseRightAfterOpen: Close must return even when the serving goroutine has not started yet.
func TestCloseRightAfterOpen(t *testing.T) {
	for range 200 {
		srv, err := http.NewServer(http.DefaultConfig("127.0.0.1:0"), http.Backend{
			Cluster: &fakeCluster{}, Store: &fakeStore{}, Actors: newFakeActors(), Idempotency: nopIdempotency{},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Open(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Close(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close right after Open hangs")
		}
	}
}

// nopIdempotency is an IdempotencyStore for tests that send no Idempotency-Key.
type nopIdempotency struct{}

func (nopIdempotency) Begin(context.Context, string, string, time.Time, time.Duration) (http.Claim, error) {
	return http.Claim{}, errors.New("no idempotency store in this test")
}
func (nopIdempotency) Complete(context.Context, http.Claim, http.StoredResponse) error { return nil }
func (nopIdempotency) Release(context.Context, http.Claim) error                       { return nil }
