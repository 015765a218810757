package http_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// Route tests over the fake actors: each route turns a valid request into the right actor command for the
// caller, and shapes the answer (every response is also validated against openapi.json by the harness).

func TestRouteCommands(t *testing.T) {
	h := newHarness(t)
	h.actors.handle("Restaurant.Get", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.RestaurantView{Id: id, Name: "Thai Basil", Position: &messages.Position{Lat: 1, Lng: 2},
			Menu: []*messages.MenuItem{{Id: "m1", Name: "Pad Thai", PriceCents: 1250}}}, nil
	})
	h.actors.handle("Customer.OrderCart", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.CustomerView{Id: id, LastOrder: &messages.CustomerOrder{OrderId: orderID, RestaurantId: restID, TotalCents: 2500,
			Status: "PENDING_ACCEPTANCE", Items: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad Thai", Quantity: 2, PriceCents: 1250}}}}, nil
	})
	custID := strings.TrimPrefix(customer, "customer:")
	dasherID := strings.TrimPrefix(dasher, "dasher:")
	tests := []struct {
		name, who, method, path, body string
		status                        int
		kind, grainMethod, identity   string
		want                          proto.Message // the command, without its command id
	}{
		{"sign up", "", "POST", "/v1/customers", `{"name":"Ann","email":"ann@example.com","password":"correct horse","phone":"+1 415 555 0100"}`, 201,
			"Customer", "Create", "", &messages.CreateCustomer{Name: "Ann", Email: "ann@example.com", Phone: "+1 415 555 0100"}},
		{"profile", customer, "PATCH", "/v1/customers/me", `{"phone":"+1 415 555 0101"}`, 200,
			"Customer", "UpdateProfile", custID, &messages.UpdateCustomerProfile{Phone: "+1 415 555 0101"}},
		{"address", customer, "PUT", "/v1/customers/me/address", `{"line1":"1 Main St","city":"SF","postal_code":"94103","position":{"lat":37.7,"lng":-122.4}}`, 200,
			"Customer", "SetAddress", custID, &messages.SetAddress{Address: &messages.Address{Line1: "1 Main St", City: "SF", PostalCode: "94103", Position: &messages.Position{Lat: 37.7, Lng: -122.4}}}},
		{"payment", customer, "PUT", "/v1/customers/me/payment-method", `{"card_number":"4242 4242 4242 4242","exp_month":12,"exp_year":2030,"cvc":"123"}`, 200,
			"Customer", "SetPaymentMethod", custID, &messages.SetPaymentMethod{CardNumber: "4242424242424242", ExpMonth: 12, ExpYear: 2030, Cvc: "123"}},
		{"add to cart", customer, "POST", "/v1/cart/items", `{"restaurant_id":"` + restID + `","menu_item_id":"m1","quantity":2}`, 200,
			"Customer", "AddToCart", custID, &messages.AddToCart{RestaurantId: restID, RestaurantName: "Thai Basil", Pickup: &messages.Position{Lat: 1, Lng: 2},
				Item: &messages.MenuItem{Id: "m1", Name: "Pad Thai", PriceCents: 1250}, Quantity: 2}},
		{"remove from cart", customer, "DELETE", "/v1/cart/items/m1", "", 200, "Customer", "RemoveFromCart", custID, &messages.RemoveFromCart{MenuItemId: "m1"}},
		{"order", customer, "POST", "/v1/orders", "", 201, "Customer", "OrderCart", custID, &messages.OrderCart{}},
		{"list orders", customer, "GET", "/v1/orders?limit=5&after=" + orderID, "", 200, "Customer", "ListOrders", custID, &messages.ListCustomerOrders{Limit: 5, After: orderID}},
		{"customer cancels", customer, "POST", "/v1/orders/" + orderID + "/cancel", `{"reason":"too slow"}`, 200,
			"Order", "Cancel", orderID, &messages.CancelOrder{By: messages.CancelledBy_CANCELLED_BY_CUSTOMER, RequesterId: custID, Reason: "too slow"}},
		{"search", "", "GET", "/v1/search?q=pad+thai&q=spicy&lat=37.77&lng=-122.41", "", 200,
			"Area", "Search", "", &messages.SearchRestaurants{Terms: []string{"pad thai", "spicy"}, Position: &messages.Position{Lat: 37.77, Lng: -122.41}, Limit: 20}},
		{"menu", staff, "PUT", "/v1/restaurants/" + restID + "/menu", validMenu, 200,
			"Restaurant", "UpdateMenu", restID, &messages.UpdateMenu{Items: []*messages.MenuItem{{Id: "m1", Name: "Pad Thai", PriceCents: 1250, Tags: []string{"noodles"}}}}},
		{"open orders", staff, "GET", "/v1/restaurants/" + restID + "/orders?state=open", "", 200, "Restaurant", "ListOrders", restID, &messages.ListRestaurantOrders{}},
		{"accept", staff, "POST", "/v1/restaurants/" + restID + "/orders/" + orderID + "/accept", `{"prep_minutes":15}`, 200,
			"Order", "Accept", orderID, &messages.AcceptOrder{RestaurantId: restID, PrepMinutes: 15}},
		{"reject", staff, "POST", "/v1/restaurants/" + restID + "/orders/" + orderID + "/reject", `{"reason":"closed"}`, 200,
			"Order", "Reject", orderID, &messages.RejectOrder{RestaurantId: restID, Reason: "closed"}},
		{"ready", staff, "POST", "/v1/restaurants/" + restID + "/orders/" + orderID + "/ready", "", 200, "Order", "MarkReady", orderID, &messages.MarkOrderReady{RestaurantId: restID}},
		{"picked up", staff, "POST", "/v1/restaurants/" + restID + "/orders/" + orderID + "/picked-up", "{}", 200, "Order", "MarkPickedUp", orderID, &messages.MarkOrderPickedUp{RestaurantId: restID}},
		{"create dasher", operator, "POST", "/v1/dashers", `{"name":"Dee","email":"dee@example.com","password":"long enough","vehicle":"bike","capacity":2}`, 201,
			"Dasher", "Create", "", &messages.CreateDasher{Name: "Dee", Vehicle: "bike", Capacity: 2}},
		{"online", dasher, "PUT", "/v1/dashers/me/status", `{"online":true,"position":{"lat":37.77,"lng":-122.41}}`, 200,
			"Dasher", "SetStatus", dasherID, &messages.SetDasherStatus{Online: true, Position: &messages.Position{Lat: 37.77, Lng: -122.41}}},
		{"offline", dasher, "PUT", "/v1/dashers/me/status", `{"online":false}`, 200, "Dasher", "SetStatus", dasherID, &messages.SetDasherStatus{}},
		{"location", dasher, "PUT", "/v1/dashers/me/location", `{"position":{"lat":37.78,"lng":-122.4}}`, 200,
			"Dasher", "UpdateLocation", dasherID, &messages.UpdateDasherLocation{Position: &messages.Position{Lat: 37.78, Lng: -122.4}}},
		{"accept offer", dasher, "POST", "/v1/dashers/me/offers/" + orderID + "/accept", "", 200, "Dasher", "AcceptOffer", dasherID, &messages.AcceptOffer{OrderId: orderID}},
		{"decline offer", dasher, "POST", "/v1/dashers/me/offers/" + orderID + "/decline", `{"reason":"too far"}`, 200,
			"Dasher", "DeclineOffer", dasherID, &messages.DeclineOffer{OrderId: orderID, Reason: "too far"}},
		{"delivered", dasher, "POST", "/v1/dashers/me/orders/" + orderID + "/delivered", "", 200, "Order", "MarkDelivered", orderID, &messages.MarkOrderDelivered{DasherId: dasherID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.who != "" {
				header = as(tt.who)
			}
			ct := ""
			if tt.body != "" {
				ct = ctJSON
			}
			res := h.do(t, tt.method, tt.path, ct, []byte(tt.body), header...)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			got := h.actors.lastCall(t, tt.kind, tt.grainMethod)
			if tt.identity != "" && got.identity != tt.identity {
				t.Fatalf("identity %q, want %q", got.identity, tt.identity)
			}
			cmd := proto.Clone(got.req)
			if fd := cmd.ProtoReflect().Descriptor().Fields().ByName("command_id"); fd != nil {
				if cmd.ProtoReflect().Get(fd).String() == "" {
					t.Fatal("no command id")
				}
				cmd.ProtoReflect().Clear(fd)
			}
			if !proto.Equal(cmd, tt.want) {
				t.Fatalf("command %v, want %v", cmd, tt.want)
			}
		})
	}
	// The search went to the Area of the position.
	if id := h.actors.lastCall(t, "Area", "Search").identity; len(id) != 15 {
		t.Fatalf("area identity %q is not an H3 cell", id)
	}
	// The order answer is the index entry, with integer cents.
	res := h.do(t, "POST", "/v1/orders", ctJSON, []byte(`{}`), as(customer)...)
	var o map[string]any
	if err := json.Unmarshal(res.body, &o); err != nil || o["id"] != orderID || o["total_cents"] != float64(2500) || res.header.Get("Location") != "/v1/orders/"+orderID {
		t.Fatalf("order answer %s (%v)", res.body, err)
	}
	// The payment method answer is the public facts only.
	h.actors.handle("Customer.SetPaymentMethod", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.CustomerView{Id: id, PaymentMethod: &messages.PaymentMethodView{Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030}}, nil
	})
	res = h.do(t, "PUT", "/v1/customers/me/payment-method", ctJSON, []byte(`{"card_number":"4242424242424242","exp_month":12,"exp_year":2030,"cvc":"123"}`), as(customer)...)
	if string(res.body) != `{"brand":"visa","exp_month":12,"exp_year":2030,"last4":"4242"}` {
		t.Fatalf("payment answer %s", res.body)
	}
	if strings.Contains(h.logs.String(), "4242424242424242") {
		t.Fatal("the card number was logged")
	}
}

