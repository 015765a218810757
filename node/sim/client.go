package sim

// The client layer: the simulator's only view of the HTTP API (../../shared/API.md). Every path, body and answer
// shape the simulator relies on is in this file, so that a change of the contract is a change here.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Position is a point on the map, as the API writes it.
type Position struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

// APIError is a failed call: the problem+json answer of the edge, or a transport failure. Code is the problem's
// stable code, or one of the simulator's own: NETWORK, TIMEOUT, HTTP_<status> (an answer without a code, such as
// the sign-in form shown again), OAUTH_<error> (an RFC 6749 error), SIGN_IN_<status> (the authorize form answered
// neither an error nor a redirect).
type APIError struct {
	Step   string
	Status int
	Code   string
	Detail string
}

func (e *APIError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s: %s", e.Step, e.Code, e.Detail)
	}
	return fmt.Sprintf("%s: %d %s: %s", e.Step, e.Status, e.Code, e.Detail)
}

// Transport failure codes (no HTTP answer).
const (
	CodeNetwork = "NETWORK"
	CodeTimeout = "TIMEOUT"
)

// ErrorCode returns the code of err: the APIError's, or NETWORK for anything else; "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeNetwork
}

// hasCode reports whether err is an APIError with one of the codes.
func hasCode(err error, codes ...string) bool {
	c := ErrorCode(err)
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// Recorder receives the duration and outcome of every call. Implementations must be safe for concurrent use.
type Recorder interface {
	Record(step string, d time.Duration, err error)
}

// TokenSource gives the bearer token of one principal; it refreshes it when needed. Implementations must be safe
// for concurrent use. An empty token sends no Authorization header (a node without an authorization server).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource that always gives the same token (tests, or a node without authentication).
type StaticToken string

// Token implements TokenSource.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// ClientOptions configures a Client.
type ClientOptions struct {
	// InsecureSkipVerify accepts any server certificate (the node's self-signed development certificate).
	InsecureSkipVerify bool
	// RequestTimeout bounds one call that is not a feed poll. Default 15 s.
	RequestTimeout time.Duration
	// LoginAddrs, when non-empty, are local source addresses that anonymous sign-up and sign-in requests are spread
	// over (by the principal's number). The edge rate-limits those per client address; a simulator on one machine
	// stands for many people on many addresses. Only loopback targets can be reached from loopback addresses.
	LoginAddrs []net.IP
	// Recorder receives every call's duration and outcome. Default: none.
	Recorder Recorder
}

// Client calls the API of one or more edges. It is safe for concurrent use.
type Client struct {
	opts  ClientOptions
	hc    *fasthttp.Client
	tlsc  *tls.Config
	mu    sync.Mutex
	login map[string]*fasthttp.Client // by source address
}

// NewClient returns a client with its own connection pools.
func NewClient(opts ClientOptions) *Client {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 15 * time.Second
	}
	c := &Client{opts: opts, login: map[string]*fasthttp.Client{}}
	c.tlsc = &tls.Config{InsecureSkipVerify: opts.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // the flag is the user's choice
	c.hc = c.newHTTPClient(nil)
	return c
}

func (c *Client) newHTTPClient(local net.IP) *fasthttp.Client {
	hc := &fasthttp.Client{
		Name:                          "platter-sim",
		TLSConfig:                     c.tlsc,
		MaxConnsPerHost:               1 << 20, // long polls each hold a connection
		MaxIdleConnDuration:           30 * time.Second,
		WriteTimeout:                  c.opts.RequestTimeout,
		DisableHeaderNamesNormalizing: true,
		NoDefaultUserAgentHeader:      true,
	}
	if local != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 10 * time.Second}
		hc.Dial = func(addr string) (net.Conn, error) { return d.Dial("tcp", addr) }
		hc.MaxIdleConnDuration = 2 * time.Second // a login address is used for a few requests only
	}
	return hc
}

// loginClient returns the connection pool of source address n (round robin over LoginAddrs), or the default one.
func (c *Client) loginClient(n int) *fasthttp.Client {
	if len(c.opts.LoginAddrs) == 0 {
		return c.hc
	}
	ip := c.opts.LoginAddrs[n%len(c.opts.LoginAddrs)]
	c.mu.Lock()
	defer c.mu.Unlock()
	hc, ok := c.login[ip.String()]
	if !ok {
		hc = c.newHTTPClient(ip)
		c.login[ip.String()] = hc
	}
	return hc
}

