package actors

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Customer states the decision tests start from.
func absentCustomer() *messages.CustomerState { return &messages.CustomerState{} }

func createdCustomer() *messages.CustomerState {
	return &messages.CustomerState{Created: true, Name: "Ada", Email: "ada@example.com", Phone: "+1 415 555 0100"}
}

func testAddress() *messages.Address {
	return &messages.Address{Line1: "1 Market St", City: "San Francisco", PostalCode: "94105", Position: &messages.Position{Lat: 37.79, Lng: -122.39}}
}

func withCart(s *messages.CustomerState) *messages.CustomerState {
	s.Cart = &messages.Cart{RestaurantId: "r_1", RestaurantName: "Thai Corner", Pickup: &messages.Position{Lat: 37.77, Lng: -122.41},
		Items: []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 2, PriceCents: 1250}}}
	return s
}

func readyCustomer() *messages.CustomerState {
	s := withCart(createdCustomer())
	s.Address = testAddress()
	s.PaymentMethod = &messages.PaymentMethod{Token: "tok_1", Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030}
	return s
}

// customerStates are every state shape a command may meet.
func customerStates() map[string]func() *messages.CustomerState {
	return map[string]func() *messages.CustomerState{
		"absent":     absentCustomer,
		"created":    createdCustomer,
		"with cart":  func() *messages.CustomerState { return withCart(createdCustomer()) },
		"ready":      readyCustomer,
		"with order": func() *messages.CustomerState { return withOrder(readyCustomer(), "o_1", StatusAccepted) },
	}
}

func withOrder(s *messages.CustomerState, id, status string) *messages.CustomerState {
	s.Orders = append(s.Orders, &messages.CustomerOrder{OrderId: id, RestaurantId: "r_1", TotalCents: 2500, Status: status,
		PlacedAt: timestamppb.New(testNow)})
	return s
}

// runCustomer runs a decision on a copy of state, checks that it did not change the state, and folds its events into
// the copy (feed items and outbox entries are not folded by the kind) to return the state after.
func runCustomer(t *testing.T, state *messages.CustomerState, decide func(*messages.CustomerState) ([]proto.Message, error)) ([]proto.Message, *messages.CustomerState, error) {
	t.Helper()
	s := proto.Clone(state).(*messages.CustomerState)
	events, err := decide(s)
	if !proto.Equal(s, state) {
		t.Fatal("a decision changed the state")
	}
	if err != nil && len(events) != 0 {
		t.Fatalf("refusal %v with events %v", err, events)
	}
	for _, ev := range events {
		switch ev.(type) {
		case *messages.FeedItem, *messages.OutboxAdded:
			continue
		}
		if err := applyCustomer(s, ev); err != nil {
			t.Fatalf("fold %T: %v", ev, err)
		}
	}
	return events, s, err
}

// checkByState checks that decide answers want[state] in every state of customerStates ("*": the others).
func checkByState(t *testing.T, decide func(*messages.CustomerState) ([]proto.Message, error), want map[string]messages.ErrorReason) {
	t.Helper()
	for name, state := range customerStates() {
		w, ok := want[name]
		if !ok {
			w = want["*"]
		}
		_, _, err := runCustomer(t, state(), decide)
		if got := codeOf(t, err); got != w {
			t.Errorf("%s: code %v (err %v), want %v", name, got, err, w)
		}
	}
}

// accepted is the code of no refusal.
const accepted = messages.ErrorReason_ERROR_REASON_UNSPECIFIED

