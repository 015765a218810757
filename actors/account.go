package actors

// Account: the credentials and token state of the OAuth 2.0 authorization server (http/oauth). One kind, one actor
// per identity; the identity's prefix says what it holds (messages/proto/security.proto):
//
//	login:<email>   a customer's or dasher's sign-in        stream "account/login:<email>"
//	client:<id>     a confidential OAuth client             stream "account/client:<id>"
//	keys            the JWT signing keys, revoked tokens    stream "account/keys"
//	family:<id>     one token family (code, PKCE, refresh)  stream "account/family:<id>"
//
// Transition table (every command is validated first: INVALID_ARGUMENT for a malformed one or one sent to an
// identity of another prefix):
//
//	identity  state            command           decision                                        events
//	--------  ---------------  ----------------  ----------------------------------------------  ---------------
//	login     absent           CreateLogin       create                                          LoginCreated
//	login     same subject     CreateLogin       answer again (a retried sign-up)                -
//	login     other subject    CreateLogin       refuse ALREADY_EXISTS                           -
//	login     any              VerifyLogin       throttle, then compare (absent: a dummy hash)   - (in memory)
//	client    absent           CreateClient      create                                          ClientCreated
//	client    created          CreateClient      refuse ALREADY_EXISTS (same secret: answer)     -
//	client    absent           GetClient         refuse NOT_FOUND                                -
//	keys      current = exp.   RotateSigningKey  add the key, retire the current one, drop old   SigningKeyAdded
//	keys      current = exp.   RotateSigningKey  retain 0: add the key, revoke every other one   SigningKeyAdded
//	                           (retain_ms 0)     (retired at the Unix epoch), drop none
//	keys      current ≠ exp.   RotateSigningKey  answer the keys (another node rotated first)    -
//	keys      any              RevokeTokens      add the revocations (or extend their until),    TokensRevoked
//	                                             drop those past their until
//	keys      all covered      RevokeTokens      answer the keys and revocations                 -
//	family    no code          SaveCode          save code                                       CodeSaved
//	family    code             SaveCode          refuse ALREADY_EXISTS                           -
//	family    code             SavePKCE          save PKCE request                               PKCESaved
//	family    code             UseCode/UsePKCE   mark used (once)                                CodeUsed/PKCEUsed
//	family    revoked          IssueRefresh      refuse FAILED_PRECONDITION                      -
//	family    live             IssueRefresh      add an active refresh token                     RefreshIssued
//	family    token active     RotateRefresh     mark it used                                    RefreshRotated
//	family    token used       RotateRefresh     reuse: revoke the family (RFC 9700)             FamilyRevoked
//	family    live             RevokeFamily      revoke                                          FamilyRevoked
//	family    revoked          RevokeFamily      answer the view                                 -
//
// A rotation keeps the previous keys published for retain_ms, so that the tokens they signed live out their time.
// retain_ms 0 is the emergency rotation of a compromised key: every previous key is marked retired at the Unix
// epoch (revokedAt), which every node reads as "retired longer ago than any token lives", so no node verifies its
// tokens once it has re-read the keys. Such keys stay listed until an ordinary rotation at least retain_ms after
// the revocation drops them: a node that finds a key it knew missing from the list keeps verifying it as if
// retired then (http/oauth: a lost journal), which must not happen to a key whose revocation it has not read.
//
// The revocations of the keys identity are the access tokens (JWTs, not stored) refused before their exp: http/oauth
// revokes a token family's, or one token request's, access tokens (RFC 7009, refresh token reuse) by their "fid"
// claim, and every node re-reads them with the keys (GetSigningKeys answers both). An entry is kept until the
// tokens it covers have expired (its until); each RevokeTokens drops the entries past their until, so the list
// holds at most the revocations of the last access token lifetime.
//
// Sign-in throttling is per account and lives in the activation (the only one for the identity): after
// AccountConfig.MaxLoginFailures consecutive failures the account refuses sign-in for LoginLockout, doubling with
// every further failure up to MaxLoginLockout; a success resets it. While locked, no password is compared, so a
// guesser learns nothing. Passwords are compared here, against the hash only this actor reads; they are never
// stored, fingerprinted or logged.

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// KindAccount is the Account kind's name.
const KindAccount = "Account"