// CloseIdle closes idle connections (at the end of a run).
func (c *Client) CloseIdle() {
	c.hc.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.login {
		hc.CloseIdleConnections()
	}
}

// request is one call.
type request struct {
	step    string
	method  string
	url     string
	token   TokenSource
	json    any    // encoded as the JSON body when non-nil
	form    string // a form-encoded body (OAuth) when non-empty
	basic   [2]string
	idemKey string
	timeout time.Duration
	via     *fasthttp.Client
}

// response is the answer of a call that succeeded at the transport level.
type response struct {
	status   int
	body     []byte
	location string
}

// do sends r and returns the answer; any status ≥ 400 is an *APIError (with the problem's code), so callers look
// only at successful answers.
func (c *Client) do(ctx context.Context, r request) (response, error) {
	start := time.Now()
	res, err := c.send(ctx, r)
	if c.opts.Recorder != nil {
		c.opts.Recorder.Record(r.step, time.Since(start), err)
	}
	return res, err
}

func (c *Client) send(ctx context.Context, r request) (response, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(r.url)
	req.Header.SetMethod(r.method)
	if r.token != nil {
		tok, err := r.token.Token(ctx)
		if err != nil {
			return response{}, err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	if r.basic[0] != "" {
		cred := neturl.QueryEscape(r.basic[0]) + ":" + neturl.QueryEscape(r.basic[1])
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
	switch {
	case r.json != nil:
		b, err := json.Marshal(r.json)
		if err != nil {
			return response{}, fmt.Errorf("encode %s: %w", r.step, err)
		}
		req.Header.SetContentType("application/json")
		req.SetBody(b)
	case r.form != "":
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBodyString(r.form)
	}
	if r.idemKey != "" {
		req.Header.Set("Idempotency-Key", r.idemKey)
	}
	timeout := r.timeout
	if timeout <= 0 {
		timeout = c.opts.RequestTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	hc := r.via
	if hc == nil {
		hc = c.hc
	}
	if err := hc.DoTimeout(req, resp, timeout); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) {
			return response{}, &APIError{Step: r.step, Code: CodeTimeout, Detail: err.Error()}
		}
		return response{}, &APIError{Step: r.step, Code: CodeNetwork, Detail: err.Error()}
	}
	out := response{status: resp.StatusCode(), body: append([]byte(nil), resp.Body()...), location: string(resp.Header.Peek("Location"))}
	if out.status >= 400 {
		return out, answerError(r.step, out.status, resp.Header.ContentType(), out.body)
	}
	return out, nil
}

// answerError turns an error answer into an *APIError: a problem+json code, an OAuth error, or HTTP_<status>.
func answerError(step string, status int, contentType, body []byte) *APIError {
	e := &APIError{Step: step, Status: status, Code: "HTTP_" + strconv.Itoa(status)}
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
		Error  string `json:"error"`
		Desc   string `json:"error_description"`
	}
	if json.Unmarshal(body, &p) == nil {
		switch {
		case p.Code != "":
			e.Code, e.Detail = p.Code, p.Detail
		case p.Error != "":
			e.Code, e.Detail = "OAUTH_"+strings.ToUpper(p.Error), p.Desc
		}
	} else if len(body) > 0 && !strings.Contains(string(contentType), "html") {
		e.Detail = truncate(string(body), 200)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func decode[T any](step string, res response) (T, error) {
	var v T
	if err := json.Unmarshal(res.body, &v); err != nil {
		return v, &APIError{Step: step, Status: res.status, Code: "BAD_ANSWER", Detail: err.Error()}
	}
	return v, nil
}

// newKey returns a random Idempotency-Key.
func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- OAuth 2.0 ----

// AppClientID is the public first-party client customers and dashers sign in with (PKCE).
const AppClientID = "platter-app"

// appRedirect is the loopback redirect the simulator asks for; nothing listens there: the code is read from the
// 302's Location (RFC 8252 allows any port).
const appRedirect = "http://127.0.0.1:47999/callback"

// Token is an OAuth token response.
type Token struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	obtained     time.Time
}

func (t Token) expiresAt() time.Time { return t.obtained.Add(time.Duration(t.ExpiresIn) * time.Second) }

func (c *Client) token(ctx context.Context, step, base, form string, basic [2]string) (Token, error) {
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/oauth2/token", form: form, basic: basic})
	if err != nil {
		return Token{}, err
	}
	t, err := decode[Token](step, res)
	t.obtained = time.Now()
	if err == nil && t.AccessToken == "" {
		err = &APIError{Step: step, Status: res.status, Code: "BAD_ANSWER", Detail: "no access_token"}
	}
	return t, err
}

// ClientCredentials gets a token for a confidential client (operator, restaurant staff).
func (c *Client) ClientCredentials(ctx context.Context, base, id, secret string) (Token, error) {
	// client_secret_post: the edge authenticates every request's Authorization header as a bearer token, so
	// client_secret_basic does not reach the token endpoint.
	form := neturl.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	return c.token(ctx, "oauth.client_credentials", base, form.Encode(), [2]string{})
}

// SignIn signs a customer or dasher in through the authorize form (authorization code with PKCE S256) and
// exchanges the code. n picks the source address (ClientOptions.LoginAddrs).
func (c *Client) SignIn(ctx context.Context, base string, n int, email, password string) (Token, error) {
	verifierBytes := make([]byte, 32)
	_, _ = rand.Read(verifierBytes)
	verifier := base64.RawURLEncoding.EncodeToString(verifierBytes)
	sum := sha256.Sum256([]byte(verifier))
	state := newKey()
	form := neturl.Values{
		"response_type": {"code"}, "client_id": {AppClientID}, "redirect_uri": {appRedirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {state}, "username": {email}, "password": {password},
	}
	const step = "oauth.authorize"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/oauth2/authorize", form: form.Encode(), via: c.loginClient(n)})
	if err != nil {
		return Token{}, err // the form again (HTTP_401 wrong password, HTTP_429 throttled, HTTP_503 unavailable)
	}
	if res.status != 302 && res.status != 303 {
		return Token{}, &APIError{Step: step, Status: res.status, Code: "SIGN_IN_" + strconv.Itoa(res.status)}
	}
	loc, err := neturl.Parse(res.location)
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != state {
		return Token{}, &APIError{Step: step, Status: res.status, Code: "BAD_ANSWER", Detail: "redirect without code or state: " + truncate(res.location, 200)}
	}
	ex := neturl.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {appRedirect},
		"client_id": {AppClientID}, "code_verifier": {verifier},
	}
	return c.token(ctx, "oauth.code_exchange", base, ex.Encode(), [2]string{})
}

// Refresh exchanges a refresh token (rotated: the answer carries the next one).
func (c *Client) Refresh(ctx context.Context, base, refresh string) (Token, error) {
	form := neturl.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {AppClientID}}
	return c.token(ctx, "oauth.refresh", base, form.Encode(), [2]string{})
}

// refreshMargin is how long before expiry a token is renewed.
const refreshMargin = 30 * time.Second

// clientCredentialsSource renews a confidential client's token by asking again.
type clientCredentialsSource struct {
	c                *Client
	base, id, secret string
	mu               sync.Mutex
	tok              Token
}

// NewClientCredentialsSource returns a TokenSource for a confidential client of the edge at base.
func (c *Client) NewClientCredentialsSource(base, id, secret string) TokenSource {
	return &clientCredentialsSource{c: c, base: base, id: id, secret: secret}
}

func (s *clientCredentialsSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.AccessToken != "" && time.Until(s.tok.expiresAt()) > refreshMargin {
		return s.tok.AccessToken, nil
	}
	t, err := s.c.ClientCredentials(ctx, s.base, s.id, s.secret)
	if err != nil {
		return "", err
	}
	s.tok = t
	return t.AccessToken, nil
}

// signedInSource holds a signed-in customer's or dasher's tokens and renews them with the refresh token.
type signedInSource struct {
	c    *Client
	base string
	mu   sync.Mutex
	tok  Token
}

// NewSignedInSource returns a TokenSource over the tokens of a sign-in.
func (c *Client) NewSignedInSource(base string, t Token) TokenSource {
	return &signedInSource{c: c, base: base, tok: t}
}

func (s *signedInSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.ExpiresIn == 0 || time.Until(s.tok.expiresAt()) > refreshMargin || s.tok.RefreshToken == "" {
		return s.tok.AccessToken, nil
	}
	t, err := s.c.Refresh(ctx, s.base, s.tok.RefreshToken)
	if err != nil {
		return "", err
	}
	s.tok = t
	return t.AccessToken, nil
}

// ---- Customers, search, cart, orders ----

// SignUp creates a customer (public); n picks the source address, key is the Idempotency-Key.
func (c *Client) SignUp(ctx context.Context, base string, n int, key, name, email, password, phone string) (string, error) {
	const step = "customer.sign_up"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/v1/customers", idemKey: key, via: c.loginClient(n),
		json: map[string]any{"name": name, "email": email, "password": password, "phone": phone}})
	if err != nil {
		return "", err
	}
	v, err := decode[struct{ ID string }](step, res)
	return v.ID, err
}

