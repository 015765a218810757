package main

// The order workload of the cluster system tests (cluster_system_test.go): customers, restaurants and dashers
// driving orders through the HTTP API of a cluster, with OAuth tokens, Idempotency-Keys and long-poll feeds, behind
// a client that behaves like a load balancer with health checks. It records what the API acknowledged and what
// every feed delivered, so that a test can check, after a fault, that nothing acknowledged was lost.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/http/oauth"
)

// ---- The load-balancing client ----

// lbClient sends requests to the edges of a cluster like a load balancer with health checks: only to edges whose
// /readyz answered 200 at the last check (every lbCheckEvery), spreading them round robin. A request that got no
// answer (transport error), a 503, a 429, or a 409 IDEMPOTENCY_KEY_IN_USE is sent again, to the next ready edge,
// with the same Idempotency-Key, until it gets an answer or lbDeadline passes. Every such retry is recorded, and
// every 5xx that is not a 503 problem+json with Retry-After is a contract violation.
type lbClient struct {
	hc    *nethttp.Client
	next  atomic.Uint64
	stop  chan struct{}
	done  chan struct{}
	login sync.Map // source address index → *nethttp.Client

	mu       sync.Mutex
	edges    []*lbEdge
	retries  []lbAttempt // attempts that were retried
	bad      []string    // answers that break the API contract
	attempts int
}

type lbEdge struct {
	name, url string
	ready     atomic.Bool
}

// lbAttempt is one failed attempt of a request that was retried.
type lbAttempt struct {
	at           time.Time
	edge         string
	method, path string
	status       int    // 0: no answer
	code         string // problem code, or the transport error
}

func (a lbAttempt) String() string {
	return fmt.Sprintf("%s %s %s via %s: %d %s", a.at.Format("15:04:05.000"), a.method, a.path, a.edge, a.status, a.code)
}

const (
	lbCheckEvery = 100 * time.Millisecond
	lbDeadline   = 90 * time.Second // covers a 30 s idempotency lease held by a killed node
)

func newLBClient(t *testing.T, nodes ...*sysNode) *lbClient {
	t.Helper()
	c := &lbClient{
		hc: &nethttp.Client{Timeout: 15 * time.Second, CheckRedirect: noRedirects,
			Transport: &nethttp.Transport{MaxIdleConnsPerHost: 64}},
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for _, n := range nodes {
		c.add(n)
	}
	go c.checkHealth()
	t.Cleanup(c.close)
	c.waitReady(t, len(nodes))
	return c
}

func noRedirects(*nethttp.Request, []*nethttp.Request) error { return nethttp.ErrUseLastResponse }

func (c *lbClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
		<-c.done
	}
	c.hc.CloseIdleConnections()
	c.login.Range(func(_, v any) bool {
		v.(*nethttp.Client).CloseIdleConnections()
		return true
	})
}

// add puts node's edge behind the balancer (it receives traffic once its /readyz answers 200).
func (c *lbClient) add(n *sysNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.edges = append(c.edges, &lbEdge{name: n.name, url: n.url()})
}

func (c *lbClient) checkHealth() {
	defer close(c.done)
	hc := &nethttp.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	for {
		c.mu.Lock()
		edges := slices.Clone(c.edges)
		c.mu.Unlock()
		for _, e := range edges {
			res, err := hc.Get(e.url + "/readyz")
			ok := err == nil && res.StatusCode == 200
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			e.ready.Store(ok)
		}
		select {
		case <-c.stop:
			return
		case <-time.After(lbCheckEvery):
		}
	}
}

// readyEdges returns the names of the edges that take traffic now.
func (c *lbClient) readyEdges() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.edges {
		if e.ready.Load() {
			out = append(out, e.name)
		}
	}
	return out
}

func (c *lbClient) waitReady(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, 20*time.Millisecond, fmt.Sprintf("%d edges ready behind the balancer", n), func() bool {
		return len(c.readyEdges()) >= n
	})
}

