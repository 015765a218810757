package sim

// fakeAPI: an in-memory marketplace behind the routes of API.md that the simulator uses, with the OAuth flows it
// uses (client_credentials, authorization code with PKCE S256, refresh). It keeps the workflow's shape (the
// restaurant accepts, dashers are offered the order two at a time and race for it, the food is picked up once ready
// and assigned, the dasher delivers) and can inject faults the invariant checker must catch.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeFaults struct {
	gapInCustomerFeed bool // one customer feed skips a cursor
	doubleAssign      bool // an offer may be accepted by two dashers
	failPlace         int  // every n-th order placement answers 503
}

type principal struct {
	role, id string
}

type fakeEntry struct {
	Cursor  uint64    `json:"cursor"`
	Type    string    `json:"type"`
	OrderID string    `json:"order_id"`
	At      time.Time `json:"at"`
}

type fakeFeed struct {
	entries []fakeEntry
	next    uint64
	wake    chan struct{}
}

type fakeOrder struct {
	id, customer, restaurant, status, dasher string
	ready                                    bool
	offered                                  map[string]bool
	declined                                 map[string]bool
}

type fakeAPI struct {
	t      *testing.T
	faults fakeFaults
	srv    *httptest.Server

	mu          sync.Mutex
	seq         int
	tokens      map[string]principal
	logins      map[string][2]string // email → role:id, password
	codes       map[string][2]string // code → role:id, challenge
	refresh     map[string]principal
	staff       map[string][2]string // client id → secret, restaurant
	restaurants map[string]string    // id → cuisine
	menus       map[string][]string  // id → item ids
	carts       map[string][]string  // customer → restaurant, items...
	dashers     []string
	online      map[string]bool
	orders      map[string]*fakeOrder
	feeds       map[string]*fakeFeed
	gapDone     bool
	placeCount  int
	maxPolls    int
	polls       int
}

func newFakeAPI(t *testing.T, faults fakeFaults) *fakeAPI {
	f := &fakeAPI{t: t, faults: faults, tokens: map[string]principal{}, logins: map[string][2]string{}, codes: map[string][2]string{},
		refresh: map[string]principal{}, staff: map[string][2]string{}, restaurants: map[string]string{}, menus: map[string][]string{},
		carts: map[string][]string{}, online: map[string]bool{}, orders: map[string]*fakeOrder{}, feeds: map[string]*fakeFeed{}}
	mux := nethttp.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", f.token)
	mux.HandleFunc("POST /oauth2/authorize", f.authorize)
	mux.HandleFunc("/", f.api)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s%d", prefix, f.seq)
}

func (f *fakeAPI) issue(p principal) (string, string) {
	at, rt := f.id("at-"), f.id("rt-")
	f.tokens[at], f.refresh[rt] = p, p
	return at, rt
}

func writeJSON(w nethttp.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w nethttp.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "code": code, "title": code})
}

