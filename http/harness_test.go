package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// fakeCluster is a Cluster whose answers the test sets.
type fakeCluster struct {
	ready       atomic.Bool
	members     []http.Member
	activations map[string]int
	drained     chan struct{}
}

func (c *fakeCluster) Ready() bool                 { return c.ready.Load() }
func (c *fakeCluster) Members() []http.Member      { return append([]http.Member(nil), c.members...) }
func (c *fakeCluster) Activations() map[string]int { return c.activations }
func (c *fakeCluster) State() string {
	if c.ready.Load() {
		return "serving"
	}
	return "joining"
}
func (c *fakeCluster) Drain(context.Context) error {
	c.ready.Store(false)
	if c.drained != nil {
		close(c.drained)
	}
	return nil
}

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

// actorCall is one call the fake actors received.
type actorCall struct {
	kind, identity, method string
	req                    proto.Message
}

// fakeActors answers grain calls from handlers keyed "Kind.Method"; a call without a handler answers the zero
// value of the rpc's answer type. Every call is checked against the grain's descriptor (method exists, request
// type matches), so the edge cannot call a method the actors lack. fail, when set, decides the error of every
// call; block, when set, holds every call until it is closed.
type fakeActors struct {
	mu       sync.Mutex
	handlers map[string]func(identity string, req proto.Message) (proto.Message, error)
	calls    []actorCall
	count    atomic.Int32
	fail     func() error
	block    chan struct{}
	entered  chan struct{}

	feedMu  sync.Mutex
	feeds   map[string][]*messages.FeedItem // "Kind/identity" -> entries, cursor = index+1
	feedsCh chan struct{}                   // closed and replaced on every append
	polls   *messages.PollFeed              // the last poll request
}

func newFakeActors() *fakeActors {
	a := &fakeActors{
		handlers: map[string]func(string, proto.Message) (proto.Message, error){},
		feeds:    map[string][]*messages.FeedItem{},
		feedsCh:  make(chan struct{}),
	}
	restaurants := map[string]*messages.RestaurantView{}
	a.handle("Restaurant.Create", func(id string, req proto.Message) (proto.Message, error) {
		cmd := req.(*messages.CreateRestaurant)
		if v, ok := restaurants[id]; ok {
			return v, nil
		}
		v := &messages.RestaurantView{Id: id, Name: cmd.GetName(), Position: cmd.GetPosition(), Cuisine: cmd.GetCuisine(),
			CreatedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
		restaurants[id] = v
		return v, nil
	})
	a.handle("Restaurant.Get", func(id string, _ proto.Message) (proto.Message, error) {
		if v, ok := restaurants[id]; ok {
			return v, nil
		}
		return nil, http.Errorf(http.CodeNotFound, "restaurant %s not found", id)
	})
	customers := map[string]*messages.CustomerView{}
	a.handle("Customer.Create", func(id string, req proto.Message) (proto.Message, error) {
		cmd := req.(*messages.CreateCustomer)
		if v, ok := customers[id]; ok {
			return v, nil
		}
		v := &messages.CustomerView{Id: id, Name: cmd.GetName(), Email: cmd.GetEmail(), Phone: cmd.GetPhone()}
		customers[id] = v
		return v, nil
	})
	return a
}

// handle sets the handler of "Kind.Method"; handlers run under the fake's lock.
func (a *fakeActors) handle(method string, h func(identity string, req proto.Message) (proto.Message, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers[method] = h
}

func (a *fakeActors) enter() error {
	a.count.Add(1)
	if a.entered != nil {
		a.entered <- struct{}{}
	}
	if a.block != nil {
		<-a.block
	}
	if a.fail != nil {
		return a.fail()
	}
	return nil
}

func (a *fakeActors) Call(_ context.Context, kind, identity, method string, req proto.Message) (proto.Message, error) {
	md, err := http.GrainMethod(kind, method, req)
	if err != nil {
		panic("the edge called a method the actors lack: " + err.Error())
	}
	if err := a.enter(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, actorCall{kind, identity, method, proto.Clone(req)})
	if h := a.handlers[kind+"."+method]; h != nil {
		return h(identity, req)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		panic(err)
	}
	return mt.New().Interface(), nil
}

// lastCall returns the last call of kind.method.
func (a *fakeActors) lastCall(t *testing.T, kind, method string) actorCall {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.calls) - 1; i >= 0; i-- {
		if a.calls[i].kind == kind && a.calls[i].method == method {
			return a.calls[i]
		}
	}
	t.Fatalf("no %s.%s call", kind, method)
	return actorCall{}
}

func (a *fakeActors) callCount(kind, method string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c.kind == kind && c.method == method {
			n++
		}
	}
	return n
}

