package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/platterhq/platter/actors/journal/pgtest"
	"github.com/platterhq/platter/http/oauth"
)

// syncBuffer collects a Main's output safely across its goroutines.
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

// newTestMain parses `run` args for an in-process node: loopback, port 0 everywhere unless args say otherwise,
// local cluster timings, no environment. Its output is printed if the test fails.
func newTestMain(t *testing.T, dataDir string, args ...string) (*Main, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	m := &Main{Stdout: out, Logs: out, Getenv: envOf()}
	base := []string{"run", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local", "--log-level", "debug", "--shutdown-timeout", "10s",
		"--drain-grace", "0", "--insecure"}
	if err := m.ParseFlags(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of node on %s:\n%s", dataDir, out.String())
		}
	})
	return m, out
}

func runMain(t *testing.T, m *Main) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	// Plain-HTTP nodes get an operator token for tryCall (the TLS tests talk to /healthz only).
	if _, err := os.Stat(filepath.Join(m.Config.DataDir, oauth.OperatorCredentialsFile)); err == nil && strings.HasPrefix(m.URL(), "http://") {
		operatorLogin(t, m.URL(), m.Config.DataDir, client)
	}
}

// tokens holds the bearer token tryCall sends to each node (base URL "http://host:port").
var tokens sync.Map

// operatorLogin gets an operator access token with the credentials the node bootstrapped into dataDir, and makes
// tryCall send it to baseURL.
func operatorLogin(t *testing.T, baseURL, dataDir string, hc *nethttp.Client) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, oauth.OperatorCredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	var creds oauth.Credentials
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	cc := clientcredentials.Config{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, TokenURL: baseURL + "/oauth2/token"}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, hc))
	if err != nil {
		t.Fatalf("operator token from %s: %v", baseURL, err)
	}
	tokens.Store(baseURL, tok.AccessToken)
	t.Cleanup(func() { tokens.Delete(baseURL) })
	return tok.AccessToken
}

// operatorForNodes gets an operator token that every node (urls, with their data dirs) accepts and makes tryCall
// send it to all of them. With a journal per node (bbolt), the operator client and the signing keys live in the
// journal of the node that owns their identity when they are first used; as nodes join, ownership moves and the
// new owner may bootstrap them again (writing operator-credentials.json into its own data dir). So: the newest
// credentials file, retried until every node's keyring has caught up (KeyRefresh is 2 s with the local profile).
func operatorForNodes(t *testing.T, urls, dirs []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		newest, newestAt := -1, time.Time{}
		for i, d := range dirs {
			if fi, err := os.Stat(filepath.Join(d, oauth.OperatorCredentialsFile)); err == nil && fi.ModTime().After(newestAt) {
				newest, newestAt = i, fi.ModTime()
			}
		}
		if newest >= 0 {
			if tok, err := tryOperatorLogin(urls[newest], dirs[newest]); err == nil {
				accepted := 0
				for _, u := range urls {
					useToken(t, u, tok)
					if status, _, err := tryCall("GET", u+"/v1/admin/cluster", ""); err == nil && status == 200 {
						accepted++
					}
				}
				if accepted == len(urls) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no operator token accepted by every node within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryOperatorLogin is operatorLogin without failing the test.
func tryOperatorLogin(baseURL, dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, oauth.OperatorCredentialsFile))
	if err != nil {
		return "", err
	}
	var creds oauth.Credentials
	if err := json.Unmarshal(b, &creds); err != nil {
		return "", err
	}
	cc := clientcredentials.Config{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, TokenURL: baseURL + "/oauth2/token"}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, client))
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// useToken makes tryCall send tok to baseURL (a token is valid on every node of its cluster).
func useToken(t *testing.T, baseURL, tok string) {
	tokens.Store(baseURL, tok)
	t.Cleanup(func() { tokens.Delete(baseURL) })
}

// call sends a JSON request and decodes a JSON answer into out (when non-nil); it returns the status.
func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	status, b, err := tryCall(method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, b, err)
		}
	}
	return status
}

