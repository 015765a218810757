package oauth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/http/oauth"
	"github.com/platterhq/platter/messages"
)

// The authorization server end to end: a one-member cluster hosting the actors over a temp-dir bbolt journal,
// the edge with the OAuth server as its Authenticator, Accounts and OAuth endpoints, driven by golang.org/x/oauth2.

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type fakeStoreOK struct{}

func (fakeStoreOK) Ping() error { return nil }

type testNode struct {
	dir     string
	url     string
	cluster *cluster.Node
	srv     *http.Server
	oauth   *oauth.Server
	actors  http.Actors
	logs    *syncBuffer
	opCreds oauth.Credentials
}

// cheap argon2id parameters for tests (production uses argon2id.DefaultParams).
var testArgon2 = &argon2id.Params{Memory: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func startNode(t testing.TB, cfg oauth.Config) *testNode {
	t.Helper()
	return startNodeWith(t, cfg, nodeOptions{})
}

// nodeOptions make a node of a larger cluster: on a shared PostgreSQL journal (dsn), joining seed's cluster.
type nodeOptions struct {
	dsn  string
	seed *testNode
}

func startNodeWith(t testing.TB, cfg oauth.Config, opts nodeOptions) *testNode {
	t.Helper()
	n := &testNode{dir: t.TempDir(), logs: &syncBuffer{}}
	log := cfg.Logger // benchmarks log as production does; tests keep every debug line for a failure's report
	if log == nil {
		log = slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var j journal.Journal
	var err error
	if opts.dsn != "" {
		j, err = journal.OpenPostgres(context.Background(), opts.dsn, journal.PostgresOptions{})
	} else {
		j, err = journal.OpenBolt(filepath.Join(n.dir, "journal.db"), journal.BoltOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	deps := actors.Deps{Journal: j, Logger: log, Accounts: actors.AccountConfig{MaxLoginFailures: 3, LoginLockout: time.Minute}}
	deps.Now = cfg.Now // a test's clock stamps the signing keys too (nil: the actors' default)
	ccfg := cluster.DefaultLocalConfig()
	ccfg.Logger = log
	if opts.seed != nil {
		ccfg.Seeds = []string{opts.seed.cluster.Self().GossipAddr}
	}
	node, err := cluster.NewNode(ccfg, func() []*pcluster.Kind { return actors.Kinds(deps) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n.cluster = node
	// Durable timers (dispatch waves, offer expiry) and outbox retries fire through the scanner, as in a node.
	scanner := actors.StartReminderScanner(deps, node.Cluster)
	backend := http.NewClusterBackend(node, fakeStoreOK{}, j, http.DefaultIdempotencyRetention)
	n.actors = backend.Actors
	cfg.Logger = log
	if cfg.Argon2 == nil {
		cfg.Argon2 = testArgon2
	}
	o, err := oauth.NewServer(cfg, backend.Actors)
	if err != nil {
		t.Fatal(err)
	}
	n.oauth = o
	backend.Auth, backend.Accounts, backend.OAuth = o, o, o
	hcfg := http.DefaultConfig("127.0.0.1:0")
	hcfg.Logger = log
	hcfg.LoginLimit = http.RateLimit{Rate: 1000, Burst: 1000}
	srv, err := http.NewServer(hcfg, backend)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	n.srv, n.url = srv, srv.URL()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		scanner.Stop()
		_ = node.Stop(ctx)
		_ = j.Close()
		if t.Failed() {
			t.Logf("node logs:\n%s", n.logs.String())
		}
	})
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if opts.seed != nil {
		n.opCreds = opts.seed.opCreds // the cluster's operator client was made by its first node
		return n
	}
	created, err := o.Bootstrap(ctx, n.dir)
	if err != nil || !created {
		t.Fatalf("bootstrap: created %v, %v", created, err)
	}
	b, err := os.ReadFile(filepath.Join(n.dir, oauth.OperatorCredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &n.opCreds); err != nil {
		t.Fatal(err)
	}
	return n
}

var plain = &nethttp.Client{Timeout: 10 * time.Second, CheckRedirect: func(*nethttp.Request, []*nethttp.Request) error {
	return nethttp.ErrUseLastResponse
}}

// do sends a request with an optional bearer token and JSON body; it returns status and body.
func (n *testNode) do(t testing.TB, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := nethttp.NewRequest(method, n.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (n *testNode) clientToken(t testing.TB, id, secret string) *oauth2.Token {
	t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: n.url + "/oauth2/token"}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials for %s: %v", id, err)
	}
	return tok
}

func (n *testNode) operatorToken(t testing.TB) string {
	return n.clientToken(t, n.opCreds.ClientID, n.opCreds.ClientSecret).AccessToken
}

// claims decodes a JWT's header and claims without verifying it.
func claims(t *testing.T, token string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", token)
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

func TestBootstrapAndClientCredentials(t *testing.T) {
	n := startNode(t, oauth.Config{})
	fi, err := os.Stat(filepath.Join(n.dir, oauth.OperatorCredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	// Written once: a second bootstrap changes nothing.
	if created, err := n.oauth.Bootstrap(context.Background(), n.dir); err != nil || created {
		t.Fatalf("second bootstrap: created %v, %v", created, err)
	}
	if created, err := n.oauth.Bootstrap(context.Background(), t.TempDir()); err != nil || created {
		t.Fatalf("bootstrap on another data dir of the same cluster: created %v, %v", created, err)
	}

	tok := n.clientToken(t, n.opCreds.ClientID, n.opCreds.ClientSecret)
	if tok.RefreshToken != "" {
		t.Fatal("client_credentials issued a refresh token")
	}
	h, c := claims(t, tok.AccessToken)
	if h["alg"] != "EdDSA" || h["typ"] != "at+jwt" || h["kid"] == "" {
		t.Fatalf("header %v", h)
	}
	exp, iat := c["exp"].(float64), c["iat"].(float64)
	if c["iss"] != "platter" || c["sub"] != oauth.OperatorClientID || c["role"] != "operator" || c["scope"] != "platter" ||
		c["client_id"] != oauth.OperatorClientID || exp-iat > 15*60 || exp-iat <= 0 {
		t.Fatalf("claims %v", c)
	}
	if aud := fmt.Sprint(c["aud"]); aud != "platter-api" && aud != "[platter-api]" {
		t.Fatalf("aud %v", c["aud"])
	}
	if status, b := n.do(t, tok.AccessToken, "GET", "/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("admin with operator token: %d %s", status, b)
	}
	// Both ways of presenting client credentials work (RFC 6749 section 2.3.1): the HTTP Basic header, which
	// clients must support and curl -u sends, and form parameters.
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: n.opCreds.ClientID, ClientSecret: n.opCreds.ClientSecret,
			TokenURL: n.url + "/oauth2/token", AuthStyle: style}
		if _, err := cc.Token(context.Background()); err != nil {
			t.Fatalf("client_credentials with auth style %v: %v", style, err)
		}
	}
	if status, _ := n.do(t, "", "GET", "/v1/admin/cluster", ""); status != 401 {
		t.Fatalf("admin without a token: %d, want 401", status)
	}

	// Wrong secret, unknown client, the password grant: refused.
	bad := clientcredentials.Config{ClientID: n.opCreds.ClientID, ClientSecret: "wrong", TokenURL: n.url + "/oauth2/token"}
	if _, err := bad.Token(context.Background()); err == nil {
		t.Fatal("wrong secret accepted")
	}
	bad.ClientID = "nobody"
	if _, err := bad.Token(context.Background()); err == nil {
		t.Fatal("unknown client accepted")
	}
	pw := oauth2.Config{ClientID: oauth.AppClientID, Endpoint: oauth2.Endpoint{TokenURL: n.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	if _, err := pw.PasswordCredentialsToken(context.Background(), "a@example.com", "whatever1"); err == nil {
		t.Fatal("the password grant was accepted")
	}

	// Staff clients: bound to their restaurant.
	op := tok.AccessToken
	var r1, r2 struct{ ID string }
	for _, r := range []*struct{ ID string }{&r1, &r2} {
		status, b := n.do(t, op, "POST", "/v1/restaurants", `{"name":"Thai Basil","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`)
		if status != 201 {
			t.Fatalf("create restaurant: %d %s", status, b)
		}
		json.Unmarshal(b, r)
	}
	status, b := n.do(t, op, "POST", "/v1/restaurants/"+r1.ID+"/staff-clients", `{"name":"front desk"}`)
	if status != 201 {
		t.Fatalf("staff client: %d %s", status, b)
	}
	var sc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal(b, &sc); err != nil || sc.ClientSecret == "" {
		t.Fatalf("staff client answer %s", b)
	}
	staff := n.clientToken(t, sc.ClientID, sc.ClientSecret).AccessToken
	_, sclaims := claims(t, staff)
	if sclaims["role"] != "restaurant" || fmt.Sprint(sclaims["restaurants"]) != "["+r1.ID+"]" {
		t.Fatalf("staff claims %v", sclaims)
	}
	if status, b := n.do(t, staff, "GET", "/v1/restaurants/"+r1.ID+"/orders", ""); status != 200 {
		t.Fatalf("own restaurant's orders: %d %s", status, b)
	}
	if status, _ := n.do(t, staff, "GET", "/v1/restaurants/"+r2.ID+"/orders", ""); status != 404 {
		t.Fatalf("another restaurant's orders: %d, want 404", status)
	}
	if status, _ := n.do(t, staff, "POST", "/v1/restaurants/"+r1.ID+"/staff-clients", ""); status != 403 {
		t.Fatalf("staff creating staff clients: %d, want 403", status)
	}
	if status, _ := n.do(t, op, "POST", "/v1/restaurants/r_00000000-0000-0000-0000-000000000000/staff-clients", ""); status != 404 {
		t.Fatalf("staff client of an unknown restaurant: %d, want 404", status)
	}
}

// pkce returns a verifier and its S256 challenge.
func pkce() (string, string) {
	v := oauth2.GenerateVerifier()
	return v, oauth2.S256ChallengeFromVerifier(v)
}

// signIn runs the authorize form: GET shows it, POST with the credentials answers 302 to the redirect URI. It
// returns the status and the redirect location (or the body when no redirect).
func (n *testNode) signIn(t testing.TB, params url.Values, email, password string) (int, string) {
	t.Helper()
	status, body := n.do(t, "", "GET", "/oauth2/authorize?"+params.Encode(), "")
	if status != 200 || !strings.Contains(string(body), `name="password"`) {
		return status, string(body)
	}
	form := url.Values{}
	for k, v := range params {
		form[k] = v
	}
	form.Set("username", email)
	form.Set("password", password)
	res, err := plain.PostForm(n.url+"/oauth2/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == 302 {
		return 302, res.Header.Get("Location")
	}
	return res.StatusCode, string(b) + fmt.Sprint(res.Header)
}

func (n *testNode) signUp(t testing.TB, email, password string) string {
	t.Helper()
	status, b := n.do(t, "", "POST", "/v1/customers", fmt.Sprintf(`{"name":"Ann","email":%q,"password":%q}`, email, password))
	if status != 201 {
		t.Fatalf("sign up: %d %s", status, b)
	}
	var v struct{ ID string }
	json.Unmarshal(b, &v)
	return v.ID
}

func appConfig(n *testNode, redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: oauth.AppClientID, RedirectURL: redirect, Scopes: []string{"platter"},
		Endpoint: oauth2.Endpoint{AuthURL: n.url + "/oauth2/authorize", TokenURL: n.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// codeFlow signs in and exchanges the code; it returns the token.
func codeFlow(t testing.TB, n *testNode, conf *oauth2.Config, email, password string) *oauth2.Token {
	t.Helper()
	verifier, challenge := pkce()
	authURL, _ := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)))
	params := authURL.Query()
	if params.Get("code_challenge") != challenge {
		t.Fatal("x/oauth2 sent another challenge")
	}
	status, loc := n.signIn(t, params, email, password)
	if status != 302 {
		t.Fatalf("sign-in: %d %s", status, loc)
	}
	u, err := url.Parse(loc)
	if err != nil || u.Query().Get("state") != "state-0123456789" || u.Query().Get("code") == "" {
		t.Fatalf("redirect %q", loc)
	}
	if !strings.HasPrefix(loc, conf.RedirectURL) {
		t.Fatalf("redirect %q, want %s...", loc, conf.RedirectURL)
	}
	tok, err := conf.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func TestAuthorizationCodeWithPKCEAndRefresh(t *testing.T) {
	n := startNode(t, oauth.Config{})
	id := n.signUp(t, "Ann@Example.com", "correct horse")
	if status, _ := n.do(t, "", "POST", "/v1/customers", `{"name":"Eve","email":"ann@example.com","password":"another one"}`); status != 409 {
		t.Fatalf("second sign-up with the email: %d, want 409", status)
	}

	conf := appConfig(n, "http://127.0.0.1:53123/callback/x")
	tok := codeFlow(t, n, conf, "ann@example.com", "correct horse")
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	_, c := claims(t, tok.AccessToken)
	if c["sub"] != id || c["role"] != "customer" || c["client_id"] != oauth.AppClientID {
		t.Fatalf("claims %v", c)
	}
	status, b := n.do(t, tok.AccessToken, "GET", "/v1/customers/me", "")
	if status != 200 || !strings.Contains(string(b), id) {
		t.Fatalf("me: %d %s", status, b)
	}

	// The app's custom scheme works too.
	if tok2 := codeFlow(t, n, appConfig(n, "platter://callback"), "ann@example.com", "correct horse"); tok2.AccessToken == "" {
		t.Fatal("no token for platter://callback")
	}

	// Refresh rotates the refresh token; the new tokens work.
	rt0 := tok.RefreshToken
	tok1, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt0}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok1.RefreshToken == "" || tok1.RefreshToken == rt0 || tok1.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	if status, _ := n.do(t, tok1.AccessToken, "GET", "/v1/customers/me", ""); status != 200 {
		t.Fatalf("me with the refreshed token: %d", status)
	}
	tok2, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok1.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("second refresh: %v", err)
	}

	// Reuse of rt0 is refused and revokes the family: the newest refresh token stops working too.
	if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt0}).Token(); err == nil {
		t.Fatal("a used refresh token was accepted again")
	} else if !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("reuse: %v, want invalid_grant", err)
	}
	if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); err == nil {
		t.Fatal("the family survived the reuse of one of its refresh tokens")
	}

	// Revocation (RFC 7009) of a refresh token ends its family.
	tok3 := codeFlow(t, n, conf, "ann@example.com", "correct horse")
	res, err := plain.PostForm(n.url+"/oauth2/revoke", url.Values{"token": {tok3.RefreshToken}, "client_id": {oauth.AppClientID}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("revoke: %d", res.StatusCode)
	}
	if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok3.RefreshToken}).Token(); err == nil {
		t.Fatal("a revoked refresh token was accepted")
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	n := startNode(t, oauth.Config{})
	n.signUp(t, "bob@example.com", "correct horse")
	conf := appConfig(n, "http://127.0.0.1:41000/cb")
	verifier, challenge := pkce()
	base := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {oauth.AppClientID}, "redirect_uri": {conf.RedirectURL},
			"state": {"state-123456"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	}
	tests := []struct {
		name   string
		change func(url.Values)
	}{
		{"no PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge", verifier); v.Set("code_challenge_method", "plain") }},
		{"foreign redirect", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }},
		{"localhost name", func(v url.Values) { v.Set("redirect_uri", "http://localhost:41000/cb") }},
		{"implicit flow", func(v url.Values) { v.Set("response_type", "token") }},
		{"unknown client", func(v url.Values) { v.Set("client_id", "nobody") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := base()
			tt.change(v)
			status, loc := n.signIn(t, v, "bob@example.com", "correct horse")
			if status == 302 && strings.Contains(loc, "code=") {
				t.Fatalf("got a code: %s", loc)
			}
		})
	}

	// Wrong password: the form again with 401; the code grant with a wrong verifier fails.
	if status, body := n.signIn(t, base(), "bob@example.com", "wrong password"); status != 401 || !strings.Contains(body, "Wrong email or password") {
		t.Fatalf("wrong password: %d %s", status, body)
	}
	if status, _ := n.signIn(t, base(), "nobody@example.com", "correct horse"); status != 401 {
		t.Fatalf("unknown email: %d", status)
	}
	status, loc := n.signIn(t, base(), "bob@example.com", "correct horse")
	if status != 302 {
		t.Fatalf("sign-in: %d %s", status, loc)
	}
	u, _ := url.Parse(loc)
	code := u.Query().Get("code")
	if _, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("a wrong code_verifier was accepted")
	}
	// A code is good once: the failed exchange above used its PKCE request.
	if _, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was exchanged after a failed exchange")
	}
	// Code reuse after a successful exchange revokes what it issued.
	if status, loc = n.signIn(t, base(), "bob@example.com", "correct horse"); status != 302 {
		t.Fatalf("sign-in: %d %s", status, loc)
	}
	u, _ = url.Parse(loc)
	code = u.Query().Get("code")
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if status, _ := n.do(t, tok.AccessToken, "GET", "/v1/customers/me", ""); status != 200 {
		t.Fatalf("the code's access token before the reuse: %d", status)
	}
	if _, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was exchanged twice")
	}
	if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the refresh token survived the reuse of its code")
	}
	if status, _ := n.do(t, tok.AccessToken, "GET", "/v1/customers/me", ""); status != 401 {
		t.Fatalf("the access token survived the reuse of its code: %d, want 401", status)
	}
}

