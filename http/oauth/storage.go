package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// This file is fosite's storage (clients, codes, PKCE requests, refresh tokens) over the Account actors, and the
// token strategy that makes codes and refresh tokens name their family, so that every lookup goes to one actor.

// session is what a token says about its holder. It is kept (JSON) with codes and refresh tokens.
type session struct {
	Subject     string                         `json:"sub"`
	Role        string                         `json:"role"`
	Restaurants []string                       `json:"restaurants,omitempty"`
	ExpiresAt   map[fosite.TokenType]time.Time `json:"exp,omitempty"`
}

var _ fosite.Session = (*session)(nil)

func (s *session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

func (s *session) GetExpiresAt(key fosite.TokenType) time.Time { return s.ExpiresAt[key] }
func (s *session) GetUsername() string                         { return s.Subject }
func (s *session) GetSubject() string                          { return s.Subject }
func (s *session) Clone() fosite.Session {
	c := *s
	c.Restaurants = slices.Clone(s.Restaurants)
	c.ExpiresAt = make(map[fosite.TokenType]time.Time, len(s.ExpiresAt))
	for k, v := range s.ExpiresAt {
		c.ExpiresAt[k] = v
	}
	return &c
}

// storedRequest is a fosite request as the Account actor keeps it: no secrets (the form is fosite's sanitized one,
// which never holds passwords, codes or tokens).
type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScope    []string   `json:"requested_scope,omitempty"`
	GrantedScope      []string   `json:"granted_scope,omitempty"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	Session           *session   `json:"session"`
}

// formKept are the form fields kept with a request: what the PKCE check and the refresh grant read later.
var formKept = []string{"code_challenge", "code_challenge_method", "redirect_uri", "scope", "response_type", "client_id", "state"}

func encodeRequest(r fosite.Requester) ([]byte, error) {
	s, ok := r.GetSession().(*session)
	if !ok {
		return nil, fmt.Errorf("session is %T, want *oauth.session", r.GetSession())
	}
	form := url.Values{}
	for _, k := range formKept {
		if v, ok := r.GetRequestForm()[k]; ok {
			form[k] = v
		}
	}
	return json.Marshal(storedRequest{
		ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		RequestedScope: r.GetRequestedScopes(), GrantedScope: r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(),
		Form: form, Session: s,
	})
}

// decodeRequest rebuilds a fosite request; into, when it is a *session, receives the stored session.
func (st *store) decodeRequest(ctx context.Context, b []byte, into fosite.Session) (*fosite.Request, error) {
	var sr storedRequest
	if err := json.Unmarshal(b, &sr); err != nil {
		return nil, fmt.Errorf("decode stored request: %w", err)
	}
	client, err := st.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, err
	}
	sess := sr.Session
	if sess == nil {
		sess = &session{}
	}
	if s, ok := into.(*session); ok && s != nil {
		*s = *sess
		sess = s
	}
	return &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: client,
		RequestedScope: sr.RequestedScope, GrantedScope: sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: sess,
	}, nil
}

// ---- Token strategy ----

// Codes and refresh tokens are "<family id>.<32 random bytes, base64url>"; their signature (the storage key) is
// "<family id>.<hex SHA-256 of the whole token>". The family id is fosite's request id, which the code grant and
// every refresh keep, so the Account actor of the family answers every lookup. Nothing but the hash is stored: a
// stolen store yields no usable token.
func newOpaqueToken(family string) (token, signature string, err error) {
	if _, err := uuid.Parse(family); err != nil {
		return "", "", fmt.Errorf("request id %q is not a uuid", family)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = family + "." + base64.RawURLEncoding.EncodeToString(b)
	return token, opaqueSignature(token), nil
}

// opaqueSignature is the storage key of an opaque token ("" for a malformed one).
func opaqueSignature(token string) string {
	family, _, ok := strings.Cut(token, ".")
	if !ok || uuid.Validate(family) != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return family + "." + hex.EncodeToString(sum[:])
}

// familyOf returns the family id of a signature.
func familyOf(signature string) (string, bool) {
	family, _, ok := strings.Cut(signature, ".")
	return family, ok && uuid.Validate(family) == nil
}

// strategy is fosite's CoreStrategy: JWT access tokens (tokens.go) and opaque codes and refresh tokens.
type strategy struct {
	tokens *tokenIssuer
}

func (s *strategy) AccessTokenSignature(_ context.Context, token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		return token[i+1:]
	}
	return ""
}

func (s *strategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	token, err := s.tokens.issue(ctx, r)
	if err != nil {
		return "", "", err
	}
	return token, s.AccessTokenSignature(ctx, token), nil
}

func (s *strategy) ValidateAccessToken(ctx context.Context, _ fosite.Requester, token string) error {
	if _, err := s.tokens.verify(ctx, token); err != nil {
		return fosite.ErrInvalidTokenFormat.WithWrap(err)
	}
	return nil
}

func (s *strategy) RefreshTokenSignature(_ context.Context, token string) string {
	return opaqueSignature(token)
}

func (s *strategy) GenerateRefreshToken(_ context.Context, r fosite.Requester) (string, string, error) {
	return newOpaqueToken(r.GetID())
}

func (s *strategy) ValidateRefreshToken(_ context.Context, r fosite.Requester, token string) error {
	return checkOpaque(r, token, fosite.RefreshToken, s.tokens.cfg.Now())
}

func (s *strategy) AuthorizeCodeSignature(_ context.Context, token string) string {
	return opaqueSignature(token)
}

func (s *strategy) GenerateAuthorizeCode(_ context.Context, r fosite.Requester) (string, string, error) {
	return newOpaqueToken(r.GetID())
}

func (s *strategy) ValidateAuthorizeCode(_ context.Context, r fosite.Requester, token string) error {
	return checkOpaque(r, token, fosite.AuthorizeCode, s.tokens.cfg.Now())
}

// checkOpaque checks that a token has not expired. That it is genuine was proven by the lookup: the store found
// its SHA-256 in its family. (fosite passes the token request here for codes, whose id is not the family's yet,
// and the stored request for refresh tokens; both carry the stored session's expiry.)
func checkOpaque(r fosite.Requester, token string, kind fosite.TokenType, now time.Time) error {
	if opaqueSignature(token) == "" {
		return fosite.ErrTokenSignatureMismatch
	}
	if exp := r.GetSession().GetExpiresAt(kind); !exp.IsZero() && now.After(exp) {
		return fosite.ErrTokenExpired.WithHintf("%s expired at %s.", kind, exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// ---- Clients ----

// AppClientID is the public first-party client (authorization code with PKCE, refresh tokens).
const AppClientID = "platter-app"

// Scope is the one scope Platter grants: access to the API, limited by the token's role.
const Scope = "platter"

// appCallback is the custom-scheme redirect URI of the mobile app.
const appCallback = "platter://callback"

type redirectKey struct{}

// withRequestedRedirect remembers the redirect_uri of an authorize request, so that GetClient can register a
// loopback URI with any port and path for platter-app (RFC 8252 section 7.3: the port is chosen by the app).
func withRequestedRedirect(ctx context.Context, uri string) context.Context {
	return context.WithValue(ctx, redirectKey{}, uri)
}

// isLoopbackRedirect accepts http://127.0.0.1:PORT/... and http://[::1]:PORT/... (not "localhost", which RFC 8252
// advises against).
func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" {
		return false
	}
	h := u.Hostname()
	return h == "127.0.0.1" || h == "::1"
}

// client is a fosite client with Platter's role and restaurant bindings.
type client struct {
	fosite.DefaultClient
	role        string
	restaurants []string
}

// store implements fosite's storage interfaces over the Account actors. Every method is safe for concurrent use.
type store struct {
	actors   http.Actors
	tokens   *tokenIssuer // verifies the access tokens being revoked
	keys     *keyring     // keeps the revoked families
	audience string
	now      func() time.Time
	timeout  time.Duration
}

func (st *store) call(ctx context.Context, identity, method string, req proto.Message) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	return st.actors.Call(ctx, actors.KindAccount, identity, method, req)
}

func isCode(err error, code string) bool {
	var e *http.Error
	return errors.As(err, &e) && e.Code == code
}

// GetClient answers platter-app or a confidential client of the store.
func (st *store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if id == AppClientID {
		redirects := []string{appCallback, "http://127.0.0.1/callback", "http://[::1]/callback"}
		if uri, _ := ctx.Value(redirectKey{}).(string); isLoopbackRedirect(uri) {
			redirects = append(redirects, uri)
		}
		return &client{DefaultClient: fosite.DefaultClient{
			ID: AppClientID, Public: true, RedirectURIs: redirects,
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
			Scopes: []string{Scope}, Audience: []string{st.audience},
		}}, nil
	}
	if id == "" || len(id) > 200 {
		return nil, fosite.ErrNotFound
	}
	res, err := st.call(ctx, actors.AccountClientPrefix+id, "GetClient", &messages.GetClient{})
	if err != nil {
		if isCode(err, http.CodeNotFound) {
			return nil, fosite.ErrNotFound
		}
		return nil, err
	}
	c := res.(*messages.ClientView).GetClient()
	return &client{
		DefaultClient: fosite.DefaultClient{
			ID: c.GetClientId(), Secret: c.GetSecretSha256(),
			GrantTypes: []string{"client_credentials"}, ResponseTypes: []string{},
			Scopes: []string{Scope}, Audience: []string{st.audience},
		},
		role: c.GetRole(), restaurants: c.GetRestaurants(),
	}, nil
}

// Clients authenticate with a client secret only (no JWT assertions).
func (st *store) ClientAssertionJWTValid(context.Context, string) error { return nil }
func (st *store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return errors.New("client assertions are not supported")
}

// secretHasher compares client secrets by SHA-256: they are 256 random bits, so a slow hash adds nothing.
type secretHasher struct{}

func (secretHasher) Compare(_ context.Context, hash, data []byte) error {
	sum := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(hash, sum[:]) != 1 {
		return errors.New("client secret mismatch")
	}
	return nil
}

func (secretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	return sum[:], nil
}

// ---- Authorization codes and PKCE ----

func commandID(parts ...string) string { return "oauth:" + strings.Join(parts, ":") }

func (st *store) family(ctx context.Context, signature string) (*messages.TokenFamily, error) {
	family, ok := familyOf(signature)
	if !ok {
		return nil, fosite.ErrNotFound
	}
	res, err := st.call(ctx, actors.AccountFamilyPrefix+family, "GetFamily", &messages.GetFamily{})
	if err != nil {
		if isCode(err, http.CodeNotFound) {
			return nil, fosite.ErrNotFound
		}
		return nil, err
	}
	return res.(*messages.FamilyView).GetFamily(), nil
}

func (st *store) familyCall(ctx context.Context, signature, method string, req proto.Message) error {
	family, ok := familyOf(signature)
	if !ok {
		return fosite.ErrNotFound
	}
	_, err := st.call(ctx, actors.AccountFamilyPrefix+family, method, req)
	if isCode(err, http.CodeNotFound) {
		return fosite.ErrNotFound
	}
	return err
}

func (st *store) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	b, err := encodeRequest(r)
	if err != nil {
		return err
	}
	return st.familyCall(ctx, signature, "SaveCode", &messages.SaveCode{
		CommandId: commandID("code", signature), ClientId: r.GetClient().GetID(), Subject: r.GetSession().GetSubject(),
		Request: b, CodeSignature: signature, CodeExpiresAt: timestamppb.New(r.GetSession().GetExpiresAt(fosite.AuthorizeCode)),
	})
}

func (st *store) GetAuthorizeCodeSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	f, err := st.family(ctx, signature)
	if err != nil {
		return nil, err
	}
	if f.GetCodeSignature() != signature {
		return nil, fosite.ErrNotFound
	}
	r, err := st.decodeRequest(ctx, f.GetRequest(), s)
	if err != nil {
		return nil, err
	}
	if f.GetCodeUsed() || f.GetRevoked() {
		return r, fosite.ErrInvalidatedAuthorizeCode
	}
	return r, nil
}

func (st *store) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	return st.familyCall(ctx, signature, "UseCode", &messages.UseCode{CommandId: commandID("use-code", signature), CodeSignature: signature})
}

func (st *store) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	b, err := encodeRequest(r)
	if err != nil {
		return err
	}
	return st.familyCall(ctx, signature, "SavePKCE", &messages.SavePKCE{CommandId: commandID("pkce", signature), CodeSignature: signature, Request: b})
}

func (st *store) GetPKCERequestSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	f, err := st.family(ctx, signature)
	if err != nil {
		return nil, err
	}
	if f.GetCodeSignature() != signature || len(f.GetPkceRequest()) == 0 || f.GetPkceUsed() {
		return nil, fosite.ErrNotFound
	}
	return st.decodeRequest(ctx, f.GetPkceRequest(), s)
}

func (st *store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return st.familyCall(ctx, signature, "UsePKCE", &messages.UsePKCE{CommandId: commandID("use-pkce", signature), CodeSignature: signature})
}

// ---- Access tokens: JWTs, not stored ----

// Access tokens are self-contained JWTs that live at most Config.AccessTokenTTL; nothing is stored per token. They
// are revoked by their family (fid claim): the Account actor "keys" keeps the revoked families until their tokens
// have expired, and every node re-reads that list with the keys (tokens.go, keyring.revoke).
func (st *store) CreateAccessTokenSession(context.Context, string, fosite.Requester) error {
	return nil
}

type revokedTokenKey struct{}

// withRevokedToken remembers the token of a revocation request, so that GetAccessTokenSession, which fosite
// hands only the token's signature (its last JWS segment), can verify the whole token.
func withRevokedToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, revokedTokenKey{}, token)
}

// accessOnlyPrefix marks the request id of an access token with no refresh token family (client_credentials, or
// a token without fid): its revocation refuses the access token's id and revokes no family.
const accessOnlyPrefix = "access:"

// GetAccessTokenSession is only called by revocation (RFC 7009): it answers the request of the access token being
// revoked, if that is a token this server would accept now (any other token: not found, which RFC 7009 answers
// 200). fosite then checks that the token was issued to the client asking, and calls RevokeRefreshToken and
// RevokeAccessToken with the request id: the family of a code grant's token, or "access:<id>" for the others.
func (st *store) GetAccessTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	raw, _ := ctx.Value(revokedTokenKey{}).(string)
	if raw == "" || st.tokens == nil || signature == "" || !strings.HasSuffix(raw, "."+signature) {
		return nil, fosite.ErrNotFound
	}
	v, err := st.tokens.verify(ctx, raw)
	if err != nil {
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	c := v.claims
	client, err := st.GetClient(ctx, c.ClientID)
	if err != nil {
		return nil, err
	}
	id := accessOnlyPrefix + c.revocationID()
	if c.ClientID == AppClientID && c.FamilyID != "" {
		id = c.FamilyID // the code grant's family: its refresh tokens are revoked too
	}
	return &fosite.Request{ID: id, Client: client, Session: &session{Subject: c.Subject, Role: c.Role, Restaurants: c.Restaurants}}, nil
}

func (st *store) DeleteAccessTokenSession(context.Context, string) error { return nil }

// RevokeAccessToken is called with a request id when fosite revokes a grant (code reuse, refresh-token reuse,
// revocation of a refresh or access token): the access tokens of the family (or of the one token request) are
// refused from now on, and the family is revoked, so no refresh token of it works again.
func (st *store) RevokeAccessToken(ctx context.Context, requestID string) error {
	if id, ok := strings.CutPrefix(requestID, accessOnlyPrefix); ok {
		return st.revokeAccess(ctx, id)
	}
	if uuid.Validate(requestID) != nil {
		return fosite.ErrNotFound
	}
	if err := st.revokeAccess(ctx, requestID); err != nil {
		return err
	}
	return st.revoke(ctx, requestID, "access token revocation")
}

func (st *store) revokeAccess(ctx context.Context, id string) error {
	if st.keys == nil || id == "" {
		return fosite.ErrNotFound
	}
	return st.keys.revoke(ctx, id)
}

// ---- Refresh tokens ----

func (st *store) CreateRefreshTokenSession(ctx context.Context, signature, _ string, r fosite.Requester) error {
	b, err := encodeRequest(r)
	if err != nil {
		return err
	}
	err = st.familyCall(ctx, signature, "IssueRefresh", &messages.IssueRefresh{
		CommandId: commandID("refresh", signature), ClientId: r.GetClient().GetID(), Subject: r.GetSession().GetSubject(),
		Request: b, Signature: signature, ExpiresAt: timestamppb.New(r.GetSession().GetExpiresAt(fosite.RefreshToken)),
	})
	if isCode(err, http.CodeFailedPrecondition) {
		return fosite.ErrInactiveToken.WithHint("The token family was revoked.")
	}
	return err
}

func (st *store) GetRefreshTokenSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	f, err := st.family(ctx, signature)
	if err != nil {
		return nil, err
	}
	for _, t := range f.GetRefreshTokens() {
		if t.GetSignature() != signature {
			continue
		}
		r, err := st.decodeRequest(ctx, f.GetRequest(), s)
		if err != nil {
			return nil, err
		}
		r.Session.SetExpiresAt(fosite.RefreshToken, t.GetExpiresAt().AsTime())
		if !t.GetActive() || f.GetRevoked() {
			return r, fosite.ErrInactiveToken
		}
		return r, nil
	}
	return nil, fosite.ErrNotFound
}

// DeleteRefreshTokenSession is called for a reused token before its family is revoked: nothing to do.
func (st *store) DeleteRefreshTokenSession(context.Context, string) error { return nil }

// RotateRefreshToken marks the presented token used, atomically in its family's actor: when two requests present
// the same token, the second finds it used, which revokes the family (RFC 9700 section 4.14.2).
func (st *store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	family, ok := familyOf(signature)
	if !ok || family != requestID {
		return fosite.ErrNotFound
	}
	res, err := st.call(ctx, actors.AccountFamilyPrefix+family, "RotateRefresh", &messages.RotateRefresh{
		// A fresh command id per presentation: a second presentation of the same token must reach the decision
		// (and revoke the family), not be answered as a retry of the first.
		CommandId: commandID("rotate", uuid.NewString()), Signature: signature,
	})
	if err != nil {
		if isCode(err, http.CodeNotFound) {
			return fosite.ErrNotFound
		}
		return err
	}
	if res.(*messages.FamilyView).GetFamily().GetRevoked() {
		// Two requests raced with the same token: the family's access tokens go with it (fosite revokes them
		// only when it finds the token used before it rotates).
		if err := st.revokeAccess(ctx, family); err != nil {
			return err
		}
		return fosite.ErrInactiveToken.WithHint("The refresh token was used already; its family is revoked.")
	}
	return nil
}

// RevokeRefreshToken revokes the family and refuses its access tokens.
func (st *store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if strings.HasPrefix(requestID, accessOnlyPrefix) {
		return nil // no family: RevokeAccessToken refuses the token
	}
	if uuid.Validate(requestID) != nil {
		return fosite.ErrNotFound
	}
	if err := st.revokeAccess(ctx, requestID); err != nil {
		return err
	}
	return st.revoke(ctx, requestID, "refresh token revocation")
}

func (st *store) revoke(ctx context.Context, requestID, reason string) error {
	if uuid.Validate(requestID) != nil {
		return fosite.ErrNotFound
	}
	_, err := st.call(ctx, actors.AccountFamilyPrefix+requestID, "RevokeFamily", &messages.RevokeFamily{
		CommandId: commandID("revoke", requestID, reason), Reason: reason,
	})
	return err
}
