package http

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Idempotency-Key (API.md; DESIGN rule 5). Every mutating route takes the header. The first completed response
// to a key is stored and replayed to every retry with the same key and body; the same key with another body (or
// on another route) is 422 IDEMPOTENCY_KEY_REUSED; a retry while the first request is still running is 409
// IDEMPOTENCY_KEY_IN_USE. Keys are scoped per caller (call.client): per principal, and per remote
// address for anonymous callers (sign-up), so two callers' keys never meet and nobody can claim a key for another.
//
// The store records a claim before the handler runs and the response after it. A claim whose request never
// completed (the node died) lapses after Config.IdempotencyLease, and the next retry runs the request again; the
// actors' command ids derive from the key (commandID), so the actor recognises the retried command and does not
// apply it twice. Responses with a 5xx status are not stored: the claim is released and a retry runs again.

// IdempotencyStore keeps Idempotency-Key records. Implementations must be safe for concurrent use, including
// from several nodes sharing one store: two Begin calls for one key must never both return ClaimNew.
type IdempotencyStore interface {
	// Begin looks key up at now. Without a live record it claims the key for fingerprint until now+lease and
	// returns ClaimNew with a token for Complete/Release. With a live claim or stored response it returns
	// ClaimInFlight or ClaimDone (with the response) and the fingerprint it was made with. Records older than the
	// store's retention are treated as absent.
	Begin(ctx context.Context, key string, fingerprint string, now time.Time, lease time.Duration) (Claim, error)
	// Complete stores the response of a claimed key, ending the claim.
	Complete(ctx context.Context, claim Claim, res StoredResponse) error
	// Release drops a claim without a response, so that a retry runs the request again.
	Release(ctx context.Context, claim Claim) error
}

// ClaimState is what Begin found.
type ClaimState int

const (
	ClaimNew      ClaimState = iota // the caller holds the key now and must Complete or Release it
	ClaimInFlight                   // another request holds the key and has not completed
	ClaimDone                       // a response is stored
)

// Claim is Begin's answer.
type Claim struct {
	State       ClaimState
	Fingerprint string         // of the request that claimed the key or stored the response
	Response    StoredResponse // for ClaimDone
	Token       any            // the store's handle for Complete and Release (ClaimNew)
}

// StoredResponse is a response kept for replay.
type StoredResponse struct {
	Status      int       `json:"status"`
	ContentType string    `json:"content_type,omitempty"`
	Location    string    `json:"location,omitempty"`
	Body        []byte    `json:"body,omitempty"`
	At          time.Time `json:"at"`
}

// idempotencyKey returns the request's Idempotency-Key ("" when absent); a key must be 1-255 printable ASCII
// characters.
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, error) {
	h := ctx.Request.Header.Peek("Idempotency-Key")
	if h == nil {
		return "", nil
	}
	key := string(h)
	if len(key) == 0 || len(key) > 255 {
		return "", Errorf(CodeInvalidArgument, "Idempotency-Key must be 1-255 characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", Errorf(CodeInvalidArgument, "Idempotency-Key must be printable ASCII")
		}
	}
	return key, nil
}