// pick returns the next ready edge, or nil when none is.
func (c *lbClient) pick() *lbEdge {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range len(c.edges) {
		e := c.edges[int(c.next.Add(1)-1)%len(c.edges)]
		if e.ready.Load() {
			return e
		}
	}
	return nil
}

// apiReq is one logical request.
type apiReq struct {
	method, path string
	token        string
	json         any    // JSON body, or nil
	form         string // form body (OAuth), instead of json
	key          string // Idempotency-Key
	source       int    // > 0: send from local address 127.0.1.<source> (the edge rate-limits sign-ups per address)
}

// apiRes is the final answer to a request.
type apiRes struct {
	status   int
	body     []byte
	location string
	code     string // problem code
}

func (r apiRes) String() string { return fmt.Sprintf("%d %s", r.status, truncateBytes(r.body, 300)) }

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func (c *lbClient) client(source int) *nethttp.Client {
	if source <= 0 {
		return c.hc
	}
	if v, ok := c.login.Load(source); ok {
		return v.(*nethttp.Client)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(source))}, Timeout: 5 * time.Second}
	hc := &nethttp.Client{Timeout: 15 * time.Second, CheckRedirect: noRedirects, Transport: &nethttp.Transport{DialContext: d.DialContext}}
	v, _ := c.login.LoadOrStore(source, hc)
	return v.(*nethttp.Client)
}

// do sends r until it gets a final answer; the error says why it did not within lbDeadline.
func (c *lbClient) do(r apiReq) (apiRes, error) {
	deadline := time.Now().Add(lbDeadline)
	var last string
	for time.Now().Before(deadline) {
		e := c.pick()
		if e == nil {
			last = "no ready edge"
			time.Sleep(lbCheckEvery)
			continue
		}
		res, retryAfter, err := c.once(e, r)
		c.mu.Lock()
		c.attempts++
		c.mu.Unlock()
		switch {
		case err != nil:
			last = err.Error()
			c.retried(lbAttempt{time.Now(), e.name, r.method, r.path, 0, err.Error()})
		case res.status == 503 || res.status == 429 || (res.status == 409 && res.code == "IDEMPOTENCY_KEY_IN_USE"):
			last = res.String()
			c.retried(lbAttempt{time.Now(), e.name, r.method, r.path, res.status, res.code})
		default:
			return res, nil
		}
		// Back off as Retry-After says, but no longer than a second: the next edge may answer at once.
		wait := 100 * time.Millisecond
		if retryAfter > 0 {
			wait = min(retryAfter, time.Second)
		}
		time.Sleep(wait)
	}
	return apiRes{}, fmt.Errorf("%s %s: no answer within %v (last: %s)", r.method, r.path, lbDeadline, last)
}

func (c *lbClient) retried(a lbAttempt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retries = append(c.retries, a)
}

// once sends r to e once.
func (c *lbClient) once(e *lbEdge, r apiReq) (apiRes, time.Duration, error) {
	var body io.Reader
	ct := ""
	switch {
	case r.json != nil:
		b, err := json.Marshal(r.json)
		if err != nil {
			return apiRes{}, 0, err
		}
		body, ct = bytes.NewReader(b), "application/json"
	case r.form != "":
		body, ct = strings.NewReader(r.form), "application/x-www-form-urlencoded"
	}
	req, err := nethttp.NewRequest(r.method, e.url+r.path, body)
	if err != nil {
		return apiRes{}, 0, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	res, err := c.client(r.source).Do(req)
	if err != nil {
		return apiRes{}, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return apiRes{}, 0, err
	}
	out := apiRes{status: res.StatusCode, body: b, location: res.Header.Get("Location")}
	var retryAfter time.Duration
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &p)
		out.code = p.Code
	}
	if ra := res.Header.Get("Retry-After"); ra != "" {
		var secs int
		if _, err := fmt.Sscanf(ra, "%d", &secs); err == nil {
			retryAfter = time.Duration(secs) * time.Second
		}
	}
	if res.StatusCode >= 500 {
		ok := res.StatusCode == 503 && retryAfter > 0 && (out.code == "UNAVAILABLE" || out.code == "NOT_READY")
		if !ok {
			c.mu.Lock()
			c.bad = append(c.bad, fmt.Sprintf("%s %s via %s: %d (Retry-After %q, %s)", r.method, r.path, e.name,
				res.StatusCode, res.Header.Get("Retry-After"), truncateBytes(b, 200)))
			c.mu.Unlock()
		}
	}
	return out, retryAfter, nil
}