// addFeed appends an entry to a feed and wakes the parked polls.
func (a *fakeActors) addFeed(kind, identity, typ, order string) {
	a.feedMu.Lock()
	defer a.feedMu.Unlock()
	k := kind + "/" + identity
	a.feeds[k] = append(a.feeds[k], &messages.FeedItem{
		Cursor: uint64(len(a.feeds[k]) + 1), Type: typ, OrderId: order, At: timestamppb.Now(),
	})
	close(a.feedsCh)
	a.feedsCh = make(chan struct{})
}

// lastPoll returns the last PollFeed request.
func (a *fakeActors) lastPoll(t *testing.T) *messages.PollFeed {
	t.Helper()
	a.feedMu.Lock()
	defer a.feedMu.Unlock()
	if a.polls == nil {
		t.Fatal("no poll")
	}
	return a.polls
}

func (a *fakeActors) PollFeed(ctx context.Context, kind, identity string, req *messages.PollFeed) (*messages.FeedPage, error) {
	if _, err := http.GrainMethod(kind, "PollFeed", req); err != nil {
		panic(err)
	}
	a.feedMu.Lock()
	a.polls = proto.Clone(req).(*messages.PollFeed)
	a.feedMu.Unlock()
	if err := a.enter(); err != nil {
		return nil, err
	}
	deadline := time.NewTimer(time.Duration(req.GetWaitMs()) * time.Millisecond)
	defer deadline.Stop()
	for {
		a.feedMu.Lock()
		all := a.feeds[kind+"/"+identity]
		ch := a.feedsCh
		a.feedMu.Unlock()
		page := &messages.FeedPage{NextCursor: req.GetAfter()}
		for _, e := range all {
			if e.GetCursor() > req.GetAfter() && len(page.Entries) < int(req.GetLimit()) {
				page.Entries = append(page.Entries, e)
				page.NextCursor = e.GetCursor()
			}
		}
		if len(page.Entries) > 0 || req.GetWaitMs() <= 0 {
			return page, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return page, nil
		case <-ctx.Done():
			return page, nil
		}
	}
}

// testAuth authenticates "X-Test-Principal: role:id[:restaurant,restaurant]" (tests only: production
// authentication is the security issue's bearer JWT).
type testAuth struct{}

func (testAuth) Authenticate(ctx *fasthttp.RequestCtx) (http.Principal, error) {
	h := string(ctx.Request.Header.Peek("X-Test-Principal"))
	if h == "" {
		return http.Principal{}, nil
	}
	parts := strings.Split(h, ":")
	if len(parts) < 2 {
		return http.Principal{}, http.Errorf(http.CodeUnauthenticated, "bad test principal")
	}
	p := http.Principal{Role: http.Role(parts[0]), ID: parts[1]}
	if len(parts) > 2 {
		p.Restaurants = strings.Split(parts[2], ",")
	}
	return p, nil
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

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	url     string
	srv     *http.Server
	cfg     http.Config
	cluster *fakeCluster
	store   *fakeStore
	actors  *fakeActors
	journal *journal.Bolt
	jpath   string
	clock   *testClock
	logs    *syncBuffer
}

type harnessOption func(*harness, *http.Config, *http.Backend)

// withSkeletonAuth runs the edge without an Authenticator, as production does until the security issue.
func withSkeletonAuth() harnessOption {
	return func(_ *harness, _ *http.Config, b *http.Backend) { b.Auth = nil }
}