func TestDecideCreateCustomer(t *testing.T) {
	valid := &messages.CreateCustomer{CommandId: "c", Name: " Ada ", Email: " Ada@Example.com ", Phone: "+1 (415) 555-0100"}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideCreateCustomer(s, valid, testNow)
	},
		map[string]messages.ErrorReason{"absent": accepted, "*": messages.ErrorReason_ALREADY_EXISTS})
	events, s, _ := runCustomer(t, absentCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideCreateCustomer(s, valid, testNow)
	})
	if len(events) != 1 || !s.GetCreated() || s.GetName() != "Ada" || s.GetEmail() != "ada@example.com" || s.GetPhone() != "+1 (415) 555-0100" ||
		!s.GetCreatedAt().AsTime().Equal(testNow) {
		t.Fatalf("created %v from %v", s, events)
	}
	invalid := map[string]*messages.CreateCustomer{
		"no name":         {Email: "a@b.c"},
		"long name":       {Name: strings.Repeat("n", MaxNameLen+1), Email: "a@b.c"},
		"no email":        {Name: "Ada"},
		"email without @": {Name: "Ada", Email: "ada.example.com"},
		"email two @":     {Name: "Ada", Email: "a@b@c"},
		"email spaces":    {Name: "Ada", Email: "a da@b.c"},
		"long email":      {Name: "Ada", Email: strings.Repeat("a", MaxEmailLen) + "@b.c"},
		"phone letters":   {Name: "Ada", Email: "a@b.c", Phone: "call me"},
		"phone short":     {Name: "Ada", Email: "a@b.c", Phone: "123"},
		"phone long":      {Name: "Ada", Email: "a@b.c", Phone: strings.Repeat("1", MaxPhoneLen+1)},
	}
	for name, c := range invalid {
		t.Run(name, func(t *testing.T) {
			checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideCreateCustomer(s, c, testNow) },
				map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
		})
	}
}

func TestDecideUpdateProfile(t *testing.T) {
	rename := &messages.UpdateCustomerProfile{CommandId: "u", Name: "Ada L."}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideUpdateProfile(s, rename, testNow)
	},
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "*": accepted})
	_, s, _ := runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideUpdateProfile(s, rename, testNow)
	})
	if s.GetName() != "Ada L." || s.GetPhone() != "+1 415 555 0100" {
		t.Fatalf("after rename %v", s)
	}
	phone := &messages.UpdateCustomerProfile{CommandId: "u", Phone: "+44 20 7946 0000"}
	_, s, _ = runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideUpdateProfile(s, phone, testNow)
	})
	if s.GetName() != "Ada" || s.GetPhone() != "+44 20 7946 0000" {
		t.Fatalf("after phone change %v", s)
	}
	same := &messages.UpdateCustomerProfile{CommandId: "u", Name: "Ada"}
	if events, _, err := runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) { return decideUpdateProfile(s, same, testNow) }); err != nil || len(events) != 0 {
		t.Fatalf("unchanged profile: %v, %v", events, err)
	}
	for _, c := range []*messages.UpdateCustomerProfile{{}, {Name: " "}, {Phone: "x"}, {Name: strings.Repeat("n", MaxNameLen+1)}} {
		checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideUpdateProfile(s, c, testNow) },
			map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
	}
}

func TestDecideSetAddress(t *testing.T) {
	set := &messages.SetAddress{CommandId: "a", Address: testAddress()}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideSetAddress(s, set, testNow) },
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "*": accepted})
	_, s, _ := runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) { return decideSetAddress(s, set, testNow) })
	if !proto.Equal(s.GetAddress(), testAddress()) {
		t.Fatalf("address %v", s.GetAddress())
	}
	if events, _, err := runCustomer(t, readyCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) { return decideSetAddress(s, set, testNow) }); err != nil || len(events) != 0 {
		t.Fatalf("same address again: %v, %v", events, err)
	}
	bad := func(edit func(a *messages.Address)) *messages.SetAddress {
		a := testAddress()
		edit(a)
		return &messages.SetAddress{CommandId: "a", Address: a}
	}
	for name, c := range map[string]*messages.SetAddress{
		"no address":      {CommandId: "a"},
		"no line1":        bad(func(a *messages.Address) { a.Line1 = "" }),
		"no city":         bad(func(a *messages.Address) { a.City = " " }),
		"long postcode":   bad(func(a *messages.Address) { a.PostalCode = strings.Repeat("9", MaxPostalCodeLen+1) }),
		"no position":     bad(func(a *messages.Address) { a.Position = nil }),
		"latitude 91":     bad(func(a *messages.Address) { a.Position.Lat = 91 }),
		"bad utf-8 line1": bad(func(a *messages.Address) { a.Line1 = "\xff" }),
	} {
		t.Run(name, func(t *testing.T) {
			checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideSetAddress(s, c, testNow) },
				map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
		})
	}
}

