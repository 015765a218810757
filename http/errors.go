package http

import (
	"errors"
	"fmt"
	nethttp "net/http"
)

// Stable error codes: the `code` member of every problem+json response. Clients branch on these, so a code, once
// published, keeps its meaning and its status. The table below is the only place that maps a code to a status.
const (
	CodeInvalidArgument      = "INVALID_ARGUMENT"       // the request is malformed or a field is invalid
	CodeUnauthenticated      = "UNAUTHENTICATED"        // no or bad credentials (filled in by the security issue)
	CodePermissionDenied     = "PERMISSION_DENIED"      // authenticated but not allowed
	CodeNotFound             = "NOT_FOUND"              // no such route or resource
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"     // the route exists but not for this method (see Allow)
	CodeAlreadyExists        = "ALREADY_EXISTS"         // the resource exists already
	CodeFailedPrecondition   = "FAILED_PRECONDITION"    // the resource is not in a state that allows the request
	CodeIdempotencyKeyInUse  = "IDEMPOTENCY_KEY_IN_USE" // a request with the same Idempotency-Key is in flight
	CodeOfferTaken           = "OFFER_TAKEN"            // the order already has another dasher
	CodeOfferExpired         = "OFFER_EXPIRED"          // the offer's time passed, or the order needs no dasher
	CodeOrderNotCancellable  = "ORDER_NOT_CANCELLABLE"  // picked up, delivered or closed already
	CodeCartConflict         = "CART_CONFLICT"          // the cart holds items of another restaurant
	CodePaymentDeclined      = "PAYMENT_DECLINED"       // the payment gateway declined the card
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"      // the body exceeds Config.MaxBodySize
	CodeRequestTimeout       = "REQUEST_TIMEOUT"        // the request was not received within Config.ReadTimeout
	CodeHeadersTooLarge      = "HEADERS_TOO_LARGE"      // the request line and headers exceed Config.MaxHeaderSize
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE" // the body is not application/json
	CodeIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED" // the Idempotency-Key was used with another body
	CodeRateLimited          = "RATE_LIMITED"           // the client sent too many requests of a class (see Retry-After)
	CodeTooManyPolls         = "TOO_MANY_POLLS"         // the client has Config.MaxPollsPerClient feed polls waiting
	CodeInternal             = "INTERNAL"               // a bug or an infrastructure failure; details are only logged
	CodeNotReady             = "NOT_READY"              // this node has not joined the cluster (or is leaving)
	CodeUnavailable          = "UNAVAILABLE"            // the cluster did not answer in time; retry later
)

// problemKind is what the edge shows for one code.
type problemKind struct {
	status int
	title  string
}

// problems maps every code to its HTTP status and title: the one place where codes meet statuses.
var problems = map[string]problemKind{
	CodeInvalidArgument:      {nethttp.StatusBadRequest, "Invalid argument"},
	CodeUnauthenticated:      {nethttp.StatusUnauthorized, "Unauthenticated"},
	CodePermissionDenied:     {nethttp.StatusForbidden, "Permission denied"},
	CodeNotFound:             {nethttp.StatusNotFound, "Not found"},
	CodeMethodNotAllowed:     {nethttp.StatusMethodNotAllowed, "Method not allowed"},
	CodeAlreadyExists:        {nethttp.StatusConflict, "Already exists"},
	CodeFailedPrecondition:   {nethttp.StatusConflict, "Failed precondition"},
	CodeIdempotencyKeyInUse:  {nethttp.StatusConflict, "Idempotency key in use"},
	CodeOfferTaken:           {nethttp.StatusConflict, "Offer taken"},
	CodeOfferExpired:         {nethttp.StatusConflict, "Offer expired"},
	CodeOrderNotCancellable:  {nethttp.StatusConflict, "Order not cancellable"},
	CodeCartConflict:         {nethttp.StatusConflict, "Cart conflict"},
	CodePaymentDeclined:      {nethttp.StatusPaymentRequired, "Payment declined"},
	CodePayloadTooLarge:      {nethttp.StatusRequestEntityTooLarge, "Payload too large"},
	CodeRequestTimeout:       {nethttp.StatusRequestTimeout, "Request timeout"},
	CodeHeadersTooLarge:      {nethttp.StatusRequestHeaderFieldsTooLarge, "Headers too large"},
	CodeUnsupportedMediaType: {nethttp.StatusUnsupportedMediaType, "Unsupported media type"},
	CodeIdempotencyKeyReused: {nethttp.StatusUnprocessableEntity, "Idempotency key reused"},
	CodeRateLimited:          {nethttp.StatusTooManyRequests, "Rate limited"},
	CodeTooManyPolls:         {nethttp.StatusTooManyRequests, "Too many polls"},
	CodeInternal:             {nethttp.StatusInternalServerError, "Internal error"},
	CodeNotReady:             {nethttp.StatusServiceUnavailable, "Not ready"},
	CodeUnavailable:          {nethttp.StatusServiceUnavailable, "Unavailable"},
}

// StatusOf returns the HTTP status of a code; an unknown code is a bug and maps to 500.
func StatusOf(code string) int {
	if p, ok := problems[code]; ok {
		return p.status
	}
	return nethttp.StatusInternalServerError
}

// Error is a failure a client may see: a stable Code (a key of the status table) and a Detail written for the
// client. Backends return an *Error (possibly wrapped) for every expected failure; any other error is treated as
// internal, logged, and shown only as INTERNAL.
type Error struct {
	Code   string
	Detail string
	Cause  error // optional: what went wrong inside, for the log; never shown to the client
}

// Errorf returns an *Error with a formatted detail.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Detail + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Cause }

// ErrUnavailable is returned by backends when the cluster did not answer in time; it maps to 503 with Retry-After.
var ErrUnavailable = &Error{Code: CodeUnavailable, Detail: "the cluster did not answer in time; retry later"}

// ErrNotReady is returned by backends when this node is not (or no longer) a serving cluster member.
var ErrNotReady = &Error{Code: CodeNotReady, Detail: "this node is not a serving cluster member yet; retry later"}

// internalError is all a client learns of an internal failure.
var internalError = &Error{Code: CodeInternal, Detail: "internal error"}

// asError returns the client-visible form of err and whether err was an expected failure. INTERNAL errors and
// errors without a known code are unexpected: they show only as internalError (a code the table does not know
// never reaches a client with a wrong status).
func asError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && e.Code != CodeInternal {
		if _, known := problems[e.Code]; known {
			return e, true
		}
	}
	return internalError, false
}