// Identity prefixes of the Account kind.
const (
	AccountLoginPrefix  = "login:"
	AccountClientPrefix = "client:"
	AccountFamilyPrefix = "family:"
	AccountKeys         = "keys"
)

// Roles an account can have (the `role` claim of access tokens).
const (
	RoleCustomer   = "customer"
	RoleDasher     = "dasher"
	RoleRestaurant = "restaurant"
	RoleOperator   = "operator"
)

// AccountConfig tunes sign-in throttling. Zero fields mean their defaults.
type AccountConfig struct {
	// MaxLoginFailures is how many wrong passwords in a row an account accepts before it locks. Default 5.
	MaxLoginFailures int
	// LoginLockout is the first lock's length; it doubles with every further failure. Default 30 s.
	LoginLockout time.Duration
	// MaxLoginLockout caps the lock. Default 15 min.
	MaxLoginLockout time.Duration
	// PassivateAfter is how long a client, token family or sign-in activation may stay idle before it stops,
	// when shorter than Deps.PassivateAfter. Their state is in the journal and they are used in short bursts
	// (a token request, a sign-in, a refresh), so keeping one per staff client, customer or dasher for the
	// node's PassivateAfter only holds memory (issue 7: one per restaurant in the fan-out benchmark). A sign-in
	// with failures or a lock keeps Deps.PassivateAfter, so its throttle lasts as long as before; the signing
	// keys always keep it. Default 30 s.
	PassivateAfter time.Duration
}

// Defaults of AccountConfig.
const (
	DefaultMaxLoginFailures = 5
	DefaultLoginLockout     = 30 * time.Second
	DefaultMaxLoginLockout  = 15 * time.Minute
	DefaultAccountPassivate = 30 * time.Second
)

func (c AccountConfig) withDefaults() AccountConfig {
	if c.MaxLoginFailures <= 0 {
		c.MaxLoginFailures = DefaultMaxLoginFailures
	}
	if c.LoginLockout <= 0 {
		c.LoginLockout = DefaultLoginLockout
	}
	if c.MaxLoginLockout < c.LoginLockout {
		c.MaxLoginLockout = max(DefaultMaxLoginLockout, c.LoginLockout)
	}
	if c.PassivateAfter <= 0 {
		c.PassivateAfter = DefaultAccountPassivate
	}
	return c
}

// LoginIdentity is the Account identity of the sign-in of email.
func LoginIdentity(email string) string {
	return AccountLoginPrefix + strings.ToLower(strings.TrimSpace(email))
}

// Account is the Account grain.
type Account struct {
	grain[*messages.AccountState]

	failures    int       // consecutive wrong passwords
	lockedUntil time.Time // sign-in refused before this
}

var _ messages.Account = (*Account)(nil)

// accountActor is what the Account kind spawns: the generated dispatcher plus the node's Deps.
type accountActor struct {
	messages.AccountActor
	hosted
}

func (a *accountActor) Receive(ctx actor.Context) {
	a.receive(ctx, a.AccountActor.Receive)
	// The generated dispatcher set the node's receive timeout after Init; identities other than the signing
	// keys get the Account's shorter one (AccountConfig.PassivateAfter).
	if m, ok := ctx.Message().(*pcluster.ClusterInit); ok && m.Identity.GetIdentity() != AccountKeys {
		setAccountTimeout(ctx, a.deps, false)
	}
}

// setAccountTimeout sets an Account activation's idle timeout: the node's PassivateAfter while it keeps sign-in
// throttle state (throttled), else the shorter AccountConfig.PassivateAfter. A node that never passivates (its
// PassivateAfter is 0 after defaults) keeps every activation.
func setAccountTimeout(ctx actor.Context, deps *Deps, throttled bool) {
	switch {
	case deps.PassivateAfter <= 0:
	case throttled || deps.Accounts.PassivateAfter >= deps.PassivateAfter:
		ctx.SetReceiveTimeout(deps.PassivateAfter)
	default:
		ctx.SetReceiveTimeout(deps.Accounts.PassivateAfter)
	}
}