func TestDecideSetPaymentMethod(t *testing.T) {
	card := &messages.SetPaymentMethod{CommandId: "p", CardNumber: TestCardVisa, ExpMonth: 12, ExpYear: 2030, Cvc: "123"}
	method := PaymentMethod{Token: "tok_9", Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideSetPaymentMethod(s, card, method, testNow)
	}, map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "*": accepted})
	for name, s := range customerStates() {
		if got, want := codeOf(t, errOrNil(checkSetPaymentMethod(s(), card))), codeOf(t, func() error {
			_, err := decideSetPaymentMethod(s(), card, method, testNow)
			return err
		}()); got != want {
			t.Errorf("%s: the grain's check says %v, the decision %v", name, got, want)
		}
	}
	_, s, _ := runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideSetPaymentMethod(s, card, method, testNow)
	})
	want := &messages.PaymentMethod{Token: "tok_9", Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030, AddedAt: timestamppb.New(testNow)}
	if !proto.Equal(s.GetPaymentMethod(), want) {
		t.Fatalf("payment method %v, want %v", s.GetPaymentMethod(), want)
	}
	if _, err := decideSetPaymentMethod(createdCustomer(), card, PaymentMethod{}, testNow); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("a method without token: %v, want an internal error", err)
	}
	for name, c := range map[string]*messages.SetPaymentMethod{
		"short number":  {CardNumber: "42424242424", ExpMonth: 1, ExpYear: 2030, Cvc: "123"},
		"long number":   {CardNumber: strings.Repeat("4", 20), ExpMonth: 1, ExpYear: 2030, Cvc: "123"},
		"spaces":        {CardNumber: "4242 4242 4242 4242", ExpMonth: 1, ExpYear: 2030, Cvc: "123"},
		"month 0":       {CardNumber: TestCardVisa, ExpMonth: 0, ExpYear: 2030, Cvc: "123"},
		"month 13":      {CardNumber: TestCardVisa, ExpMonth: 13, ExpYear: 2030, Cvc: "123"},
		"two-digit yy":  {CardNumber: TestCardVisa, ExpMonth: 1, ExpYear: 30, Cvc: "123"},
		"cvc 2 digits":  {CardNumber: TestCardVisa, ExpMonth: 1, ExpYear: 2030, Cvc: "12"},
		"cvc letters":   {CardNumber: TestCardVisa, ExpMonth: 1, ExpYear: 2030, Cvc: "abc"},
		"cvc 5 digits":  {CardNumber: TestCardVisa, ExpMonth: 1, ExpYear: 2030, Cvc: "12345"},
		"empty command": {},
	} {
		t.Run(name, func(t *testing.T) {
			checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
				return decideSetPaymentMethod(s, c, method, testNow)
			},
				map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
		})
	}
	// What the entity fingerprints keeps neither the number nor the CVC.
	r := redactCard(card)
	if r.GetCardNumber() != "4242" || r.GetCvc() != "" || card.GetCardNumber() != TestCardVisa || card.GetCvc() != "123" {
		t.Fatalf("redacted %v (original %v)", r, card)
	}
}

func addItem(restaurant, item string, qty int32) *messages.AddToCart {
	return &messages.AddToCart{CommandId: "add", RestaurantId: restaurant, RestaurantName: "Place " + restaurant,
		Pickup: &messages.Position{Lat: 37.77, Lng: -122.41}, Quantity: qty,
		Item: &messages.MenuItem{Id: item, Name: "Dish " + item, PriceCents: 1250}}
}

