package actors

import (
	"errors"
	"fmt"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/messages"
)

// Error is a domain error: a refusal a client may see, with a stable code from messages.ErrorReason and a message
// written for the client (no internal details). Decisions return *Error; every other error an actor meets is an
// infrastructure error, logged by the actor and answered as UNAVAILABLE.
type Error struct {
	Code    messages.ErrorReason
	Message string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// refuse returns an *Error with a formatted message.
func refuse(code messages.ErrorReason, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Codes a caller may see besides those decisions return.
var (
	// errMoved answers a command that lost the write race to another activation of the same identity (the fence
	// refused the append). Nothing was written; this activation stops, and a retry with the same command id
	// reaches a fresh activation that has loaded the winner's events.
	errMoved = &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the actor moved while handling the request; retry"}

	// errUnavailable answers a request the actor could not serve because its store failed.
	errUnavailable = &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the actor's store is unavailable; retry later"}
)

// metadataCode is the GrainErrorResponse metadata key that carries an Error's code.
const metadataCode = "code"

// grainError converts an Error to the response protoactor's generated grain code sends back: Reason and
// Metadata["code"] are the code's name, Message is the client message.
func grainError(e *Error) *pcluster.GrainErrorResponse {
	code := e.Code.String()
	return pcluster.NewGrainErrorResponse(code, e.Message).WithMetadata(map[string]string{metadataCode: code})
}

// AsError returns the client-visible form of any error an actor call returned: the domain error for a refusal
// (whether it came back through the cluster as a GrainErrorResponse or was returned in process), INTERNAL for an
// answer without a known code (a bug in the actor), and UNAVAILABLE for every error that is not an answer
// (timeouts, dead letters, exhausted retries). It returns nil for nil. The edge uses it (or
// ErrorCode) to pick the problem+json code; the message is safe to show to a client.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var domain *Error
	if errors.As(err, &domain) {
		return domain
	}
	var grain *pcluster.GrainErrorResponse
	if errors.As(err, &grain) {
		code := grain.GetMetadata()[metadataCode]
		if code == "" {
			code = grain.GetReason()
		}
		if c, ok := messages.ErrorReason_value[code]; ok && c != int32(messages.ErrorReason_ERROR_REASON_UNSPECIFIED) {
			return &Error{Code: messages.ErrorReason(c), Message: grain.GetMessage()}
		}
		if code == pcluster.ErrorReason_DEADLINE_EXCEEDED {
			return &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the actor did not answer in time; retry"}
		}
		return &Error{Code: messages.ErrorReason_INTERNAL, Message: "internal error"}
	}
	// Not an answer from the actor: the request timed out, hit a dead letter or ran out of retries on the way.
	return &Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the actor did not answer in time; retry"}
}

// ErrorCode returns the stable code of err (e.g. "NOT_FOUND"; see AsError), or "" for nil.
func ErrorCode(err error) string {
	if e := AsError(err); e != nil {
		return e.Code.String()
	}
	return ""
}
