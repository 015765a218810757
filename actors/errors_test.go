package actors_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

func TestAsError(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		code    string
		message string
	}{
		{"nil", nil, "", ""},
		{"refusal in process", &actors.Error{Code: messages.ErrorReason_NOT_FOUND, Message: "gone"}, "NOT_FOUND", "gone"},
		{"wrapped refusal", fmt.Errorf("call: %w", &actors.Error{Code: messages.ErrorReason_ALREADY_EXISTS, Message: "x"}), "ALREADY_EXISTS", "x"},
		{"grain error with code metadata",
			pcluster.NewGrainErrorResponse("whatever", "bad menu").WithMetadata(map[string]string{"code": "INVALID_ARGUMENT"}),
			"INVALID_ARGUMENT", "bad menu"},
		{"grain error from a generated constructor", messages.ErrNotFound("no restaurant %s", "r_1"), "NOT_FOUND", "no restaurant r_1"},
		{"grain error with protoactor's unmarshal reason", pcluster.NewGrainErrorResponse(pcluster.ErrorReason_INVALID_ARGUMENT, "proto: cannot parse"), "INVALID_ARGUMENT", "proto: cannot parse"},
		{"grain error without a known code", pcluster.NewGrainErrorResponse(pcluster.ErrorReason_UNKNOWN, "secret details"), "INTERNAL", "internal error"},
		{"grain deadline", pcluster.NewGrainErrorResponse(pcluster.ErrorReason_DEADLINE_EXCEEDED, "late"), "UNAVAILABLE", "the actor did not answer in time; retry"},
		{"request timeout", fmt.Errorf("error request: %w", actor.ErrTimeout), "UNAVAILABLE", "the actor did not answer in time; retry"},
		{"retries exhausted", errors.New("have reached max retries: 3"), "UNAVAILABLE", "the actor did not answer in time; retry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := actors.ErrorCode(c.err); got != c.code {
				t.Fatalf("ErrorCode = %q, want %q", got, c.code)
			}
			e := actors.AsError(c.err)
			if c.err == nil {
				if e != nil {
					t.Fatalf("AsError(nil) = %v", e)
				}
				return
			}
			if e.Message != c.message {
				t.Fatalf("message = %q, want %q", e.Message, c.message)
			}
		})
	}
}