// SetAddress sets the customer's delivery address.
func (c *Client) SetAddress(ctx context.Context, base string, tok TokenSource, line1, city, postal string, p Position) error {
	_, err := c.do(ctx, request{step: "customer.address", method: "PUT", url: base + "/v1/customers/me/address", token: tok, idemKey: newKey(),
		json: map[string]any{"line1": line1, "city": city, "postal_code": postal, "position": p}})
	return err
}

// SetPaymentMethod sets the customer's card.
func (c *Client) SetPaymentMethod(ctx context.Context, base string, tok TokenSource, number string, month, year int, cvc string) error {
	_, err := c.do(ctx, request{step: "customer.payment_method", method: "PUT", url: base + "/v1/customers/me/payment-method", token: tok, idemKey: newKey(),
		json: map[string]any{"card_number": number, "exp_month": month, "exp_year": year, "cvc": cvc}})
	return err
}

// SearchHit is one restaurant of a search answer.
type SearchHit struct {
	RestaurantID string  `json:"restaurant_id"`
	Name         string  `json:"name"`
	Cuisine      string  `json:"cuisine"`
	DistanceM    float64 `json:"distance_m"`
	Items        []struct {
		MenuItemID string `json:"menu_item_id"`
		PriceCents int64  `json:"price_cents"`
	} `json:"items"`
}