// Init loads the identity's stream.
func (a *Account) Init(ctx pcluster.GrainContext) {
	a.activate(ctx, KindAccount, &messages.AccountState{}, applyAccount)
}

// CreateLogin creates a customer's or dasher's sign-in.
func (a *Account) CreateLogin(req *messages.CreateLogin, ctx pcluster.GrainContext) (*messages.LoginResult, error) {
	err := a.command(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideCreateLogin(ctx.Identity(), s, req, now)
	})
	if err != nil {
		return nil, err
	}
	l := a.state().GetLogin()
	return &messages.LoginResult{Role: l.GetRole(), Subject: l.GetSubject()}, nil
}

// VerifyLogin checks a password, throttled per account.
func (a *Account) VerifyLogin(req *messages.VerifyLogin, ctx pcluster.GrainContext) (*messages.LoginResult, error) {
	if err := a.query(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(ctx.Identity(), AccountLoginPrefix) {
		return nil, grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "not a login identity"))
	}
	now := a.deps.Now()
	if now.Before(a.lockedUntil) {
		a.log.Warn("sign-in refused: account locked", slog.String("address", req.GetAddress()), slog.Time("until", a.lockedUntil))
		return &messages.LoginResult{RetryAfter: timestamppb.New(a.lockedUntil)}, nil
	}
	l := a.state().GetLogin()
	hash := l.GetPasswordHash()
	if hash == "" {
		hash = dummyHash() // the same work as for a real account: response times do not tell which emails exist
	}
	match, err := argon2id.ComparePasswordAndHash(req.GetPassword(), hash)
	if err != nil {
		a.log.Error("compare password", slog.Any("error", err))
		return nil, grainError(errUnavailable)
	}
	if !match || l == nil {
		a.failures++
		cfg := a.deps.Accounts
		if a.failures >= cfg.MaxLoginFailures {
			lock := cfg.LoginLockout << min(a.failures-cfg.MaxLoginFailures, 20)
			a.lockedUntil = now.Add(min(lock, cfg.MaxLoginLockout))
		}
		a.log.Info("sign-in failed", slog.String("address", req.GetAddress()), slog.Int("failures", a.failures))
		if l == nil {
			a.stop(ctx) // nothing to keep for an unknown email
		} else {
			setAccountTimeout(ctx, a.deps, true) // the throttle lives in this activation
		}
		return &messages.LoginResult{}, nil
	}
	if a.failures > 0 || !a.lockedUntil.IsZero() {
		setAccountTimeout(ctx, a.deps, false)
	}
	a.failures, a.lockedUntil = 0, time.Time{}
	return &messages.LoginResult{Ok: true, Role: l.GetRole(), Subject: l.GetSubject()}, nil
}

// CreateClient creates a confidential OAuth client.
func (a *Account) CreateClient(req *messages.CreateClient, ctx pcluster.GrainContext) (*messages.ClientView, error) {
	err := a.command(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideCreateClient(ctx.Identity(), s, req, now)
	})
	if err != nil {
		return nil, err
	}
	return &messages.ClientView{Client: a.state().GetClient()}, nil
}

// GetClient answers the client, or NOT_FOUND (and the activation stops).
func (a *Account) GetClient(_ *messages.GetClient, ctx pcluster.GrainContext) (*messages.ClientView, error) {
	if err := a.query(); err != nil {
		return nil, err
	}
	if a.state().GetClient() == nil {
		a.stop(ctx)
		return nil, grainError(refuse(messages.ErrorReason_NOT_FOUND, "no such client"))
	}
	return &messages.ClientView{Client: a.state().GetClient()}, nil
}

// GetSigningKeys answers the signing keys, oldest first.
func (a *Account) GetSigningKeys(_ *messages.GetSigningKeys, ctx pcluster.GrainContext) (*messages.SigningKeys, error) {
	if err := a.query(); err != nil {
		return nil, err
	}
	if ctx.Identity() != AccountKeys {
		return nil, grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "not the keys identity"))
	}
	return a.signingKeys(), nil
}

func (a *Account) signingKeys() *messages.SigningKeys {
	return &messages.SigningKeys{Keys: a.state().GetKeys(), Revocations: a.state().GetRevocations()}
}

