package actors

import (
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/platterhq/platter/messages"
)

// TestNeedsAuthorisationOfACreatedOrder: a Place or Deliver of PlaceOrder sent to an order already created needs no
// authorisation and is not decoded (checkPlaceOrder would refuse it anyway): no command, and no allocation. An
// absent order still decodes and takes the same Place.
func TestNeedsAuthorisationOfACreatedOrder(t *testing.T) {
	place := validPlaceOrder()
	placeData, err := proto.Marshal(place)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := anypb.New(place)
	if err != nil {
		t.Fatal(err)
	}
	deliverData, err := proto.Marshal(&messages.Envelope{FromStream: streamOf(KindCustomer, tCustomer), OutSeq: 1, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	order := func(s *messages.OrderState) *Order {
		o := &Order{id: tOrder, placeIndex: 1, deliverIndex: 2, cancelIndex: 3}
		o.entity = &entity[*messages.OrderState]{state: s}
		return o
	}
	created := order(orderIn(t, stagePending))
	for name, m := range map[string]*pcluster.GrainRequest{
		"place":   {MethodIndex: 1, MessageData: placeData},
		"deliver": {MethodIndex: 2, MessageData: deliverData},
	} {
		if _, cmd := created.needsAuthorisation(m); cmd != nil {
			t.Errorf("%s to a created order: needs authorisation of %v", name, cmd)
		}
		if allocs := testing.AllocsPerRun(20, func() { created.needsAuthorisation(m) }); allocs != 0 {
			t.Errorf("%s to a created order: %.0f allocations, want 0 (not decoded)", name, allocs)
		}
	}
	if _, cmd := order(&messages.OrderState{}).needsAuthorisation(&pcluster.GrainRequest{MethodIndex: 1, MessageData: placeData}); !proto.Equal(cmd, place) {
		t.Errorf("place to an absent order: %v, want the PlaceOrder", cmd)
	}
}
