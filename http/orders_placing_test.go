package http_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// TestOrderWhilePlacing: POST /v1/orders has answered 201, but the Order does not exist yet (its placement waits
// for the payment processor) and answers NOT_FOUND. GET /v1/orders/{id} and /status answer the order's customer
// the entry of its own orders index (PENDING_ACCEPTANCE, items, total), valid against openapi.json; another
// customer, the restaurant's staff, a dasher and an operator still get 404 and never make the edge read an index;
// an id the customer's index lacks is 404, and an Order that fails otherwise is not hidden behind the index.
func TestOrderWhilePlacing(t *testing.T) {
	h := newHarness(t)
	placedAt := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	owner := strings.TrimPrefix(customer, "customer:")
	entry := &messages.CustomerOrder{OrderId: orderID, RestaurantId: restID, TotalCents: 2500, Status: "PENDING_ACCEPTANCE",
		PlacedAt: timestamppb.New(placedAt), UpdatedAt: timestamppb.New(placedAt),
		Items: []*messages.OrderLine{{MenuItemId: "pad-thai", Name: "Pad Thai", Quantity: 2, PriceCents: 1250}}}
	orderFails := func(err error) {
		fail := func(string, proto.Message) (proto.Message, error) { return nil, err }
		h.actors.handle("Order.Get", fail)
		h.actors.handle("Order.Status", fail)
	}
	orderFails(http.Errorf(http.CodeNotFound, "order %s not found", orderID))
	h.actors.handle("Customer.ListOrders", func(id string, req proto.Message) (proto.Message, error) {
		page := &messages.CustomerOrders{}
		if q := req.(*messages.ListCustomerOrders); id == owner && q.GetOrderId() == orderID {
			page.Orders = append(page.Orders, entry)
		}
		return page, nil
	})

	res := h.do(t, "GET", "/v1/orders/"+orderID, "", nil, as(customer)...)
	var view struct {
		ID             string `json:"id"`
		CustomerID     string `json:"customer_id"`
		RestaurantID   string `json:"restaurant_id"`
		Status         string `json:"status"`
		KitchenStatus  string `json:"kitchen_status"`
		DeliveryStatus string `json:"delivery_status"`
		TotalCents     int64  `json:"total_cents"`
		Items          []struct {
			MenuItemID string `json:"menu_item_id"`
			Quantity   int32  `json:"quantity"`
		} `json:"items"`
		Timeline []json.RawMessage `json:"timeline"`
		Payment  json.RawMessage   `json:"payment"`
	}
	if res.status != 200 || json.Unmarshal(res.body, &view) != nil {
		t.Fatalf("the customer's placing order: %d %s", res.status, res.body)
	}
	if view.ID != orderID || view.CustomerID != owner || view.RestaurantID != restID || view.Status != "PENDING_ACCEPTANCE" ||
		view.KitchenStatus != "PENDING" || view.DeliveryStatus != "WAITING" || view.TotalCents != 2500 || len(view.Items) != 1 ||
		view.Items[0].MenuItemID != "pad-thai" || view.Items[0].Quantity != 2 || len(view.Timeline) != 0 || string(view.Payment) != "null" {
		t.Fatalf("the customer's placing order: %s", res.body)
	}
	res = h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(customer)...)
	if want := `{"id":"` + orderID + `","status":"PENDING_ACCEPTANCE","updated_at":"2026-11-25T20:00:00Z"}`; res.status != 200 || string(res.body) != want {
		t.Fatalf("the customer's placing order's status: %d %s, want %s", res.status, res.body, want)
	}
	if q := h.actors.lastCall(t, "Customer", "ListOrders"); q.identity != owner || q.req.(*messages.ListCustomerOrders).GetOrderId() != orderID {
		t.Fatalf("index read %s %v", q.identity, q.req)
	}
	reads := h.actors.callCount("Customer", "ListOrders")
	if reads != 2 {
		t.Fatalf("%d index reads, want 2", reads)
	}

	// Another customer reads its own index, which lacks the order; the other parties are not looked up.
	for _, who := range []string{"customer:c_00000000-0000-0000-0000-000000000999", staff, dasher, operator} {
		for _, path := range []string{"/v1/orders/" + orderID, "/v1/orders/" + orderID + "/status"} {
			wantProblem(t, h.do(t, "GET", path, "", nil, as(who)...), 404, http.CodeNotFound)
		}
	}
	if n := h.actors.callCount("Customer", "ListOrders"); n != reads+2 {
		t.Fatalf("%d index reads after the others' requests, want %d (the other customer's two)", n, reads+2)
	}
	// An order the index lacks stays 404.
	other := "o_0123456789abcdef0123ffff"
	wantProblem(t, h.do(t, "GET", "/v1/orders/"+other, "", nil, as(customer)...), 404, http.CodeNotFound)

	// An Order that does not answer is not hidden behind the index.
	orderFails(http.Errorf(http.CodeUnavailable, "the cluster did not answer in time"))
	wantProblem(t, h.do(t, "GET", "/v1/orders/"+orderID, "", nil, as(customer)...), 503, http.CodeUnavailable)
	wantProblem(t, h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(customer)...), 503, http.CodeUnavailable)
	if n := h.actors.callCount("Customer", "ListOrders"); n != reads+3 {
		t.Fatalf("%d index reads, want %d: an unavailable Order must not be answered from the index", n, reads+3)
	}
}
