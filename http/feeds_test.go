package http_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	nethttp "net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/http"
)

const customerID = "c_00000000-0000-0000-0000-0000000000c1"

type feedPage struct {
	Entries []struct {
		Cursor  uint64 `json:"cursor"`
		Type    string `json:"type"`
		OrderID string `json:"order_id"`
		At      string `json:"at"`
	} `json:"entries"`
	NextCursor uint64 `json:"next_cursor"`
}

func decodePage(t *testing.T, res response) feedPage {
	t.Helper()
	if res.status != 200 {
		t.Fatalf("poll: %d %s", res.status, res.body)
	}
	var p feedPage
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFeedReturnsEntriesAtOnce(t *testing.T) {
	h := newHarness(t)
	h.actors.addFeed("Customer", customerID, "ORDER_PLACED", orderID)
	h.actors.addFeed("Customer", customerID, "ORDER_ACCEPTED", orderID)
	start := time.Now()
	p := decodePage(t, h.do(t, "GET", "/v1/customers/me/feed?wait=25", "", nil, as(customer)...))
	if time.Since(start) > 5*time.Second || len(p.Entries) != 2 || p.Entries[0].Cursor != 1 || p.Entries[1].Type != "ORDER_ACCEPTED" ||
		p.NextCursor != 2 || p.Entries[0].OrderID != orderID || p.Entries[0].At == "" {
		t.Fatalf("page %+v after %v", p, time.Since(start))
	}
	// Resuming from a cursor gives only what follows it; limit bounds the page.
	p = decodePage(t, h.do(t, "GET", "/v1/customers/me/feed?after=1", "", nil, as(customer)...))
	if len(p.Entries) != 1 || p.Entries[0].Cursor != 2 {
		t.Fatalf("after 1: %+v", p)
	}
	p = decodePage(t, h.do(t, "GET", "/v1/customers/me/feed?limit=1&wait=0", "", nil, as(customer)...))
	if len(p.Entries) != 1 || p.NextCursor != 1 {
		t.Fatalf("limit 1: %+v", p)
	}
	poll := h.actors.lastPoll(t)
	if poll.GetWaitMs() != 0 || poll.GetLimit() != 1 {
		t.Fatalf("poll request %v", poll)
	}
}

// TestFeedWakesUp: a parked poll answers as soon as an entry arrives: within the 100 ms of API.md, measured from
// just before the entry is appended to the answer's arrival at the client, over wakeUps wake-ups (the median, so
// one descheduling of a loaded machine does not fail it; a broken wake-up waits out the 20 s poll).
func TestFeedWakesUp(t *testing.T) {
	h := newHarness(t)
	latencies := make([]time.Duration, 0, wakeUps)
	for i := range wakeUps {
		answered := make(chan time.Time, 1)
		var res response
		go func() {
			var at time.Time
			res, at = pollTimed(t, h.url, "/v1/dashers/me/feed?wait=20&after="+strconv.Itoa(i), dasher)
			answered <- at
		}()
		waitFor(t, 5*time.Second, time.Millisecond, "the poll to park", func() bool { return h.actors.count.Load() == int32(i+1) })
		added := time.Now()
		h.actors.addFeed("Dasher", "d_00000000-0000-0000-0000-0000000000d1", "DELIVERY_OFFERED", orderID)
		latencies = append(latencies, (<-answered).Sub(added))
		p := decodePage(t, res)
		if len(p.Entries) != 1 || p.Entries[0].Type != "DELIVERY_OFFERED" || p.Entries[0].Cursor != uint64(i+1) {
			t.Fatalf("wake-up %d: page %+v", i, p)
		}
	}
	checkWakeUps(t, latencies)
}

func TestFeedTimesOutWith204(t *testing.T) {
	h := newHarness(t)
	start := time.Now()
	res := h.do(t, "GET", "/v1/restaurants/"+restID+"/feed?wait=0.3", "", nil, as(staff)...)
	if res.status != 204 || len(res.body) != 0 {
		t.Fatalf("empty wait: %d %q", res.status, res.body)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %v, before the wait ended", d)
	}
	if poll := h.actors.lastPoll(t); poll.GetWaitMs() != 300 {
		t.Fatalf("wait_ms %d", poll.GetWaitMs())
	}
	if res := h.do(t, "GET", "/v1/restaurants/"+restID+"/feed?wait=0", "", nil, as(staff)...); res.status != 204 {
		t.Fatalf("wait=0 on an empty feed: %d", res.status)
	}
}

// TestFeedDefaultWait: with the default configuration, a poll without ?wait= waits 25 s (an entry is there
// already, so it answers at once) and ?wait= may ask for up to 30 s; more is 400 INVALID_ARGUMENT.
func TestFeedDefaultWait(t *testing.T) {
	h := newHarness(t)
	h.actors.addFeed("Customer", customerID, "ORDER_PLACED", orderID)
	decodePage(t, h.do(t, "GET", "/v1/customers/me/feed", "", nil, as(customer)...))
	if poll := h.actors.lastPoll(t); poll.GetWaitMs() != 25_000 || poll.GetLimit() != 100 || poll.GetAfter() != 0 {
		t.Fatalf("poll request %v, want wait_ms 25000, limit 100, after 0", poll)
	}
	decodePage(t, h.do(t, "GET", "/v1/customers/me/feed?wait=30", "", nil, as(customer)...))
	if poll := h.actors.lastPoll(t); poll.GetWaitMs() != 30_000 {
		t.Fatalf("wait=30: wait_ms %d", poll.GetWaitMs())
	}
	calls := h.actors.count.Load()
	for _, wait := range []string{"30.001", "31", "-1", "NaN", "soon"} {
		p := wantProblem(t, h.do(t, "GET", "/v1/customers/me/feed?wait="+wait, "", nil, as(customer)...), 400, http.CodeInvalidArgument)
		if !strings.Contains(p.Detail, "wait") {
			t.Fatalf("wait=%s: detail %q does not name the parameter", wait, p.Detail)
		}
	}
	if h.actors.count.Load() != calls {
		t.Fatal("a poll with a bad wait reached the actor")
	}
	// A configured DefaultPollWait is what a poll without ?wait= waits.
	h = newHarness(t, withConfig(func(c *http.Config) { c.DefaultPollWait = 150 * time.Millisecond }))
	if res := h.do(t, "GET", "/v1/customers/me/feed", "", nil, as(customer)...); res.status != 204 {
		t.Fatalf("status %d", res.status)
	}
	if poll := h.actors.lastPoll(t); poll.GetWaitMs() != 150 {
		t.Fatalf("poll request %v", poll)
	}
}

// TestFeedPollBound: a client may have MaxPollsPerClient polls waiting; another client is not affected.
func TestFeedPollBound(t *testing.T) {
	h := newHarness(t, withConfig(func(c *http.Config) { c.MaxPollsPerClient = 2 }))
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := h.do(t, "GET", "/v1/customers/me/feed?wait=20", "", nil, as(customer)...); res.status != 200 {
				t.Errorf("parked poll: %d %s", res.status, res.body)
			}
		}()
	}
	waitFor(t, 5*time.Second, time.Millisecond, "two polls to park", func() bool { return h.actors.count.Load() == 2 })
	p := wantProblem(t, h.do(t, "GET", "/v1/customers/me/feed?wait=20", "", nil, as(customer)...), 429, http.CodeTooManyPolls)
	if p.Detail == "" {
		t.Fatal("no detail")
	}
	if res := h.do(t, "GET", "/v1/customers/me/feed?wait=0", "", nil, as("customer:c_00000000-0000-0000-0000-0000000000c2")...); res.status != 204 {
		t.Fatalf("another customer: %d %s", res.status, res.body)
	}
	h.actors.addFeed("Customer", customerID, "ORDER_PLACED", orderID)
	wg.Wait()
	if res := h.do(t, "GET", "/v1/customers/me/feed?wait=0", "", nil, as(customer)...); res.status != 200 {
		t.Fatalf("after the polls ended: %d %s", res.status, res.body)
	}
}