// RevokeTokens refuses the access tokens of the revocations' ids until their until (keys identity).
func (a *Account) RevokeTokens(req *messages.RevokeTokens, ctx pcluster.GrainContext) (*messages.SigningKeys, error) {
	err := a.command(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideRevokeTokens(ctx.Identity(), s, req, now)
	})
	if err != nil {
		return nil, err
	}
	return a.signingKeys(), nil
}

// RotateSigningKey adds a current key (compare-and-set on the current kid).
func (a *Account) RotateSigningKey(req *messages.RotateSigningKey, ctx pcluster.GrainContext) (*messages.SigningKeys, error) {
	// The command is fingerprinted without the private key.
	fp := proto.Clone(req).(*messages.RotateSigningKey)
	if fp.Key != nil {
		fp.Key.PrivatePkcs8 = nil
	}
	err := a.command(ctx, req.GetCommandId(), fp, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideRotateSigningKey(ctx.Identity(), s, req, now)
	})
	if err != nil {
		return nil, err
	}
	return a.signingKeys(), nil
}

// SaveCode starts a token family with its authorization code.
func (a *Account) SaveCode(req *messages.SaveCode, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if req.GetCodeSignature() == "" || req.GetClientId() == "" || req.GetCodeExpiresAt() == nil {
			return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "code_signature, client_id and code_expires_at are required")
		}
		if s.GetFamily().GetCodeSignature() != "" {
			return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the family has a code")
		}
		return []proto.Message{&messages.CodeSaved{ClientId: req.GetClientId(), Subject: req.GetSubject(), Request: req.GetRequest(),
			CodeSignature: req.GetCodeSignature(), CodeExpiresAt: req.GetCodeExpiresAt(), At: timestamppb.New(now)}}, nil
	})
}

// SavePKCE keeps the PKCE request of the family's code.
func (a *Account) SavePKCE(req *messages.SavePKCE, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if err := checkCode(s, req.GetCodeSignature()); err != nil {
			return nil, err
		}
		if bytes.Equal(s.GetFamily().GetPkceRequest(), req.GetRequest()) {
			return nil, nil
		}
		return []proto.Message{&messages.PKCESaved{Request: req.GetRequest()}}, nil
	})
}

// UseCode marks the authorization code used.
func (a *Account) UseCode(req *messages.UseCode, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if err := checkCode(s, req.GetCodeSignature()); err != nil || s.GetFamily().GetCodeUsed() {
			return nil, err
		}
		return []proto.Message{&messages.CodeUsed{At: timestamppb.New(now)}}, nil
	})
}

// UsePKCE marks the PKCE request used.
func (a *Account) UsePKCE(req *messages.UsePKCE, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if err := checkCode(s, req.GetCodeSignature()); err != nil || s.GetFamily().GetPkceUsed() {
			return nil, err
		}
		return []proto.Message{&messages.PKCEUsed{At: timestamppb.New(now)}}, nil
	})
}

// IssueRefresh adds an active refresh token to the family.
func (a *Account) IssueRefresh(req *messages.IssueRefresh, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideIssueRefresh(s, req, now)
	})
}

// RotateRefresh marks a refresh token used; a second use revokes the family.
func (a *Account) RotateRefresh(req *messages.RotateRefresh, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		return decideRotateRefresh(s, req, now)
	})
}

// RevokeFamily revokes every token of the family.
func (a *Account) RevokeFamily(req *messages.RevokeFamily, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	return a.family(ctx, req.GetCommandId(), req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if s.GetFamily() == nil || s.GetFamily().GetRevoked() {
			return nil, nil
		}
		return []proto.Message{&messages.FamilyRevoked{Reason: req.GetReason(), At: timestamppb.New(now)}}, nil
	})
}

// GetFamily answers the family, or NOT_FOUND (and the activation stops).
func (a *Account) GetFamily(_ *messages.GetFamily, ctx pcluster.GrainContext) (*messages.FamilyView, error) {
	if err := a.query(); err != nil {
		return nil, err
	}
	if a.state().GetFamily() == nil {
		a.stop(ctx)
		return nil, grainError(refuse(messages.ErrorReason_NOT_FOUND, "no such token family"))
	}
	return &messages.FamilyView{Family: a.state().GetFamily()}, nil
}

