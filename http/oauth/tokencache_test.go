package oauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// Tests of the verified-token cache of Authenticate, on a fake "keys" Account actor and an injected clock: every
// answer of a cached token must be the answer verify would give at that moment.

// keyActors is the signing-key store of the Account actor "keys": GetSigningKeys answers the keys the test set;
// RotateSigningKey appends the new key and retires the previous one. fail, when set, fails every call.
type keyActors struct {
	mu    sync.Mutex
	keys  []*messages.SigningKey
	revs  []*messages.Revocation
	now   func() time.Time
	calls int
	fail  error
}

func (a *keyActors) Call(_ context.Context, kind, identity, method string, req proto.Message) (proto.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if kind != actors.KindAccount || identity != actors.AccountKeys {
		return nil, fmt.Errorf("unexpected call %s/%s.%s", kind, identity, method)
	}
	if a.fail != nil {
		return nil, a.fail
	}
	switch r := req.(type) {
	case *messages.GetSigningKeys:
	case *messages.RevokeTokens:
		a.revs = append(a.revs, r.GetRevocations()...)
	case *messages.RotateSigningKey:
		now := timestamppb.New(a.now())
		for _, k := range a.keys {
			if k.GetRetiredAt() == nil {
				k.RetiredAt = now
			}
		}
		k := proto.Clone(r.GetKey()).(*messages.SigningKey)
		k.CreatedAt = now
		a.keys = append(a.keys, k)
	default:
		return nil, fmt.Errorf("unexpected method %s", method)
	}
	out := &messages.SigningKeys{}
	for _, r := range a.revs {
		out.Revocations = append(out.Revocations, proto.Clone(r).(*messages.Revocation))
	}
	for _, k := range a.keys {
		out.Keys = append(out.Keys, proto.Clone(k).(*messages.SigningKey))
	}
	return out, nil
}

func (a *keyActors) PollFeed(context.Context, string, string, *messages.PollFeed) (*messages.FeedPage, error) {
	return nil, errors.New("no feeds")
}

// drop removes every key from the store (its state was lost).
func (a *keyActors) drop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys = nil
}

func (a *keyActors) setFail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = err
}

type cacheFixture struct {
	s      *Server
	clock  *ManualClock
	actors *keyActors
}

func newCacheFixture(tb testing.TB, cfg Config) *cacheFixture {
	tb.Helper()
	f := &cacheFixture{clock: NewManualClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))}
	f.actors = &keyActors{now: f.clock.Now}
	cfg.Now = f.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewServer(cfg, f.actors)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	f.s = s
	return f
}

// claimsAt are valid operator claims issued at now for ttl.
func claimsAt(now time.Time, ttl time.Duration) accessClaims {
	return accessClaims{
		Claims: jwt.Claims{Issuer: "platter", Subject: "platter-operator", Audience: jwt.Audience{"platter-api"},
			Expiry: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: fmt.Sprint(now.UnixNano())},
		ClientID: "platter-operator", Scope: Scope, Role: actors.RoleOperator,
	}
}

