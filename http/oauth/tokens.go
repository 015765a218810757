package oauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// JWT access tokens (RFC 9068) signed with Ed25519 (alg EdDSA), and their verification on the resource side. We
// sign and verify with go-jose v4 rather than fosite's JWT strategy: fosite v0.49 signs with go-jose v3 and has no
// EdDSA key support, no "at+jwt" type, and verifies without pinning the algorithm. Verification here pins EdDSA,
// requires typ at+jwt and a known kid, and checks iss, aud, exp, iat, sub, role and the lifetime.

// tokenType is the JWT "typ" of access tokens (RFC 9068 section 2.1).
const tokenType = "at+jwt"

// signingAlg is the only algorithm tokens are signed with and the only one verification accepts.
const signingAlg = jose.EdDSA

// accessClaims are the claims of an access token.
type accessClaims struct {
	jwt.Claims
	ClientID    string   `json:"client_id"`
	Scope       string   `json:"scope"`
	Role        string   `json:"role"`
	Restaurants []string `json:"restaurants,omitempty"`
	// FamilyID is fosite's request id: the token family of a code grant (kept across refreshes), or the token
	// request of client_credentials. Revocation refuses every access token of a family by it (RFC 7009).
	FamilyID string `json:"fid,omitempty"`
}

// revocationID is what a revocation of c names: its family, or its jti for a token issued without fid.
func (c *accessClaims) revocationID() string {
	if c.FamilyID != "" {
		return c.FamilyID
	}
	return c.ID
}

// parsedKey is a signing key ready for use.
type parsedKey struct {
	kid     string
	private ed25519.PrivateKey
	public  ed25519.PublicKey
	created time.Time
	retired time.Time // zero while current
}

// keyring caches the signing keys of the Account "keys" actor: the current key signs, every published key
// verifies. It re-reads the keys every Config.KeyRefresh (when it signs, serves JWKS or verifies a token after that
// time), and at once (at most every second) when a token names a kid it does not know (another node rotated). It
// rotates when the current key is older than KeyRotateAfter.
type keyring struct {
	cfg    Config
	actors http.Actors
	log    *slog.Logger

	mu          sync.RWMutex
	keys        []parsedKey // oldest first
	loadedAt    time.Time
	lastUnknown time.Time

	// refreshAt is when a verification next re-reads the keys (Unix nanoseconds; 0 before the first read): so
	// that a node that only verifies tokens learns of another node's revocation within KeyRefresh.
	refreshAt atomic.Int64

	// revoked is the revocation list of the "keys" actor as read (or written by this node), merged: the
	// revocation ids (accessClaims.revocationID) whose tokens are refused, with their until. Each install swaps in
	// a new map, never changes one in place, so a verification costs one atomic load and one map lookup.
	revoked atomic.Pointer[map[string]time.Time]
}

// load reads the keys, creating the first key when there is none and rotating when the current one is too old.
func (k *keyring) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.CallTimeout)
	defer cancel()
	res, err := k.actors.Call(ctx, actors.KindAccount, actors.AccountKeys, "GetSigningKeys", &messages.GetSigningKeys{})
	if err != nil {
		return fmt.Errorf("read signing keys: %w", err)
	}
	keys := res.(*messages.SigningKeys).GetKeys()
	now := k.cfg.Now()
	k.setRevoked(res.(*messages.SigningKeys).GetRevocations(), now)
	cur := current(keys)
	if cur == nil || now.Sub(cur.GetCreatedAt().AsTime()) >= k.cfg.KeyRotateAfter {
		if _, keys, err = k.rotateFrom(ctx, cur.GetKid(), k.cfg.AccessTokenTTL+2*k.cfg.ClockSkew); err != nil {
			return err
		}
	}
	return k.set(keys, now)
}