// family runs a command of a family identity.
func (a *Account) family(ctx pcluster.GrainContext, commandID string, req proto.Message, decide func(*messages.AccountState, time.Time) ([]proto.Message, error)) (*messages.FamilyView, error) {
	err := a.command(ctx, commandID, req, func(s *messages.AccountState, now time.Time) ([]proto.Message, error) {
		if !strings.HasPrefix(ctx.Identity(), AccountFamilyPrefix) {
			return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "not a token family identity")
		}
		return decide(s, now)
	})
	if err != nil {
		return nil, err
	}
	return &messages.FamilyView{Family: a.state().GetFamily()}, nil
}

// ---- Decisions ----

func decideCreateLogin(identity string, s *messages.AccountState, c *messages.CreateLogin, now time.Time) ([]proto.Message, error) {
	switch {
	case c.GetRole() != RoleCustomer && c.GetRole() != RoleDasher:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a login's role is customer or dasher")
	case c.GetSubject() == "" || c.GetPasswordHash() == "":
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "subject and password_hash are required")
	case identity != LoginIdentity(c.GetEmail()):
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "the identity is not the login of this email")
	case !strings.HasPrefix(c.GetPasswordHash(), "$argon2id$"):
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "password_hash is not an argon2id hash")
	}
	if l := s.GetLogin(); l != nil {
		if l.GetSubject() == c.GetSubject() && l.GetRole() == c.GetRole() {
			return nil, nil
		}
		return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "an account with this email exists already")
	}
	return []proto.Message{&messages.LoginCreated{Login: &messages.Login{
		Email: strings.ToLower(strings.TrimSpace(c.GetEmail())), Role: c.GetRole(), Subject: c.GetSubject(),
		PasswordHash: c.GetPasswordHash(), CreatedAt: timestamppb.New(now),
	}}}, nil
}

func decideCreateClient(identity string, s *messages.AccountState, c *messages.CreateClient, now time.Time) ([]proto.Message, error) {
	id := strings.TrimPrefix(identity, AccountClientPrefix)
	switch {
	case !strings.HasPrefix(identity, AccountClientPrefix) || id == "":
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "not a client identity")
	case c.GetRole() != RoleOperator && c.GetRole() != RoleRestaurant:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a client's role is operator or restaurant")
	case c.GetRole() == RoleRestaurant && len(c.GetRestaurants()) == 0:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a restaurant client needs its restaurant ids")
	case len(c.GetSecretSha256()) != 32:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "secret_sha256 must be 32 bytes")
	}
	if cl := s.GetClient(); cl != nil {
		if string(cl.GetSecretSha256()) == string(c.GetSecretSha256()) {
			return nil, nil
		}
		return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the client exists already")
	}
	return []proto.Message{&messages.ClientCreated{Client: &messages.Client{
		ClientId: id, Role: c.GetRole(), Restaurants: c.GetRestaurants(), SecretSha256: c.GetSecretSha256(),
		Name: c.GetName(), CreatedAt: timestamppb.New(now),
	}}}, nil
}

func currentKey(s *messages.AccountState) *messages.SigningKey {
	keys := s.GetKeys()
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].GetRetiredAt() == nil {
			return keys[i]
		}
	}
	return nil
}

// revokedAt is the retirement time of keys revoked by an emergency rotation (retain_ms 0): long enough ago that
// every node treats their tokens as signed by an unpublished key.
var revokedAt = time.Unix(0, 0).UTC()