// mint signs c with key (the current signing key when key is nil).
func (f *cacheFixture) mint(tb testing.TB, c any, key *parsedKey) string {
	tb.Helper()
	if key == nil {
		k, err := f.s.keys.signer(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		key = &k
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: signingAlg, Key: key.private},
		(&jose.SignerOptions{}).WithType(tokenType).WithHeader("kid", key.kid))
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// auth runs Authenticate on a request bearing token.
func (f *cacheFixture) auth(token string) (http.Principal, error) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+token)
	return f.s.Authenticate(&ctx)
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		size    int
		revoked int // revoked families on the list (none of them the token's)
	}{{"NoCache", -1, 0}, {"Cache", 0, 0}, {"CacheRevoked1000", 0, 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newCacheFixture(b, Config{TokenCacheSize: tc.size})
			for i := range tc.revoked {
				if err := f.s.keys.revoke(context.Background(), fmt.Sprintf("family-%d", i)); err != nil {
					b.Fatal(err)
				}
			}
			tok := f.mint(b, claimsAt(f.clock.Now(), 10*time.Minute), nil)
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+tok)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.s.Authenticate(&ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// newKey returns a fresh Ed25519 signing key as the store keeps it.
func newKey(tb testing.TB, kid string) (*messages.SigningKey, parsedKey) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return &messages.SigningKey{Kid: kid, Alg: string(signingAlg), PrivatePkcs8: der}, parsedKey{kid: kid, private: priv}
}

// want checks that token is accepted (as the operator) or refused with 401.
func (f *cacheFixture) want(t *testing.T, token string, ok bool, what string) {
	t.Helper()
	p, err := f.auth(token)
	switch {
	case ok && err != nil:
		t.Fatalf("%s: refused: %v", what, err)
	case ok && (p.Role != http.RoleOperator || p.ID != "platter-operator"):
		t.Fatalf("%s: principal %+v", what, p)
	case !ok && err == nil:
		t.Fatalf("%s: accepted as %+v", what, p)
	case !ok:
		var he *http.Error
		if !errors.As(err, &he) || he.Code != http.CodeUnauthenticated {
			t.Fatalf("%s: error %v, want UNAUTHENTICATED", what, err)
		}
	}
}

func (f *cacheFixture) stats() (hits, misses uint64) {
	return f.s.cache.hits.Load(), f.s.cache.misses.Load()
}

func TestTokenCacheHitAndMiss(t *testing.T) {
	f := newCacheFixture(t, Config{})
	tok := f.mint(t, claimsAt(f.clock.Now(), 5*time.Minute), nil)
	f.want(t, tok, true, "first use")
	if h, m := f.stats(); h != 0 || m != 1 || f.s.cache.len() != 1 {
		t.Fatalf("after the first use: %d hits, %d misses, %d entries; want 0, 1, 1", h, m, f.s.cache.len())
	}
	for range 3 {
		f.want(t, tok, true, "cached")
	}
	if h, m := f.stats(); h != 3 || m != 1 {
		t.Fatalf("after 3 more uses: %d hits, %d misses; want 3, 1", h, m)
	}
	// A restaurant principal's list is the caller's own copy: changing it does not change the cached answer.
	rc := claimsAt(f.clock.Now(), 5*time.Minute)
	rc.Role, rc.Subject, rc.ClientID, rc.Restaurants = actors.RoleRestaurant, "rs_1", "rs_1", []string{"r_1"}
	rtok := f.mint(t, rc, nil)
	for i := range 2 {
		p, err := f.auth(rtok)
		if err != nil || len(p.Restaurants) != 1 || p.Restaurants[0] != "r_1" {
			t.Fatalf("restaurant token, use %d: %+v %v", i, p, err)
		}
		p.Restaurants[0] = "r_other"
	}
}

// TestTokenCacheHonoursTime: a cached token is accepted exactly while verify would accept it (exp with ClockSkew
// leeway), and a token refused as not yet valid is not remembered as refused.
func TestTokenCacheHonoursTime(t *testing.T) {
	f := newCacheFixture(t, Config{ClockSkew: 30 * time.Second})
	start := f.clock.Now()
	tok := f.mint(t, claimsAt(start, 5*time.Minute), nil)
	f.want(t, tok, true, "fresh")
	f.clock.Advance(5*time.Minute + 29*time.Second)
	f.want(t, tok, true, "within the leeway after exp")
	if h, _ := f.stats(); h != 1 {
		t.Fatalf("%d hits, want 1 (the second use is cached)", h)
	}
	f.clock.Advance(2 * time.Second)
	f.want(t, tok, false, "past exp and the leeway")
	if f.s.cache.len() != 0 {
		t.Fatalf("the expired token is still cached (%d entries)", f.s.cache.len())
	}
	f.want(t, tok, false, "past exp, again")

	// nbf in the future: refused, then accepted once it is reached (a refusal is never cached).
	now := f.clock.Now()
	c := claimsAt(now, 5*time.Minute)
	c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
	early := f.mint(t, c, nil)
	f.want(t, early, false, "before nbf")
	f.clock.Advance(time.Minute)
	f.want(t, early, true, "at nbf")

	// A clock that steps back before a cached token's iat (beyond the leeway) refuses it, as verify would.
	f.clock.Advance(-10 * time.Minute)
	f.want(t, early, false, "clock before iat")
}

// TestTokenCacheHonoursKeyring: a cached token whose key is no longer published is refused.
func TestTokenCacheHonoursKeyring(t *testing.T) {
	t.Run("retired key past its retention", func(t *testing.T) {
		// Tokens live at most MaxAccessTokenTTL (15 min) while a retired key verifies for AccessTokenTTL plus twice
		// ClockSkew (6 min here): a 15-minute token of a key retired early outlives its key.
		f := newCacheFixture(t, Config{AccessTokenTTL: 5 * time.Minute, ClockSkew: 30 * time.Second})
		tok := f.mint(t, claimsAt(f.clock.Now(), 15*time.Minute), nil)
		f.want(t, tok, true, "before rotation")
		if _, err := f.s.RotateSigningKey(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(5*time.Minute + 59*time.Second)
		f.want(t, tok, true, "retired key within its retention")
		f.clock.Advance(2 * time.Second)
		f.want(t, tok, false, "retired key past its retention")
		f.want(t, f.mint(t, claimsAt(f.clock.Now(), 5*time.Minute), nil), true, "a token of the new key")
	})
	t.Run("kid published with another key", func(t *testing.T) {
		// The store's kids are random UUIDs, so this cannot happen but by a bug or a tampered store; the cache
		// must not answer for a key the keyring no longer holds.
		f := newCacheFixture(t, Config{})
		cur, err := f.s.keys.signer(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tok := f.mint(t, claimsAt(f.clock.Now(), 5*time.Minute), nil)
		f.want(t, tok, true, "before the key changes")
		other, _ := newKey(t, cur.kid)
		other.CreatedAt = timestamppb.New(f.clock.Now())
		if err := f.s.keys.set([]*messages.SigningKey{other}, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		f.want(t, tok, false, "the kid names another key")
	})
	t.Run("keys lost by the store", func(t *testing.T) {
		// A key the store no longer lists keeps verifying as if retired when the node re-read the keys (keyring.set):
		// the cache follows verify, and refuses once that retention ends.
		f := newCacheFixture(t, Config{AccessTokenTTL: 5 * time.Minute, ClockSkew: 30 * time.Second, KeyRefresh: time.Minute})
		tok := f.mint(t, claimsAt(f.clock.Now(), 15*time.Minute), nil)
		f.want(t, tok, true, "before the loss")
		f.actors.drop()
		f.clock.Advance(2 * time.Minute)
		if _, err := f.s.keys.signer(context.Background()); err != nil { // re-reads: a new key, the old one retired now
			t.Fatal(err)
		}
		f.want(t, tok, true, "lost key within its retention")
		f.clock.Advance(6*time.Minute + time.Second)
		f.want(t, tok, false, "lost key past its retention")
	})
}

// TestTokenCacheNeverCachesRefusals: a refused token is never remembered, and a cached good token answers for
// nothing but its own bytes.
func TestTokenCacheNeverCachesRefusals(t *testing.T) {
	f := newCacheFixture(t, Config{})
	now := f.clock.Now()
	_, stranger := newKey(t, "")
	cur, err := f.s.keys.signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stranger.kid = cur.kid
	forged := f.mint(t, claimsAt(now, 5*time.Minute), &stranger)
	good := f.mint(t, claimsAt(now, 5*time.Minute), nil)
	f.want(t, forged, false, "forged, before the good token")
	f.want(t, good, true, "good")
	f.want(t, forged, false, "forged, after the good token")
	f.want(t, good+" ", true, "good with trailing space")
	tampered := []byte(good)
	tampered[len(tampered)-2] ^= 1
	f.want(t, string(tampered), false, "good with a flipped signature bit")
	if n := f.s.cache.len(); n != 1 {
		t.Fatalf("%d entries, want only the good token's", n)
	}

	// Keys that cannot be read: the answer is UNAVAILABLE or NOT_READY, not 401, and nothing is cached.
	g := newCacheFixture(t, Config{})
	tok := g.mint(t, claimsAt(now, 5*time.Minute), &stranger) // an unknown kid makes the node re-read its keys
	other := g.mint(t, claimsAt(now, 5*time.Minute), nil)
	g.actors.setFail(http.Errorf(http.CodeUnavailable, "the cluster is unavailable"))
	g.s.keys.mu.Lock()
	g.s.keys.loadedAt = time.Time{} // as before the first read
	g.s.keys.mu.Unlock()
	if _, err := g.auth(tok); err == nil || !isCode(err, http.CodeUnavailable) {
		t.Fatalf("keys unavailable: %v, want UNAVAILABLE", err)
	}
	if n := g.s.cache.len(); n != 0 {
		t.Fatalf("%d entries after an unavailable keyring", n)
	}
	g.actors.setFail(nil)
	g.want(t, other, true, "after the keys are back")
}

// TestTokenCacheBounded: the cache keeps at most TokenCacheSize tokens, dropping the least recently used, and an
// evicted token is verified again.
func TestTokenCacheBounded(t *testing.T) {
	f := newCacheFixture(t, Config{TokenCacheSize: 2})
	now := f.clock.Now()
	var toks []string
	for i := range 3 {
		toks = append(toks, f.mint(t, claimsAt(now.Add(time.Duration(i)*time.Second), 5*time.Minute), nil))
	}
	f.want(t, toks[0], true, "a")
	f.want(t, toks[1], true, "b")
	f.want(t, toks[0], true, "a again (now the most recent)")
	f.want(t, toks[2], true, "c evicts b")
	if n := f.s.cache.len(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	h0, m0 := f.stats()
	f.want(t, toks[0], true, "a is still cached")
	f.want(t, toks[1], true, "b is verified again")
	if h, m := f.stats(); h-h0 != 1 || m-m0 != 1 {
		t.Fatalf("%d hits and %d misses, want 1 and 1", h-h0, m-m0)
	}

	off := newCacheFixture(t, Config{TokenCacheSize: -1})
	if off.s.cache != nil {
		t.Fatal("a negative TokenCacheSize keeps a cache")
	}
	off.want(t, off.mint(t, claimsAt(now, 5*time.Minute), nil), true, "without a cache")
}

// TestTokenCacheConcurrent: goroutines authenticate a mix of good, forged and expiring tokens while the clock
// moves and the key rotates; every answer is the one verify gives (run with -race).
func TestTokenCacheConcurrent(t *testing.T) {
	f := newCacheFixture(t, Config{TokenCacheSize: 8, AccessTokenTTL: 5 * time.Minute, ClockSkew: 30 * time.Second})
	now := f.clock.Now()
	cur, err := f.s.keys.signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, stranger := newKey(t, "")
	stranger.kid = cur.kid
	var good, bad []string
	for i := range 16 {
		good = append(good, f.mint(t, claimsAt(now.Add(time.Duration(i)*time.Millisecond), 14*time.Minute), nil))
		bad = append(bad, f.mint(t, claimsAt(now.Add(time.Duration(i)*time.Millisecond), 14*time.Minute), &stranger))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				tok := good[(g+i)%len(good)]
				if _, err := f.auth(tok); err != nil {
					errs <- fmt.Errorf("good token refused: %w", err)
					return
				}
				if p, err := f.auth(bad[(g+i)%len(bad)]); err == nil {
					errs <- fmt.Errorf("forged token accepted as %+v", p)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			f.clock.Advance(time.Second)
			if _, err := f.s.RotateSigningKey(context.Background(), false); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := f.s.cache.len(); n > 8 {
		t.Fatalf("%d entries, more than TokenCacheSize", n)
	}
	// Past the good tokens' exp, every one of them is refused, cached or not.
	f.clock.Advance(15 * time.Minute)
	for i, tok := range good {
		f.want(t, tok, false, fmt.Sprintf("good token %d after exp", i))
	}
}

// TestVerifierLearnsOfRevocation: a node that only verifies tokens re-reads the keys once they are older than
// KeyRefresh, so another node's revocation (the key retired at the Unix epoch, a new current key) refuses the
// key's tokens here too, cached ones included; until then this node cannot know.
func TestVerifierLearnsOfRevocation(t *testing.T) {
	f := newCacheFixture(t, Config{KeyRefresh: time.Minute})
	tok := f.mint(t, claimsAt(f.clock.Now(), 10*time.Minute), nil)
	f.want(t, tok, true, "before the revocation")
	f.want(t, tok, true, "cached")

	// Another node revokes every key (actors/account.go, retain_ms 0).
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f.actors.mu.Lock()
	for _, k := range f.actors.keys {
		k.RetiredAt = timestamppb.New(time.Unix(0, 0))
	}
	f.actors.keys = append(f.actors.keys, &messages.SigningKey{Kid: "k-after-revocation", Alg: "EdDSA", PrivatePkcs8: der,
		CreatedAt: timestamppb.New(f.clock.Now())})
	f.actors.mu.Unlock()

	f.clock.Advance(59 * time.Second)
	f.want(t, tok, true, "within KeyRefresh of this node's last read")
	f.clock.Advance(time.Second)
	f.want(t, tok, false, "KeyRefresh after this node's last read")
}

// TestRevokedFamilyRefused: a revoked family's tokens are refused at once on the revoking node, cached ones
// included, and other families' are not; another node (its own Server over the same actors) refuses them once it
// re-reads the keys (KeyRefresh); the entries are dropped once past their until, when every token they cover has
// expired.
func TestRevokedFamilyRefused(t *testing.T) {
	cfg := Config{KeyRefresh: time.Minute, AccessTokenTTL: 10 * time.Minute, ClockSkew: 30 * time.Second}
	f := newCacheFixture(t, cfg)
	family := func(fid, jti string) string {
		c := claimsAt(f.clock.Now(), 10*time.Minute)
		c.FamilyID, c.ID = fid, jti
		return f.mint(t, c, nil)
	}
	tok1, tok2 := family("fam-1", "j1"), family("fam-1", "j2")
	other := family("fam-2", "j3")
	legacy := family("", "j-legacy") // issued before tokens carried fid: revoked by its jti
	// Another node over the same Account actors, which has read (and cached) the tokens already.
	cfg.Now, cfg.Logger = f.clock.Now, f.s.log
	b, err := NewServer(cfg, f.actors)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	onB := func(tok string) bool {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+tok)
		_, err := b.Authenticate(&ctx)
		return err == nil
	}
	for _, tok := range []string{tok1, tok2, other, legacy} {
		f.want(t, tok, true, "before the revocation")
		f.want(t, tok, true, "cached")
		if !onB(tok) {
			t.Fatal("node B before the revocation refused a token")
		}
	}

	if err := f.s.keys.revoke(context.Background(), "fam-1", "j-legacy"); err != nil {
		t.Fatal(err)
	}
	f.want(t, tok1, false, "revoked family, cached token")
	f.want(t, tok2, false, "revoked family, its other token")
	f.want(t, legacy, false, "revoked jti of a token without fid")
	f.want(t, other, true, "another family")
	f.clock.Advance(59 * time.Second)
	if !onB(tok1) {
		t.Fatal("node B refused before re-reading the keys: it cannot know yet")
	}
	f.clock.Advance(time.Second)
	if onB(tok1) || onB(legacy) {
		t.Fatal("node B accepted a revoked token KeyRefresh after its last read")
	}
	if !onB(other) {
		t.Fatal("node B refused another family's token")
	}

	// The entries cover the tokens until AccessTokenTTL + 2 ClockSkew after the revocation; then nothing the
	// list named can be accepted anyway, and the next read drops them.
	if m := *f.s.keys.revoked.Load(); len(m) != 2 {
		t.Fatalf("revocation list %v, want fam-1 and j-legacy", m)
	}
	f.clock.Advance(cfg.AccessTokenTTL + 2*cfg.ClockSkew)
	if err := f.s.keys.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := *f.s.keys.revoked.Load(); len(m) != 0 {
		t.Fatalf("revocation list %v after every token it covers expired, want empty", m)
	}
	f.want(t, tok1, false, "expired")
}