func (f *fakeAPI) token(w nethttp.ResponseWriter, r *nethttp.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	var p principal
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		switch {
		case id == "op" && secret == "op-secret":
			p = principal{"operator", "op"}
		case f.staff[id][0] == secret && secret != "":
			p = principal{"restaurant", f.staff[id][1]}
		default:
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
			return
		}
	case "authorization_code":
		c, ok := f.codes[r.PostForm.Get("code")]
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != c[1] || r.PostForm.Get("client_id") != AppClientID {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		delete(f.codes, r.PostForm.Get("code"))
		role, id, _ := strings.Cut(c[0], ":")
		p = principal{role, id}
	case "refresh_token":
		var ok bool
		if p, ok = f.refresh[r.PostForm.Get("refresh_token")]; !ok {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		delete(f.refresh, r.PostForm.Get("refresh_token"))
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	at, rt := f.issue(p)
	// Short-lived, so that a run of a few seconds exercises the refresh of signed-in tokens.
	writeJSON(w, 200, map[string]any{"access_token": at, "refresh_token": rt, "token_type": "Bearer", "expires_in": 31})
}

func (f *fakeAPI) authorize(w nethttp.ResponseWriter, r *nethttp.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	login, ok := f.logins[r.PostForm.Get("username")]
	if !ok || login[1] != r.PostForm.Get("password") || r.PostForm.Get("code_challenge_method") != "S256" {
		w.WriteHeader(401)
		return
	}
	code := f.id("code-")
	f.codes[code] = [2]string{login[0], r.PostForm.Get("code_challenge")}
	nethttp.Redirect(w, r, r.PostForm.Get("redirect_uri")+"?code="+code+"&state="+neturl.QueryEscape(r.PostForm.Get("state")), nethttp.StatusFound)
}

// notify appends an entry to a feed and wakes its pollers (f.mu held).
func (f *fakeAPI) notify(feed, typ, order string) {
	fd := f.feed(feed)
	fd.next++
	if f.faults.gapInCustomerFeed && !f.gapDone && strings.HasPrefix(feed, "customer/") && fd.next == 2 {
		fd.next++ // the fault: cursor 2 is never written
		f.gapDone = true
	}
	fd.entries = append(fd.entries, fakeEntry{Cursor: fd.next, Type: typ, OrderID: order, At: time.Now()})
	close(fd.wake)
	fd.wake = make(chan struct{})
}

func (f *fakeAPI) feed(name string) *fakeFeed {
	fd, ok := f.feeds[name]
	if !ok {
		fd = &fakeFeed{wake: make(chan struct{})}
		f.feeds[name] = fd
	}
	return fd
}

func (f *fakeAPI) api(w nethttp.ResponseWriter, r *nethttp.Request) {
	var body map[string]any
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	f.mu.Lock()
	who, authed := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	route := r.Method + " " + r.URL.Path
	if strings.HasSuffix(r.URL.Path, "/feed") {
		feed := ""
		switch {
		case who.role == "customer" && r.URL.Path == CustomerFeed:
			feed = "customer/" + who.id
		case who.role == "dasher" && r.URL.Path == DasherFeed:
			feed = "dasher/" + who.id
		case who.role == "restaurant" && len(parts) == 4 && parts[2] == who.id:
			feed = "restaurant/" + who.id
		}
		if feed == "" {
			f.mu.Unlock()
			problem(w, 404, "NOT_FOUND")
			return
		}
		f.poll(w, r, feed) // unlocks
		return
	}
	defer f.mu.Unlock()
	if !authed && route != "POST /v1/customers" && !strings.HasPrefix(route, "GET /v1/search") {
		problem(w, 401, "UNAUTHENTICATED")
		return
	}
	switch {
	case route == "POST /v1/customers":
		id := f.id("c_")
		f.logins[body["email"].(string)] = [2]string{"customer:" + id, body["password"].(string)}
		writeJSON(w, 201, map[string]string{"id": id})
	case route == "PUT /v1/customers/me/address", route == "PUT /v1/customers/me/payment-method":
		writeJSON(w, 200, map[string]any{})
	case r.Method == "GET" && r.URL.Path == "/v1/search":
		q := r.URL.Query()["q"]
		var results []map[string]any
		for id, cuisine := range f.restaurants {
			if len(q) > 0 && q[0] != cuisine {
				continue
			}
			var items []map[string]any
			for _, it := range f.menus[id] {
				items = append(items, map[string]any{"menu_item_id": it, "price_cents": 1000})
			}
			results = append(results, map[string]any{"restaurant_id": id, "items": items})
		}
		writeJSON(w, 200, map[string]any{"results": results})
	case route == "GET /v1/cart":
		var lines []map[string]any
		if cart := f.carts[who.id]; len(cart) > 0 {
			for _, it := range cart[1:] {
				lines = append(lines, map[string]any{"menu_item_id": it})
			}
		}
		writeJSON(w, 200, map[string]any{"items": lines})
	case route == "POST /v1/cart/items":
		rid := body["restaurant_id"].(string)
		cart := f.carts[who.id]
		if len(cart) > 0 && cart[0] != rid {
			problem(w, 409, "CART_CONFLICT")
			return
		}
		if len(cart) == 0 {
			cart = []string{rid}
		}
		f.carts[who.id] = append(cart, body["menu_item_id"].(string))
		writeJSON(w, 200, map[string]any{})
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/v1/cart/items/"):
		if cart := f.carts[who.id]; len(cart) > 0 {
			kept := []string{cart[0]}
			for _, it := range cart[1:] {
				if it != parts[3] {
					kept = append(kept, it)
				}
			}
			if len(kept) == 1 {
				kept = nil
			}
			f.carts[who.id] = kept
		}
		writeJSON(w, 200, map[string]any{})
	case route == "POST /v1/orders":
		f.placeCount++
		if f.faults.failPlace > 0 && f.placeCount%f.faults.failPlace == 0 {
			problem(w, 503, "UNAVAILABLE")
			return
		}
		cart := f.carts[who.id]
		if len(cart) < 2 {
			problem(w, 409, "CART_EMPTY")
			return
		}
		o := &fakeOrder{id: f.id("o_"), customer: who.id, restaurant: cart[0], status: "PENDING_ACCEPTANCE", offered: map[string]bool{}, declined: map[string]bool{}}
		f.orders[o.id] = o
		delete(f.carts, who.id)
		f.notify("customer/"+o.customer, "ORDER_PLACED", o.id)
		f.notify("restaurant/"+o.restaurant, "ORDER_PLACED", o.id)
		writeJSON(w, 201, map[string]any{"id": o.id, "status": o.status, "total_cents": 1000})
	case r.Method == "GET" && len(parts) == 4 && parts[1] == "orders" && parts[3] == "status":
		o, ok := f.orders[parts[2]]
		if !ok {
			problem(w, 404, "NOT_FOUND")
			return
		}
		writeJSON(w, 200, map[string]any{"id": o.id, "status": o.status})
	case r.Method == "POST" && len(parts) == 4 && parts[1] == "orders" && parts[3] == "cancel":
		o := f.orders[parts[2]]
		if o == nil || o.customer != who.id {
			problem(w, 404, "NOT_FOUND")
			return
		}
		switch o.status {
		case "PICKED_UP", "DELIVERED", "CANCELLED", "REJECTED":
			problem(w, 409, "ORDER_NOT_CANCELLABLE")
			return
		}
		o.status = "CANCELLED"
		f.notify("customer/"+o.customer, "ORDER_CANCELLED", o.id)
		f.notify("restaurant/"+o.restaurant, "ORDER_CANCELLED", o.id)
		if o.dasher != "" {
			f.notify("dasher/"+o.dasher, "ORDER_CANCELLED", o.id)
		}
		writeJSON(w, 200, map[string]any{"id": o.id, "status": o.status})
	case route == "POST /v1/restaurants" && who.role == "operator":
		id := f.id("r_")
		f.restaurants[id] = body["cuisine"].(string)
		writeJSON(w, 201, map[string]string{"id": id})
	case r.Method == "POST" && len(parts) == 4 && parts[1] == "restaurants" && parts[3] == "staff-clients" && who.role == "operator":
		id := f.id("rs_")
		f.staff[id] = [2]string{"secret-" + id, parts[2]}
		writeJSON(w, 201, map[string]string{"client_id": id, "client_secret": "secret-" + id, "restaurant_id": parts[2]})
	case r.Method == "PUT" && len(parts) == 4 && parts[3] == "menu" && who.role == "restaurant" && who.id == parts[2]:
		var ids []string
		for _, it := range body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		f.menus[parts[2]] = ids
		writeJSON(w, 200, map[string]any{})
	case r.Method == "POST" && len(parts) == 6 && parts[1] == "restaurants" && parts[3] == "orders" && who.role == "restaurant" && who.id == parts[2]:
		f.restaurantAction(w, parts[4], parts[5])
	case route == "POST /v1/dashers" && who.role == "operator":
		id := f.id("d_")
		f.logins[body["email"].(string)] = [2]string{"dasher:" + id, body["password"].(string)}
		f.dashers = append(f.dashers, id)
		writeJSON(w, 201, map[string]string{"id": id})
	case route == "PUT /v1/dashers/me/status" && who.role == "dasher":
		f.online[who.id] = body["online"].(bool)
		writeJSON(w, 200, map[string]any{})
	case route == "PUT /v1/dashers/me/location" && who.role == "dasher":
		writeJSON(w, 200, map[string]any{})
	case r.Method == "POST" && len(parts) == 6 && parts[1] == "dashers" && who.role == "dasher":
		f.dasherAction(w, who.id, parts[4], parts[5])
	default:
		problem(w, 404, "NOT_FOUND")
	}
}

// poll answers a long poll (f.mu held on entry, released here).
func (f *fakeAPI) poll(w nethttp.ResponseWriter, r *nethttp.Request, feed string) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	wait, _ := strconv.ParseFloat(r.URL.Query().Get("wait"), 64)
	deadline := time.After(time.Duration(wait * float64(time.Second)))
	f.polls++
	f.maxPolls = max(f.maxPolls, f.polls)
	defer func() { f.mu.Lock(); f.polls--; f.mu.Unlock() }()
	for {
		fd := f.feed(feed)
		var out []fakeEntry
		for _, e := range fd.entries {
			if e.Cursor > after {
				out = append(out, e)
			}
		}
		wake := fd.wake
		f.mu.Unlock()
		if len(out) > 0 {
			writeJSON(w, 200, map[string]any{"entries": out, "next_cursor": out[len(out)-1].Cursor})
			return
		}
		select {
		case <-wake:
		case <-deadline:
			w.WriteHeader(204)
			return
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
	}
}

func (f *fakeAPI) restaurantAction(w nethttp.ResponseWriter, orderID, act string) {
	o := f.orders[orderID]
	if o == nil {
		problem(w, 404, "NOT_FOUND")
		return
	}
	to := map[string]string{"accept": "ACCEPTED", "reject": "REJECTED", "ready": "READY_FOR_PICKUP", "picked-up": "PICKED_UP"}[act]
	ok := false
	switch act {
	case "accept", "reject":
		ok = o.status == "PENDING_ACCEPTANCE"
	case "ready":
		ok = o.status == "ACCEPTED" || o.status == "DASHER_ASSIGNED"
	case "picked-up":
		ok = o.ready && o.dasher != "" && o.status != "CANCELLED" && o.status != "PICKED_UP"
	}
	if !ok {
		problem(w, 409, "FAILED_PRECONDITION")
		return
	}
	o.status = to
	switch act {
	case "accept":
		f.notify("customer/"+o.customer, "ORDER_ACCEPTED", o.id)
		f.offer(o, 2)
	case "reject":
		f.notify("customer/"+o.customer, "ORDER_REJECTED", o.id)
		f.notify("restaurant/"+o.restaurant, "ORDER_REJECTED", o.id)
	case "ready":
		o.ready = true
		f.notify("customer/"+o.customer, "FOOD_READY", o.id)
	case "picked-up":
		f.notify("customer/"+o.customer, "ORDER_PICKED_UP", o.id)
	}
	writeJSON(w, 200, map[string]any{"id": o.id, "status": o.status})
}

// offer offers the order to up to n online dashers that were not offered it yet.
func (f *fakeAPI) offer(o *fakeOrder, n int) {
	for _, d := range f.dashers {
		if n == 0 {
			return
		}
		if f.online[d] && !o.offered[d] && !o.declined[d] {
			o.offered[d] = true
			f.notify("dasher/"+d, "DELIVERY_OFFERED", o.id)
			n--
		}
	}
	if n > 0 && len(o.declined) > 0 { // everyone was asked: ask those who declined again
		clear(o.declined)
		clear(o.offered)
		f.offer(o, n)
	}
}

func (f *fakeAPI) dasherAction(w nethttp.ResponseWriter, dasher, orderID, act string) {
	o := f.orders[orderID]
	if o == nil {
		problem(w, 404, "NOT_FOUND")
		return
	}
	switch act {
	case "accept":
		if o.status == "CANCELLED" || o.status == "REJECTED" {
			problem(w, 409, "OFFER_EXPIRED")
			return
		}
		if !o.offered[dasher] || (o.dasher != "" && !f.faults.doubleAssign) {
			problem(w, 409, "OFFER_TAKEN")
			return
		}
		o.dasher = dasher
		if !o.ready {
			o.status = "DASHER_ASSIGNED"
		}
		f.notify("customer/"+o.customer, "DASHER_ASSIGNED", o.id)
		f.notify("restaurant/"+o.restaurant, "DASHER_ASSIGNED", o.id)
	case "decline":
		o.declined[dasher] = true
		delete(o.offered, dasher)
		if o.dasher == "" && o.status != "CANCELLED" {
			f.offer(o, 1)
		}
	case "delivered":
		if o.dasher != dasher || o.status != "PICKED_UP" {
			problem(w, 409, "FAILED_PRECONDITION")
			return
		}
		o.status = "DELIVERED"
		f.notify("customer/"+o.customer, "ORDER_DELIVERED", o.id)
		f.notify("restaurant/"+o.restaurant, "ORDER_DELIVERED", o.id)
		f.notify("dasher/"+dasher, "ORDER_DELIVERED", o.id)
	}
	writeJSON(w, 200, map[string]any{"id": o.id, "status": o.status})
}

func (f *fakeAPI) statuses() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, o := range f.orders {
		out[o.status]++
	}
	return out
}