// Rotate makes a new current signing key now and answers its kid. With revoke false the previous key keeps
// verifying tokens until they expire; with revoke true (a compromised key) every previous key stops verifying at
// once on this node, and on the others when they next re-read the keys (within Config.KeyRefresh).
func (k *keyring) Rotate(ctx context.Context, revoke bool) (string, error) {
	if err := k.load(ctx); err != nil {
		return "", err
	}
	k.mu.Lock()
	expected := ""
	if c := k.currentLocked(); c != nil {
		expected = c.kid
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, k.cfg.CallTimeout)
	defer cancel()
	retain := k.cfg.AccessTokenTTL + 2*k.cfg.ClockSkew
	if revoke {
		retain = 0 // the Account actor revokes every previous key (actors/account.go)
	}
	// The actor rotates only from the current key we name: when another node rotated first, an ordinary rotation
	// is done (a key newer than the request is current), a revocation asks again from the new current key.
	for range 3 {
		kid, keys, err := k.rotateFrom(ctx, expected, retain)
		if err != nil {
			return "", err
		}
		if err := k.set(keys, k.cfg.Now()); err != nil {
			return "", err
		}
		cur := current(keys)
		if cur.GetKid() == kid || !revoke {
			return cur.GetKid(), nil
		}
		expected = cur.GetKid()
	}
	return "", errors.New("revoke signing keys: other nodes kept rotating first")
}

// rotateFrom asks the Account actor to make a new key current if expectedKid is current, keeping the previous keys
// published for retain (0: revoking them). It answers the new key's kid and the keys as the actor has them.
func (k *keyring) rotateFrom(ctx context.Context, expectedKid string, retain time.Duration) (string, []*messages.SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("make signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, fmt.Errorf("encode signing key: %w", err)
	}
	kid := uuid.NewString()
	res, err := k.actors.Call(ctx, actors.KindAccount, actors.AccountKeys, "RotateSigningKey", &messages.RotateSigningKey{
		CommandId: "rotate-key:" + kid, ExpectedKid: expectedKid,
		Key:      &messages.SigningKey{Kid: kid, Alg: string(signingAlg), PrivatePkcs8: der},
		RetainMs: retain.Milliseconds(),
	})
	if err != nil {
		return "", nil, fmt.Errorf("rotate signing key: %w", err)
	}
	keys := res.(*messages.SigningKeys).GetKeys()
	if c := current(keys); c.GetKid() == kid {
		if retain == 0 {
			k.log.Warn("signing keys revoked", slog.String("kid", kid), slog.String("previous_kid", expectedKid))
		} else {
			k.log.Info("signing key rotated", slog.String("kid", kid), slog.String("previous_kid", expectedKid))
		}
	}
	return kid, keys, nil
}

func current(keys []*messages.SigningKey) *messages.SigningKey {
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].GetRetiredAt() == nil {
			return keys[i]
		}
	}
	return nil
}

