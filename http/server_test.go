package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// fakeCluster is a Cluster whose answers the test sets.
type fakeCluster struct {
	ready       atomic.Bool
	members     []http.Member
	activations map[string]int
}

func (c *fakeCluster) Ready() bool                 { return c.ready.Load() }
func (c *fakeCluster) Members() []http.Member      { return append([]http.Member(nil), c.members...) }
func (c *fakeCluster) Activations() map[string]int { return c.activations }

type fakeStore struct {
	mu  sync.Mutex
	err error
}

func (s *fakeStore) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeStore) Ping() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fakeRestaurants keeps restaurants in a map. fail, when set, decides the error of every call; block, when set,
// holds every call until it is closed.
type fakeRestaurants struct {
	mu       sync.Mutex
	byID     map[string]*messages.RestaurantView
	commands []*messages.CreateRestaurant
	calls    atomic.Int32
	fail     func() error
	block    chan struct{}
	entered  chan struct{}
}

func newFakeRestaurants() *fakeRestaurants {
	return &fakeRestaurants{byID: map[string]*messages.RestaurantView{}}
}

func (r *fakeRestaurants) enter() error {
	r.calls.Add(1)
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	if r.block != nil {
		<-r.block
	}
	if r.fail != nil {
		return r.fail()
	}
	return nil
}

func (r *fakeRestaurants) Create(_ context.Context, id string, cmd *messages.CreateRestaurant) (*messages.RestaurantView, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands = append(r.commands, proto.Clone(cmd).(*messages.CreateRestaurant))
	if v, ok := r.byID[id]; ok {
		return v, nil
	}
	v := &messages.RestaurantView{Id: id, Name: cmd.GetName(), Position: cmd.GetPosition(), Cuisine: cmd.GetCuisine()}
	r.byID[id] = v
	return v, nil
}

func (r *fakeRestaurants) Get(_ context.Context, id string) (*messages.RestaurantView, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.byID[id]; ok {
		return v, nil
	}
	return nil, http.Errorf(http.CodeNotFound, "restaurant %s not found", id)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	url         string
	srv         *http.Server
	cluster     *fakeCluster
	store       *fakeStore
	restaurants *fakeRestaurants
	logs        *syncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		cluster:     &fakeCluster{activations: map[string]int{"Restaurant": 2}},
		store:       &fakeStore{},
		restaurants: newFakeRestaurants(),
		logs:        &syncBuffer{},
	}
	h.cluster.ready.Store(true)
	h.cluster.members = []http.Member{
		{ID: "m2", Name: "node-b", Address: "127.0.0.2:7946", RemoteAddr: "127.0.0.2:8090", Status: "alive", Kinds: []string{"Restaurant"}},
		{ID: "m1", Name: "node-a", Address: "127.0.0.1:7946", RemoteAddr: "127.0.0.1:8090", Status: "alive", Kinds: []string{"Restaurant"}, Self: true},
	}
	cfg := http.DefaultConfig("127.0.0.1:0")
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := http.NewServer(cfg, http.Backend{Cluster: h.cluster, Store: h.store, Restaurants: h.restaurants})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	h.srv, h.url = srv, srv.URL()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", h.logs.String())
		}
	})
	return h
}

type response struct {
	status int
	header nethttp.Header
	body   []byte
}

func (h *harness) do(t *testing.T, method, path, contentType string, body []byte, header ...string) response {
	t.Helper()
	req, err := nethttp.NewRequest(method, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// wantProblem checks that res is a complete problem+json document with the status and code.
func wantProblem(t *testing.T, res response, status int, code string) problem {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d; body %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", res.body, err)
	}
	if p.Code != code || p.Status != status || p.Type != http.ProblemType(code) || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want code %s status %d type %s and a title and detail", p, code, status, http.ProblemType(code))
	}
	if (status == nethttp.StatusServiceUnavailable) != (res.header.Get("Retry-After") != "") {
		t.Fatalf("status %d with Retry-After %q", status, res.header.Get("Retry-After"))
	}
	return p
}

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
	res := h.do(t, "GET", "/v1/admin/cluster", "", nil)
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