func TestDecideAddToCart(t *testing.T) {
	same := addItem("r_1", "m1", 1)
	other := addItem("r_2", "m9", 1)
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideAddToCart(s, same, testNow) },
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "*": accepted})
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideAddToCart(s, other, testNow) },
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "created": accepted,
			"*": messages.ErrorReason_CART_CONFLICT})

	// Empty cart: the cart takes the restaurant.
	_, s, _ := runCustomer(t, createdCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) { return decideAddToCart(s, other, testNow) })
	if c := s.GetCart(); c.GetRestaurantId() != "r_2" || c.GetRestaurantName() != "Place r_2" || len(c.GetItems()) != 1 || c.GetItems()[0].GetQuantity() != 1 {
		t.Fatalf("cart %v", c)
	}
	// Same item: quantities add up; the line takes the item's current price and name.
	repriced := addItem("r_1", "m1", 3)
	repriced.Item.PriceCents = 1300
	_, s, _ = runCustomer(t, withCart(createdCustomer()), func(s *messages.CustomerState) ([]proto.Message, error) { return decideAddToCart(s, repriced, testNow) })
	if l := s.GetCart().GetItems(); len(l) != 1 || l[0].GetQuantity() != 5 || l[0].GetPriceCents() != 1300 || l[0].GetName() != "Dish m1" {
		t.Fatalf("lines %v", l)
	}
	// Another item of the same restaurant: a second line.
	_, s, _ = runCustomer(t, withCart(createdCustomer()), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideAddToCart(s, addItem("r_1", "m2", 1), testNow)
	})
	if l := s.GetCart().GetItems(); len(l) != 2 || l[1].GetMenuItemId() != "m2" {
		t.Fatalf("lines %v", l)
	}
	// Limits.
	full := withCart(createdCustomer())
	for i := len(full.Cart.Items); i < MaxCartLines; i++ {
		full.Cart.Items = append(full.Cart.Items, &messages.OrderLine{MenuItemId: fmt.Sprint("x", i), Quantity: 1, PriceCents: 1})
	}
	if _, _, err := runCustomer(t, full, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideAddToCart(s, addItem("r_1", "new", 1), testNow)
	}); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Fatalf("line %d: %v", MaxCartLines+1, err)
	}
	if _, _, err := runCustomer(t, full, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideAddToCart(s, addItem("r_1", "m1", 1), testNow)
	}); err != nil {
		t.Fatalf("more of an existing line in a full cart: %v", err)
	}
	if _, _, err := runCustomer(t, withCart(createdCustomer()), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideAddToCart(s, addItem("r_1", "m1", MaxCartQuantity-1), testNow) // 2 + 98
	}); codeOf(t, err) != messages.ErrorReason_INVALID_ARGUMENT {
		t.Fatalf("a line over %d: %v", MaxCartQuantity, err)
	}
	bad := func(edit func(c *messages.AddToCart)) *messages.AddToCart {
		c := addItem("r_1", "m1", 1)
		edit(c)
		return c
	}
	for name, c := range map[string]*messages.AddToCart{
		"no restaurant":      bad(func(c *messages.AddToCart) { c.RestaurantId = "" }),
		"restaurant spaces":  bad(func(c *messages.AddToCart) { c.RestaurantId = " r_1" }),
		"item id spaces":     bad(func(c *messages.AddToCart) { c.Item.Id = "m1 " }),
		"no restaurant name": bad(func(c *messages.AddToCart) { c.RestaurantName = "" }),
		"no pickup":          bad(func(c *messages.AddToCart) { c.Pickup = nil }),
		"no item":            bad(func(c *messages.AddToCart) { c.Item = nil }),
		"no item id":         bad(func(c *messages.AddToCart) { c.Item.Id = "" }),
		"no item name":       bad(func(c *messages.AddToCart) { c.Item.Name = "" }),
		"zero price":         bad(func(c *messages.AddToCart) { c.Item.PriceCents = 0 }),
		"price too high":     bad(func(c *messages.AddToCart) { c.Item.PriceCents = MaxPriceCents + 1 }),
		"quantity 0":         bad(func(c *messages.AddToCart) { c.Quantity = 0 }),
		"quantity 100":       bad(func(c *messages.AddToCart) { c.Quantity = MaxCartQuantity + 1 }),
	} {
		t.Run(name, func(t *testing.T) {
			checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideAddToCart(s, c, testNow) },
				map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
		})
	}
}

