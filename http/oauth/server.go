package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// MaxAccessTokenTTL is the longest an access token may live (issue 5: at most 15 minutes).
const MaxAccessTokenTTL = 15 * time.Minute

// Config configures the authorization server. Zero fields mean their defaults (DefaultConfig).
type Config struct {
	// Issuer is the "iss" of every access token; every node of a cluster must use the same. Default "platter".
	Issuer string
	// Audience is the "aud" of every access token and the audience the resource side requires.
	// Default "platter-api".
	Audience string
	// AccessTokenTTL is the lifetime of access tokens, at most MaxAccessTokenTTL. Default 10 min.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token (each use rotates it). Default 30 days.
	RefreshTokenTTL time.Duration
	// CodeTTL is the lifetime of an authorization code. Default 1 min.
	CodeTTL time.Duration
	// KeyRotateAfter is the age at which a node replaces the current signing key. Default 30 days.
	KeyRotateAfter time.Duration
	// KeyRefresh is how often a node re-reads the signing keys. Default 1 min.
	KeyRefresh time.Duration
	// ClockSkew is the leeway of exp, nbf and iat checks. Default 30 s.
	ClockSkew time.Duration
	// CallTimeout bounds each call to an Account actor. Default 5 s.
	CallTimeout time.Duration
	// Argon2 are the parameters of new password hashes. Default argon2id.DefaultParams (64 MiB, 1 pass, 2 lanes).
	Argon2 *argon2id.Params
	// MaxAddressFailures is how many failed sign-ins one client address may make per AddressWindow before its
	// sign-ins are refused until the window ends (per node; the per-account limit is in the Account actor).
	// Default 20 per 10 min.
	MaxAddressFailures int
	AddressWindow      time.Duration
	// MaxAddresses bounds the addresses the throttle remembers. Default 100 000.
	MaxAddresses int
	// TokenCacheSize bounds the access tokens Authenticate remembers as verified (until their exp), so that a
	// token's signature is checked once rather than on every request. Default 10 000 (a few MiB); a negative
	// value disables the cache.
	TokenCacheSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Issuer: "platter", Audience: "platter-api",
		AccessTokenTTL: 10 * time.Minute, RefreshTokenTTL: 30 * 24 * time.Hour, CodeTTL: time.Minute,
		KeyRotateAfter: 30 * 24 * time.Hour, KeyRefresh: time.Minute, ClockSkew: 30 * time.Second,
		CallTimeout: 5 * time.Second, Argon2: argon2id.DefaultParams,
		MaxAddressFailures: 20, AddressWindow: 10 * time.Minute, MaxAddresses: 100_000, TokenCacheSize: 10_000,
		Now: time.Now, Logger: slog.Default(),
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	dur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	str(&c.Issuer, d.Issuer)
	str(&c.Audience, d.Audience)
	dur(&c.AccessTokenTTL, d.AccessTokenTTL)
	dur(&c.RefreshTokenTTL, d.RefreshTokenTTL)
	dur(&c.CodeTTL, d.CodeTTL)
	dur(&c.KeyRotateAfter, d.KeyRotateAfter)
	dur(&c.KeyRefresh, d.KeyRefresh)
	dur(&c.ClockSkew, d.ClockSkew)
	dur(&c.CallTimeout, d.CallTimeout)
	dur(&c.AddressWindow, d.AddressWindow)
	if c.Argon2 == nil {
		c.Argon2 = d.Argon2
	}
	if c.MaxAddressFailures <= 0 {
		c.MaxAddressFailures = d.MaxAddressFailures
	}
	if c.MaxAddresses <= 0 {
		c.MaxAddresses = d.MaxAddresses
	}
	if c.TokenCacheSize == 0 {
		c.TokenCacheSize = d.TokenCacheSize
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.AccessTokenTTL > MaxAccessTokenTTL {
		return c, fmt.Errorf("oauth: AccessTokenTTL %v is longer than %v", c.AccessTokenTTL, MaxAccessTokenTTL)
	}
	return c, nil
}

// Server is the OAuth 2.0 authorization server of one node (fosite over the Account actors), the verifier of
// access tokens (Authenticate), and the keeper of accounts (CreateLogin, CreateStaffClient, Bootstrap). Every
// method is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store
	keys     *keyring
	tokens   *tokenIssuer
	provider fosite.OAuth2Provider
	handler  fasthttp.RequestHandler
	throttle *addressThrottle
	cache    *tokenCache // nil when Config.TokenCacheSize < 0
}