// Search finds restaurants near p for the terms.
func (c *Client) Search(ctx context.Context, base string, tok TokenSource, terms []string, p Position) ([]SearchHit, error) {
	const step = "search"
	q := neturl.Values{"lat": {strconv.FormatFloat(p.Lat, 'f', 6, 64)}, "lng": {strconv.FormatFloat(p.Lng, 'f', 6, 64)}}
	for _, t := range terms {
		q.Add("q", t)
	}
	res, err := c.do(ctx, request{step: step, method: "GET", url: base + "/v1/search?" + q.Encode(), token: tok})
	if err != nil {
		return nil, err
	}
	v, err := decode[struct{ Results []SearchHit }](step, res)
	return v.Results, err
}

// AddToCart adds an item to the customer's cart.
func (c *Client) AddToCart(ctx context.Context, base string, tok TokenSource, restaurantID, itemID string, qty int) error {
	_, err := c.do(ctx, request{step: "cart.add", method: "POST", url: base + "/v1/cart/items", token: tok, idemKey: newKey(),
		json: map[string]any{"restaurant_id": restaurantID, "menu_item_id": itemID, "quantity": qty}})
	return err
}

// ClearCart empties the customer's cart (after an arrival failed half-way through filling it).
func (c *Client) ClearCart(ctx context.Context, base string, tok TokenSource) error {
	const step = "cart.get"
	res, err := c.do(ctx, request{step: step, method: "GET", url: base + "/v1/cart", token: tok})
	if err != nil {
		return err
	}
	cart, err := decode[struct {
		Items []struct {
			MenuItemID string `json:"menu_item_id"`
		} `json:"items"`
	}](step, res)
	if err != nil {
		return err
	}
	for _, l := range cart.Items {
		if _, err := c.do(ctx, request{step: "cart.remove", method: "DELETE", url: base + "/v1/cart/items/" + neturl.PathEscape(l.MenuItemID),
			token: tok, idemKey: newKey()}); err != nil && !hasCode(err, "NOT_FOUND") {
			return err
		}
	}
	return nil
}

