package http

import (
	"context"
	"log/slog"
	nethttp "net/http"
)

// SigningKeyRotator rotates the access tokens' signing keys (http/oauth.Server implements it; the edge finds it on
// Backend.OAuth). Implementations must be safe for concurrent use and return *Error values for failures a
// client may see.
type SigningKeyRotator interface {
	// RotateSigningKey makes a new current signing key and answers its kid. With revokePrevious false the previous
	// keys keep verifying the tokens they signed until those expire; with it true those tokens are refused at once
	// (by the other nodes once they re-read the keys).
	RotateSigningKey(ctx context.Context, revokePrevious bool) (kid string, err error)
}

// rotateKeysRequest is the optional body of POST /v1/admin/signing-keys/rotate. The flag is in the body, not the
// query, so that it enters the Idempotency-Key fingerprint: a key first used for an ordinary rotation is refused
// (422) for a revocation rather than replaying the ordinary answer.
type rotateKeysRequest struct {
	RetirePrevious bool `json:"retire_previous"`
}

// rotatedKey is the answer of POST /v1/admin/signing-keys/rotate.
type rotatedKey struct {
	Kid             string `json:"kid"`              // the new current key's
	RetiredPrevious bool   `json:"retired_previous"` // the previous keys no longer verify
}

// handleRotateSigningKeys makes a new current signing key (operator). With {"retire_previous": true} the previous
// keys also stop verifying at once, for a key that may be compromised: every token they signed is refused and its
// holder signs in again.
func (s *Server) handleRotateSigningKeys(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	var req rotateKeysRequest
	if err := decodeBody(c.ctx, &req, true); err != nil {
		return err
	}
	rotator, ok := s.backend.OAuth.(SigningKeyRotator)
	if !ok {
		return Errorf(CodeNotFound, "this node runs no authorization server")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	kid, err := rotator.RotateSigningKey(ctx, req.RetirePrevious)
	if err != nil {
		return err
	}
	s.log.Info("signing key rotated by an operator", slog.String("kid", kid), slog.Bool("retire_previous", req.RetirePrevious),
		slog.String("by", c.who.ID))
	return s.writeJSON(c.ctx, nethttp.StatusOK, rotatedKey{Kid: kid, RetiredPrevious: req.RetirePrevious})
}