func TestCreateAndGetRestaurant(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, "POST", "/v1/restaurants", "application/json; charset=utf-8",
		[]byte(`{"name":"Thai Basil","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`))
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	var view struct {
		ID       string             `json:"id"`
		Name     string             `json:"name"`
		Cuisine  string             `json:"cuisine"`
		Position map[string]float64 `json:"position"`
	}
	if err := json.Unmarshal(res.body, &view); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(view.ID, "r_") || view.Name != "Thai Basil" || view.Cuisine != "thai" ||
		view.Position["lat"] != 37.77 || view.Position["lng"] != -122.41 {
		t.Fatalf("created view %s", res.body)
	}
	if loc := res.header.Get("Location"); loc != "/v1/restaurants/"+view.ID {
		t.Fatalf("Location %q", loc)
	}
	if cmd := h.restaurants.commands[0]; cmd.GetCommandId() == "" {
		t.Fatal("command id not generated")
	}

	got := h.do(t, "GET", "/v1/restaurants/"+view.ID, "", nil)
	if got.status != 200 || !bytes.Equal(got.body, res.body) {
		t.Fatalf("get: %d %s, want %s", got.status, got.body, res.body)
	}

	// Zero values are present, so clients see a stable shape.
	res = h.do(t, "POST", "/v1/restaurants", "application/json", []byte(`{"name":"Zero"}`))
	if res.status != 201 || !strings.Contains(string(res.body), `"cuisine":""`) {
		t.Fatalf("create with defaults: %d %s", res.status, res.body)
	}
}

func TestCreateRestaurantIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	body := []byte(`{"name":"Once","position":{"lat":1,"lng":2},"cuisine":"any"}`)
	first := h.do(t, "POST", "/v1/restaurants", "application/json", body, "Idempotency-Key", "key-1")
	again := h.do(t, "POST", "/v1/restaurants", "application/json", body, "Idempotency-Key", "key-1")
	other := h.do(t, "POST", "/v1/restaurants", "application/json", body, "Idempotency-Key", "key-2")
	if first.status != 201 || again.status != 201 || !bytes.Equal(first.body, again.body) {
		t.Fatalf("replay: %d %s then %d %s", first.status, first.body, again.status, again.body)
	}
	if bytes.Equal(first.body, other.body) {
		t.Fatalf("another key got the same restaurant: %s", other.body)
	}
	for i, want := range []string{"key-1", "key-1", "key-2"} {
		if got := h.restaurants.commands[i].GetCommandId(); got != want {
			t.Fatalf("command %d id %q, want %q", i, got, want)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	h := newHarness(t)
	valid := `{"name":"A","position":{"lat":1,"lng":2},"cuisine":"x"}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		header      []string
		status      int
		code        string
		allow       string
	}{
		{"unknown route", "GET", "/v1/nothing", "", "", nil, 404, http.CodeNotFound, ""},
		{"trailing slash", "GET", "/v1/restaurants/", "", "", nil, 404, http.CodeNotFound, ""},
		{"malformed id", "GET", "/v1/restaurants/abc", "", "", nil, 404, http.CodeNotFound, ""},
		{"unknown restaurant", "GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000", "", "", nil, 404, http.CodeNotFound, ""},
		{"wrong method on collection", "GET", "/v1/restaurants", "", "", nil, 405, http.CodeMethodNotAllowed, "POST"},
		{"wrong method on health", "POST", "/healthz", "application/json", "{}", nil, 405, http.CodeMethodNotAllowed, "GET"},
		{"wrong method on item", "DELETE", "/v1/restaurants/r_x", "", "", nil, 405, http.CodeMethodNotAllowed, "GET"},
		{"no content type", "POST", "/v1/restaurants", "", valid, nil, 415, http.CodeUnsupportedMediaType, ""},
		{"form content type", "POST", "/v1/restaurants", "application/x-www-form-urlencoded", "name=A", nil, 415, http.CodeUnsupportedMediaType, ""},
		{"unknown field", "POST", "/v1/restaurants", "application/json", `{"name":"A","stars":5}`, nil, 400, http.CodeInvalidArgument, ""},
		{"command_id in body", "POST", "/v1/restaurants", "application/json", `{"name":"A","command_id":"c"}`, nil, 400, http.CodeInvalidArgument, ""},
		{"malformed json", "POST", "/v1/restaurants", "application/json", `{"name":`, nil, 400, http.CodeInvalidArgument, ""},
		{"empty body", "POST", "/v1/restaurants", "application/json", ``, nil, 400, http.CodeInvalidArgument, ""},
		{"wrong type", "POST", "/v1/restaurants", "application/json", `{"name":3}`, nil, 400, http.CodeInvalidArgument, ""},
		{"long idempotency key", "POST", "/v1/restaurants", "application/json", valid, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, http.CodeInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.restaurants.calls.Load()
			res := h.do(t, tt.method, tt.path, tt.contentType, []byte(tt.body), tt.header...)
			wantProblem(t, res, tt.status, tt.code)
			if got := res.header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
			if tt.status != 404 || tt.name != "unknown restaurant" {
				if h.restaurants.calls.Load() != before {
					t.Fatal("the backend was called for a request the edge should refuse")
				}
			}
		})
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
	if h.restaurants.calls.Load() != 0 {
		t.Fatal("the backend was called")
	}

	// Exactly the limit is accepted.
	name := strings.Repeat("a", 64<<10-len(`{"name":""}`))
	if res := h.do(t, "POST", "/v1/restaurants", "application/json", []byte(`{"name":"`+name+`"}`)); res.status != 201 {
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
			h.restaurants.fail = func() error { return tt.err }
			defer func() { h.restaurants.fail = nil }()
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/v1/restaurants", `{"name":"A"}`},
				{"GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000", ""},
			} {
				res := h.do(t, req.method, req.path, "application/json", []byte(req.body))
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
	h.restaurants.fail = func() error { panic("boom in handler") }
	res := h.do(t, "GET", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000", "", nil)
	p := wantProblem(t, res, 500, http.CodeInternal)
	if strings.Contains(string(res.body), "boom") || p.Detail != "internal error" {
		t.Fatalf("panic leaked: %s", res.body)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "http handler panicked") || !strings.Contains(logs, "boom in handler") {
		t.Fatalf("panic not logged:\n%s", logs)
	}
	h.restaurants.fail = nil
	if res := h.do(t, "GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("server unusable after a panic: %d", res.status)
	}
}

// TestCloseDrainsInFlight checks the graceful stop: a request in flight when Close starts completes, new
// connections are refused, and Close returns once the request is done.
func TestCloseDrainsInFlight(t *testing.T) {
	h := newHarness(t)
	h.restaurants.block = make(chan struct{})
	h.restaurants.entered = make(chan struct{}, 1)

	type result struct {
		status int
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := nethttp.Post(h.url+"/v1/restaurants", "application/json", strings.NewReader(`{"name":"Slow"}`))
		if err != nil {
			inflight <- result{err: err}
			return
		}
		res.Body.Close()
		inflight <- result{status: res.StatusCode}
	}()
	<-h.restaurants.entered

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
	close(h.restaurants.block)
	if r := <-inflight; r.err != nil || r.status != 201 {
		t.Fatalf("in-flight request: %d %v", r.status, r.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}

func waitFor(t *testing.T, timeout, every time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(every)
	}
}

// TestCloseRightAfterOpen: Close must return even when the serving goroutine has not started yet.
func TestCloseRightAfterOpen(t *testing.T) {
	for range 200 {
		srv, err := http.NewServer(http.DefaultConfig("127.0.0.1:0"), http.Backend{
			Cluster: &fakeCluster{}, Store: &fakeStore{}, Restaurants: newFakeRestaurants(),
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