var client = &nethttp.Client{Timeout: 10 * time.Second}

func tryCall(method, url, body string) (int, []byte, error) {
	req, err := nethttp.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := tokens.Load(req.URL.Scheme + "://" + req.URL.Host); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

type restaurantView struct {
	ID       string             `json:"id"`
	Name     string             `json:"name"`
	Cuisine  string             `json:"cuisine"`
	Position map[string]float64 `json:"position"`
}

type clusterView struct {
	Ready   bool `json:"ready"`
	Members []struct {
		ID      string `json:"id"`
		Address string `json:"address"`
		Status  string `json:"status"`
		Self    bool   `json:"self"`
	} `json:"members"`
	Activations map[string]int `json:"activations"`
}

func (v clusterView) alive() int {
	n := 0
	for _, m := range v.Members {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

// waitFor polls fn every `every` until it returns true, failing the test after timeout.
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

// TestRunCreateRestartRead runs the real Main: create a restaurant over HTTP, read it back, stop, start again on
// the same data directory, and read it again (the write was durable).
func TestRunCreateRestartRead(t *testing.T) {
	dir := t.TempDir()
	m, out := newTestMain(t, dir)
	runMain(t, m)
	if !strings.Contains(out.String(), "serving "+m.URL()) {
		t.Fatalf("no listening line naming %s in:\n%s", m.URL(), out.String())
	}
	// make run's promise: it prints how to get a token, with this data dir's bootstrap credentials.
	creds := filepath.Join(dir, "operator-credentials.json")
	if want := "get an operator token: curl -s " + m.URL() + "/oauth2/token -d grant_type=client_credentials -u \"$(jq -r '.client_id + \":\" + .client_secret' " + creds + ")\""; !strings.Contains(out.String(), want) {
		t.Fatalf("no token hint %q in:\n%s", want, out.String())
	}
	if _, err := os.Stat(creds); err != nil {
		t.Fatalf("the token hint names %s: %v", creds, err)
	}
	if status := call(t, "GET", m.URL()+"/readyz", "", nil); status != 200 {
		t.Fatalf("readyz after Run: %d", status)
	}

	var created restaurantView
	if status := call(t, "POST", m.URL()+"/v1/restaurants",
		`{"name":"Thai Basil","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`, &created); status != 201 {
		t.Fatalf("create: %d", status)
	}
	var got restaurantView
	if status := call(t, "GET", m.URL()+"/v1/restaurants/"+created.ID, "", &got); status != 200 || got.Name != "Thai Basil" {
		t.Fatalf("read back: %d %+v", status, got)
	}
	var cv clusterView
	if call(t, "GET", m.URL()+"/v1/admin/cluster", "", &cv); cv.Activations["Restaurant"] != 1 || len(cv.Members) != 1 || !cv.Members[0].Self {
		t.Fatalf("admin cluster after one restaurant: %+v", cv)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !strings.Contains(out.String(), "left the cluster") || !strings.Contains(out.String(), "journal closed") {
		t.Fatalf("graceful stop not logged:\n%s", out.String())
	}

	m2, _ := newTestMain(t, dir)
	runMain(t, m2)
	var again restaurantView
	if status := call(t, "GET", m2.URL()+"/v1/restaurants/"+created.ID, "", &again); status != 200 ||
		again.Name != "Thai Basil" || again.Cuisine != "thai" || again.Position["lat"] != 37.77 {
		t.Fatalf("after restart: %d %+v", status, again)
	}
	var missing map[string]any
	if status := call(t, "GET", m2.URL()+"/v1/restaurants/r_00000000-0000-0000-0000-000000000000", "", &missing); status != 404 || missing["code"] != "NOT_FOUND" {
		t.Fatalf("unknown restaurant: %d %v", status, missing)
	}
}

// handedOutPorts holds every port freePort returned in this test process.
var handedOutPorts sync.Map

// freePort returns a port on ip that is free for TCP and UDP at the time of the call.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			// The kernel may hand a just-closed port out again: never give one port to two callers of this
			// process (e.g. a node's HTTP and cluster addresses).
			if _, taken := handedOutPorts.LoadOrStore(port, true); !taken {
				return port
			}
		}
	}
	t.Fatalf("no free TCP+UDP port on %s", ip)
	return 0
}

// TestTokenHintOnAJoinedNode: a node whose data directory holds no operator credentials (it joined a cluster
// another node bootstrapped) prints where they are instead of a command naming a file it lacks.
func TestTokenHintOnAJoinedNode(t *testing.T) {
	var out bytes.Buffer
	m := &Main{Config: Config{DataDir: t.TempDir()}, Stdout: &out}
	m.printTokenHint("https://127.0.0.1:8443")
	if want := "platter: operator token: POST https://127.0.0.1:8443/oauth2/token grant_type=client_credentials with the client in operator-credentials.json of the node that started the cluster\n"; out.String() != want {
		t.Fatalf("token hint %q, want %q", out.String(), want)
	}
}

// TestReadyWhileJoining starts a node whose seed is not up yet: its edge answers /healthz, /readyz says 503
// NOT_READY and actor calls are refused; once the seed starts, the node joins and /readyz flips to 200.
func TestReadyWhileJoining(t *testing.T) {
	seedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	url := "http://" + httpAddr

	dsn := pgtest.NewDatabase(t) // a cluster shares its journal
	joiner, _ := newTestMain(t, t.TempDir(), "--http-addr", httpAddr, "--join", seedAddr, "--join-timeout", "60s", "--journal", dsn)
	ctx, cancel := context.WithCancel(context.Background())
	runErr, runDone := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(runDone)
		runErr <- joiner.Run(ctx)
	}()
	t.Cleanup(func() { // Close only once Run has returned
		cancel()
		<-runDone
		_ = joiner.Close()
	})

	waitFor(t, 20*time.Second, 20*time.Millisecond, "the joining node's /healthz", func() bool {
		status, _, err := tryCall("GET", url+"/healthz", "")
		return err == nil && status == 200
	})
	var problem map[string]any
	if status := call(t, "GET", url+"/readyz", "", &problem); status != 503 || problem["code"] != "NOT_READY" {
		t.Fatalf("readyz while joining: %d %v", status, problem)
	}
	if status := call(t, "POST", url+"/v1/restaurants", `{"name":"Early","position":{"lat":1,"lng":2},"cuisine":"x"}`, &problem); status != 401 || problem["code"] != "UNAUTHENTICATED" {
		t.Fatalf("anonymous create while joining: %d %v", status, problem)
	}
	// A bearer token cannot be checked before the node has joined (the signing keys are the cluster's): 503.
	useToken(t, url, "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.e30.AAAA")
	if status := call(t, "POST", url+"/v1/restaurants", `{"name":"Early","position":{"lat":1,"lng":2},"cuisine":"x"}`, &problem); status != 503 || problem["code"] != "NOT_READY" {
		t.Fatalf("create while joining: %d %v", status, problem)
	}
	tokens.Delete(url)

	seed, _ := newTestMain(t, t.TempDir(), "--cluster-addr", seedAddr, "--journal", dsn)
	runMain(t, seed)
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("joiner run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the joiner did not finish joining within 30s of the seed starting")
	}
	if status := call(t, "GET", url+"/readyz", "", nil); status != 200 {
		t.Fatalf("readyz after joining: %d", status)
	}
	operatorForNodes(t, []string{url, seed.URL()}, []string{joiner.Config.DataDir, seed.Config.DataDir})
	var cv clusterView
	waitFor(t, 10*time.Second, 50*time.Millisecond, "both nodes to list 2 alive members", func() bool {
		call(t, "GET", url+"/v1/admin/cluster", "", &cv)
		var sv clusterView
		call(t, "GET", seed.URL()+"/v1/admin/cluster", "", &sv)
		return cv.alive() == 2 && sv.alive() == 2
	})
}