func decideRotateSigningKey(identity string, s *messages.AccountState, c *messages.RotateSigningKey, now time.Time) ([]proto.Message, error) {
	k := c.GetKey()
	switch {
	case identity != AccountKeys:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "not the keys identity")
	case k.GetKid() == "" || k.GetAlg() == "" || len(k.GetPrivatePkcs8()) == 0:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "the key needs kid, alg and private_pkcs8")
	case k.GetRetiredAt() != nil:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a new key is not retired")
	}
	if cur := currentKey(s); cur.GetKid() != c.GetExpectedKid() {
		return nil, nil // another node rotated first; its key is current
	}
	for _, old := range s.GetKeys() {
		if old.GetKid() == k.GetKid() {
			return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "key %s exists already", k.GetKid())
		}
	}
	key := proto.Clone(k).(*messages.SigningKey)
	key.CreatedAt = timestamppb.New(now)
	if c.GetRetainMs() <= 0 {
		// Emergency: the previous keys stop verifying at once; none is dropped (see the package comment).
		return []proto.Message{&messages.SigningKeyAdded{Key: key, RetireOthersAt: timestamppb.New(revokedAt)}}, nil
	}
	ev := &messages.SigningKeyAdded{Key: key, RetireOthersAt: timestamppb.New(now)}
	retain := time.Duration(c.GetRetainMs()) * time.Millisecond
	// A revoked key was revoked when a key at least as old as the current one was made: it is dropped once that
	// is longer ago than retain (every node has re-read the keys since).
	revokedLongAgo := now.Sub(currentKey(s).GetCreatedAt().AsTime()) > retain
	for _, old := range s.GetKeys() {
		switch {
		case old.GetRetiredAt() == nil:
		case old.GetRetiredAt().AsTime().Equal(revokedAt) && !revokedLongAgo:
		case now.Sub(old.GetRetiredAt().AsTime()) > retain:
			ev.DroppedKids = append(ev.DroppedKids, old.GetKid())
		}
	}
	return []proto.Message{ev}, nil
}

func decideRevokeTokens(identity string, s *messages.AccountState, c *messages.RevokeTokens, now time.Time) ([]proto.Message, error) {
	if identity != AccountKeys {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "not the keys identity")
	}
	if len(c.GetRevocations()) == 0 {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "revocations are required")
	}
	until := make(map[string]time.Time, len(s.GetRevocations()))
	for _, r := range s.GetRevocations() {
		until[r.GetId()] = r.GetUntil().AsTime()
	}
	covered := true
	for _, r := range c.GetRevocations() {
		if r.GetId() == "" || r.GetUntil() == nil {
			return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a revocation needs id and until")
		}
		if u, ok := until[r.GetId()]; !ok || u.Before(r.GetUntil().AsTime()) {
			covered = false
		}
	}
	if covered {
		return nil, nil // a retry, or another node revoked the same tokens
	}
	return []proto.Message{&messages.TokensRevoked{Revocations: c.GetRevocations(), At: timestamppb.New(now)}}, nil
}

func checkCode(s *messages.AccountState, signature string) error {
	if s.GetFamily().GetCodeSignature() == "" || s.GetFamily().GetCodeSignature() != signature {
		return refuse(messages.ErrorReason_NOT_FOUND, "no such authorization code")
	}
	return nil
}

func decideIssueRefresh(s *messages.AccountState, c *messages.IssueRefresh, now time.Time) ([]proto.Message, error) {
	if c.GetSignature() == "" || c.GetClientId() == "" || c.GetExpiresAt() == nil {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "signature, client_id and expires_at are required")
	}
	f := s.GetFamily()
	switch {
	case f.GetRevoked():
		return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "the token family is revoked")
	case f != nil && f.GetClientId() != c.GetClientId():
		return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "the token family belongs to another client")
	}
	for _, t := range f.GetRefreshTokens() {
		if t.GetSignature() == c.GetSignature() {
			return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the refresh token exists already")
		}
	}
	return []proto.Message{&messages.RefreshIssued{ClientId: c.GetClientId(), Subject: c.GetSubject(), Request: c.GetRequest(),
		Token: &messages.RefreshToken{Signature: c.GetSignature(), Active: true, ExpiresAt: c.GetExpiresAt(), IssuedAt: timestamppb.New(now)}}}, nil
}