// retriesSince returns the retried attempts from t on.
func (c *lbClient) retriesSince(t time.Time) []lbAttempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []lbAttempt
	for _, a := range c.retries {
		if !a.at.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

func (c *lbClient) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.bad)
}

// ---- Principals ----

const (
	appClientID = "platter-app"
	appRedirect = "http://127.0.0.1:47999/callback" // nothing listens: the code is read from the 302's Location
)

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
}

func (c *lbClient) token(form neturl.Values) (string, error) {
	res, err := c.do(apiReq{method: "POST", path: "/oauth2/token", form: form.Encode()})
	if err != nil {
		return "", err
	}
	var tr tokenResponse
	if res.status != 200 || json.Unmarshal(res.body, &tr) != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("token: %s", res)
	}
	return tr.AccessToken, nil
}

// clientCredentials gets a confidential client's token (client_secret_post).
func (c *lbClient) clientCredentials(id, secret string) (string, error) {
	return c.token(neturl.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
}

// signIn signs a customer or dasher in through the authorize form (authorization code with PKCE S256).
func (c *lbClient) signIn(source int, email, password string) (string, error) {
	vb := make([]byte, 32)
	_, _ = rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	form := neturl.Values{
		"response_type": {"code"}, "client_id": {appClientID}, "redirect_uri": {appRedirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {"state-" + verifier[:16]}, "username": {email}, "password": {password},
	}
	res, err := c.do(apiReq{method: "POST", path: "/oauth2/authorize", form: form.Encode(), source: source})
	if err != nil {
		return "", err
	}
	loc, perr := neturl.Parse(res.location)
	if res.status != 302 && res.status != 303 || perr != nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("sign in %s: %s (location %q)", email, res, res.location)
	}
	return c.token(neturl.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {appRedirect}, "client_id": {appClientID}, "code_verifier": {verifier}})
}

// operatorToken reads the operator credentials one node of the cluster bootstrapped into its data dir and gets a
// token (valid on every node: the signing keys are the cluster's). The node writes the file before it creates the
// client (and removes it when another node won the race), so a token is asked for until one is granted.
func operatorToken(t *testing.T, c *lbClient, nodes []*sysNode) string {
	t.Helper()
	var tok string
	var last error
	waitFor(t, 30*time.Second, 100*time.Millisecond, "an operator token", func() bool {
		for _, n := range nodes {
			var creds oauth.Credentials
			b, err := os.ReadFile(filepath.Join(n.dataDir, oauth.OperatorCredentialsFile))
			if err != nil || json.Unmarshal(b, &creds) != nil {
				continue
			}
			if tok, last = c.clientCredentials(creds.ClientID, creds.ClientSecret); last == nil {
				return true
			}
		}
		return false
	})
	return tok
}

// ---- The workload ----

