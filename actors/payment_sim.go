package actors

// PaymentSim: the built-in simulated PaymentGateway. Nodes use it until a real processor is wired in; tests use its
// test card numbers to drive declines and transient failures through the workflow.
//
// Test card numbers (spaces and dashes are ignored; any expiry in the future and a 3-digit CVC, 4 for Amex):
//
//	number               brand       behaviour
//	-------------------  ----------  ------------------------------------------------------------------------------
//	4242 4242 4242 4242  visa        approved
//	5555 5555 5555 4444  mastercard  approved
//	3782 822463 10005    amex        approved
//	4000 0000 0000 0002  visa        Tokenize declined (card declined)            → PAYMENT_DECLINED
//	4000 0000 0000 0069  visa        Tokenize declined (expired card)             → PAYMENT_DECLINED
//	4000 0000 0000 0127  visa        Tokenize declined (incorrect CVC)            → PAYMENT_DECLINED
//	4000 0000 0000 0341  visa        tokenizes; Authorize declined                → order rejected, PAYMENT_DECLINED
//	4000 0000 0000 9995  visa        tokenizes; Authorize declined (insufficient funds), as 0341
//	4000 0000 0000 0119  visa        tokenizes; Authorize fails transiently (ErrPaymentUnavailable) on the first
//	                                 PaymentSimConfig.TransientFailures attempts of each idempotency key, then
//	                                 approves → the order retries
//	4000 0000 0000 0267  visa        tokenizes and authorises; Capture, Void and Refund fail transiently on the
//	                                 first TransientFailures attempts of each idempotency key → settlement retried
//	4000 0000 0000 0309  visa        tokenizes; every Authorize fails transiently (the processor is down)
//	any other number that passes the Luhn check: approved, brand from the prefix (4 visa, 51-55 and 2221-2720
//	mastercard, 34 and 37 amex, otherwise "card").
//
// A card expired at Tokenize time is declined (PAYMENT_DECLINED); malformed input is INVALID_ARGUMENT.
//
// Tokens and authorisation ids carry what the simulator needs to serve them (the card's behaviour; the authorised
// amount), so a node restarted with a fresh simulator still serves the tokens its customers stored. Authorize
// derives the authorisation id from the idempotency key, so a retried authorisation returns the same id, also
// across restarts. Within one process the simulator also keeps a ledger (Authorization) that enforces the money
// rules: capture at most the authorised amount and at most once, no capture after a void, refund at most what was
// captured; a repeated call with the same idempotency key has no second effect, and the same key used for a
// different request is refused.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/platterhq/platter/messages"
)

// Test card numbers of PaymentSim (see the table at the top of payment_sim.go).
const (
	TestCardVisa                = "4242424242424242"
	TestCardMastercard          = "5555555555554444"
	TestCardAmex                = "378282246310005"
	TestCardDeclined            = "4000000000000002"
	TestCardExpired             = "4000000000000069"
	TestCardIncorrectCVC        = "4000000000000127"
	TestCardAuthorizeDeclined   = "4000000000000341"
	TestCardInsufficientFunds   = "4000000000009995"
	TestCardAuthorizeTransient  = "4000000000000119"
	TestCardSettlementTransient = "4000000000000267"
	TestCardProcessorDown       = "4000000000000309"
)

// PaymentSimConfig tunes PaymentSim.
type PaymentSimConfig struct {
	// TransientFailures is how many attempts per idempotency key the transient test cards fail before they
	// succeed. Default 2.
	TransientFailures int
	// Now is the clock for card expiry and PaymentMethod.AddedAt. Default time.Now.
	Now func() time.Time
}

// DefaultSimTransientFailures is the default of PaymentSimConfig.TransientFailures.
const DefaultSimTransientFailures = 2

// simBehaviour is what a test card does; it travels inside the token.
type simBehaviour string