func (k *keyring) set(keys []*messages.SigningKey, now time.Time) error {
	parsed := make([]parsedKey, 0, len(keys))
	for _, m := range keys {
		if m.GetAlg() != string(signingAlg) {
			continue
		}
		key, err := x509.ParsePKCS8PrivateKey(m.GetPrivatePkcs8())
		if err != nil {
			return fmt.Errorf("decode signing key %s: %w", m.GetKid(), err)
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return fmt.Errorf("signing key %s is %T, want Ed25519", m.GetKid(), key)
		}
		p := parsedKey{kid: m.GetKid(), private: priv, public: priv.Public().(ed25519.PublicKey), created: m.GetCreatedAt().AsTime()}
		if m.GetRetiredAt() != nil {
			p.retired = m.GetRetiredAt().AsTime()
		}
		parsed = append(parsed, p)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// A key this node knew that the store no longer lists (its state was lost: a node of a cluster on per-node
	// journals failed over) keeps verifying as if retired now, so that tokens signed with it live out their time.
	retain := k.cfg.AccessTokenTTL + 2*k.cfg.ClockSkew
	listed := map[string]bool{}
	for _, p := range parsed {
		listed[p.kid] = true
	}
	var kept []parsedKey
	for _, old := range k.keys {
		if listed[old.kid] {
			continue
		}
		if old.retired.IsZero() {
			old.retired = now
		}
		if now.Sub(old.retired) < retain {
			kept = append(kept, old)
		}
	}
	k.keys, k.loadedAt = append(kept, parsed...), now
	k.refreshAt.Store(now.Add(k.cfg.KeyRefresh).UnixNano())
	return nil
}

// setRevoked merges list into the revocation list: the entries of the current list and of list still in force
// at now, the later until of an id in both. Merged, not replaced: a re-read of the keys that started before a
// revocation may install after the revoking node's own install (revoke), and its older list must not re-accept
// the revoked tokens until the next re-read. Revocations are never withdrawn, only expire, so keeping an entry
// until its until is always right. Concurrent installs retry on the pointer, so none is lost.
func (k *keyring) setRevoked(list []*messages.Revocation, now time.Time) {
	for {
		cur := k.revoked.Load()
		var n int
		if cur != nil {
			n = len(*cur)
		}
		m := make(map[string]time.Time, n+len(list))
		if cur != nil {
			for id, until := range *cur {
				if until.After(now) {
					m[id] = until
				}
			}
		}
		for _, r := range list {
			if until := r.GetUntil().AsTime(); until.After(now) && until.After(m[r.GetId()]) {
				m[r.GetId()] = until
			}
		}
		if k.revoked.CompareAndSwap(cur, &m) {
			return
		}
	}
}

// isRevoked reports whether c's tokens are revoked. An entry past its until covers only expired tokens, so its
// presence alone decides.
func (k *keyring) isRevoked(c *accessClaims) bool {
	m := k.revoked.Load()
	if m == nil || len(*m) == 0 {
		return false
	}
	_, ok := (*m)[c.revocationID()]
	return ok
}

// revoke refuses the access tokens of ids: it records them in the Account actor "keys" until every token they
// cover has expired (AccessTokenTTL plus twice ClockSkew from now: no token of a revoked family is issued after
// its revocation) and installs the list it answers, so this node refuses them at once and the others once they
// re-read the keys (within KeyRefresh).
func (k *keyring) revoke(ctx context.Context, ids ...string) error {
	now := k.cfg.Now()
	until := timestamppb.New(now.Add(k.cfg.AccessTokenTTL + 2*k.cfg.ClockSkew))
	req := &messages.RevokeTokens{CommandId: "revoke-tokens:" + uuid.NewString()}
	m := k.revoked.Load()
	for _, id := range ids {
		// fosite revokes a grant's refresh and access tokens one after the other: the second finds the entry.
		if m != nil && !(*m)[id].Before(until.AsTime().Add(-time.Second)) {
			continue
		}
		req.Revocations = append(req.Revocations, &messages.Revocation{Id: id, Until: until})
	}
	if len(req.Revocations) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.CallTimeout)
	defer cancel()
	res, err := k.actors.Call(ctx, actors.KindAccount, actors.AccountKeys, "RevokeTokens", req)
	if err != nil {
		return fmt.Errorf("revoke access tokens: %w", err)
	}
	k.setRevoked(res.(*messages.SigningKeys).GetRevocations(), k.cfg.Now())
	for _, r := range req.GetRevocations() {
		k.log.Info("access tokens revoked", slog.String("fid", r.GetId()), slog.Time("until", until.AsTime()))
	}
	return nil
}

// refreshIfStale re-reads the keys when they are older than KeyRefresh (Authenticate calls it for every bearer
// token: one atomic load while they are fresh). The caller that claims the refresh reads the keys before its token
// is checked; requests meanwhile go on with the keys this node has. A failed read is retried a second later, and
// the keys this node has keep verifying.
func (k *keyring) refreshIfStale(ctx context.Context) {
	at, now := k.refreshAt.Load(), k.cfg.Now()
	if at == 0 || now.UnixNano() < at || !k.refreshAt.CompareAndSwap(at, now.Add(time.Second).UnixNano()) {
		return
	}
	if err := k.load(ctx); err != nil {
		k.log.Warn("re-read signing keys", slog.Any("error", err))
	}
}

func (k *keyring) currentLocked() *parsedKey {
	for i := len(k.keys) - 1; i >= 0; i-- {
		if k.keys[i].retired.IsZero() {
			return &k.keys[i]
		}
	}
	return nil
}

