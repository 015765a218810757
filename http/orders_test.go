package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	nethttp "net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
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

// TestOrderCancelledWhilePlacing: an order the customer cancelled while its placement waited for the payment
// processor (nothing authorised: payment status NONE, actors/order.go paymentView) is answered as the Order gives
// it, and the answer matches openapi.json (h.do validates it), whose payment statuses list NONE.
func TestOrderCancelledWhilePlacing(t *testing.T) {
	h := newHarness(t)
	h.actors.handle("Order.Get", func(id string, _ proto.Message) (proto.Message, error) {
		return &messages.OrderView{Id: id, CustomerId: strings.TrimPrefix(customer, "customer:"), RestaurantId: restID,
			Status: "CANCELLED", CancelledBy: messages.CancelledBy_CANCELLED_BY_CUSTOMER, TotalCents: 2500,
			Payment: &messages.OrderPaymentView{Status: "NONE"}}, nil
	})
	res := h.do(t, "GET", "/v1/orders/"+orderID, "", nil, as(customer)...)
	var order struct {
		Status  string `json:"status"`
		Payment struct {
			Status          string `json:"status"`
			AuthorizedCents *int64 `json:"authorized_cents"`
		} `json:"payment"`
	}
	if res.status != 200 || json.Unmarshal(res.body, &order) != nil {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if order.Status != "CANCELLED" || order.Payment.Status != "NONE" || order.Payment.AuthorizedCents == nil || *order.Payment.AuthorizedCents != 0 {
		t.Fatalf("answer %s", res.body)
	}
}

// TestOrderStatusFromOlderNode: a node that does not answer the parties yet (its Status answer has no customer)
// makes the edge read the whole order for the ownership check, so a cluster being upgraded keeps the answers and
// the 404s of the status route and of cancels by staff.
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
	// A cancel by staff finds the order's restaurant the same way.
	wantProblem(t, h.do(t, "POST", "/v1/orders/"+orderID+"/cancel", "", nil, as(otherStaff)...), 404, http.CodeNotFound)
	if res := h.do(t, "POST", "/v1/orders/"+orderID+"/cancel", "", nil, as(staff)...); res.status != 200 {
		t.Fatalf("staff cancel: %d %s", res.status, res.body)
	}
	if c := h.actors.lastCall(t, "Order", "Cancel").req.(*messages.CancelOrder); c.GetRequesterId() != restID {
		t.Fatalf("cancel %v", c)
	}
	if s, g, c := h.actors.callCount("Order", "Status"), h.actors.callCount("Order", "Get"), h.actors.callCount("Order", "Cancel"); s != 4 || g != 4 || c != 1 {
		t.Fatalf("%d Status, %d Get and %d Cancel calls, want 4, 4 and 1", s, g, c)
	}
}

// BenchmarkOrderReads: GET /v1/orders/{id}/status (Status) and GET /v1/orders/{id} (Order) of one placed order,
// through a live node (the actors in a one-member cluster over bbolt) behind a real listener, from parallel
// keep-alive connections (GOMAXPROCS × 16): routing, authorisation, the Order actor and encoding. Reports req/s
// and cpu-ns/op, the process's CPU time (user and system, the client's included) per request, which other load
// on the machine changes much less than req/s.
func BenchmarkOrderReads(b *testing.B) {
	n := startLiveNode(b, filepath.Join(b.TempDir(), "journal.db"))
	cust, id := benchOrder(b, n.url)
	for _, bc := range []struct{ name, path string }{
		{"Status", "/v1/orders/" + id + "/status"},
		{"Order", "/v1/orders/" + id},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(n.url, "http://"), MaxConns: 1024}
			b.SetParallelism(16)
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(res)
				req.SetRequestURI(n.url + bc.path)
				req.Header.Set("X-Test-Principal", cust)
				for pb.Next() {
					if err := hc.Do(req, res); err != nil || res.StatusCode() != 200 {
						b.Errorf("GET %s: %v %d %s", bc.path, err, res.StatusCode(), res.Body())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchOrder places an order of two lines through the edge at url and answers its customer (as a test
// principal) and id.
func benchOrder(b *testing.B, url string) (cust, id string) {
	b.Helper()
	pos := map[string]float64{"lat": 37.7749, "lng": -122.4194}
	var rest, c, order struct{ ID string }
	benchSend(b, url, operator, "POST", "/v1/restaurants", map[string]any{"name": "Thai Basil", "position": pos, "cuisine": "thai"}, &rest)
	benchSend(b, url, "restaurant:pos_1:"+rest.ID, "PUT", "/v1/restaurants/"+rest.ID+"/menu", map[string]any{"items": []map[string]any{
		{"id": "pad-thai", "name": "Pad Thai", "price_cents": 1250}, {"id": "tea", "name": "Thai Iced Tea", "price_cents": 450},
	}}, nil)
	benchSend(b, url, "", "POST", "/v1/customers", map[string]any{"name": "Ann", "email": "ann@example.com", "password": "correct horse", "phone": "+1 415 555 0100"}, &c)
	cust = "customer:" + c.ID
	benchSend(b, url, cust, "PUT", "/v1/customers/me/address", map[string]any{"line1": "1 Market St", "city": "San Francisco", "postal_code": "94105", "position": pos}, nil)
	benchSend(b, url, cust, "PUT", "/v1/customers/me/payment-method", map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}, nil)
	benchSend(b, url, cust, "POST", "/v1/cart/items", map[string]any{"restaurant_id": rest.ID, "menu_item_id": "pad-thai", "quantity": 2}, nil)
	benchSend(b, url, cust, "POST", "/v1/cart/items", map[string]any{"restaurant_id": rest.ID, "menu_item_id": "tea", "quantity": 1}, nil)
	benchSend(b, url, cust, "POST", "/v1/orders", map[string]any{}, &order)
	return cust, order.ID
}

// benchSend makes a request that must succeed (2xx) and decodes its JSON answer into out when given.
func benchSend(b *testing.B, url, who, method, path string, body, out any) {
	b.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		b.Fatal(err)
	}
	req, err := nethttp.NewRequest(method, url+path, bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", ctJSON)
	if who != "" {
		req.Header.Set("X-Test-Principal", who)
	}
	res, err := client.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode/100 != 2 {
		b.Fatalf("%s %s: %d %s %v", method, path, res.StatusCode, got, err)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			b.Fatalf("%s %s: decode %s: %v", method, path, got, err)
		}
	}
}
