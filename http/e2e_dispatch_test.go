package http_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// End-to-end tests of dispatch over HTTP on a live node (see e2e_test.go): an offer that expires, and an area in
// auto-assign mode.

// dispatchScene is a restaurant with a menu, a customer who can order from it, and online dashers next to it.
type dispatchScene struct {
	n       *liveNode
	rest    string
	staff   string // the restaurant's staff principal
	cust    string // the customer's principal
	area    string // the area (H3 cell) of the restaurant
	dashers []string
}

func newDispatchScene(t *testing.T, n *liveNode, dashers int) *dispatchScene {
	t.Helper()
	const lat, lng = 37.7749, -122.4194
	sc := &dispatchScene{n: n, area: actors.AreaOf(&messages.Position{Lat: lat, Lng: lng})}
	var rest struct{ ID string }
	n.send(t, operator, "POST", "/v1/restaurants", map[string]any{"name": "Thai Basil", "position": map[string]float64{"lat": lat, "lng": lng}, "cuisine": "thai"}, 201, &rest)
	sc.rest, sc.staff = rest.ID, "restaurant:pos_1:"+rest.ID
	n.send(t, sc.staff, "PUT", "/v1/restaurants/"+rest.ID+"/menu", map[string]any{"items": []map[string]any{
		{"id": "pad-thai", "name": "Pad Thai", "price_cents": 1250},
	}}, 200, nil)
	var c struct{ ID string }
	n.send(t, "", "POST", "/v1/customers", map[string]any{"name": "Ann", "email": "ann@example.com", "password": "correct horse"}, 201, &c)
	sc.cust = "customer:" + c.ID
	n.send(t, sc.cust, "PUT", "/v1/customers/me/address", map[string]any{"line1": "1 Market St", "city": "San Francisco", "postal_code": "94105",
		"position": map[string]float64{"lat": 37.7936, "lng": -122.3950}}, 200, nil)
	n.send(t, sc.cust, "PUT", "/v1/customers/me/payment-method", map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}, 200, nil)
	for i := range dashers {
		var d struct{ ID string }
		email := "dasher" + string(rune('a'+i)) + "@example.com"
		n.send(t, operator, "POST", "/v1/dashers", map[string]any{"name": "Dee", "email": email, "password": "long enough", "vehicle": "bike"}, 201, &d)
		n.send(t, "dasher:"+d.ID, "PUT", "/v1/dashers/me/status", map[string]any{"online": true, "position": map[string]float64{"lat": 37.7752, "lng": -122.4185}}, 200, nil)
		sc.dashers = append(sc.dashers, d.ID)
	}
	return sc
}

// order places an order of the customer's cart and has the restaurant accept it, which starts its dispatch.
func (sc *dispatchScene) order(t *testing.T) string {
	t.Helper()
	sc.n.send(t, sc.cust, "POST", "/v1/cart/items", map[string]any{"restaurant_id": sc.rest, "menu_item_id": "pad-thai", "quantity": 1}, 200, nil)
	var o struct{ ID string }
	sc.n.send(t, sc.cust, "POST", "/v1/orders", map[string]any{}, 201, &o)
	sc.n.send(t, sc.staff, "POST", "/v1/restaurants/"+sc.rest+"/orders/"+o.ID+"/accept", map[string]any{"prep_minutes": 10}, 200, nil)
	return o.ID
}

// TestEndToEndOfferExpires: a dasher who lets an offer pass its OfferTTL reads OFFER_EXPIRED in its feed, and a late
// accept is 409 OFFER_EXPIRED. MaxConsecutiveExpiries of 1 sets the dasher offline at that expiry, so the area's
// next wave does not offer it the order again before the late accept.
func TestEndToEndOfferExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster node")
	}
	n := startLiveNode(t, filepath.Join(t.TempDir(), "journal.db"), func(w *actors.WorkflowConfig) {
		w.OfferTTL, w.MaxConsecutiveExpiries = 300*time.Millisecond, 1
	})
	sc := newDispatchScene(t, n, 1)
	order := sc.order(t)
	who := "dasher:" + sc.dashers[0]
	entries, _ := n.follow(t, who, "/v1/dashers/me/feed", 0, "OFFER_EXPIRED")
	offered := slices.IndexFunc(entries, func(e feedEntry) bool { return e.Type == "DELIVERY_OFFERED" && e.OrderID == order })
	expired := slices.IndexFunc(entries, func(e feedEntry) bool { return e.Type == "OFFER_EXPIRED" && e.OrderID == order })
	if offered < 0 || expired < offered {
		t.Fatalf("dasher feed %v", types(entries))
	}
	wantProblem(t, doRequest(t, n.url, "POST", "/v1/dashers/me/offers/"+order+"/accept", "", nil, as(who)...), 409, http.CodeOfferExpired)
	var view struct {
		Status   string `json:"status"`
		DasherID string `json:"dasher_id"`
	}
	n.send(t, sc.cust, "GET", "/v1/orders/"+order, nil, 200, &view)
	if view.DasherID != "" || view.Status != "ACCEPTED" {
		t.Fatalf("order after the late accept %+v", view)
	}
}

// TestEndToEndAutoAssign: once an operator turns on the auto-assign mode of the restaurant's area (PUT
// /v1/admin/areas/{area}/auto-assign), an order accepted by the restaurant is assigned to a dasher without any
// accept: the dasher and the customer read DASHER_ASSIGNED, and the order names its dasher.
func TestEndToEndAutoAssign(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster node")
	}
	n := startLiveNode(t, filepath.Join(t.TempDir(), "journal.db"))
	sc := newDispatchScene(t, n, 1)
	var mode struct {
		Area       string `json:"area"`
		AutoAssign bool   `json:"auto_assign"`
	}
	n.send(t, operator, "PUT", "/v1/admin/areas/"+sc.area+"/auto-assign", map[string]any{"enabled": true}, 200, &mode)
	if mode.Area != sc.area || !mode.AutoAssign {
		t.Fatalf("auto-assign answer %+v", mode)
	}
	order := sc.order(t)
	dasherID := sc.dashers[0]
	entries, _ := n.follow(t, "dasher:"+dasherID, "/v1/dashers/me/feed", 0, "DASHER_ASSIGNED")
	if entries[len(entries)-1].OrderID != order {
		t.Fatalf("dasher feed %v", types(entries))
	}
	n.follow(t, sc.cust, "/v1/customers/me/feed", 0, "DASHER_ASSIGNED")
	var view struct {
		Status   string `json:"status"`
		DasherID string `json:"dasher_id"`
	}
	n.send(t, sc.cust, "GET", "/v1/orders/"+order, nil, 200, &view)
	if view.DasherID != dasherID || view.Status != "DASHER_ASSIGNED" {
		t.Fatalf("auto-assigned order %+v", view)
	}
	var dv struct {
		Assignments []string `json:"assignments"`
	}
	n.send(t, "dasher:"+dasherID, "GET", "/v1/dashers/me", nil, 200, &dv)
	if !slices.Equal(dv.Assignments, []string{order}) {
		t.Fatalf("dasher's assignments %v", dv.Assignments)
	}
}