// signer returns the current key, re-reading the keys when they are older than KeyRefresh.
func (k *keyring) signer(ctx context.Context) (parsedKey, error) {
	k.mu.Lock()
	stale := k.cfg.Now().Sub(k.loadedAt) >= k.cfg.KeyRefresh
	k.mu.Unlock()
	if stale {
		if err := k.load(ctx); err != nil {
			return parsedKey{}, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := k.currentLocked(); c != nil {
		return *c, nil
	}
	return parsedKey{}, errors.New("no current signing key")
}

// errUnknownKid: the token names no published key.
var errUnknownKid = errors.New("unknown kid")

// verifier returns the public key of kid: a published key (current, or retired less than the access token
// lifetime ago). An unknown kid makes it re-read the keys, at most once a second. It fails with errUnknownKid, or
// with the error of reading the keys (this node cannot check tokens yet: it has not joined, or the cluster is
// unavailable).
func (k *keyring) verifier(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	if pub, ok := k.published(kid); ok {
		return pub, nil
	}
	k.mu.Lock()
	now := k.cfg.Now()
	never := k.loadedAt.IsZero()
	retry := never || now.Sub(k.lastUnknown) >= time.Second
	if retry {
		k.lastUnknown = now
	}
	k.mu.Unlock()
	if !retry {
		return nil, errUnknownKid
	}
	if err := k.load(ctx); err != nil {
		k.log.Warn("read signing keys", slog.Any("error", err))
		if never {
			return nil, err
		}
		return nil, errUnknownKid
	}
	if pub, ok := k.published(kid); ok {
		return pub, nil
	}
	return nil, errUnknownKid
}

func (k *keyring) published(kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	retain := k.cfg.AccessTokenTTL + 2*k.cfg.ClockSkew
	for _, p := range k.keys {
		if p.kid == kid && (p.retired.IsZero() || k.cfg.Now().Sub(p.retired) < retain) {
			return p.public, true
		}
	}
	return nil, false
}

// JWKS returns the published public keys.
func (k *keyring) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	if _, err := k.signer(ctx); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	k.mu.Lock()
	kids := make([]string, 0, len(k.keys))
	for _, p := range k.keys {
		kids = append(kids, p.kid)
	}
	k.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, kid := range kids {
		if pub, ok := k.published(kid); ok {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(signingAlg), Use: "sig"})
		}
	}
	return set, nil
}

// tokenIssuer signs and verifies access tokens.
type tokenIssuer struct {
	cfg  Config
	keys *keyring
}

// issue signs the access token of a fosite request.
func (t *tokenIssuer) issue(ctx context.Context, r fosite.Requester) (string, error) {
	s, ok := r.GetSession().(*session)
	if !ok || s.Subject == "" || s.Role == "" {
		return "", errors.New("the session has no subject or role")
	}
	key, err := t.keys.signer(ctx)
	if err != nil {
		return "", err
	}
	now := t.cfg.Now()
	exp := s.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() || exp.Sub(now) > t.cfg.AccessTokenTTL {
		exp = now.Add(t.cfg.AccessTokenTTL)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: signingAlg, Key: key.private},
		(&jose.SignerOptions{}).WithType(tokenType).WithHeader("kid", key.kid))
	if err != nil {
		return "", fmt.Errorf("make signer: %w", err)
	}
	claims := accessClaims{
		Claims: jwt.Claims{
			Issuer: t.cfg.Issuer, Subject: s.Subject, Audience: jwt.Audience{t.cfg.Audience},
			Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: uuid.NewString(),
		},
		ClientID: r.GetClient().GetID(), Scope: strings.Join(r.GetGrantedScopes(), " "),
		Role: s.Role, Restaurants: s.Restaurants, FamilyID: r.GetID(),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// errRevoked: the token's family (or the token) was revoked (RFC 7009).
var errRevoked = errors.New("revoked")

// errBadToken is every verification failure a client sees; the cause is only logged at debug.
var errBadToken = errors.New("invalid access token")

// verified is a token verify accepted: its claims and the key that verified its signature.
type verified struct {
	claims *accessClaims
	kid    string
	pub    ed25519.PublicKey
}

// verify checks an access token and returns its claims.
func (t *tokenIssuer) verify(ctx context.Context, raw string) (verified, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{signingAlg})
	if err != nil {
		return verified{}, fmt.Errorf("parse: %w", err)
	}
	if len(tok.Headers) != 1 {
		return verified{}, errors.New("want exactly one signature")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, tokenType) && !strings.EqualFold(typ, "application/"+tokenType) {
		return verified{}, fmt.Errorf("typ %q, want %s", typ, tokenType)
	}
	if h.Algorithm != string(signingAlg) {
		return verified{}, fmt.Errorf("alg %q, want %s", h.Algorithm, signingAlg)
	}
	pub, err := t.keys.verifier(ctx, h.KeyID)
	if err != nil {
		return verified{}, fmt.Errorf("kid %q: %w", h.KeyID, err)
	}
	var c accessClaims
	if err := tok.Claims(pub, &c); err != nil {
		return verified{}, fmt.Errorf("signature: %w", err)
	}
	if err := t.checkTime(&c); err != nil {
		return verified{}, err
	}
	if err := checkClaims(&c); err != nil {
		return verified{}, err
	}
	if t.keys.isRevoked(&c) {
		return verified{}, errRevoked
	}
	return verified{claims: &c, kid: h.KeyID, pub: pub}, nil
}