// workload runs the marketplace: each customer orders again and again from its restaurant; each order is driven
// by its customer's goroutine through acceptance, a dasher, ready, pick-up and delivery; each dasher accepts the
// offers its feed brings; every customer's, restaurant's and dasher's feed is followed from cursor 0.
type workload struct {
	lb       *lbClient
	operator string

	restaurants []*wRestaurant
	dashers     []*wDasher
	customers   []*wCustomer
	feeds       []*wFeed

	stopOrders chan struct{} // closed: customers finish their current order and stop
	orders     sync.WaitGroup
	stopFeeds  chan struct{}
	followers  sync.WaitGroup

	delivered atomic.Int64

	mu       sync.Mutex
	acked    map[string]*wOrder  // order id → order, once POST /v1/orders answered 201
	accepted map[string][]string // order id → dashers whose offer acceptance answered 200
	failures []string            // what went wrong (the test fails)
}

type wRestaurant struct {
	id, token string
	feed      *wFeed
}

type wDasher struct {
	id, token string
}

type wCustomer struct {
	n         int
	id, token string
}

type wOrder struct {
	id, customer, restaurant string
	status, dasher           string // at the end
}

// wFeed is one followed feed.
type wFeed struct {
	name, path, token string

	mu      sync.Mutex
	entries []wFeedEntry // every entry the follower read, in order
	gaps    []string
}

type wFeedEntry struct {
	Cursor  uint64 `json:"cursor"`
	Type    string `json:"type"`
	OrderID string `json:"order_id"`
}

type wFeedPage struct {
	Entries    []wFeedEntry `json:"entries"`
	NextCursor uint64       `json:"next_cursor"`
}

func (w *workload) failf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures = append(w.failures, fmt.Sprintf(format, args...))
}

// expect sends r and checks the answer's status; it records a failure and returns false otherwise.
func (w *workload) expect(r apiReq, status int, out any) bool {
	res, err := w.lb.do(r)
	if err != nil {
		w.failf("%v", err)
		return false
	}
	if res.status != status {
		w.failf("%s %s: %s, want %d", r.method, r.path, res, status)
		return false
	}
	if out != nil {
		if err := json.Unmarshal(res.body, out); err != nil {
			w.failf("%s %s: decode %s: %v", r.method, r.path, truncateBytes(res.body, 200), err)
			return false
		}
	}
	return true
}

var shopPosition = map[string]float64{"lat": 37.7749, "lng": -122.4194}