const (
	simApprove           simBehaviour = "ok"
	simDeclineAuthorize  simBehaviour = "decline"
	simTransientAuth     simBehaviour = "flaky"
	simTransientSettle   simBehaviour = "flakysettle"
	simProcessorDown     simBehaviour = "down"
	simTokenPrefix                    = "tok_sim_"
	simAuthPrefix                     = "auth_sim_"
	simMaxAuthorizeCents              = 100_000_000 // a sanity cap: one million in cents
)

// SimAuthorization is the simulator's ledger entry of one authorisation.
type SimAuthorization struct {
	ID              string
	Token           string
	AuthorizedCents int64
	CapturedCents   int64
	RefundedCents   int64
	Voided          bool
}

// PaymentSim is the simulated PaymentGateway. Safe for concurrent use.
type PaymentSim struct {
	cfg PaymentSimConfig

	mu       sync.Mutex
	auths    map[string]*SimAuthorization
	results  map[string]simResult // idempotency key → the final answer of its first completed call
	attempts map[string]int       // idempotency key → attempts that failed transiently
}

// simResult is a remembered final answer: the request it answered (to refuse a reused key) and its outcome.
type simResult struct {
	request string
	authID  string
	err     error
}

var _ PaymentGateway = (*PaymentSim)(nil)