// PlacedOrder is the answer of placing an order.
type PlacedOrder struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"total_cents"`
}

// PlaceOrder orders the customer's cart.
func (c *Client) PlaceOrder(ctx context.Context, base string, tok TokenSource) (PlacedOrder, error) {
	const step = "order.place"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/v1/orders", token: tok, idemKey: newKey(), json: map[string]any{}})
	if err != nil {
		return PlacedOrder{}, err
	}
	return decode[PlacedOrder](step, res)
}

// OrderStatus reads an order's status.
func (c *Client) OrderStatus(ctx context.Context, base string, tok TokenSource, orderID string) (string, error) {
	const step = "order.status"
	res, err := c.do(ctx, request{step: step, method: "GET", url: base + "/v1/orders/" + orderID + "/status", token: tok})
	if err != nil {
		return "", err
	}
	v, err := decode[struct{ Status string }](step, res)
	return v.Status, err
}

// CancelOrder cancels an order as its customer.
func (c *Client) CancelOrder(ctx context.Context, base string, tok TokenSource, orderID, key string) error {
	_, err := c.do(ctx, request{step: "order.cancel", method: "POST", url: base + "/v1/orders/" + orderID + "/cancel", token: tok, idemKey: key,
		json: map[string]any{"reason": "changed my mind"}})
	return err
}

// ---- Restaurants ----

// CreateRestaurant creates a restaurant (operator); key is the Idempotency-Key.
func (c *Client) CreateRestaurant(ctx context.Context, base string, tok TokenSource, key, name, cuisine string, p Position) (string, error) {
	const step = "restaurant.create"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/v1/restaurants", token: tok, idemKey: key,
		json: map[string]any{"name": name, "position": p, "cuisine": cuisine}})
	if err != nil {
		return "", err
	}
	v, err := decode[struct{ ID string }](step, res)
	return v.ID, err
}

// MenuItem is one item of a menu.
type MenuItem struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	PriceCents  int64    `json:"price_cents"`
	Tags        []string `json:"tags"`
}

// PutMenu replaces a restaurant's menu.
func (c *Client) PutMenu(ctx context.Context, base string, tok TokenSource, restaurantID string, items []MenuItem) error {
	_, err := c.do(ctx, request{step: "restaurant.menu", method: "PUT", url: base + "/v1/restaurants/" + restaurantID + "/menu", token: tok, idemKey: newKey(),
		json: map[string]any{"items": items}})
	return err
}

// CreateStaffClient creates a client_credentials client bound to a restaurant (operator).
func (c *Client) CreateStaffClient(ctx context.Context, base string, tok TokenSource, restaurantID string) (id, secret string, err error) {
	const step = "restaurant.staff_client"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/v1/restaurants/" + restaurantID + "/staff-clients", token: tok,
		json: map[string]any{"name": "sim pos"}})
	if err != nil {
		return "", "", err
	}
	v, err := decode[struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}](step, res)
	return v.ClientID, v.ClientSecret, err
}

// RestaurantAction is one of a restaurant's steps on an order.
type RestaurantAction string

// The restaurant's steps (the last path element of the route).
const (
	ActAccept   RestaurantAction = "accept"
	ActReject   RestaurantAction = "reject"
	ActReady    RestaurantAction = "ready"
	ActPickedUp RestaurantAction = "picked-up"
)

// Restaurant applies a restaurant's step to an order; key is the Idempotency-Key (the same on a retry).
func (c *Client) Restaurant(ctx context.Context, base string, tok TokenSource, restaurantID, orderID string, act RestaurantAction, key string) error {
	var body any
	switch act {
	case ActAccept:
		body = map[string]any{"prep_minutes": 10}
	case ActReject:
		body = map[string]any{"reason": "too busy"}
	}
	_, err := c.do(ctx, request{step: "restaurant." + strings.ReplaceAll(string(act), "-", "_"), method: "POST", token: tok, idemKey: key, json: body,
		url: base + "/v1/restaurants/" + restaurantID + "/orders/" + orderID + "/" + string(act)})
	return err
}

// ---- Dashers ----

// CreateDasher creates a dasher account (operator); key is the Idempotency-Key.
func (c *Client) CreateDasher(ctx context.Context, base string, tok TokenSource, key, name, email, password string, capacity int) (string, error) {
	const step = "dasher.create"
	res, err := c.do(ctx, request{step: step, method: "POST", url: base + "/v1/dashers", token: tok, idemKey: key,
		json: map[string]any{"name": name, "email": email, "password": password, "vehicle": "bike", "capacity": capacity}})
	if err != nil {
		return "", err
	}
	v, err := decode[struct{ ID string }](step, res)
	return v.ID, err
}

// DasherOnline sets the dasher online (or offline) at p.
func (c *Client) DasherOnline(ctx context.Context, base string, tok TokenSource, online bool, p Position) error {
	_, err := c.do(ctx, request{step: "dasher.status", method: "PUT", url: base + "/v1/dashers/me/status", token: tok, idemKey: newKey(),
		json: map[string]any{"online": online, "position": p}})
	return err
}

// DasherMove reports the dasher's position.
func (c *Client) DasherMove(ctx context.Context, base string, tok TokenSource, p Position) error {
	_, err := c.do(ctx, request{step: "dasher.location", method: "PUT", url: base + "/v1/dashers/me/location", token: tok, idemKey: newKey(),
		json: map[string]any{"position": p}})
	return err
}

// DasherAction is one of a dasher's steps on an order.
type DasherAction string

// The dasher's steps.
const (
	ActAcceptOffer  DasherAction = "offers/%s/accept"
	ActDeclineOffer DasherAction = "offers/%s/decline"
	ActDelivered    DasherAction = "orders/%s/delivered"
)

var dasherSteps = map[DasherAction]string{ActAcceptOffer: "dasher.accept_offer", ActDeclineOffer: "dasher.decline_offer", ActDelivered: "dasher.delivered"}

// Dasher applies a dasher's step to an order; key is the Idempotency-Key (the same on a retry).
func (c *Client) Dasher(ctx context.Context, base string, tok TokenSource, orderID string, act DasherAction, key string) error {
	_, err := c.do(ctx, request{step: dasherSteps[act], method: "POST", token: tok, idemKey: key,
		url: base + "/v1/dashers/me/" + fmt.Sprintf(string(act), orderID)})
	return err
}

// ---- Feeds ----

// FeedEntry is one entry of a feed.
type FeedEntry struct {
	Cursor  uint64          `json:"cursor"`
	Type    string          `json:"type"`
	OrderID string          `json:"order_id"`
	At      time.Time       `json:"at"`
	Data    json.RawMessage `json:"data"`
}

// FeedPage is the answer of a poll: no entries when the wait ended empty (204).
type FeedPage struct {
	Entries    []FeedEntry `json:"entries"`
	NextCursor uint64      `json:"next_cursor"`
}

// Feed paths.
const (
	CustomerFeed = "/v1/customers/me/feed"
	DasherFeed   = "/v1/dashers/me/feed"
)

// RestaurantFeed is the path of a restaurant's feed.
func RestaurantFeed(id string) string { return "/v1/restaurants/" + id + "/feed" }

// Poll long-polls a feed after a cursor for up to wait.
func (c *Client) Poll(ctx context.Context, base string, tok TokenSource, path string, after uint64, wait time.Duration) (FeedPage, error) {
	const step = "feed.poll"
	url := base + path + "?after=" + strconv.FormatUint(after, 10) + "&wait=" + strconv.FormatFloat(wait.Seconds(), 'f', 3, 64)
	res, err := c.do(ctx, request{step: step, method: "GET", url: url, token: tok, timeout: wait + c.opts.RequestTimeout})
	if err != nil {
		return FeedPage{}, err
	}
	if res.status == 204 {
		return FeedPage{NextCursor: after}, nil
	}
	return decode[FeedPage](step, res)
}