// NewServer returns the authorization server over a's Account actors.
func NewServer(cfg Config, a http.Actors) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.store = &store{actors: a, audience: cfg.Audience, now: cfg.Now, timeout: cfg.CallTimeout}
	s.keys = &keyring{cfg: cfg, actors: a, log: cfg.Logger}
	s.tokens = &tokenIssuer{cfg: cfg, keys: s.keys}
	s.store.tokens, s.store.keys = s.tokens, s.keys
	if cfg.TokenCacheSize > 0 {
		s.cache = newTokenCache(cfg.TokenCacheSize)
	}
	s.throttle = newAddressThrottle(cfg.MaxAddressFailures, cfg.AddressWindow, cfg.MaxAddresses)
	fc := &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenTTL,
		RefreshTokenLifespan:           cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan:          cfg.CodeTTL,
		AccessTokenIssuer:              cfg.Issuer,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		EnforcePKCE:                    true,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		RefreshTokenScopes:             []string{}, // every code grant of platter-app gets a refresh token
		ClientSecretsHasher:            secretHasher{},
		SendDebugMessagesToClients:     false,
		MinParameterEntropy:            fosite.MinParameterEntropy,
	}
	// Only the grants Platter offers: no implicit flow, no password grant, no introspection.
	s.provider = compose.Compose(fc, s.store, &strategy{tokens: s.tokens},
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
	)
	mux := nethttp.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", s.handleToken)
	mux.HandleFunc("GET /oauth2/authorize", s.handleAuthorize)
	mux.HandleFunc("POST /oauth2/authorize", s.handleAuthorize)
	mux.HandleFunc("POST /oauth2/revoke", s.handleRevoke)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	s.handler = fasthttpadaptor.NewFastHTTPHandler(mux)
	return s, nil
}

// Paths are the paths the server answers (http.Server routes them to Serve).
var Paths = []struct{ Method, Path string }{
	{"POST", "/oauth2/token"},
	{"GET", "/oauth2/authorize"},
	{"POST", "/oauth2/authorize"},
	{"POST", "/oauth2/revoke"},
	{"GET", "/.well-known/jwks.json"},
}

// Serve answers one request to a path of Paths.
func (s *Server) Serve(ctx *fasthttp.RequestCtx) { s.handler(ctx) }

// Start reads the signing keys, creating the first one when the cluster has none. Call it once the node serves
// actors; the server also loads the keys on first use.
func (s *Server) Start(ctx context.Context) error { return s.keys.load(ctx) }

// RotateSigningKey makes a new current signing key and answers its kid (http.SigningKeyRotator, POST
// /v1/admin/signing-keys/rotate). With revokePrevious false, tokens of the previous keys stay valid until they
// expire; with it true, they are refused at once by this node (its token cache included) and by the others once
// they re-read the keys (Config.KeyRefresh).
func (s *Server) RotateSigningKey(ctx context.Context, revokePrevious bool) (string, error) {
	return s.keys.Rotate(ctx, revokePrevious)
}

// ---- Endpoints (net/http, bridged by fasthttpadaptor) ----