func TestLoginThrottled(t *testing.T) {
	n := startNode(t, oauth.Config{MaxAddressFailures: 6, AddressWindow: time.Minute})
	n.signUp(t, "carl@example.com", "correct horse")
	_, challenge := pkce()
	v := url.Values{"response_type": {"code"}, "client_id": {oauth.AppClientID}, "redirect_uri": {"platter://callback"},
		"state": {"state-123456"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	// Per account: three failures lock the account (the node's AccountConfig), even for the right password.
	for i := 0; i < 3; i++ {
		if status, _ := n.signIn(t, v, "carl@example.com", "wrong password"); status != 401 {
			t.Fatalf("failure %d: status %d", i+1, status)
		}
	}
	if status, body := n.signIn(t, v, "carl@example.com", "correct horse"); status != 429 || !strings.Contains(body, "this account") {
		t.Fatalf("locked account: %d %s", status, body)
	}
	// Per address: after six failures from this address, every sign-in from it is refused.
	for i := 0; i < 2; i++ {
		n.signIn(t, v, fmt.Sprintf("x%d@example.com", i), "wrong password")
	}
	if status, body := n.signIn(t, v, "someone@example.com", "any password"); status != 429 || !strings.Contains(body, "your address") {
		t.Fatalf("throttled address: %d %s", status, body)
	}
}

// signingKey reads the current signing key from the Account actor (what an attacker who stole it could do).
func signingKey(t *testing.T, n *testNode) (string, ed25519.PrivateKey) {
	t.Helper()
	res, err := n.actors.Call(context.Background(), actors.KindAccount, actors.AccountKeys, "GetSigningKeys", &messages.GetSigningKeys{})
	if err != nil {
		t.Fatal(err)
	}
	keys := res.(*messages.SigningKeys).GetKeys()
	k := keys[len(keys)-1]
	priv, err := x509.ParsePKCS8PrivateKey(k.GetPrivatePkcs8())
	if err != nil {
		t.Fatal(err)
	}
	return k.GetKid(), priv.(ed25519.PrivateKey)
}

func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid, typ string, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBadTokensRefused(t *testing.T) {
	n := startNode(t, oauth.Config{})
	good := n.operatorToken(t)
	if status, _ := n.do(t, good, "GET", "/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("good token: %d", status)
	}
	kid, priv := signingKey(t, n)
	now := time.Now()
	valid := func() map[string]any {
		return map[string]any{"iss": "platter", "aud": []string{"platter-api"}, "sub": oauth.OperatorClientID, "client_id": oauth.OperatorClientID,
			"role": "operator", "scope": "platter", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	}
	with := func(k string, v any) map[string]any {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	// The forged-but-valid control: the tests below fail for the one thing they change.
	if status, b := n.do(t, sign(t, priv, jose.EdDSA, kid, "at+jwt", valid()), "GET", "/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("control token: %d %s", status, b)
	}
	pub := priv.Public().(ed25519.PublicKey)
	payload, _ := json.Marshal(valid())
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	hs256 := func() string {
		head := b64([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"` + kid + `"}`))
		mac := hmac.New(sha256.New, pub)
		mac.Write([]byte(head + "." + b64(payload)))
		return head + "." + b64(payload) + "." + b64(mac.Sum(nil))
	}
	parts := strings.Split(good, ".")
	var tamperedClaims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(raw, &tamperedClaims)
	tamperedClaims["sub"] = "someone-else"
	tb, _ := json.Marshal(tamperedClaims)

	tests := []struct{ name, token string }{
		{"expired", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("exp", now.Add(-2*time.Minute).Unix()))},
		{"wrong audience", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("aud", []string{"another-api"}))},
		{"wrong issuer", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("iss", "https://evil.example"))},
		{"no exp", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("exp", nil))},
		{"too long", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("exp", now.Add(time.Hour).Unix()))},
		{"not yet valid", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("nbf", now.Add(time.Hour).Unix()))},
		{"unknown role", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("role", "admin"))},
		{"no scope", sign(t, priv, jose.EdDSA, kid, "at+jwt", with("scope", nil))},
		{"typ JWT", sign(t, priv, jose.EdDSA, kid, "JWT", valid())},
		{"unknown kid", sign(t, priv, jose.EdDSA, "other-kid", "at+jwt", valid())},
		{"another key", sign(t, ed25519.NewKeyFromSeed(make([]byte, 32)), jose.EdDSA, kid, "at+jwt", valid())},
		{"alg none", b64([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`)) + "." + b64(payload) + "."},
		{"HS256 with the public key", hs256()},
		{"tampered", parts[0] + "." + b64(tb) + "." + parts[2]},
		{"garbage", "not.a.token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := n.do(t, tt.token, "GET", "/v1/admin/cluster", "")
			if status != 401 || !strings.Contains(string(b), "UNAUTHENTICATED") {
				t.Fatalf("status %d %s, want 401 UNAUTHENTICATED", status, b)
			}
		})
	}
	// A scheme other than Bearer authenticates nobody: a route that needs a principal refuses it and names the
	// Bearer scheme.
	req, _ := nethttp.NewRequest("GET", n.url+"/v1/admin/cluster", nil)
	req.SetBasicAuth(n.opCreds.ClientID, n.opCreds.ClientSecret)
	res, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("basic auth: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

// jwksKids answers the kids GET /.well-known/jwks.json publishes, checking that every key is a public EdDSA key.
func (n *testNode) jwksKids(t *testing.T) []string {
	t.Helper()
	status, b := n.do(t, "", "GET", "/.well-known/jwks.json", "")
	var set jose.JSONWebKeySet
	if status != 200 || json.Unmarshal(b, &set) != nil {
		t.Fatalf("jwks: %d %s", status, b)
	}
	if strings.Contains(string(b), `"d"`) {
		t.Fatal("jwks publishes a private key")
	}
	var kids []string
	for _, k := range set.Keys {
		if k.Algorithm != "EdDSA" || !k.IsPublic() {
			t.Fatalf("jwks key %+v", k)
		}
		if _, ok := k.Key.(ed25519.PublicKey); !ok {
			t.Fatalf("jwks key is %T", k.Key)
		}
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

// rotateKeys calls POST /v1/admin/signing-keys/rotate with token and body; it answers the status and the new kid.
func (n *testNode) rotateKeys(t *testing.T, token, body string) (int, string) {
	t.Helper()
	status, b := n.do(t, token, "POST", "/v1/admin/signing-keys/rotate", body)
	var res struct {
		Kid             string `json:"kid"`
		RetiredPrevious *bool  `json:"retired_previous"`
	}
	if status == 200 && (json.Unmarshal(b, &res) != nil || res.Kid == "" || res.RetiredPrevious == nil ||
		*res.RetiredPrevious != strings.Contains(body, "true")) {
		t.Fatalf("rotate answered %s", b)
	}
	return status, res.Kid
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	h, _ := claims(t, token)
	kid, _ := h["kid"].(string)
	return kid
}

// TestSigningKeyRotation drives POST /v1/admin/signing-keys/rotate with real tokens. Only the operator may. An
// ordinary rotation: tokens of the previous key keep working, new tokens carry the new kid, JWKS lists both. An
// emergency one (retire_previous): every earlier token is refused at once (they were verified and cached before),
// JWKS lists the new key only, and new tokens work.
func TestSigningKeyRotation(t *testing.T) {
	n := startNode(t, oauth.Config{})
	before := n.operatorToken(t)
	k0 := kidOf(t, before)
	n.signUp(t, "cara@example.com", "correct horse")
	cust := codeFlow(t, n, appConfig(n, "platter://callback"), "cara@example.com", "correct horse").AccessToken
	if status, b := n.do(t, cust, "GET", "/v1/customers/me", ""); status != 200 {
		t.Fatalf("customer before any rotation: %d %s", status, b)
	}

	// Not the customer's, nor an anonymous caller's; neither rotates anything.
	if status, _ := n.rotateKeys(t, cust, ""); status != 403 {
		t.Fatalf("customer rotating: %d, want 403", status)
	}
	if status, _ := n.rotateKeys(t, "", `{"retire_previous":true}`); status != 401 {
		t.Fatalf("anonymous rotating: %d, want 401", status)
	}
	if kids := n.jwksKids(t); !slices.Equal(kids, []string{k0}) {
		t.Fatalf("jwks after refused rotations %v, want [%s]", kids, k0)
	}

	status, k1 := n.rotateKeys(t, before, "")
	if status != 200 || k1 == k0 {
		t.Fatalf("rotate: %d, kid %q (previous %q)", status, k1, k0)
	}
	after := n.operatorToken(t)
	if kid := kidOf(t, after); kid != k1 {
		t.Fatalf("a new token has kid %q, want the rotated %q", kid, k1)
	}
	for _, tok := range []string{before, after} {
		if status, b := n.do(t, tok, "GET", "/v1/admin/cluster", ""); status != 200 {
			t.Fatalf("token of kid %s after rotation: %d %s", kidOf(t, tok), status, b)
		}
	}
	if status, b := n.do(t, cust, "GET", "/v1/customers/me", ""); status != 200 {
		t.Fatalf("customer token of the previous key: %d %s", status, b)
	}
	want := []string{k0, k1}
	slices.Sort(want)
	if kids := n.jwksKids(t); !slices.Equal(kids, want) {
		t.Fatalf("jwks after rotation %v, want %v", kids, want)
	}

	// The emergency: both earlier keys stop verifying at once.
	status, k2 := n.rotateKeys(t, after, `{"retire_previous":true}`)
	if status != 200 || k2 == k1 || k2 == k0 {
		t.Fatalf("revoke: %d, kid %q", status, k2)
	}
	for name, tok := range map[string]string{"operator, first key": before, "operator, second key": after, "customer, first key": cust} {
		status, b := n.do(t, tok, "GET", "/v1/customers/me", "")
		if status != 401 || !strings.Contains(string(b), "UNAUTHENTICATED") {
			t.Errorf("%s after the revocation: %d %s, want 401", name, status, b)
		}
	}
	if kids := n.jwksKids(t); !slices.Equal(kids, []string{k2}) {
		t.Fatalf("jwks after the revocation %v, want [%s]", kids, k2)
	}
	newest := n.operatorToken(t)
	if kid := kidOf(t, newest); kid != k2 {
		t.Fatalf("a token after the revocation has kid %q, want %q", kid, k2)
	}
	if status, b := n.do(t, newest, "GET", "/v1/admin/cluster", ""); status != 200 {
		t.Fatalf("a token after the revocation: %d %s", status, b)
	}
}

// TestSigningKeyRotationByAge: with Config.KeyRotateAfter 5 min and a clock moved by hand, the node replaces the
// key once it is 5 min old: new tokens carry a new kid, the old key's token still works and JWKS lists both. The old
// key stays published until AccessTokenTTL plus twice ClockSkew after its retirement, then is gone and its token
// refused.
func TestSigningKeyRotationByAge(t *testing.T) {
	// The clock starts at the real time: fosite stamps a token's expiry with the real clock (issue caps it).
	clock := oauth.NewManualClock(time.Now())
	const rotateAfter, ttl, skew = 5 * time.Minute, 10 * time.Minute, 30 * time.Second
	n := startNode(t, oauth.Config{Now: clock.Now, KeyRotateAfter: rotateAfter, AccessTokenTTL: ttl, ClockSkew: skew})
	first := n.operatorToken(t)
	k0 := kidOf(t, first)

	clock.Advance(rotateAfter - time.Minute)
	if kid := kidOf(t, n.operatorToken(t)); kid != k0 {
		t.Fatalf("a 4-minute-old key was replaced: kid %s, want %s", kid, k0)
	}
	clock.Advance(time.Minute + time.Second) // the key is older than KeyRotateAfter (and the keys older than KeyRefresh)
	rotatedAt := clock.Now()
	second := n.operatorToken(t)
	k1 := kidOf(t, second)
	if k1 == k0 {
		t.Fatalf("no rotation after %v: the new token still has kid %s", rotateAfter, k0)
	}
	for name, tok := range map[string]string{"old key": first, "new key": second} {
		if status, b := n.do(t, tok, "GET", "/v1/admin/cluster", ""); status != 200 {
			t.Fatalf("token of the %s after the rotation: %d %s", name, status, b)
		}
	}
	want := []string{k0, k1}
	slices.Sort(want)
	if kids := n.jwksKids(t); !slices.Equal(kids, want) {
		t.Fatalf("jwks after the rotation by age %v, want %v", kids, want)
	}

	// Retained for AccessTokenTTL + 2 ClockSkew after its retirement, then no longer published.
	retain := ttl + 2*skew
	clock.Advance(rotatedAt.Add(retain - 30*time.Second).Sub(clock.Now()))
	if kids := n.jwksKids(t); !slices.Contains(kids, k0) {
		t.Fatalf("jwks %v dropped %s before its retention ended", kids, k0)
	}
	clock.Advance(time.Minute)
	if kids := n.jwksKids(t); slices.Contains(kids, k0) || len(kids) == 0 {
		t.Fatalf("jwks %v still publishes %s after its retention", kids, k0)
	}
	if status, b := n.do(t, first, "GET", "/v1/admin/cluster", ""); status != 401 {
		t.Fatalf("the dropped key's token: %d %s, want 401", status, b)
	}
}

// TestCardNumberNeverStoredOrLogged: after a payment-method update (with and without Idempotency-Key), the card
// number and CVC appear nowhere in the data directory, the debug logs or the response; neither does the password,
// which the store keeps only as an argon2id hash (in the PHC form "$argon2id$v=19$m=...,t=...,p=...").
func TestCardNumberNeverStoredOrLogged(t *testing.T) {
	n := startNode(t, oauth.Config{})
	const password = "Plaintext-Pw-6d1f"
	n.signUp(t, "dana@example.com", password)
	tok := codeFlow(t, n, appConfig(n, "platter://callback"), "dana@example.com", password)
	// An American Express test card, whose CVC has 4 digits: stored in a protobuf field it would be the bare
	// digits, with no JSON around them.
	const card, cvc = "378282246310005", "8317"
	for i, key := range []string{"", "pm-key-1"} {
		req, _ := nethttp.NewRequest("PUT", n.url+"/v1/customers/me/payment-method",
			strings.NewReader(`{"card_number":"3782 822463 10005","exp_month":12,"exp_year":2031,"cvc":"`+cvc+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		res, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"last4":"0005"`) {
			t.Fatalf("update %d: %d %s", i, res.StatusCode, b)
		}
		if strings.Contains(string(b), card) || strings.Contains(string(b), cvc) {
			t.Fatalf("the response holds the card: %s", b)
		}
	}
	status, b := n.do(t, tok.AccessToken, "GET", "/v1/customers/me", "")
	if status != 200 || strings.Contains(string(b), card) || bareCVC(cvc).Match(b) {
		t.Fatalf("profile: %d %s", status, b)
	}
	pwSum := sha256.Sum256([]byte(password))
	needles := []string{card, "3782 822463 10005", password, fmt.Sprintf("%x", pwSum), base64.RawStdEncoding.EncodeToString(pwSum[:])}
	// The CVC's digits anywhere but inside a longer run of letters, digits or dashes (ids, UUIDs, hashes and
	// timestamps may hold any four digits): after a protobuf length byte, a quote, '=' or a space.
	cvcRE := bareCVC(cvc)
	// The argon2id hash with this server's parameters (Config.Argon2), as the Account actor stores it.
	phc := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", testArgon2.Memory, testArgon2.Iterations, testArgon2.Parallelism)
	var files int
	control, hashed := false, false // the store holds the customer's email in clear: the grep can find what is there
	err := filepath.Walk(n.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		control = control || bytes.Contains(data, []byte("dana@example.com"))
		hashed = hashed || bytes.Contains(data, []byte(phc))
		for _, s := range needles {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q", path, s)
			}
		}
		if loc := cvcRE.FindIndex(data); loc != nil {
			t.Errorf("%s holds the CVC at byte %d: %q", path, loc[0], data[max(0, loc[0]-16):min(len(data), loc[1]+16)])
		}
		return nil
	})
	if err != nil || files == 0 || !control {
		t.Fatalf("walk the data dir: %v (%d files, control found: %v)", err, files, control)
	}
	if !hashed {
		t.Errorf("no %s hash in the data dir: the password is not stored as argon2id with Config.Argon2", phc)
	}
	logs := n.logs.String()
	if !strings.Contains(logs, "payment-method") {
		t.Fatal("the captured logs do not show the request at all: the grep below would prove nothing")
	}
	for _, s := range needles {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold %q", s)
		}
	}
	if cvcRE.MatchString(logs) {
		t.Errorf("the logs hold the CVC %s", cvc)
	}
}

// bareCVC matches cvc's digits not inside a longer run of letters, digits or dashes.
func bareCVC(cvc string) *regexp.Regexp {
	return regexp.MustCompile(`(?:^|[^0-9A-Za-z-])` + cvc + `(?:[^0-9A-Za-z-]|$)`)
}