// newWorkload creates the principals (restaurants with staff clients and menus, dashers online next to them,
// customers with an address and a card) through the API and starts the feed followers and the dashers. Orders
// start with start.
func newWorkload(t *testing.T, lb *lbClient, operator string, restaurants, dashers, customers int) *workload {
	t.Helper()
	w := &workload{lb: lb, operator: operator, stopOrders: make(chan struct{}), stopFeeds: make(chan struct{}),
		acked: map[string]*wOrder{}, accepted: map[string][]string{}}
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000_000)
	must := func(ok bool) {
		t.Helper()
		if !ok {
			t.Fatalf("workload setup: %v", w.failures)
		}
	}
	for i := range restaurants {
		var r struct{ ID string }
		must(w.expect(apiReq{method: "POST", path: "/v1/restaurants", token: operator, key: fmt.Sprintf("r%d-%s", i, run),
			json: map[string]any{"name": fmt.Sprintf("Shop %d", i), "position": shopPosition, "cuisine": "thai"}}, 201, &r))
		var sc struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		must(w.expect(apiReq{method: "POST", path: "/v1/restaurants/" + r.ID + "/staff-clients", token: operator,
			key: "staff-" + r.ID}, 201, &sc))
		tok, err := lb.clientCredentials(sc.ClientID, sc.ClientSecret)
		if err != nil {
			t.Fatal(err)
		}
		must(w.expect(apiReq{method: "PUT", path: "/v1/restaurants/" + r.ID + "/menu", token: tok, key: "menu-" + r.ID,
			json: map[string]any{"items": []map[string]any{{"id": "dish", "name": "Pad Thai", "description": "noodles",
				"price_cents": 1250, "tags": []string{"noodles"}}}}}, 200, nil))
		feed := &wFeed{name: "restaurant " + r.ID, path: "/v1/restaurants/" + r.ID + "/feed", token: tok}
		w.restaurants = append(w.restaurants, &wRestaurant{id: r.ID, token: tok, feed: feed})
		w.feeds = append(w.feeds, feed)
	}
	source := 0
	for i := range dashers {
		source++
		email := fmt.Sprintf("dasher%d-%s@example.com", i, run)
		var d struct{ ID string }
		must(w.expect(apiReq{method: "POST", path: "/v1/dashers", token: operator, key: "d-" + email,
			json: map[string]any{"name": fmt.Sprintf("Dasher %d", i), "email": email, "password": "long enough password",
				"vehicle": "bike", "capacity": 4}}, 201, &d))
		tok, err := lb.signIn(source, email, "long enough password")
		if err != nil {
			t.Fatal(err)
		}
		must(w.expect(apiReq{method: "PUT", path: "/v1/dashers/me/status", token: tok, key: "online-" + d.ID,
			json: map[string]any{"online": true, "position": map[string]float64{"lat": 37.7751, "lng": -122.4190}}}, 200, nil))
		w.dashers = append(w.dashers, &wDasher{id: d.ID, token: tok})
		w.feeds = append(w.feeds, &wFeed{name: "dasher " + d.ID, path: "/v1/dashers/me/feed", token: tok})
	}
	for i := range customers {
		source++
		email := fmt.Sprintf("customer%d-%s@example.com", i, run)
		var cu struct{ ID string }
		must(w.expect(apiReq{method: "POST", path: "/v1/customers", key: "c-" + email, source: source,
			json: map[string]any{"name": fmt.Sprintf("Customer %d", i), "email": email, "password": "correct horse battery",
				"phone": "+1 415 555 0100"}}, 201, &cu))
		tok, err := lb.signIn(source, email, "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		must(w.expect(apiReq{method: "PUT", path: "/v1/customers/me/address", token: tok, key: "addr-" + cu.ID,
			json: map[string]any{"line1": "1 Market St", "city": "San Francisco", "postal_code": "94105",
				"position": map[string]float64{"lat": 37.7760, "lng": -122.4170}}}, 200, nil))
		must(w.expect(apiReq{method: "PUT", path: "/v1/customers/me/payment-method", token: tok, key: "card-" + cu.ID,
			json: map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}, 200, nil))
		w.customers = append(w.customers, &wCustomer{n: i, id: cu.ID, token: tok})
		w.feeds = append(w.feeds, &wFeed{name: "customer " + cu.ID, path: "/v1/customers/me/feed", token: tok})
	}
	for _, f := range w.feeds {
		w.followers.Add(1)
		go w.follow(f)
	}
	for _, d := range w.dashers {
		w.followers.Add(1)
		go w.dash(d)
	}
	return w
}

// start starts the customers' order loops.
func (w *workload) start() {
	for _, c := range w.customers {
		w.orders.Add(1)
		go w.order(c)
	}
}

func (w *workload) ordersStopping() bool {
	select {
	case <-w.stopOrders:
		return true
	default:
		return false
	}
}

// order is one customer's loop: order from its restaurant, drive the order to delivery, again.
func (w *workload) order(c *wCustomer) {
	defer w.orders.Done()
	r := w.restaurants[c.n%len(w.restaurants)]
	for k := 0; !w.ordersStopping(); k++ {
		key := fmt.Sprintf("%s-%d", c.id, k)
		if !w.expect(apiReq{method: "POST", path: "/v1/cart/items", token: c.token, key: key + "-cart",
			json: map[string]any{"restaurant_id": r.id, "menu_item_id": "dish", "quantity": 1}}, 200, nil) {
			return
		}
		var o struct{ ID string }
		if !w.expect(apiReq{method: "POST", path: "/v1/orders", token: c.token, key: key + "-order", json: map[string]any{}}, 201, &o) {
			return
		}
		w.mu.Lock()
		w.acked[o.ID] = &wOrder{id: o.ID, customer: c.id, restaurant: r.id}
		w.mu.Unlock()
		if !w.drive(c, r, o.ID) {
			return
		}
	}
}