// TestFeedPollOutlastsServerTimeouts: the read, write and idle timeouts do not cut a poll that waits longer.
func TestFeedPollOutlastsServerTimeouts(t *testing.T) {
	h := newHarness(t, withConfig(func(c *http.Config) {
		c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	}))
	start := time.Now()
	if res := h.do(t, "GET", "/v1/customers/me/feed?wait=0.6", "", nil, as(customer)...); res.status != 204 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("the poll ended after %v", d)
	}
}

// TestCloseReleasesPolls: a graceful stop answers parked polls at once instead of waiting for their wait.
func TestCloseReleasesPolls(t *testing.T) {
	h := newHarness(t)
	done := make(chan response, 1)
	go func() { done <- h.do(t, "GET", "/v1/customers/me/feed?wait=30", "", nil, as(customer)...) }()
	waitFor(t, 5*time.Second, time.Millisecond, "the poll to park", func() bool { return h.actors.count.Load() == 1 })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.status != 204 {
		t.Fatalf("released poll: %d", res.status)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("close took %v", d)
	}
}

// TestFeedPollsShareAKeepAliveConnection: the server gives a connection's buffers back to their pools while a
// poll is parked (fasthttp's ReduceMemoryUsage) and takes them again for its answer and the next request, so
// parked and immediate requests follow each other on one connection.
func TestFeedPollsShareAKeepAliveConnection(t *testing.T) {
	h := newHarness(t)
	tr := &nethttp.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	one := &nethttp.Client{Transport: tr, Timeout: 30 * time.Second}
	var conns, reused atomic.Int32
	get := func(path string) *nethttp.Response {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			conns.Add(1)
			if i.Reused {
				reused.Add(1)
			}
		}}
		req, err := nethttp.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Test-Principal", dasher)
		res, err := one.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	const feed = "/v1/dashers/me/feed"
	if res := get(feed + "?wait=0.2"); res.StatusCode != 204 {
		t.Fatalf("parked poll that timed out: %d", res.StatusCode)
	}
	done := make(chan *nethttp.Response, 1)
	go func() { done <- get(feed + "?wait=20") }()
	waitFor(t, 5*time.Second, time.Millisecond, "the second poll to park", func() bool { return h.actors.count.Load() == 2 })
	h.actors.addFeed("Dasher", "d_00000000-0000-0000-0000-0000000000d1", "DELIVERY_OFFERED", orderID)
	if res := <-done; res.StatusCode != 200 {
		t.Fatalf("woken poll: %d", res.StatusCode)
	}
	if res := get(feed + "?wait=0"); res.StatusCode != 200 {
		t.Fatalf("poll with an entry: %d", res.StatusCode)
	}
	if conns.Load() != 3 || reused.Load() != 2 {
		t.Fatalf("%d requests, %d on a reused connection; want 3 on one connection", conns.Load(), reused.Load())
	}
}

