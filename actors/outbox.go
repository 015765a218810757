package actors

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/platterhq/platter/messages"
)

// sendTo returns the event that puts payload in the deciding actor's outbox for the actor (kind, identity).
// Decisions return it among their events; the entity delivers it after the append (docs/workflow.md, "Messages
// between actors"). The error is an encoding failure (e.g. a string that is not UTF-8), a bug of the caller's
// validation.
func sendTo(kind, identity string, payload proto.Message) (*messages.OutboxAdded, error) {
	packed, err := anypb.New(payload)
	if err != nil {
		return nil, fmt.Errorf("pack %s for %s/%s: %w", payload.ProtoReflect().Descriptor().FullName(), kind, identity, err)
	}
	return &messages.OutboxAdded{ToKind: kind, ToIdentity: identity, Payload: packed}, nil
}
