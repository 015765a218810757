package oauth_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/platterhq/platter/http/oauth"
)

// The authorisation matrix: every route the edge serves × {anonymous, customer A, customer B, staff of R1 and of
// R2, dasher D1 and D2, operator}, with real tokens from the authorization server on a live node. The route table
// below is checked against the router's route list, so a new route fails this test until it is classified here.

type class int

const (
	public     class = iota // anyone
	selfCust                // a customer acting on itself (…/me, cart, orders)
	selfDasher              // a dasher acting on itself
	restaurant              // staff of the restaurant in the path (R1), operators
	operatorCl              // operators only
	orderParty              // the order's customer, restaurant staff, dasher; operators
)

// routeClass is every route of the edge and who may use it.
var routeClass = map[string]class{
	"GET /healthz":                                          public,
	"GET /readyz":                                           public,
	"GET /metrics":                                          operatorCl,
	"GET /openapi.json":                                     public,
	"GET /v1/admin/cluster":                                 operatorCl,
	"POST /v1/admin/drain":                                  operatorCl,
	"PUT /v1/admin/areas/{area}/auto-assign":                operatorCl,
	"POST /v1/admin/signing-keys/rotate":                    operatorCl,
	"POST /v1/customers":                                    public,
	"GET /v1/customers/me":                                  selfCust,
	"PATCH /v1/customers/me":                                selfCust,
	"PUT /v1/customers/me/address":                          selfCust,
	"PUT /v1/customers/me/payment-method":                   selfCust,
	"GET /v1/customers/me/feed":                             selfCust,
	"GET /v1/search":                                        public,
	"GET /v1/cart":                                          selfCust,
	"POST /v1/cart/items":                                   selfCust,
	"DELETE /v1/cart/items/{menu_item_id}":                  selfCust,
	"POST /v1/orders":                                       selfCust,
	"GET /v1/orders":                                        selfCust,
	"GET /v1/orders/{id}":                                   orderParty,
	"GET /v1/orders/{id}/status":                            orderParty,
	"POST /v1/orders/{id}/cancel":                           orderParty,
	"POST /v1/restaurants":                                  operatorCl,
	"GET /v1/restaurants/{id}":                              public,
	"PUT /v1/restaurants/{id}/menu":                         restaurant,
	"GET /v1/restaurants/{id}/orders":                       restaurant,
	"POST /v1/restaurants/{id}/orders/{order_id}/accept":    restaurant,
	"POST /v1/restaurants/{id}/orders/{order_id}/reject":    restaurant,
	"POST /v1/restaurants/{id}/orders/{order_id}/ready":     restaurant,
	"POST /v1/restaurants/{id}/orders/{order_id}/picked-up": restaurant,
	"GET /v1/restaurants/{id}/feed":                         restaurant,
	"POST /v1/restaurants/{id}/staff-clients":               operatorCl,
	"POST /v1/dashers":                                      operatorCl,
	"GET /v1/dashers/me":                                    selfDasher,
	"PUT /v1/dashers/me/status":                             selfDasher,
	"PUT /v1/dashers/me/location":                           selfDasher,
	"POST /v1/dashers/me/offers/{order_id}/accept":          selfDasher,
	"POST /v1/dashers/me/offers/{order_id}/decline":         selfDasher,
	"POST /v1/dashers/me/orders/{order_id}/delivered":       selfDasher,
	"GET /v1/dashers/me/feed":                               selfDasher,
	"GET /.well-known/jwks.json":                            public,
	"GET /oauth2/authorize":                                 public,
	"POST /oauth2/authorize":                                public,
	"POST /oauth2/token":                                    public,
	"POST /oauth2/revoke":                                   public,
}

// outcome is what a principal gets on a route: allowed (not refused by the authorisation hook: no 401
// UNAUTHENTICATED or 403 PERMISSION_DENIED problem; on ownership-scoped routes a read answers 200), or refused with
// exactly this status (and its problem code).
type outcome int

const (
	allowed outcome = 0
	deny401 outcome = 401
	deny403 outcome = 403
	deny404 outcome = 404
)

type principal struct {
	name, token string
	role        string // customer, dasher, restaurant, operator, "" (anonymous)
	owner       bool   // owns the test's order / restaurant R1 (customer A, staff R1), or is it (A, D1 on /me)
}