func withConfig(f func(*http.Config)) harnessOption {
	return func(_ *harness, c *http.Config, _ *http.Backend) { f(c) }
}

// withJournal uses the journal file at path (to restart on the same store).
func withJournal(path string) harnessOption {
	return func(h *harness, _ *http.Config, _ *http.Backend) { h.jpath = path }
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{
		cluster: &fakeCluster{activations: map[string]int{"Restaurant": 2}},
		store:   &fakeStore{},
		actors:  newFakeActors(),
		clock:   &testClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
		logs:    &syncBuffer{},
		jpath:   filepath.Join(t.TempDir(), "journal.db"),
	}
	h.cluster.ready.Store(true)
	h.cluster.members = []http.Member{
		{ID: "m2", Name: "node-b", Address: "127.0.0.2:7946", RemoteAddr: "127.0.0.2:8090", Status: "alive", Kinds: []string{"Restaurant"}},
		{ID: "m1", Name: "node-a", Address: "127.0.0.1:7946", RemoteAddr: "127.0.0.1:8090", Status: "alive", Kinds: []string{"Restaurant"}, Self: true},
	}
	cfg := http.DefaultConfig("127.0.0.1:0")
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Now = h.clock.Now
	backend := http.Backend{Cluster: h.cluster, Store: h.store, Actors: h.actors, Auth: testAuth{}}
	for _, o := range opts {
		o(h, &cfg, &backend)
	}
	j, err := journal.OpenBolt(h.jpath, journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.journal = j
	backend.Idempotency = http.NewJournalIdempotency(j, http.DefaultIdempotencyRetention)
	h.cfg = cfg
	srv, err := http.NewServer(cfg, backend)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	h.srv, h.url = srv, srv.URL()
	t.Cleanup(func() { h.close(t) })
	return h
}

// close stops the server and closes the journal (idempotent).
func (h *harness) close(t *testing.T) {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A connection the client dialled but never used counts as busy until the server's read timeout: close
	// them first, so that Close does not wait for it.
	client.CloseIdleConnections()
	if err := h.srv.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := h.journal.Close(); err != nil {
		t.Errorf("close journal: %v", err)
	}
	h.srv = nil
	if t.Failed() {
		t.Logf("server logs:\n%s", h.logs.String())
	}
}

type response struct {
	status int
	header nethttp.Header
	body   []byte
}

// client is the HTTP client of tests (its own transport, so that closing servers do not leave idle connections
// in the default one).
var client = &nethttp.Client{Transport: &nethttp.Transport{MaxIdleConnsPerHost: 16}, Timeout: 60 * time.Second}

func (h *harness) do(t *testing.T, method, path, contentType string, body []byte, header ...string) response {
	t.Helper()
	return doRequest(t, h.url, method, path, contentType, body, header...)
}

func doRequest(t *testing.T, base, method, path, contentType string, body []byte, header ...string) response {
	t.Helper()
	return doRequestWith(t, client, base, method, path, contentType, body, header...)
}

// clientFrom returns a client whose connections leave from the loopback address source (e.g. "127.0.0.2"), so
// that the server sees another remote address than the other tests' clients.
func clientFrom(t *testing.T, source string) *nethttp.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	tr := &nethttp.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &nethttp.Client{Transport: tr, Timeout: 60 * time.Second}
}

// doRequestWith is doRequest through the client c.
func doRequestWith(t *testing.T, c *nethttp.Client, base, method, path, contentType string, body []byte, header ...string) response {
	t.Helper()
	req, err := nethttp.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, req, body, res, b)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// as returns the X-Test-Principal header pair of a principal.
func as(principal string) []string { return []string{"X-Test-Principal", principal} }

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
	retry := status == nethttp.StatusServiceUnavailable || status == nethttp.StatusTooManyRequests
	if retry != (res.header.Get("Retry-After") != "") {
		t.Fatalf("status %d with Retry-After %q", status, res.header.Get("Retry-After"))
	}
	return p
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