// orderView is the part of GET /v1/orders/{id} the workload reads.
type orderView struct {
	Status   string `json:"status"`
	DasherID string `json:"dasher_id"`
}

// drive takes a placed order through acceptance, dispatch, ready, pick-up and delivery.
func (w *workload) drive(c *wCustomer, r *wRestaurant, id string) bool {
	// The restaurant hears of the order through its feed (the order reaches the restaurant through the actors'
	// outboxes, after POST /v1/orders answered), and accepts it then.
	if !w.seen(r.feed, "ORDER_PLACED", id, time.Minute) {
		w.failf("order %s: no ORDER_PLACED in the restaurant's feed within 1 min", id)
		return false
	}
	base := "/v1/restaurants/" + r.id + "/orders/" + id
	if !w.expect(apiReq{method: "POST", path: base + "/accept", token: r.token, key: id + "-accept",
		json: map[string]any{"prep_minutes": 10}}, 200, nil) {
		return false
	}
	// The area offers the order to dashers, whose loops (dash) accept it.
	var v orderView
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if !w.expect(apiReq{method: "GET", path: "/v1/orders/" + id, token: c.token}, 200, &v) {
			return false
		}
		if v.DasherID != "" {
			break
		}
		if time.Now().After(deadline) {
			w.failf("order %s: no dasher within 2 min (status %s)", id, v.Status)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	dasher := w.dasher(v.DasherID)
	if dasher == nil {
		w.failf("order %s: assigned to unknown dasher %s", id, v.DasherID)
		return false
	}
	if !w.expect(apiReq{method: "POST", path: base + "/ready", token: r.token, key: id + "-ready"}, 200, nil) ||
		!w.expect(apiReq{method: "POST", path: base + "/picked-up", token: r.token, key: id + "-picked-up"}, 200, nil) {
		return false
	}
	var done orderView
	if !w.expect(apiReq{method: "POST", path: "/v1/dashers/me/orders/" + id + "/delivered", token: dasher.token,
		key: id + "-delivered"}, 200, &done) {
		return false
	}
	if done.Status != "DELIVERED" {
		w.failf("order %s: %s after delivery", id, done.Status)
		return false
	}
	w.delivered.Add(1)
	return true
}

// seen waits until f's follower has read an entry of type typ for order, up to timeout.
func (w *workload) seen(f *wFeed, typ, order string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		found := slices.ContainsFunc(f.entries, func(e wFeedEntry) bool { return e.Type == typ && e.OrderID == order })
		f.mu.Unlock()
		if found {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (w *workload) dasher(id string) *wDasher {
	for _, d := range w.dashers {
		if d.id == id {
			return d
		}
	}
	return nil
}

func (w *workload) feedsStopping() bool {
	select {
	case <-w.stopFeeds:
		return true
	default:
		return false
	}
}

// poll reads f's feed after cursor once (a long poll of up to 2 s) and records the entries, checking that their
// cursors follow on from after with no gap.
func (w *workload) poll(f *wFeed, after uint64) ([]wFeedEntry, uint64, bool) {
	res, err := w.lb.do(apiReq{method: "GET", path: fmt.Sprintf("%s?after=%d&wait=2", f.path, after), token: f.token})
	if err != nil {
		w.failf("feed %s: %v", f.name, err)
		return nil, after, false
	}
	switch res.status {
	case 204:
		return nil, after, true
	case 200:
	default:
		w.failf("feed %s: %s", f.name, res)
		return nil, after, false
	}
	var page wFeedPage
	if err := json.Unmarshal(res.body, &page); err != nil {
		w.failf("feed %s: %v", f.name, err)
		return nil, after, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range page.Entries {
		if want := after + 1 + uint64(i); e.Cursor != want {
			f.gaps = append(f.gaps, fmt.Sprintf("cursor %d where %d was due", e.Cursor, want))
		}
	}
	f.entries = append(f.entries, page.Entries...)
	if len(page.Entries) > 0 {
		after = page.Entries[len(page.Entries)-1].Cursor
	}
	return page.Entries, after, true
}

// follow reads f from cursor 0 until the feeds stop.
func (w *workload) follow(f *wFeed) {
	defer w.followers.Done()
	var after uint64
	for !w.feedsStopping() {
		var ok bool
		if _, after, ok = w.poll(f, after); !ok {
			return
		}
	}
}

// dash is a dasher's loop: accept every delivery offer its feed brings (the first acceptance wins; the others
// get 409).
func (w *workload) dash(d *wDasher) {
	defer w.followers.Done()
	f := &wFeed{name: "dasher offers " + d.id, path: "/v1/dashers/me/feed", token: d.token}
	var after uint64
	for !w.feedsStopping() {
		entries, next, ok := w.poll(f, after)
		if !ok {
			return
		}
		after = next
		for _, e := range entries {
			if e.Type != "DELIVERY_OFFERED" {
				continue
			}
			res, err := w.lb.do(apiReq{method: "POST", path: "/v1/dashers/me/offers/" + e.OrderID + "/accept",
				token: d.token, key: d.id + "-" + e.OrderID + "-accept"})
			switch {
			case err != nil:
				w.failf("dasher %s accepts %s: %v", d.id, e.OrderID, err)
			case res.status == 200:
				w.mu.Lock()
				w.accepted[e.OrderID] = append(w.accepted[e.OrderID], d.id)
				w.mu.Unlock()
			case res.status == 409: // taken by another dasher, expired, or at capacity
			default:
				w.failf("dasher %s accepts %s: %s", d.id, e.OrderID, res)
			}
		}
	}
}

// waitDelivered waits until n more orders than at the call have been delivered.
func (w *workload) waitDelivered(t *testing.T, n int64, timeout time.Duration, what string) {
	t.Helper()
	target := w.delivered.Load() + n
	waitFor(t, timeout, 50*time.Millisecond, fmt.Sprintf("%d orders delivered %s (failures: %v)", n, what, w.failuresNow()),
		func() bool { return w.delivered.Load() >= target || len(w.failuresNow()) > 0 })
	if f := w.failuresNow(); len(f) > 0 {
		t.Fatalf("workload failed %s: %v", what, f)
	}
}

func (w *workload) failuresNow() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.failures)
}

// finish stops the orders (each customer completes the order it is driving), lets the feed followers catch up,
// and checks what the API acknowledged against what the cluster kept:
//   - every acknowledged order exists and is delivered (or cancelled or rejected by policy),
//   - at most one dasher's acceptance of each order was acknowledged, and it is the order's dasher,
//   - every feed holds dense cursors 1..N, and its follower read exactly those entries, in order,
//   - the workflow invariants hold over the whole journal, at rest (actors.CheckInvariants: transitions only from
//     the table, one dasher per order, capacity, every acknowledged order present, nothing stuck).
func (w *workload) finish(t *testing.T, dsn string) {
	t.Helper()
	close(w.stopOrders)
	done := make(chan struct{})
	go func() { w.orders.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the customers did not finish their orders within 3 min (failures: %v)", w.failuresNow())
	}
	if f := w.failuresNow(); len(f) > 0 {
		t.Fatalf("workload failures: %v", f)
	}

	// Every feed, read whole, against what its follower read.
	for _, f := range w.feeds {
		stored := w.readFeed(t, f)
		waitFor(t, 30*time.Second, 50*time.Millisecond, "the follower of "+f.name+" to catch up", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.entries) >= len(stored)
		})
		f.mu.Lock()
		for i, e := range stored {
			if e.Cursor != uint64(i+1) {
				t.Errorf("feed %s: entry %d has cursor %d", f.name, i, e.Cursor)
			}
			if i < len(f.entries) && f.entries[i] != e {
				t.Errorf("feed %s: the follower read %+v at cursor %d, the feed holds %+v", f.name, f.entries[i], i+1, e)
			}
		}
		if len(f.gaps) > 0 {
			t.Errorf("feed %s: the follower saw gaps: %v", f.name, f.gaps)
		}
		f.mu.Unlock()
	}
	close(w.stopFeeds)
	w.followers.Wait()

	w.mu.Lock()
	acked := make([]string, 0, len(w.acked))
	for id := range w.acked {
		acked = append(acked, id)
	}
	w.mu.Unlock()
	slices.Sort(acked)
	for _, id := range acked {
		o := w.acked[id]
		var v orderView
		if !w.expect(apiReq{method: "GET", path: "/v1/orders/" + id, token: w.customerToken(o.customer)}, 200, &v) {
			t.Fatalf("acknowledged order %s: %v", id, w.failuresNow())
		}
		o.status, o.dasher = v.Status, v.DasherID
		switch v.Status {
		case "DELIVERED", "CANCELLED", "REJECTED":
		default:
			t.Errorf("acknowledged order %s is %s at the end", id, v.Status)
		}
		if acc := w.accepted[id]; len(acc) > 1 || (len(acc) == 1 && acc[0] != v.DasherID) {
			t.Errorf("order %s: acceptances by %v acknowledged, its dasher is %q", id, acc, v.DasherID)
		}
	}

	j, err := journal.OpenPostgres(context.Background(), dsn, journal.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var violations []actors.Violation
	deadline := time.Now().Add(60 * time.Second)
	for {
		violations, err = actors.CheckInvariants(context.Background(), j, actors.InvariantOptions{Acknowledged: acked, Quiescent: true})
		if err != nil {
			t.Fatalf("check invariants: %v", err)
		}
		if len(violations) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // outbox acknowledgements and payment captures settle
	}
	for _, v := range violations {
		t.Errorf("invariant: %s", v)
	}
	if bad := w.lb.violations(); len(bad) > 0 {
		t.Errorf("answers that break the API contract: %v", bad)
	}
	t.Logf("%d orders acknowledged, %d delivered; %d feeds checked; %d attempts of %d retried: %v", len(acked),
		w.delivered.Load(), len(w.feeds), len(w.lb.retriesSince(time.Time{})), w.lb.attemptCount(), retryKinds(w.lb.retriesSince(time.Time{})))
}

// retryKinds counts retried attempts by answer ("429 RATE_LIMITED", "503 UNAVAILABLE", "no answer", ...).
func retryKinds(as []lbAttempt) map[string]int {
	out := map[string]int{}
	for _, a := range as {
		switch {
		case a.status == 0:
			out["no answer"]++
		default:
			out[fmt.Sprintf("%d %s", a.status, a.code)]++
		}
	}
	return out
}

func (c *lbClient) attemptCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts
}

func (w *workload) customerToken(id string) string {
	for _, c := range w.customers {
		if c.id == id {
			return c.token
		}
	}
	return ""
}

// readFeed reads f's whole feed, page by page, without waiting.
func (w *workload) readFeed(t *testing.T, f *wFeed) []wFeedEntry {
	t.Helper()
	var all []wFeedEntry
	var after uint64
	for {
		res, err := w.lb.do(apiReq{method: "GET", path: fmt.Sprintf("%s?after=%d&wait=0", f.path, after), token: f.token})
		if err != nil {
			t.Fatal(err)
		}
		if res.status == 204 {
			return all
		}
		var page wFeedPage
		if res.status != 200 || json.Unmarshal(res.body, &page) != nil {
			t.Fatalf("read feed %s: %s", f.name, res)
		}
		if len(page.Entries) == 0 {
			return all
		}
		all = append(all, page.Entries...)
		after = page.Entries[len(page.Entries)-1].Cursor
	}
}