// selfSigned returns a server TLS config for 127.0.0.1 and a client pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "platter-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestFeedOverTLS: with Config.TLS the edge completes each handshake before serving the connection (parked polls
// then keep small stacks): a poll parks and wakes over HTTPS, a connection that never handshakes is closed after
// ReadTimeout, one that does not speak TLS is closed at once, and Close is not held by a pending handshake.
func TestFeedOverTLS(t *testing.T) {
	serverTLS, pool := selfSigned(t)
	h := newHarness(t, withConfig(func(c *http.Config) { c.TLS, c.ReadTimeout = serverTLS, 300*time.Millisecond }))
	if !strings.HasPrefix(h.url, "https://") {
		t.Fatalf("url %s", h.url)
	}
	tr := &nethttp.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &nethttp.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func(path string) (int, []byte) {
		req, err := nethttp.NewRequest("GET", h.url+path, nil)
		if err != nil {
			return 0, []byte(err.Error())
		}
		req.Header.Set("X-Test-Principal", dasher)
		res, err := hc.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() { s, b := get("/v1/dashers/me/feed?wait=20"); done <- answer{s, b} }()
	waitFor(t, 5*time.Second, time.Millisecond, "the poll to park", func() bool { return h.actors.count.Load() == 1 })
	h.actors.addFeed("Dasher", "d_00000000-0000-0000-0000-0000000000d1", "DELIVERY_OFFERED", orderID)
	if a := <-done; a.status != 200 || !strings.Contains(string(a.body), "DELIVERY_OFFERED") {
		t.Fatalf("poll over TLS: %d %s", a.status, a.body)
	}

	// Each raw connection must end from the server's side, well before the client's own deadline.
	closedByServer := func(what string, c net.Conn) {
		t.Helper()
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: the server did not close the connection", what)
		}
	}
	addr := strings.TrimPrefix(h.url, "https://")
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closedByServer("a connection that never handshakes", silent)
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	closedByServer("plain HTTP on the TLS port", plain)

	pending, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatalf("close with a handshake pending: %v", err)
	}
	if s, _ := get("/healthz"); s != 0 {
		t.Fatalf("a request after Close answered %d", s)
	}
}

// TestHandshakesBounded: with MaxHandshakes 1, a connection that never sends its TLS hello holds the one handshake
// slot, so a real client's handshake waits until that connection is gone; then it is served.
func TestHandshakesBounded(t *testing.T) {
	serverTLS, pool := selfSigned(t)
	h := newHarness(t, withConfig(func(c *http.Config) { c.TLS, c.ReadTimeout, c.MaxHandshakes = serverTLS, time.Minute, 1 }))
	addr := strings.TrimPrefix(h.url, "https://")
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The kernel's accept queue is FIFO: the silent connection, established first, is accepted first and holds
	// the slot before the client's connection is taken from the queue.
	tr := &nethttp.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &nethttp.Client{Transport: tr, Timeout: 30 * time.Second}
	served := make(chan int, 1)
	go func() {
		res, err := hc.Get(h.url + "/healthz")
		if err != nil {
			served <- 0
			return
		}
		_ = res.Body.Close()
		served <- res.StatusCode
	}()
	select {
	case s := <-served:
		t.Fatalf("a handshake ran while the only slot was held (answer %d)", s)
	case <-time.After(300 * time.Millisecond): // long enough for a loopback handshake; a pass never depends on it
	}
	_ = silent.Close()
	select {
	case s := <-served:
		if s != 200 {
			t.Fatalf("healthz after the slot was freed: %d", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting handshake was not served after the slot was freed")
	}
}