func noStore(w nethttp.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func (s *Server) handleToken(w nethttp.ResponseWriter, r *nethttp.Request) {
	ctx := r.Context()
	noStore(w)
	if err := r.ParseForm(); err == nil && r.PostForm.Get("scope") == "" {
		r.PostForm.Set("scope", Scope) // the scope a client gets without asking
		r.Form.Set("scope", Scope)
	}
	sess := &session{}
	ar, err := s.provider.NewAccessRequest(ctx, r, sess)
	if err != nil {
		s.logError("token request refused", err)
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		c, ok := ar.GetClient().(*client)
		if !ok || c.role == "" {
			s.provider.WriteAccessError(ctx, w, ar, fosite.ErrUnauthorizedClient)
			return
		}
		sess.Subject, sess.Role, sess.Restaurants = c.GetID(), c.role, c.restaurants
		// fosite checked the requested scopes against the client's; granting them is the application's part.
		for _, scope := range ar.GetRequestedScopes() {
			ar.GrantScope(scope)
		}
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.logError("token request failed", err)
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

func (s *Server) handleRevoke(w nethttp.ResponseWriter, r *nethttp.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err == nil {
		ctx = withRevokedToken(ctx, r.PostForm.Get("token"))
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	if err != nil {
		s.logError("revocation refused", err)
	}
	s.provider.WriteRevocationResponse(ctx, w, err)
}

func (s *Server) handleJWKS(w nethttp.ResponseWriter, r *nethttp.Request) {
	set, err := s.keys.JWKS(r.Context())
	if err != nil {
		s.log.Error("jwks", slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		nethttp.Error(w, "signing keys unavailable", nethttp.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_ = json.NewEncoder(w).Encode(set)
}

// handleAuthorize shows the sign-in form (GET) and signs in (POST): on success a 302 to the client's redirect URI
// with the code and state; on failure the form again with a message (401), or 429 while throttled.
func (s *Server) handleAuthorize(w nethttp.ResponseWriter, r *nethttp.Request) {
	noStore(w)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	if err := r.ParseForm(); err != nil {
		nethttp.Error(w, "malformed form", nethttp.StatusBadRequest)
		return
	}
	email, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	// The credentials never reach fosite: it would keep the form with the authorization request.
	for _, f := range []string{"username", "password"} {
		r.PostForm.Del(f)
		r.Form.Del(f)
	}
	if r.Form.Get("scope") == "" {
		r.Form.Set("scope", Scope)
	}
	ctx := withRequestedRedirect(r.Context(), r.Form.Get("redirect_uri"))
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.logError("authorize request refused", err)
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	if r.Method == nethttp.MethodGet {
		s.renderForm(w, nethttp.StatusOK, r, "")
		return
	}
	addr := clientAddress(r)
	now := s.cfg.Now()
	if until, limited := s.throttle.limited(addr, now); limited {
		w.Header().Set("Retry-After", fmt.Sprint(int(until.Sub(now).Seconds())+1))
		s.renderForm(w, nethttp.StatusTooManyRequests, r, "Too many failed sign-ins from your address. Try again later.")
		return
	}
	res, err := s.VerifyLogin(ctx, email, password, addr)
	switch {
	case err != nil:
		s.log.Error("sign-in failed", slog.Any("error", err))
		s.renderForm(w, nethttp.StatusServiceUnavailable, r, "Sign-in is unavailable right now. Try again.")
		return
	case res.throttled:
		s.throttle.fail(addr, now)
		s.renderForm(w, nethttp.StatusTooManyRequests, r, "Too many failed sign-ins for this account. Try again later.")
		return
	case !res.ok:
		s.throttle.fail(addr, now)
		s.renderForm(w, nethttp.StatusUnauthorized, r, "Wrong email or password.")
		return
	}
	for _, scope := range ar.GetRequestedScopes() {
		if scope == Scope {
			ar.GrantScope(scope)
		}
	}
	for _, aud := range ar.GetRequestedAudience() {
		ar.GrantAudience(aud)
	}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, &session{Subject: res.subject, Role: res.role})
	if err != nil {
		s.logError("authorize response failed", err)
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	s.log.Info("signed in", slog.String("role", res.role), slog.String("subject", res.subject), slog.String("address", addr))
	s.provider.WriteAuthorizeResponse(ctx, found{w}, ar, resp)
}

// found turns fosite's 303 See Other after the sign-in POST into the 302 Found API.md promises (browsers follow
// both with a GET).
type found struct{ nethttp.ResponseWriter }

func (f found) WriteHeader(status int) {
	if status == nethttp.StatusSeeOther {
		status = nethttp.StatusFound
	}
	f.ResponseWriter.WriteHeader(status)
}

// logError logs a refused OAuth request at debug (a client's mistake) and a server error at error.
func (s *Server) logError(msg string, err error) {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) && rfc.CodeField < 500 {
		s.log.Debug(msg, slog.String("error", rfc.ErrorField), slog.String("hint", rfc.HintField), slog.String("debug", rfc.DebugField))
		return
	}
	s.log.Error(msg, slog.Any("error", err))
}

// clientAddress is the request's remote IP (fasthttpadaptor sets RemoteAddr).
func clientAddress(r *nethttp.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// formFields are the OAuth parameters the sign-in form carries from GET to POST.
var formFields = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"}

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to Platter</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}label,input,button{display:block;width:100%;margin:.4rem 0}p.error{color:#b00020}</style>
</head><body>
<h1>Sign in to Platter</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/oauth2/authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label>Email <input type="email" name="username" autocomplete="username" required value="{{.Email}}"></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`))

type hiddenField struct{ Name, Value string }

func (s *Server) renderForm(w nethttp.ResponseWriter, status int, r *nethttp.Request, msg string) {
	data := struct {
		Error, Email string
		Hidden       []hiddenField
	}{Error: msg}
	for _, f := range formFields {
		if v := r.Form.Get(f); v != "" {
			data.Hidden = append(data.Hidden, hiddenField{f, v})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := loginForm.Execute(w, data); err != nil {
		s.log.Debug("write sign-in form", slog.Any("error", err))
	}
}

// addressThrottle counts failed sign-ins per client address in fixed windows.
type addressThrottle struct {
	max    int
	window time.Duration
	limit  int

	mu    sync.Mutex
	addrs map[string]*addressWindow
}

type addressWindow struct {
	start    time.Time
	failures int
}

func newAddressThrottle(max int, window time.Duration, limit int) *addressThrottle {
	return &addressThrottle{max: max, window: window, limit: limit, addrs: map[string]*addressWindow{}}
}

func (t *addressThrottle) limited(addr string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.addrs[addr]
	if w == nil || now.Sub(w.start) >= t.window {
		return time.Time{}, false
	}
	return w.start.Add(t.window), w.failures >= t.max
}

func (t *addressThrottle) fail(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.addrs[addr]
	if w == nil || now.Sub(w.start) >= t.window {
		if w == nil && len(t.addrs) >= t.limit {
			for a, old := range t.addrs { // forget expired windows; if none, forget everything
				if now.Sub(old.start) >= t.window {
					delete(t.addrs, a)
				}
			}
			if len(t.addrs) >= t.limit {
				clear(t.addrs)
			}
		}
		w = &addressWindow{start: now}
		t.addrs[addr] = w
	}
	w.failures++
}

// loginResult is the outcome of a password check.
type loginResult struct {
	ok, throttled bool
	role, subject string
}

// VerifyLogin checks an email and password with the login's Account actor (which throttles per account).
func (s *Server) VerifyLogin(ctx context.Context, email, password, addr string) (loginResult, error) {
	if email == "" || password == "" || len(email) > 320 || len(password) > 1024 {
		return loginResult{}, nil
	}
	res, err := s.store.call(ctx, actors.LoginIdentity(email), "VerifyLogin", &messages.VerifyLogin{Password: password, Address: addr})
	if err != nil {
		return loginResult{}, err
	}
	r := res.(*messages.LoginResult)
	if r.GetRetryAfter() != nil {
		return loginResult{throttled: true}, nil
	}
	return loginResult{ok: r.GetOk(), role: r.GetRole(), subject: r.GetSubject()}, nil
}