// NewPaymentSim returns a simulator with an empty ledger.
func NewPaymentSim(cfg PaymentSimConfig) *PaymentSim {
	if cfg.TransientFailures <= 0 {
		cfg.TransientFailures = DefaultSimTransientFailures
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &PaymentSim{
		cfg:      cfg,
		auths:    make(map[string]*SimAuthorization),
		results:  make(map[string]simResult),
		attempts: make(map[string]int),
	}
}

// Tokenize validates a card and returns its token and public facts.
func (g *PaymentSim) Tokenize(_ context.Context, card Card) (PaymentMethod, error) {
	number := strings.NewReplacer(" ", "", "-", "").Replace(card.Number)
	if len(number) < 12 || len(number) > 19 || strings.Trim(number, "0123456789") != "" || !luhnValid(number) {
		return PaymentMethod{}, refuse(messages.ErrorReason_INVALID_ARGUMENT, "card_number is not a valid card number")
	}
	if card.ExpMonth < 1 || card.ExpMonth > 12 {
		return PaymentMethod{}, refuse(messages.ErrorReason_INVALID_ARGUMENT, "exp_month must be 1-12")
	}
	if card.ExpYear < 2000 || card.ExpYear > 2199 {
		return PaymentMethod{}, refuse(messages.ErrorReason_INVALID_ARGUMENT, "exp_year must be a four-digit year")
	}
	brand := cardBrand(number)
	cvcLen := 3
	if brand == "amex" {
		cvcLen = 4
	}
	if len(card.CVC) != cvcLen || strings.Trim(card.CVC, "0123456789") != "" {
		return PaymentMethod{}, refuse(messages.ErrorReason_INVALID_ARGUMENT, "cvc must be %d digits", cvcLen)
	}
	now := g.cfg.Now()
	// A card is valid through the last day of its expiry month.
	if !now.Before(time.Date(card.ExpYear, time.Month(card.ExpMonth)+1, 1, 0, 0, 0, 0, time.UTC)) {
		return PaymentMethod{}, refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card has expired")
	}
	behaviour := simApprove
	switch number {
	case TestCardDeclined:
		return PaymentMethod{}, refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card was declined")
	case TestCardExpired:
		return PaymentMethod{}, refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card has expired")
	case TestCardIncorrectCVC:
		return PaymentMethod{}, refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card's security code is incorrect")
	case TestCardAuthorizeDeclined, TestCardInsufficientFunds:
		behaviour = simDeclineAuthorize
	case TestCardAuthorizeTransient:
		behaviour = simTransientAuth
	case TestCardSettlementTransient:
		behaviour = simTransientSettle
	case TestCardProcessorDown:
		behaviour = simProcessorDown
	}
	return PaymentMethod{
		Token:    simTokenPrefix + string(behaviour) + "_" + randomHex(8),
		Brand:    brand,
		Last4:    number[len(number)-4:],
		ExpMonth: card.ExpMonth,
		ExpYear:  card.ExpYear,
		AddedAt:  now,
	}, nil
}

// Authorize holds amountCents on the card behind token. The authorisation id is derived from idempotencyKey.
func (g *PaymentSim) Authorize(_ context.Context, token string, amountCents int64, idempotencyKey string) (string, error) {
	behaviour, ok := tokenBehaviour(token)
	switch {
	case !ok:
		return "", refuse(messages.ErrorReason_INVALID_ARGUMENT, "unknown payment token")
	case amountCents <= 0 || amountCents > simMaxAuthorizeCents:
		return "", refuse(messages.ErrorReason_INVALID_ARGUMENT, "amount must be 1-%d cents", simMaxAuthorizeCents)
	case idempotencyKey == "":
		return "", refuse(messages.ErrorReason_INVALID_ARGUMENT, "an idempotency key is required")
	}
	request := fmt.Sprintf("authorize %s %d", token, amountCents)
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, done, err := g.replay(idempotencyKey, request); done {
		return r.authID, err
	}
	switch behaviour {
	case simProcessorDown:
		return "", fmt.Errorf("authorize: %w", ErrPaymentUnavailable)
	case simTransientAuth:
		if g.failTransiently(idempotencyKey) {
			return "", fmt.Errorf("authorize: %w", ErrPaymentUnavailable)
		}
	case simDeclineAuthorize:
		err := refuse(messages.ErrorReason_PAYMENT_DECLINED, "the card was declined")
		g.results[idempotencyKey] = simResult{request: request, err: err}
		return "", err
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	id := simAuthPrefix + string(behaviour) + "_" + strconv.FormatInt(amountCents, 10) + "_" + hex.EncodeToString(sum[:8])
	g.auths[id] = &SimAuthorization{ID: id, Token: token, AuthorizedCents: amountCents}
	g.results[idempotencyKey] = simResult{request: request, authID: id}
	return id, nil
}

// Capture takes amountCents (at most the authorised amount) of an authorisation, once.
func (g *PaymentSim) Capture(_ context.Context, authID string, amountCents int64, idempotencyKey string) error {
	return g.settle(authID, idempotencyKey, fmt.Sprintf("capture %s %d", authID, amountCents), func(a *SimAuthorization) error {
		switch {
		case amountCents <= 0 || amountCents > a.AuthorizedCents:
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "capture amount must be 1-%d cents", a.AuthorizedCents)
		case a.Voided:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the authorisation was voided")
		case a.CapturedCents > 0:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the authorisation was captured already")
		}
		a.CapturedCents = amountCents
		return nil
	})
}

// Void releases an authorisation that was not captured.
func (g *PaymentSim) Void(_ context.Context, authID string, idempotencyKey string) error {
	return g.settle(authID, idempotencyKey, "void "+authID, func(a *SimAuthorization) error {
		switch {
		case a.CapturedCents > 0:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the authorisation was captured; refund it instead")
		case a.Voided:
			return refuse(messages.ErrorReason_FAILED_PRECONDITION, "the authorisation was voided already")
		}
		a.Voided = true
		return nil
	})
}

// Refund returns amountCents of a captured authorisation (several refunds may add up to the captured amount).
func (g *PaymentSim) Refund(_ context.Context, authID string, amountCents int64, idempotencyKey string) error {
	return g.settle(authID, idempotencyKey, fmt.Sprintf("refund %s %d", authID, amountCents), func(a *SimAuthorization) error {
		if amountCents <= 0 || amountCents > a.CapturedCents-a.RefundedCents {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "refund amount must be 1-%d cents", a.CapturedCents-a.RefundedCents)
		}
		a.RefundedCents += amountCents
		return nil
	})
}