// expected decides the outcome of a principal on a class of route.
func expected(c class, route string, p principal) outcome {
	if c == public {
		return allowed
	}
	if p.role == "" {
		return deny401
	}
	switch c {
	case operatorCl:
		if p.role == "operator" {
			return allowed
		}
		return deny403
	case selfCust:
		if p.role == "customer" || p.role == "operator" {
			return allowed
		}
		return deny403
	case selfDasher:
		if p.role == "dasher" || p.role == "operator" {
			return allowed
		}
		return deny403
	case restaurant:
		switch {
		case p.role == "operator", p.role == "restaurant" && p.owner:
			return allowed
		case p.role == "restaurant":
			return deny404 // another restaurant's: it does not exist for them
		}
		return deny403
	case orderParty:
		switch {
		case (p.role == "operator" || p.role == "dasher") && route == "POST /v1/orders/{id}/cancel":
			return deny403 // by role, before the order is read: the customer or the restaurant cancels
		case p.role == "operator", p.owner && (p.role == "customer" || p.role == "restaurant" || p.role == "dasher"):
			return allowed // the assigned dasher D1 is a party of the order
		}
		return deny404 // someone else's order
	}
	panic("unknown class")
}

func TestAuthorisationMatrix(t *testing.T) {
	n := startNode(t, oauth.Config{})
	op := n.operatorToken(t)
	mustDo := func(token, method, path, body string, want int, out any) {
		t.Helper()
		status, b := n.do(t, token, method, path, body)
		if status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ids struct{ ID string }
	restaurants := make([]string, 2)
	staff := make([]string, 2)
	for i := range restaurants {
		mustDo(op, "POST", "/v1/restaurants", `{"name":"R","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`, 201, &ids)
		restaurants[i] = ids.ID
		var sc struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		mustDo(op, "POST", "/v1/restaurants/"+ids.ID+"/staff-clients", "", 201, &sc)
		staff[i] = n.clientToken(t, sc.ClientID, sc.ClientSecret).AccessToken
	}
	r1 := restaurants[0]
	mustDo(staff[0], "PUT", "/v1/restaurants/"+r1+"/menu", `{"items":[{"id":"m1","name":"Pad Thai","price_cents":1250,"tags":["noodles"]}]}`, 200, nil)

	app := appConfig(n, "platter://callback")
	custIDs := []string{n.signUp(t, "a@example.com", "password A1"), n.signUp(t, "b@example.com", "password B1")}
	custTok := []string{
		codeFlow(t, n, app, "a@example.com", "password A1").AccessToken,
		codeFlow(t, n, app, "b@example.com", "password B1").AccessToken,
	}
	dasherIDs := make([]string, 2)
	dasherTok := make([]string, 2)
	for i := range dasherTok {
		email := fmt.Sprintf("d%d@example.com", i+1)
		mustDo(op, "POST", "/v1/dashers", `{"name":"D","email":"`+email+`","password":"dasher pw 1","vehicle":"bike","capacity":1}`, 201, &ids)
		dasherIDs[i] = ids.ID
		dasherTok[i] = codeFlow(t, n, app, email, "dasher pw 1").AccessToken
	}

	// Customer A orders from R1.
	a := custTok[0]
	mustDo(a, "PUT", "/v1/customers/me/payment-method", `{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}`, 200, nil)
	mustDo(a, "PUT", "/v1/customers/me/address", `{"line1":"1 Main St","city":"SF","postal_code":"94103","position":{"lat":37.78,"lng":-122.42}}`, 200, nil)
	mustDo(a, "POST", "/v1/cart/items", `{"restaurant_id":"`+r1+`","menu_item_id":"m1","quantity":1}`, 200, nil)
	mustDo(a, "POST", "/v1/orders", `{}`, 201, &ids)
	order := ids.ID

	// Dasher D1 goes online near R1 (D2 stays offline); R1 accepts the order, the area offers it to D1 alone.
	d1, d2 := dasherTok[0], dasherTok[1]
	mustDo(d1, "PUT", "/v1/dashers/me/status", `{"online":true,"position":{"lat":37.7705,"lng":-122.4105}}`, 200, nil)
	mustDo(staff[0], "POST", "/v1/restaurants/"+r1+"/orders/"+order+"/accept", `{"prep_minutes":10}`, 200, nil)
	offered := func() bool {
		var dv struct {
			Offers []struct {
				OrderID string `json:"order_id"`
			} `json:"offers"`
		}
		mustDo(d1, "GET", "/v1/dashers/me", "", 200, &dv)
		return len(dv.Offers) == 1 && dv.Offers[0].OrderID == order
	}
	for deadline := time.Now().Add(30 * time.Second); !offered(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the order was not offered to D1 within 30 s")
		}
	}
	// D2 cannot answer D1's offer, before or after D1 accepts it, nor mark D1's delivery; the order is unchanged.
	var view struct {
		Status   string `json:"status"`
		DasherID string `json:"dasher_id"`
	}
	orderView := func() string {
		t.Helper()
		mustDo(custTok[0], "GET", "/v1/orders/"+order, "", 200, &view)
		return view.Status + "/" + view.DasherID
	}
	// want is the refusal: 404 NOT_FOUND for an offer D2 does not have, and for a delivery of an order it is not
	// assigned to (the Order answers a foreign dasher's step NOT_FOUND in every stage).
	d2Refused := func(when string, want int, paths ...string) {
		t.Helper()
		before := orderView()
		code := map[int]string{404: `"NOT_FOUND"`, 409: `"FAILED_PRECONDITION"`}[want]
		for _, path := range paths {
			if status, b := n.do(t, d2, "POST", path, ""); status != want || !strings.Contains(string(b), code) {
				t.Errorf("D2 %s: POST %s: %d %s, want %d %s", when, path, status, b, want, code)
			}
		}
		if after := orderView(); after != before {
			t.Errorf("D2's attempts %s changed the order: %s -> %s", when, before, after)
		}
	}
	offerPaths := []string{"/v1/dashers/me/offers/" + order + "/accept", "/v1/dashers/me/offers/" + order + "/decline"}
	d2Refused("while D1 holds the offer", 404, offerPaths...)
	var dv struct {
		Assignments []string `json:"assignments"`
	}
	mustDo(d1, "POST", "/v1/dashers/me/offers/"+order+"/accept", "", 200, &dv)
	if len(dv.Assignments) != 1 || dv.Assignments[0] != order {
		t.Fatalf("D1's assignments after accepting %v, want [%s]", dv.Assignments, order)
	}
	if orderView(); view.DasherID != dasherIDs[0] {
		t.Fatalf("order after D1 accepted: %+v, want dasher %s", view, dasherIDs[0])
	}
	d2Refused("once D1 is assigned", 404, offerPaths...)
	// Picked up: only the delivery's dasher may mark it delivered (D1 does, as a selfDasher route, in the loop).
	mustDo(staff[0], "POST", "/v1/restaurants/"+r1+"/orders/"+order+"/ready", "", 200, nil)
	mustDo(staff[0], "POST", "/v1/restaurants/"+r1+"/orders/"+order+"/picked-up", "", 200, nil)
	d2Refused("once D1 picked it up", 404, "/v1/dashers/me/orders/"+order+"/delivered")
	if orderView(); view.Status != "PICKED_UP" {
		t.Fatalf("order before the matrix: %+v, want PICKED_UP by %s", view, dasherIDs[0])
	}
	for _, path := range []string{"/v1/orders/" + order, "/v1/orders/" + order + "/status"} {
		if status, b := n.do(t, d1, "GET", path, ""); status != 200 {
			t.Errorf("assigned D1 GET %s: %d %s, want 200", path, status, b)
		}
		if status, b := n.do(t, d2, "GET", path, ""); status != 404 {
			t.Errorf("D2 GET %s of D1's order: %d %s, want 404", path, status, b)
		}
	}

	principals := []principal{
		{name: "anonymous"},
		{name: "customer A", token: custTok[0], role: "customer", owner: true},
		{name: "customer B", token: custTok[1], role: "customer"},
		{name: "staff R1", token: staff[0], role: "restaurant", owner: true},
		{name: "staff R2", token: staff[1], role: "restaurant"},
		{name: "dasher D1", token: dasherTok[0], role: "dasher", owner: true},
		{name: "dasher D2", token: dasherTok[1], role: "dasher"},
		{name: "operator", token: op, role: "operator"},
	}

	served := map[string]bool{}
	for _, r := range n.srv.Routes() {
		served[r.String()] = true
		if _, ok := routeClass[r.String()]; !ok {
			t.Errorf("route %s is not in the authorisation matrix: classify it in routeClass", r)
		}
	}
	for r := range routeClass {
		if !served[r] {
			t.Errorf("the matrix lists %s, which the edge does not serve", r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, r := range n.srv.Routes() {
		key := r.String()
		c := routeClass[key]
		path := r.Pattern
		if strings.HasPrefix(path, "/v1/orders/") {
			path = strings.Replace(path, "{id}", order, 1)
		}
		path = strings.NewReplacer("{id}", r1, "{order_id}", order, "{menu_item_id}", "m1").Replace(path)
		if strings.HasSuffix(path, "/feed") {
			path += "?wait=0"
		}
		if key == "POST /v1/admin/drain" {
			continue // it would stop the node; its class is checked for everyone else below
		}
		for _, p := range principals {
			want := expected(c, key, p)
			body := ""
			if r.Method != "GET" && r.Method != "DELETE" {
				body = "{}"
			}
			if key == "GET /oauth2/authorize" {
				path = "/oauth2/authorize?" + url.Values{"response_type": {"code"}, "client_id": {oauth.AppClientID},
					"redirect_uri": {"platter://callback"}, "state": {"state-0123456789"},
					"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}.Encode()
			}
			status, b := n.do(t, p.token, r.Method, path, body)
			var problem struct{ Code string }
			_ = json.Unmarshal(b, &problem)
			refused := problem.Code == "UNAUTHENTICATED" || problem.Code == "PERMISSION_DENIED"
			codes := map[outcome]string{deny401: "UNAUTHENTICATED", deny403: "PERMISSION_DENIED", deny404: "NOT_FOUND"}
			switch {
			case want == allowed && refused:
				t.Errorf("%s as %s: %d %s, want it allowed", key, p.name, status, b)
			case want == allowed && (c == orderParty || c == restaurant) && r.Method == "GET" && status != 200:
				t.Errorf("%s as %s: %d %s, want 200 (its own)", key, p.name, status, b)
			case want != allowed && (status != int(want) || problem.Code != codes[want]):
				t.Errorf("%s as %s: %d %s, want %d %s", key, p.name, status, b, want, codes[want])
			}
		}
	}
	// Drain: refused for everyone but the operator (who is not asked here: it would stop the node).
	for _, p := range principals[:len(principals)-1] {
		if status, _ := n.do(t, p.token, "POST", "/v1/admin/drain", "{}"); status != int(expected(operatorCl, "", p)) {
			t.Errorf("POST /v1/admin/drain as %s: %d", p.name, status)
		}
	}

	// No cross-tenant reads through the …/me routes: each caller sees itself.
	for i, tok := range custTok {
		status, b := n.do(t, tok, "GET", "/v1/customers/me", "")
		if status != 200 || !strings.Contains(string(b), custIDs[i]) || strings.Contains(string(b), custIDs[1-i]) {
			t.Errorf("customer %d sees %d %s", i, status, b)
		}
		status, b = n.do(t, tok, "GET", "/v1/orders", "")
		if status != 200 || (i == 1) == strings.Contains(string(b), order) {
			t.Errorf("customer %d's orders: %d %s", i, status, b)
		}
	}
	for i, tok := range dasherTok {
		status, b := n.do(t, tok, "GET", "/v1/dashers/me", "")
		if status != 200 || !strings.Contains(string(b), dasherIDs[i]) || strings.Contains(string(b), dasherIDs[1-i]) {
			t.Errorf("dasher %d sees %d %s", i, status, b)
		}
	}
	// Staff of R2 cannot act on R1's order through their own restaurant's path either.
	status, b := n.do(t, staff[1], "POST", "/v1/restaurants/"+restaurants[1]+"/orders/"+order+"/accept", `{"prep_minutes":10}`)
	if status != 404 {
		t.Errorf("R2 staff accepting R1's order through R2's path: %d %s, want 404", status, b)
	}
	// And the order is still A's, delivered by D1 (its only allowed change in the loop: D1's own delivered call),
	// untouched by everyone else's attempts.
	if orderView(); view.Status != "DELIVERED" || view.DasherID != dasherIDs[0] {
		t.Errorf("order after the matrix: %+v, want DELIVERED by %s", view, dasherIDs[0])
	}
}