// TestOrderOwnership: an order is visible to its customer, its restaurant's staff, its dasher and operators;
// anyone else is told it does not exist.
func TestOrderOwnership(t *testing.T) {
	h := newHarness(t)
	custID := strings.TrimPrefix(customer, "customer:")
	h.actors.handle("Order.Get", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderView{Id: id, CustomerId: custID, RestaurantId: restID, DasherId: "d_00000000-0000-0000-0000-0000000000d1",
			Status: "DASHER_ASSIGNED", UpdatedAt: nil}, nil
	})
	h.actors.handle("Order.Status", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderStatusView{Id: id, CustomerId: custID, RestaurantId: restID, DasherId: "d_00000000-0000-0000-0000-0000000000d1",
			Status: "DASHER_ASSIGNED"}, nil
	})
	for _, who := range []string{customer, staff, dasher, operator} {
		for _, path := range []string{"/v1/orders/" + orderID, "/v1/orders/" + orderID + "/status"} {
			if res := h.do(t, "GET", path, "", nil, as(who)...); res.status != 200 {
				t.Fatalf("%s GET %s: %d %s", who, path, res.status, res.body)
			}
		}
	}
	for _, who := range []string{"customer:c_00000000-0000-0000-0000-0000000000c2", "dasher:d_00000000-0000-0000-0000-0000000000d2",
		"restaurant:client_2:r_00000000-0000-0000-0000-0000000000a2"} {
		wantProblem(t, h.do(t, "GET", "/v1/orders/"+orderID, "", nil, as(who)...), 404, http.CodeNotFound)
		wantProblem(t, h.do(t, "GET", "/v1/orders/"+orderID+"/status", "", nil, as(who)...), 404, http.CodeNotFound)
	}
	// One read per request: Get for the order, Status for its status.
	if gets, statuses := h.actors.callCount("Order", "Get"), h.actors.callCount("Order", "Status"); gets != 7 || statuses != 7 {
		t.Fatalf("%d Order.Get and %d Order.Status calls for 7 reads of each route", gets, statuses)
	}
	// Staff cancel as the order's restaurant, after the ownership check.
	if res := h.do(t, "POST", "/v1/orders/"+orderID+"/cancel", "", nil, as(staff)...); res.status != 200 {
		t.Fatalf("staff cancel: %d %s", res.status, res.body)
	}
	c := h.actors.lastCall(t, "Order", "Cancel").req.(*messages.CancelOrder)
	if c.GetBy() != messages.CancelledBy_CANCELLED_BY_RESTAURANT || c.GetRequesterId() != restID {
		t.Fatalf("cancel %v", c)
	}
	wantProblem(t, h.do(t, "POST", "/v1/orders/"+orderID+"/cancel", "", nil, as("restaurant:client_2:r_00000000-0000-0000-0000-0000000000a2")...), 404, http.CodeNotFound)
	// The staff's ownership check is the small read.
	if gets, cancels := h.actors.callCount("Order", "Get"), h.actors.callCount("Order", "Cancel"); gets != 7 || cancels != 1 {
		t.Fatalf("%d Order.Get and %d Order.Cancel calls after the staff cancels, want 7 and 1", gets, cancels)
	}
}