// storeKey is the key under which a caller's (scope's) Idempotency-Key is stored.
func storeKey(scope, key string) string {
	sum := sha256.Sum256([]byte(scope + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// fingerprint identifies a request's meaning for key reuse: method, path and body. The fingerprint is kept with
// the record for its retention (24 h), and a hash of a body is as good as the body to whoever can guess the rest
// of it, so secrets never enter it in the clear or as a plain hash: the payment-method route's card number and
// CVC, and the sign-ups' (POST /v1/customers, POST /v1/dashers) password, enter as an HMAC (secretMAC) keyed by
// the caller's scope and the raw Idempotency-Key, which the store does not keep (it keeps storeKey, another hash
// of them). A retry with another password or card is therefore still 422, and whoever reads the journal cannot
// test a guessed password against the record without the Idempotency-Key itself.
func fingerprint(c *call, r *route) string {
	ctx := c.ctx
	body := ctx.PostBody()
	switch r.Pattern {
	case paymentMethodPattern:
		body = redactCard(body, secretMAC(c.client(), c.key))
	case "/v1/customers", "/v1/dashers":
		body = redactPassword(body, secretMAC(c.client(), c.key))
	}
	h := sha256.New()
	h.Write(ctx.Method())
	h.Write([]byte{0})
	h.Write(ctx.Path())
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

const paymentMethodPattern = "/v1/customers/me/payment-method"

// secretMAC returns the function that stands for a secret in a fingerprint: HMAC-SHA256 under a key derived from
// the caller's scope and the raw Idempotency-Key (as sealCipher derives its key, with another label).
func secretMAC(scope, key string) func(secret string) string {
	k := keyFor("platter idempotency fingerprint", scope, key)
	return func(secret string) string {
		m := hmac.New(sha256.New, k[:])
		m.Write([]byte(secret))
		return hex.EncodeToString(m.Sum(nil))
	}
}

// redactCard returns the payment-method body with its card number and CVC replaced by their MAC (mac).
func redactCard(body []byte, mac func(string) string) []byte {
	var req paymentMethodRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return []byte("unreadable") // refused by the handler anyway
	}
	return fmt.Appendf(nil, "%s|%s|%d|%d", mac(req.CardNumber), mac(req.CVC), deref(req.ExpMonth), deref(req.ExpYear))
}

// redactPassword returns a sign-up body with its password replaced by its MAC (mac): the body's members in a
// canonical form (keys sorted).
func redactPassword(body []byte, mac func(string) string) []byte {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return []byte("unreadable") // refused by the handler anyway
	}
	if raw, ok := members["password"]; ok {
		var password string
		if err := json.Unmarshal(raw, &password); err != nil {
			return []byte("unreadable") // refused by the handler anyway
		}
		members["password"] = json.RawMessage(`"` + mac(password) + `"`) // hex: nothing to escape
	}
	out, err := json.Marshal(members)
	if err != nil {
		return []byte("unreadable")
	}
	return out
}

func deref(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

// idempotencyNamespace scopes the UUIDs and command ids derived from Idempotency-Key values.
var idempotencyNamespace = uuid.MustParse("5b0b8bd4-6f43-4f7c-9a3e-6b9a8a7f3c11")

// commandID returns the command id of the actor call named purpose (e.g. "create"): derived from the principal
// and the Idempotency-Key when the request has one, so that a retried request carries the same command id to the
// actor, and fresh otherwise.
func (c *call) commandID(purpose string) string {
	if c.key == "" {
		return uuid.Must(uuid.NewV7()).String()
	}
	return uuid.NewSHA1(idempotencyNamespace, []byte(c.client()+"\x00"+c.key+"\x00"+purpose)).String()
}

// newID returns a new entity id with prefix ("c_", "r_", "d_"): derived from the key when the request has one,
// so that a retried create names the same entity.
func (c *call) newID(prefix string) string {
	if c.key == "" {
		return prefix + uuid.Must(uuid.NewV7()).String()
	}
	return prefix + uuid.NewSHA1(idempotencyNamespace, []byte(c.client()+"\x00"+c.key+"\x00id")).String()
}

// idempotent runs the handler of a mutating route under its Idempotency-Key (see the top of this file). Without a
// key it just runs it.
func (s *Server) idempotent(c *call, r *route) error {
	if c.key == "" {
		return r.handle(c)
	}
	ctx := c.ctx
	key := storeKey(c.client(), c.key)
	fp := fingerprint(c, r)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	claim, err := s.backend.Idempotency.Begin(sctx, key, fp, s.now(), s.cfg.IdempotencyLease)
	cancel()
	if err != nil {
		return &Error{Code: CodeUnavailable, Detail: "the idempotency store is unavailable; retry later", Cause: err}
	}
	switch {
	case claim.Fingerprint != fp:
		return Errorf(CodeIdempotencyKeyReused, "this Idempotency-Key was used with another request")
	case claim.State == ClaimInFlight:
		return Errorf(CodeIdempotencyKeyInUse, "a request with this Idempotency-Key is in progress; retry later")
	case claim.State == ClaimDone:
		res := claim.Response
		if r.sealsReplay() {
			body, err := openResponse(c.client(), c.key, key, res.Body)
			if err != nil {
				return fmt.Errorf("open the stored response of %s: %w", r, err)
			}
			res.Body = body
			ctx.Response.Header.Set("Cache-Control", "no-store")
		}
		s.metrics.idempotentReplays.Inc()
		ctx.SetStatusCode(res.Status)
		if res.ContentType != "" {
			ctx.SetContentType(res.ContentType)
		}
		if res.Location != "" {
			ctx.Response.Header.Set(fasthttp.HeaderLocation, res.Location)
		}
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
		ctx.SetBody(res.Body)
		return nil
	}

	completed := false
	defer func() {
		if completed {
			return
		}
		// The handler failed with a 5xx or panicked: release the key so that a retry runs again.
		rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		if err := s.backend.Idempotency.Release(rctx, claim); err != nil {
			s.log.Warn("release idempotency key", errAttr(err))
		}
	}()
	if err := r.handle(c); err != nil {
		s.fail(ctx, err)
	}
	status := ctx.Response.StatusCode()
	if status >= 500 {
		return nil
	}
	res := StoredResponse{
		Status:      status,
		ContentType: string(ctx.Response.Header.ContentType()),
		Location:    string(ctx.Response.Header.Peek(fasthttp.HeaderLocation)),
		Body:        append([]byte(nil), ctx.Response.Body()...),
		At:          s.now(),
	}
	if r.sealsReplay() {
		sealed, err := sealResponse(c.client(), c.key, key, res.Body)
		if err != nil {
			// Nothing is stored; the deferred release lets a retry run again.
			s.log.Warn("seal idempotent response", slog.String("route", r.String()), errAttr(err))
			return nil
		}
		res.Body = sealed
	}
	cctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.backend.Idempotency.Complete(cctx, claim, res); err != nil {
		// The client gets its answer; the deferred release lets a retry run the request again, and the actor
		// recognises the command id.
		s.log.Warn("store idempotent response", slog.String("route", r.String()), errAttr(err))
		return nil
	}
	completed = true
	return nil
}

// sealResponse encrypts the body of a stored response whose route answers a secret (route.sealsReplay) with
// AES-256-GCM under a key derived from the caller's scope and the raw Idempotency-Key. The store keeps only
// storeKey, a different hash of the same inputs, so whoever reads the journal cannot decrypt the answer without
// the Idempotency-Key itself (clients should use random keys, e.g. UUIDs). stored (the record's key) is bound in
// as additional data, so a sealed body cannot be moved to another record.
func sealResponse(scope, key, stored string, body []byte) ([]byte, error) {
	aead, err := sealCipher(scope, key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(body)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal response: %w", err)
	}
	return aead.Seal(nonce, nonce, body, []byte(stored)), nil
}

// openResponse reverses sealResponse.
func openResponse(scope, key, stored string, sealed []byte) ([]byte, error) {
	aead, err := sealCipher(scope, key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("open response: sealed body too short")
	}
	body, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(stored))
	if err != nil {
		return nil, fmt.Errorf("open response: %w", err)
	}
	return body, nil
}

func sealCipher(scope, key string) (cipher.AEAD, error) {
	k := keyFor("platter idempotency seal", scope, key)
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// keyFor derives a 256-bit key for one use (label) from the caller's scope and the raw Idempotency-Key, which the
// store never holds: what it protects can be read back only by a caller presenting the same key.
func keyFor(label, scope, key string) [32]byte {
	return sha256.Sum256([]byte(label + "\x00" + scope + "\x00" + key))
}
