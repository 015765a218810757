package http

import (
	"errors"
	"fmt"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/messages"
)

// TestActorError checks how answers and failures of actor calls become client-visible codes.
func TestActorError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   string
		status int
	}{
		{"not ready", fmt.Errorf("error request: %w", cluster.ErrNotReady), CodeNotReady, 503},
		{"refusal", fmt.Errorf("error request: %w", pcluster.NewGrainErrorResponse("NOT_FOUND", "restaurant r_1 not found").
			WithMetadata(map[string]string{"code": "NOT_FOUND"})), CodeNotFound, 404},
		{"reused key", pcluster.NewGrainErrorResponse("IDEMPOTENCY_KEY_REUSED", "other command"), CodeIdempotencyKeyReused, 422},
		{"timeout", fmt.Errorf("cluster: request: %w", errors.New("deadline exceeded")), CodeUnavailable, 503},
		{"unknown reason", pcluster.NewGrainErrorResponse("WHAT", "boom"), CodeInternal, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := actorError(tt.err)
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || StatusOf(e.Code) != tt.status {
				t.Fatalf("actorError(%v) = %v, want code %s (%d)", tt.err, err, tt.code, tt.status)
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("the cause is lost: %v", err)
			}
		})
	}
	if actorError(nil) != nil {
		t.Fatal("actorError(nil) != nil")
	}
}

// TestEveryActorCodeHasAStatus guards the one code table: a code actors can answer with must map to a status.
func TestEveryActorCodeHasAStatus(t *testing.T) {
	for v, name := range messages.ErrorReason_name {
		if v == int32(messages.ErrorReason_ERROR_REASON_UNSPECIFIED) {
			continue
		}
		if _, ok := problems[name]; !ok {
			t.Errorf("actor error code %s has no entry in the problems table", name)
		}
	}
}