func TestDecideRemoveFromCart(t *testing.T) {
	rm := &messages.RemoveFromCart{CommandId: "rm", MenuItemId: "m1"}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) { return decideRemoveFromCart(s, rm, testNow) },
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "created": messages.ErrorReason_NOT_FOUND, "*": accepted})
	_, s, _ := runCustomer(t, withCart(createdCustomer()), func(s *messages.CustomerState) ([]proto.Message, error) { return decideRemoveFromCart(s, rm, testNow) })
	if s.GetCart() != nil {
		t.Fatalf("removing the last line left the cart %v", s.GetCart())
	}
	two := withCart(createdCustomer())
	two.Cart.Items = append(two.Cart.Items, &messages.OrderLine{MenuItemId: "m2", Quantity: 1, PriceCents: 100})
	_, s, _ = runCustomer(t, two, func(s *messages.CustomerState) ([]proto.Message, error) { return decideRemoveFromCart(s, rm, testNow) })
	if l := s.GetCart().GetItems(); len(l) != 1 || l[0].GetMenuItemId() != "m2" || s.GetCart().GetRestaurantId() != "r_1" {
		t.Fatalf("cart %v", s.GetCart())
	}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideRemoveFromCart(s, &messages.RemoveFromCart{CommandId: "rm"}, testNow)
	}, map[string]messages.ErrorReason{"*": messages.ErrorReason_INVALID_ARGUMENT})
}

func TestDecideOrderCart(t *testing.T) {
	cmd := &messages.OrderCart{CommandId: "order-1"}
	checkByState(t, func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideOrderCart("c_1", s, cmd, testNow)
	},
		map[string]messages.ErrorReason{"absent": messages.ErrorReason_NOT_FOUND, "ready": accepted, "with order": accepted,
			"*": messages.ErrorReason_FAILED_PRECONDITION})
	noAddress := readyCustomer()
	noAddress.Address = nil
	noCard := readyCustomer()
	noCard.PaymentMethod = nil
	for name, s := range map[string]*messages.CustomerState{"no address": noAddress, "no payment method": noCard} {
		if _, _, err := runCustomer(t, s, func(s *messages.CustomerState) ([]proto.Message, error) {
			return decideOrderCart("c_1", s, cmd, testNow)
		}); codeOf(t, err) != messages.ErrorReason_FAILED_PRECONDITION {
			t.Errorf("%s: %v", name, err)
		}
	}

	events, s, err := runCustomer(t, readyCustomer(), func(s *messages.CustomerState) ([]proto.Message, error) {
		return decideOrderCart("c_1", s, cmd, testNow)
	})
	if err != nil || len(events) != 2 {
		t.Fatalf("order cart: %v, %v", events, err)
	}
	orderID := orderIDFor("c_1", "order-1")
	if s.GetCart() != nil || len(s.GetOrders()) != 1 {
		t.Fatalf("after ordering: cart %v, orders %v", s.GetCart(), s.GetOrders())
	}
	if o := s.GetOrders()[0]; o.GetOrderId() != orderID || o.GetStatus() != StatusPendingAcceptance || o.GetTotalCents() != 2500 ||
		o.GetRestaurantId() != "r_1" || len(o.GetItems()) != 1 {
		t.Fatalf("indexed order %v", o)
	}
	send, isSend := events[1].(*messages.OutboxAdded)
	if !isSend || send.GetToKind() != KindOrder || send.GetToIdentity() != orderID {
		t.Fatalf("second event %v, want PlaceOrder to %s/%s", events[1], KindOrder, orderID)
	}
	var place messages.PlaceOrder
	if err := send.GetPayload().UnmarshalTo(&place); err != nil {
		t.Fatal(err)
	}
	want := &messages.PlaceOrder{CommandId: orderID, CustomerId: "c_1", RestaurantId: "r_1",
		Lines:  []*messages.OrderLine{{MenuItemId: "m1", Name: "Pad thai", Quantity: 2, PriceCents: 1250}},
		Pickup: &messages.Position{Lat: 37.77, Lng: -122.41}, Dropoff: testAddress().GetPosition(), PaymentToken: "tok_1"}
	if !proto.Equal(&place, want) {
		t.Fatalf("PlaceOrder %v, want %v", &place, want)
	}
	if orderIDFor("c_1", "order-1") != orderID || orderIDFor("c_2", "order-1") == orderID || orderIDFor("c_1", "order-2") == orderID ||
		!strings.HasPrefix(orderID, "o_") || len(orderID) != 26 {
		t.Fatalf("order ids: %s", orderID)
	}
}

