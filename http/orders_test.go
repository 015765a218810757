package http_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// GET /v1/orders/{id}/status is one call to the Order's Status rpc, whose answer names the order's parties for the
// ownership check; the document is id, status and updated_at only (openapi.json, OrderStatusView).

const (
	statusDasher = "d_00000000-0000-0000-0000-0000000000d1"
	otherStaff   = "restaurant:client_2:r_00000000-0000-0000-0000-0000000000a2"
)

var statusAt = time.Date(2026, 11, 25, 12, 0, 0, 500_000_000, time.UTC)

func TestOrderStatusDocument(t *testing.T) {
	custID := strings.TrimPrefix(customer, "customer:")
	assigned := &messages.OrderStatusView{Id: orderID, Status: "DASHER_ASSIGNED", UpdatedAt: timestamppb.New(statusAt),
		CustomerId: custID, RestaurantId: restID, DasherId: statusDasher}
	released := &messages.OrderStatusView{Id: orderID, Status: "ACCEPTED", UpdatedAt: timestamppb.New(statusAt),
		CustomerId: custID, RestaurantId: restID}
	const (
		assignedDoc = `{"id":"` + orderID + `","status":"DASHER_ASSIGNED","updated_at":"2026-11-25T12:00:00.5Z"}`
		releasedDoc = `{"id":"` + orderID + `","status":"ACCEPTED","updated_at":"2026-11-25T12:00:00.5Z"}`
	)
	tests := []struct {
		name     string
		who      string
		answer   *messages.OrderStatusView // nil: the order does not exist
		status   int
		body     string // the whole 200 document
		statuses int    // Status calls the request makes
	}{
		{"its customer", customer, assigned, 200, assignedDoc, 1},
		{"another customer", "customer:c_00000000-0000-0000-0000-0000000000c2", assigned, 404, "", 1},
		{"its restaurant's staff", staff, assigned, 200, assignedDoc, 1},
		{"staff of several restaurants, its among them", "restaurant:client_3:r_00000000-0000-0000-0000-0000000000a2," + restID, assigned, 200, assignedDoc, 1},
		{"another restaurant's staff", otherStaff, assigned, 404, "", 1},
		{"its dasher", dasher, assigned, 200, assignedDoc, 1},
		{"another dasher", "dasher:d_00000000-0000-0000-0000-0000000000d2", assigned, 404, "", 1},
		{"the dasher it released", dasher, released, 404, "", 1},
		{"its customer once released", customer, released, 200, releasedDoc, 1},
		{"an operator", operator, assigned, 200, assignedDoc, 1},
		{"no such order", customer, nil, 404, "", 1},
		{"anonymous", "", assigned, 401, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.actors.handle("Order.Status", func(id string, _ proto.Message) (proto.Message, error) {
				if tt.answer == nil || id != orderID {
					return nil, http.Errorf(http.CodeNotFound, "order %s not found", id)
				}
				return proto.Clone(tt.answer), nil
			})
			var header []string
			if tt.who != "" {
				header = as(tt.who)
			}
			res := h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, header...)
			switch tt.status {
			case 200:
				if res.status != 200 || string(res.body) != tt.body || res.header.Get("Content-Type") != "application/json" {
					t.Fatalf("%d %q %s, want 200 %s", res.status, res.header.Get("Content-Type"), res.body, tt.body)
				}
			case 401:
				wantProblem(t, res, 401, http.CodeUnauthenticated)
			default:
				wantProblem(t, res, tt.status, http.CodeNotFound)
			}
			if n := h.actors.callCount("Order", "Status"); n != tt.statuses {
				t.Errorf("%d Order.Status calls, want %d", n, tt.statuses)
			}
			if n := h.actors.callCount("Order", "Get"); n != 0 {
				t.Errorf("%d Order.Get calls, want none", n)
			}
		})
	}
}

// TestOrderStatusNeverUpdated: an order that has no updated_at yet answers null, as the document allows.
func TestOrderStatusNeverUpdated(t *testing.T) {
	h := newHarness(t)
	h.actors.handle("Order.Status", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderStatusView{Id: id, Status: "PENDING_ACCEPTANCE", CustomerId: strings.TrimPrefix(customer, "customer:"), RestaurantId: restID}, nil
	})
	res := h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(customer)...)
	if want := `{"id":"` + orderID + `","status":"PENDING_ACCEPTANCE","updated_at":null}`; res.status != 200 || string(res.body) != want {
		t.Fatalf("%d %s, want %s", res.status, res.body, want)
	}
}

// TestOrderStatusFromOlderNode: a node that does not answer the parties yet (its Status answer has no customer)
// makes the edge read the whole order for the ownership check, so a cluster being upgraded keeps the route's
// answers and its 404s.
func TestOrderStatusFromOlderNode(t *testing.T) {
	h := newHarness(t)
	h.actors.handle("Order.Status", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderStatusView{Id: id, Status: "DASHER_ASSIGNED", UpdatedAt: timestamppb.New(statusAt)}, nil
	})
	h.actors.handle("Order.Get", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderView{Id: id, CustomerId: strings.TrimPrefix(customer, "customer:"), RestaurantId: restID, DasherId: statusDasher,
			Status: "DASHER_ASSIGNED", UpdatedAt: timestamppb.New(statusAt), TotalCents: 2500}, nil
	})
	res := h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(staff)...)
	if want := `{"id":"` + orderID + `","status":"DASHER_ASSIGNED","updated_at":"2026-11-25T12:00:00.5Z"}`; res.status != 200 || string(res.body) != want {
		t.Fatalf("%d %s, want %s", res.status, res.body, want)
	}
	wantProblem(t, h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(otherStaff)...), 404, http.CodeNotFound)
	if s, g := h.actors.callCount("Order", "Status"), h.actors.callCount("Order", "Get"); s != 2 || g != 2 {
		t.Fatalf("%d Status and %d Get calls, want 2 of each", s, g)
	}
}