// checkTime checks the claims that depend on the time (exp, nbf, iat, with ClockSkew leeway), and iss and aud.
func (t *tokenIssuer) checkTime(c *accessClaims) error {
	if c.Expiry == nil || c.IssuedAt == nil {
		return errors.New("exp and iat are required")
	}
	return c.ValidateWithLeeway(jwt.Expected{Issuer: t.cfg.Issuer, AnyAudience: jwt.Audience{t.cfg.Audience}, Time: t.cfg.Now()}, t.cfg.ClockSkew)
}

// checkClaims checks the claims that depend only on the token.
func checkClaims(c *accessClaims) error {
	if c.Expiry.Time().Sub(c.IssuedAt.Time()) > MaxAccessTokenTTL {
		return errors.New("lifetime longer than the maximum")
	}
	if c.Subject == "" || c.ClientID == "" {
		return errors.New("sub and client_id are required")
	}
	if !slices.Contains(strings.Fields(c.Scope), Scope) {
		return fmt.Errorf("scope %q lacks %s", c.Scope, Scope)
	}
	switch c.Role {
	case actors.RoleCustomer, actors.RoleDasher, actors.RoleOperator:
	case actors.RoleRestaurant:
		if len(c.Restaurants) == 0 {
			return errors.New("a restaurant token names no restaurant")
		}
	default:
		return fmt.Errorf("unknown role %q", c.Role)
	}
	return nil
}

// stillValid reports whether a cached token would pass verify now: the checks of verify that can change after
// it accepted the token are the time claims, the publication of its key and its revocation (see tokenCache).
func (t *tokenIssuer) stillValid(e *cachedToken) bool {
	if t.checkTime(e.claims) != nil || t.keys.isRevoked(e.claims) {
		return false
	}
	pub, ok := t.keys.published(e.kid)
	return ok && pub.Equal(e.pub)
}

// Authenticate implements http.Authenticator: no Authorization header, or one of another scheme, is the
// anonymous caller (another scheme belongs to the route: the token endpoint's client_secret_basic, RFC 6749
// section 2.3.1; routes that need a principal refuse the anonymous caller with 401); a valid bearer access token
// is its principal; a bad bearer token is 401 UNAUTHENTICATED (with WWW-Authenticate, RFC 6750).
func (s *Server) Authenticate(ctx *fasthttp.RequestCtx) (http.Principal, error) {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	scheme, raw, _ := bytes.Cut(h, []byte(" "))
	if len(h) == 0 || !bytes.EqualFold(scheme, []byte("Bearer")) {
		return http.Principal{}, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="platter"`)
		return http.Principal{}, http.Errorf(http.CodeUnauthenticated, "the Authorization header must be \"Bearer <access token>\"")
	}
	s.keys.refreshIfStale(context.Background())
	var key [sha256.Size]byte
	if s.cache != nil {
		key = sha256.Sum256(raw)
		if e, ok := s.cache.get(key); ok {
			if s.tokens.stillValid(e) {
				return clonePrincipal(e.principal), nil
			}
			s.cache.remove(e) // verify decides, and refuses it unless the keyring changes back
		}
	}
	v, err := s.tokens.verify(context.Background(), string(raw))
	var infra *http.Error
	if errors.As(err, &infra) && (infra.Code == http.CodeNotReady || infra.Code == http.CodeUnavailable) {
		return http.Principal{}, infra // the keys could not be read: the token is not known to be bad
	}
	if err != nil {
		s.log.Debug("access token refused", slog.String("reason", err.Error()))
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="platter", error="invalid_token"`)
		return http.Principal{}, &http.Error{Code: http.CodeUnauthenticated, Detail: errBadToken.Error(), Cause: err}
	}
	c := v.claims
	p := http.Principal{Role: http.Role(c.Role), ID: c.Subject}
	if c.Role == actors.RoleRestaurant {
		p.Restaurants = slices.Clone(c.Restaurants)
	}
	if s.cache != nil {
		s.cache.put(&cachedToken{key: key, verified: v, principal: clonePrincipal(p)})
	}
	return p, nil
}