// --debug-addr serves Go's profiles on its own plain-HTTP listener and nothing else; without the flag there is none.
func TestDebugListenerServesProfiles(t *testing.T) {
	m, _ := newTestMain(t, t.TempDir(), "--debug-addr", "127.0.0.1:0")
	runMain(t, m)
	if m.debug == nil {
		t.Fatal("no debug listener with --debug-addr")
	}
	res, err := client.Get(m.debug.URL() + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("heap profile: %d %.200s", res.StatusCode, body)
	}
	res, err = client.Get(m.debug.URL() + "/v1/orders")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("debug listener answered the API: %d", res.StatusCode)
	}

	plain, _ := newTestMain(t, t.TempDir())
	runMain(t, plain)
	if plain.debug != nil {
		t.Fatal("a debug listener without --debug-addr")
	}
}

// callAs sends a request with the bearer token (whatever tryCall would send) and answers status and body.
func callAs(t *testing.T, token, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := nethttp.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// jwksKids answers the kids a node's /.well-known/jwks.json publishes, sorted.
func jwksKids(t *testing.T, baseURL string) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if status := call(t, "GET", baseURL+"/.well-known/jwks.json", "", &set); status != 200 {
		t.Fatalf("jwks: %d", status)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids
}

// tokenKid answers the kid in an access token's JOSE header.
func tokenKid(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	var h struct {
		Kid string `json:"kid"`
	}
	if err != nil || json.Unmarshal(b, &h) != nil || h.Kid == "" {
		t.Fatalf("token header %q: %v", head, err)
	}
	return h.Kid
}

// TestSigningKeysSurviveRestart runs the real Main: an operator rotates the signing key through POST
// /v1/admin/signing-keys/rotate; after a restart on the same data directory, the tokens of both keys issued before
// the restart are still accepted, JWKS publishes the same two kids, and a new token is signed with the same
// current key (a node that made a key per start, or lost them, fails here).
func TestSigningKeysSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	m, _ := newTestMain(t, dir)
	runMain(t, m)
	first := operatorLogin(t, m.URL(), dir, client)
	k0 := tokenKid(t, first)
	if kids := jwksKids(t, m.URL()); !slices.Equal(kids, []string{k0}) {
		t.Fatalf("jwks %v, want the first token's kid %s", kids, k0)
	}
	status, b := callAs(t, first, "POST", m.URL()+"/v1/admin/signing-keys/rotate", "")
	var rotated struct {
		Kid string `json:"kid"`
	}
	if status != 200 || json.Unmarshal(b, &rotated) != nil || rotated.Kid == "" || rotated.Kid == k0 {
		t.Fatalf("rotate: %d %s", status, b)
	}
	second := operatorLogin(t, m.URL(), dir, client)
	if kid := tokenKid(t, second); kid != rotated.Kid {
		t.Fatalf("a token after the rotation has kid %s, want %s", kid, rotated.Kid)
	}
	want := []string{k0, rotated.Kid}
	slices.Sort(want)
	if kids := jwksKids(t, m.URL()); !slices.Equal(kids, want) {
		t.Fatalf("jwks after the rotation %v, want %v", kids, want)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	m2, _ := newTestMain(t, dir)
	runMain(t, m2)
	for name, tok := range map[string]string{"first key": first, "second key": second} {
		if status, b := callAs(t, tok, "GET", m2.URL()+"/v1/admin/cluster", ""); status != 200 {
			t.Errorf("token of the %s, issued before the restart: %d %s", name, status, b)
		}
	}
	if kids := jwksKids(t, m2.URL()); !slices.Equal(kids, want) {
		t.Fatalf("jwks after the restart %v, want %v", kids, want)
	}
	if kid := tokenKid(t, operatorLogin(t, m2.URL(), dir, client)); kid != rotated.Kid {
		t.Fatalf("a token after the restart has kid %s, want the current %s", kid, rotated.Kid)
	}
}

// TestKeyRotateAfterFlag: --key-rotate-after (PLATTER_KEY_ROTATE_AFTER) reaches the authorization server: with
// 3 s (and the local profile's 2 s key refresh) the node replaces its signing key by itself; the token of the
// first key still works and JWKS lists both.
func TestKeyRotateAfterFlag(t *testing.T) {
	m := &Main{Stdout: io.Discard, Logs: io.Discard, Getenv: envOf("PLATTER_KEY_ROTATE_AFTER", "90m")}
	if err := m.ParseFlags([]string{"run"}); err != nil || m.Config.KeyRotateAfter != 90*time.Minute {
		t.Fatalf("PLATTER_KEY_ROTATE_AFTER=90m: %v, %v", m.Config.KeyRotateAfter, err)
	}
	if err := m.ParseFlags([]string{"run", "--key-rotate-after", "0s"}); err == nil || !strings.Contains(err.Error(), "--key-rotate-after") {
		t.Fatalf("--key-rotate-after 0s: %v, want an error naming the flag", err)
	}

	dir := t.TempDir()
	m, _ = newTestMain(t, dir, "--key-rotate-after", "3s")
	runMain(t, m)
	first := operatorLogin(t, m.URL(), dir, client)
	k0 := tokenKid(t, first)
	var kids []string
	waitFor(t, 30*time.Second, 200*time.Millisecond, "the node to rotate its signing key by age", func() bool {
		kids = jwksKids(t, m.URL())
		return len(kids) == 2 && slices.Contains(kids, k0)
	})
	if status, b := callAs(t, first, "GET", m.URL()+"/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("the first key's token after the rotation: %d %s", status, b)
	}
	if kid := tokenKid(t, operatorLogin(t, m.URL(), dir, client)); kid == k0 {
		t.Fatalf("a new token has the first kid %s; jwks %v", kid, kids)
	}
}

// TestRevocationReachesEveryNode: two nodes on a shared journal. An operator revokes the signing keys through node
// A (retire_previous); a token of the revoked key that node B had verified (and cached) is refused by A at once and
// by B once B re-reads the keys (KeyRefresh, 2 s with the local profile), with no token issued or JWKS asked on B.
func TestRevocationReachesEveryNode(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	seedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	a, _ := newTestMain(t, t.TempDir(), "--cluster-addr", seedAddr, "--journal", dsn)
	runMain(t, a)
	b, _ := newTestMain(t, t.TempDir(), "--join", seedAddr, "--journal", dsn)
	runMain(t, b)
	operatorForNodes(t, []string{a.URL(), b.URL()}, []string{a.Config.DataDir, b.Config.DataDir})
	v, _ := tokens.Load(a.URL())
	old := v.(string)
	if status, body := callAs(t, old, "GET", b.URL()+"/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("node B before the revocation: %d %s", status, body)
	}

	status, body := callAs(t, old, "POST", a.URL()+"/v1/admin/signing-keys/rotate", `{"retire_previous":true}`)
	var rotated struct {
		Kid             string `json:"kid"`
		RetiredPrevious bool   `json:"retired_previous"`
	}
	if status != 200 || json.Unmarshal(body, &rotated) != nil || !rotated.RetiredPrevious || rotated.Kid == tokenKid(t, old) {
		t.Fatalf("revoke on node A: %d %s", status, body)
	}
	revokedAt := time.Now()
	if status, body := callAs(t, old, "GET", a.URL()+"/v1/admin/cluster", ""); status != 401 {
		t.Fatalf("node A right after the revocation: %d %s, want 401", status, body)
	}
	waitFor(t, 30*time.Second, 50*time.Millisecond, "node B to refuse the revoked key's token", func() bool {
		status, _ := callAs(t, old, "GET", b.URL()+"/v1/admin/cluster", "")
		return status == 401
	})
	t.Logf("node B refused the revoked key's token %v after the revocation on node A", time.Since(revokedAt).Round(time.Millisecond))
}