func decideRotateRefresh(s *messages.AccountState, c *messages.RotateRefresh, now time.Time) ([]proto.Message, error) {
	f := s.GetFamily()
	for _, t := range f.GetRefreshTokens() {
		if t.GetSignature() != c.GetSignature() {
			continue
		}
		switch {
		case f.GetRevoked():
			return nil, nil // the answer shows the family revoked
		case t.GetActive():
			return []proto.Message{&messages.RefreshRotated{Signature: t.GetSignature(), At: timestamppb.New(now)}}, nil
		default:
			return []proto.Message{&messages.FamilyRevoked{Reason: "refresh token reuse", At: timestamppb.New(now)}}, nil
		}
	}
	return nil, refuse(messages.ErrorReason_NOT_FOUND, "no such refresh token")
}

// ---- Fold ----

func applyAccount(s *messages.AccountState, event proto.Message) error {
	switch e := event.(type) {
	case *messages.LoginCreated:
		s.Login = e.GetLogin()
	case *messages.ClientCreated:
		s.Client = e.GetClient()
	case *messages.SigningKeyAdded:
		dropped := map[string]bool{}
		for _, kid := range e.GetDroppedKids() {
			dropped[kid] = true
		}
		keys := s.Keys[:0]
		for _, k := range s.Keys {
			if dropped[k.GetKid()] {
				continue
			}
			// A revocation (retire_others_at at revokedAt) revokes the retired keys too; an ordinary rotation
			// retires only the current key.
			if k.GetRetiredAt() == nil || e.GetRetireOthersAt().AsTime().Equal(revokedAt) {
				k.RetiredAt = e.GetRetireOthersAt()
			}
			keys = append(keys, k)
		}
		s.Keys = append(keys, e.GetKey())
	case *messages.TokensRevoked:
		// Entries past their until cover only expired tokens: dropped, so the list stays bounded.
		at := e.GetAt().AsTime()
		index := map[string]int{}
		kept := make([]*messages.Revocation, 0, len(s.Revocations)+len(e.GetRevocations()))
		for _, r := range s.Revocations {
			if r.GetUntil().AsTime().After(at) {
				index[r.GetId()] = len(kept)
				kept = append(kept, r)
			}
		}
		for _, r := range e.GetRevocations() {
			if i, ok := index[r.GetId()]; ok {
				if r.GetUntil().AsTime().After(kept[i].GetUntil().AsTime()) {
					kept[i] = r
				}
				continue
			}
			index[r.GetId()] = len(kept)
			kept = append(kept, r)
		}
		s.Revocations = kept
	case *messages.CodeSaved:
		s.Family = &messages.TokenFamily{ClientId: e.GetClientId(), Subject: e.GetSubject(), Request: e.GetRequest(),
			CodeSignature: e.GetCodeSignature(), CodeExpiresAt: e.GetCodeExpiresAt(), CreatedAt: e.GetAt()}
	case *messages.PKCESaved:
		s.Family.PkceRequest = e.GetRequest()
	case *messages.CodeUsed:
		s.Family.CodeUsed = true
	case *messages.PKCEUsed:
		s.Family.PkceUsed = true
	case *messages.RefreshIssued:
		if s.Family == nil {
			s.Family = &messages.TokenFamily{ClientId: e.GetClientId(), Subject: e.GetSubject(), CreatedAt: e.GetToken().GetIssuedAt()}
		}
		s.Family.Request = e.GetRequest()
		s.Family.RefreshTokens = append(s.Family.RefreshTokens, e.GetToken())
	case *messages.RefreshRotated:
		for _, t := range s.GetFamily().GetRefreshTokens() {
			if t.GetSignature() == e.GetSignature() {
				t.Active = false
			}
		}
	case *messages.FamilyRevoked:
		s.Family.Revoked = true
		s.Family.RevokedAt = e.GetAt()
		s.Family.RevokeReason = e.GetReason()
		for _, t := range s.Family.GetRefreshTokens() {
			t.Active = false
		}
	default:
		return unexpectedEvent(KindAccount, event)
	}
	return nil
}

var (
	dummyOnce sync.Once
	dummy     string
)

// dummyHash is an argon2id hash (default parameters) of a random password, compared against for unknown emails.
func dummyHash() string {
	dummyOnce.Do(func() {
		h, err := argon2id.CreateHash(fmt.Sprintf("%d", time.Now().UnixNano()), argon2id.DefaultParams)
		if err != nil {
			panic(err) // only fails when the system has no randomness
		}
		dummy = h
	})
	return dummy
}