func TestRateLimits(t *testing.T) {
	h := newHarness(t, withConfig(func(c *http.Config) {
		c.SearchLimit = http.RateLimit{Rate: 1, Burst: 2}
		c.LoginLimit = http.RateLimit{Rate: 0.1, Burst: 1}
	}))
	search := "/v1/search?lat=1&lng=2"
	for i := range 2 {
		if res := h.do(t, "GET", search, "", nil); res.status != 200 {
			t.Fatalf("search %d: %d %s", i, res.status, res.body)
		}
	}
	res := h.do(t, "GET", search, "", nil)
	wantProblem(t, res, 429, http.CodeRateLimited)
	if res.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
	// Another client has its own budget; the budget refills with time.
	if res := h.do(t, "GET", search, "", nil, as(customer)...); res.status != 200 {
		t.Fatalf("another client: %d", res.status)
	}
	h.clock.Advance(time.Second)
	if res := h.do(t, "GET", search, "", nil); res.status != 200 {
		t.Fatalf("after a second: %d", res.status)
	}
	// Sign-up counts against the login budget.
	body := []byte(`{"name":"Ann","email":"ann@example.com","password":"correct horse"}`)
	if res := h.do(t, "POST", "/v1/customers", ctJSON, body); res.status != 201 {
		t.Fatalf("sign up: %d %s", res.status, res.body)
	}
	res = h.do(t, "POST", "/v1/customers", ctJSON, body)
	wantProblem(t, res, 429, http.CodeRateLimited)
	if res.header.Get("Retry-After") != "10" {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
}

func TestMetricsAndDrain(t *testing.T) {
	h := newHarness(t)
	h.do(t, "GET", "/healthz", "", nil)
	h.do(t, "GET", "/v1/nothing", "", nil)
	res := h.do(t, "GET", "/metrics", "", nil, as(operator)...)
	body := string(res.body)
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(body, `platter_http_requests_total{route="GET /healthz",status="200"} 1`) ||
		!strings.Contains(body, `platter_http_requests_total{route="unmatched",status="404"} 1`) ||
		!strings.Contains(body, "platter_http_feed_polls_in_flight 0") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics %d:\n%s", res.status, body)
	}
	wantProblem(t, h.do(t, "GET", "/metrics", "", nil, as(customer)...), 403, http.CodePermissionDenied)

	h.cluster.drained = make(chan struct{})
	res = h.do(t, "POST", "/v1/admin/drain", "", nil, as(operator)...)
	if res.status != 202 || string(res.body) != `{"status":"draining"}` {
		t.Fatalf("drain: %d %s", res.status, res.body)
	}
	select {
	case <-h.cluster.drained:
	case <-time.After(5 * time.Second):
		t.Fatal("the node was not drained")
	}
	wantProblem(t, h.do(t, "GET", "/readyz", "", nil), 503, http.CodeNotReady)
	wantProblem(t, h.do(t, "POST", "/v1/admin/drain", "", nil, as(operator)...), 503, http.CodeNotReady)
}