func TestListCustomerOrders(t *testing.T) {
	s := createdCustomer()
	for i := 1; i <= 5; i++ {
		s = withOrder(s, fmt.Sprint("o_", i), StatusAccepted)
	}
	ids := func(p *messages.CustomerOrders) string {
		var out []string
		for _, o := range p.GetOrders() {
			out = append(out, o.GetOrderId())
		}
		return strings.Join(out, ",") + "|" + p.GetNextAfter()
	}
	cases := []struct {
		q    *messages.ListCustomerOrders
		want string
		code messages.ErrorReason
	}{
		{&messages.ListCustomerOrders{}, "o_5,o_4,o_3,o_2,o_1|", accepted},
		{&messages.ListCustomerOrders{Limit: 2}, "o_5,o_4|o_4", accepted},
		{&messages.ListCustomerOrders{Limit: 2, After: "o_4"}, "o_3,o_2|o_2", accepted},
		{&messages.ListCustomerOrders{Limit: 2, After: "o_2"}, "o_1|", accepted},
		{&messages.ListCustomerOrders{Limit: 5}, "o_5,o_4,o_3,o_2,o_1|", accepted},
		{&messages.ListCustomerOrders{After: "o_1"}, "|", accepted},
		{&messages.ListCustomerOrders{After: "o_x"}, "", messages.ErrorReason_INVALID_ARGUMENT},
		{&messages.ListCustomerOrders{Limit: -1}, "", messages.ErrorReason_INVALID_ARGUMENT},
		{&messages.ListCustomerOrders{Limit: MaxOrdersPage + 1}, "", messages.ErrorReason_INVALID_ARGUMENT},
		// order_id: only that order, limit and after ignored; an empty page for an id the customer lacks.
		{&messages.ListCustomerOrders{OrderId: "o_3"}, "o_3|", accepted},
		{&messages.ListCustomerOrders{OrderId: "o_3", Limit: -1, After: "o_x"}, "o_3|", accepted},
		{&messages.ListCustomerOrders{OrderId: "o_x"}, "|", accepted},
	}
	for _, c := range cases {
		page, err := listCustomerOrders(s, c.q)
		if codeOf(t, errOrNil(err)) != c.code || (err == nil && ids(page) != c.want) {
			t.Errorf("%v: %v, %v; want %s (%v)", c.q, ids(page), err, c.want, c.code)
		}
	}
	if err := requireCustomer(absentCustomer()); err == nil || err.Code != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("reading an absent customer: %v", err)
	}
}