// Authorization returns the ledger entry of authID as this simulator knows it (only authorisations made or used
// through this instance).
func (g *PaymentSim) Authorization(authID string) (SimAuthorization, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.auths[authID]
	if !ok {
		return SimAuthorization{}, false
	}
	return *a, true
}

// Authorizations returns every ledger entry, in no particular order.
func (g *PaymentSim) Authorizations() []SimAuthorization {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]SimAuthorization, 0, len(g.auths))
	for _, a := range g.auths {
		out = append(out, *a)
	}
	return out
}

// settle runs one money-moving call on an authorisation: idempotency, the card's transient failures, then apply.
func (g *PaymentSim) settle(authID, idempotencyKey, request string, apply func(*SimAuthorization) error) error {
	behaviour, amount, ok := parseAuthID(authID)
	switch {
	case !ok:
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "unknown authorisation")
	case idempotencyKey == "":
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "an idempotency key is required")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, done, err := g.replay(idempotencyKey, request); done {
		return err
	}
	if behaviour == simTransientSettle && g.failTransiently(idempotencyKey) {
		return fmt.Errorf("%s: %w", strings.Fields(request)[0], ErrPaymentUnavailable)
	}
	a, ok := g.auths[authID]
	if !ok {
		// Authorised before this simulator started (a restarted node): the id carries the amount.
		a = &SimAuthorization{ID: authID, AuthorizedCents: amount}
		g.auths[authID] = a
	}
	err := apply(a)
	g.results[idempotencyKey] = simResult{request: request, err: err}
	return err
}

// replay answers a call whose idempotency key completed before: the same answer for the same request, a refusal
// for a different one. done is false for a key never completed. Callers hold g.mu.
func (g *PaymentSim) replay(key, request string) (simResult, bool, error) {
	r, ok := g.results[key]
	switch {
	case !ok:
		return simResult{}, false, nil
	case r.request != request:
		return r, true, refuse(messages.ErrorReason_INVALID_ARGUMENT, "idempotency key %q was used for a different request", key)
	}
	return r, true, r.err
}

// failTransiently counts an attempt of key and reports whether it fails (the first TransientFailures do). Callers
// hold g.mu.
func (g *PaymentSim) failTransiently(key string) bool {
	if g.attempts[key] >= g.cfg.TransientFailures {
		return false
	}
	g.attempts[key]++
	return true
}

func tokenBehaviour(token string) (simBehaviour, bool) {
	rest, ok := strings.CutPrefix(token, simTokenPrefix)
	if !ok {
		return "", false
	}
	b, _, ok := strings.Cut(rest, "_")
	if !ok {
		return "", false
	}
	switch behaviour := simBehaviour(b); behaviour {
	case simApprove, simDeclineAuthorize, simTransientAuth, simTransientSettle, simProcessorDown:
		return behaviour, true
	}
	return "", false
}

func parseAuthID(id string) (simBehaviour, int64, bool) {
	rest, ok := strings.CutPrefix(id, simAuthPrefix)
	if !ok {
		return "", 0, false
	}
	parts := strings.Split(rest, "_")
	if len(parts) != 3 {
		return "", 0, false
	}
	amount, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || amount <= 0 {
		return "", 0, false
	}
	return simBehaviour(parts[0]), amount, true
}

// luhnValid reports whether a string of digits passes the Luhn checksum.
func luhnValid(number string) bool {
	sum := 0
	for i := 0; i < len(number); i++ {
		d := int(number[len(number)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func cardBrand(number string) string {
	two, _ := strconv.Atoi(number[:2])
	four, _ := strconv.Atoi(number[:4])
	switch {
	case number[0] == '4':
		return "visa"
	case two >= 51 && two <= 55, four >= 2221 && four <= 2720:
		return "mastercard"
	case two == 34 || two == 37:
		return "amex"
	}
	return "card"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
