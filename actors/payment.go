package actors

import (
	"context"
	"errors"
	"time"
)

// ErrPaymentUnavailable is the transient failure of a gateway call (the processor did not answer, or answered
// "try again"): the same call with the same idempotency key may be retried.
var ErrPaymentUnavailable = errors.New("payment gateway unavailable")

// IsTransient reports whether a PaymentGateway error may be retried with the same idempotency key: every error
// except a refusal (*Error, e.g. PAYMENT_DECLINED or INVALID_ARGUMENT), which is final. Gateways return
// ErrPaymentUnavailable (possibly wrapped) for the transient failures they recognise; an unknown failure, such as
// a timeout, is transient too, because the idempotency key makes a retry safe.
func IsTransient(err error) bool {
	var refusal *Error
	return err != nil && !errors.As(err, &refusal)
}

// PaymentGateway is the card processor Platter talks to. The full card number and CVC are handed to Tokenize and
// never stored, logged or returned by Platter: actors keep only the PaymentMethod (brand, last4, expiry, token).
//
// Every money-moving call carries an idempotency key (derived from the order id and the step), so that a call
// retried after a timeout or a crash moves money at most once.
//
// Concurrency: safe for concurrent use by many actors.
type PaymentGateway interface {
	// Tokenize validates a card and returns its reusable token and public facts. A declined card returns an
	// *Error with code PAYMENT_DECLINED; invalid input INVALID_ARGUMENT.
	Tokenize(ctx context.Context, card Card) (PaymentMethod, error)
	// Authorize holds amountCents on the card behind token and returns the authorisation id.
	// Declined: *Error PAYMENT_DECLINED. Transient failures: an error for which IsTransient is true (retry).
	// A call repeated with the same idempotency key and request answers the outcome of the first one that
	// completed (the same authorisation id, or the same decline): the Order relies on it to find a hold whose
	// answer it lost (resolveAuthorisation in order.go, voidAuthorisation in payment_settle.go).
	Authorize(ctx context.Context, token string, amountCents int64, idempotencyKey string) (authID string, err error)
	// Capture takes amountCents (<= the authorised amount) of an authorisation.
	Capture(ctx context.Context, authID string, amountCents int64, idempotencyKey string) error
	// Void releases an authorisation that was not captured.
	Void(ctx context.Context, authID string, idempotencyKey string) error
	// Refund returns amountCents of a captured authorisation.
	Refund(ctx context.Context, authID string, amountCents int64, idempotencyKey string) error
}

// Card is what a client sends to set a payment method. It lives only for the Tokenize call.
type Card struct {
	Number   string
	ExpMonth int
	ExpYear  int
	CVC      string
}

// PaymentMethod is what Platter keeps of a card.
type PaymentMethod struct {
	Token    string
	Brand    string
	Last4    string
	ExpMonth int
	ExpYear  int
	AddedAt  time.Time
}