func TestDecideDeliverCustomer(t *testing.T) {
	const order = "o_1"
	type step struct {
		from    string // starting status of o_1 in the index; "" = not indexed
		msg     proto.Message
		status  string // status after; "" = not indexed
		dasher  string
		feed    string // feed entry type; "" = none
		noEvent bool   // no index change
	}
	steps := []step{
		{"", &messages.OrderPlaced{OrderId: order, RestaurantId: "r_1", TotalCents: 2500}, StatusPendingAcceptance, "", "ORDER_PLACED", false},
		{StatusPendingAcceptance, &messages.OrderPlaced{OrderId: order}, StatusPendingAcceptance, "", "ORDER_PLACED", true},
		{StatusPendingAcceptance, &messages.OrderAccepted{OrderId: order}, StatusAccepted, "", "ORDER_ACCEPTED", false},
		{StatusAccepted, &messages.DasherAssigned{OrderId: order, DasherId: "d_1"}, StatusDasherAssigned, "d_1", "DASHER_ASSIGNED", false},
		{StatusReadyForPickup, &messages.DasherAssigned{OrderId: order, DasherId: "d_1"}, StatusReadyForPickup, "d_1", "DASHER_ASSIGNED", false},
		{StatusAccepted, &messages.FoodReady{OrderId: order}, StatusReadyForPickup, "", "FOOD_READY", false},
		{StatusReadyForPickup, &messages.OrderPickedUp{OrderId: order}, StatusPickedUp, "", "ORDER_PICKED_UP", false},
		{StatusPickedUp, &messages.OrderDelivered{OrderId: order}, StatusDelivered, "", "ORDER_DELIVERED", false},
		{StatusAccepted, &messages.OrderCancelled{OrderId: order}, StatusCancelled, "", "ORDER_CANCELLED", false},
		{StatusPendingAcceptance, &messages.OrderRejected{OrderId: order}, StatusRejected, "", "ORDER_REJECTED", false},
		{StatusDelivered, &messages.OrderCancelled{OrderId: order}, StatusDelivered, "", "ORDER_CANCELLED", true},
		{StatusCancelled, &messages.OrderAccepted{OrderId: order}, StatusCancelled, "", "ORDER_ACCEPTED", true},
		{"", &messages.OrderAccepted{OrderId: order}, "", "", "ORDER_ACCEPTED", true},
		{StatusDasherAssigned, &messages.DasherReleased{OrderId: order, DasherId: "d_1"}, StatusAccepted, "", "", false},
		{StatusDasherAssigned, &messages.DasherReleased{OrderId: order, DasherId: "d_other"}, StatusDasherAssigned, "d_1", "", true},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%d %s %s", i, st.from, payloadName(st.msg)), func(t *testing.T) {
			s := createdCustomer()
			if st.from != "" {
				s = withOrder(s, order, st.from)
				if st.from == StatusDasherAssigned {
					s.Orders[0].DasherId = "d_1"
				}
			}
			events, after, err := runCustomer(t, s, func(s *messages.CustomerState) ([]proto.Message, error) {
				return decideDeliverCustomer(s, "order/"+order, st.msg, testNow)
			})
			if err != nil {
				t.Fatal(err)
			}
			var feed []*messages.FeedItem
			changes := 0
			for _, ev := range events {
				if f, ok := ev.(*messages.FeedItem); ok {
					feed = append(feed, f)
				} else {
					changes++
				}
			}
			if st.noEvent != (changes == 0) {
				t.Fatalf("events %v", events)
			}
			switch {
			case st.feed == "" && len(feed) != 0:
				t.Fatalf("feed entries %v, want none", feed)
			case st.feed != "" && (len(feed) != 1 || feed[0].GetType() != st.feed || feed[0].GetOrderId() != order || !feed[0].GetAt().AsTime().Equal(testNow)):
				t.Fatalf("feed entries %v, want one %s", feed, st.feed)
			}
			o := findOrder(after, order)
			if st.status == "" {
				if o != nil {
					t.Fatalf("order indexed: %v", o)
				}
				return
			}
			if o.GetStatus() != st.status || o.GetDasherId() != st.dasher {
				t.Fatalf("indexed order %v, want status %s dasher %q", o, st.status, st.dasher)
			}
		})
	}
	// A customer that does not exist refuses; an unexpected payload is an error that is not a refusal.
	if _, err := decideDeliverCustomer(absentCustomer(), "order/o_1", &messages.OrderAccepted{OrderId: order}, testNow); codeOf(t, err) != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("absent customer: %v", err)
	}
	_, err := decideDeliverCustomer(createdCustomer(), "x/1", &messages.Wake{}, testNow)
	if !errors.Is(err, errUnexpectedPayload) || errors.As(err, new(*Error)) {
		t.Fatalf("unexpected payload: %v", err)
	}
}

func TestApplyCustomerRefusesForeignEvents(t *testing.T) {
	if err := applyCustomer(createdCustomer(), &messages.RestaurantCreated{}); err == nil {
		t.Fatal("folded a restaurant event")
	}
}

func TestCustomerViewHidesTheTokenAndIsACopy(t *testing.T) {
	s := readyCustomer()
	v := customerView("c_1", s)
	if v.GetPaymentMethod().GetLast4() != "4242" || strings.Contains(v.String(), "tok_1") {
		t.Fatalf("view %v", v)
	}
	if v.GetCart().GetTotalCents() != 2500 {
		t.Fatalf("cart total %d", v.GetCart().GetTotalCents())
	}
	v.Cart.Items[0].Quantity = 9
	v.Address.City = "elsewhere"
	if s.GetCart().GetItems()[0].GetQuantity() != 2 || s.GetAddress().GetCity() != "San Francisco" {
		t.Fatal("the view shares the state")
	}
}
