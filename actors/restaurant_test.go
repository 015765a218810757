package actors

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// codeOf returns the refusal code of err, ERROR_REASON_UNSPECIFIED for nil, and fails for other errors.
func codeOf(t *testing.T, err error) messages.ErrorReason {
	t.Helper()
	if err == nil {
		return messages.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a refusal", err)
	}
	return e.Code
}

func absentRestaurant() *messages.RestaurantState { return &messages.RestaurantState{} }

func createdRestaurant() *messages.RestaurantState {
	return &messages.RestaurantState{
		Created: true, Name: "Thai Corner", Cuisine: "thai",
		Position:  &messages.Position{Lat: 37.77, Lng: -122.41},
		Menu:      []*messages.MenuItem{padThai()},
		CreatedAt: nil,
	}
}

func validCreate() *messages.CreateRestaurant {
	return &messages.CreateRestaurant{CommandId: "c1", Name: "  Thai Corner ", Cuisine: "thai ",
		Position: &messages.Position{Lat: 37.77, Lng: -122.41}}
}

func padThai() *messages.MenuItem {
	return &messages.MenuItem{Id: "m1", Name: "Pad thai", Description: "rice noodles", PriceCents: 1250, Tags: []string{"noodles", "spicy"}}
}

func TestDecideCreateRestaurant(t *testing.T) {
	with := func(edit func(c *messages.CreateRestaurant)) *messages.CreateRestaurant {
		c := validCreate()
		edit(c)
		return c
	}
	invalid := map[string]*messages.CreateRestaurant{
		"empty name":        with(func(c *messages.CreateRestaurant) { c.Name = "" }),
		"blank name":        with(func(c *messages.CreateRestaurant) { c.Name = " \t" }),
		"long name":         with(func(c *messages.CreateRestaurant) { c.Name = strings.Repeat("é", MaxNameLen+1) }),
		"bad utf-8 name":    with(func(c *messages.CreateRestaurant) { c.Name = "\xff" }),
		"no cuisine":        with(func(c *messages.CreateRestaurant) { c.Cuisine = "" }),
		"long cuisine":      with(func(c *messages.CreateRestaurant) { c.Cuisine = strings.Repeat("x", MaxCuisineLen+1) }),
		"no position":       with(func(c *messages.CreateRestaurant) { c.Position = nil }),
		"latitude above 90": with(func(c *messages.CreateRestaurant) { c.Position.Lat = 90.5 }),
		"latitude NaN":      with(func(c *messages.CreateRestaurant) { c.Position.Lat = math.NaN() }),
		"longitude -181":    with(func(c *messages.CreateRestaurant) { c.Position.Lng = -181 }),
	}
	type tc struct {
		name  string
		state *messages.RestaurantState
		cmd   *messages.CreateRestaurant
		want  messages.ErrorReason
	}
	cases := []tc{
		{"absent: created", absentRestaurant(), validCreate(), messages.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"absent: at the edge of the map", absentRestaurant(), with(func(c *messages.CreateRestaurant) { c.Position = &messages.Position{Lat: -90, Lng: 180} }), messages.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"created: refused", createdRestaurant(), validCreate(), messages.ErrorReason_ALREADY_EXISTS},
	}
	for name, cmd := range invalid {
		cases = append(cases,
			tc{"absent: " + name, absentRestaurant(), cmd, messages.ErrorReason_INVALID_ARGUMENT},
			tc{"created: " + name, createdRestaurant(), cmd, messages.ErrorReason_INVALID_ARGUMENT})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := proto.Clone(c.state)
			events, err := decideCreateRestaurant(c.state, c.cmd, testNow)
			if got := codeOf(t, err); got != c.want {
				t.Fatalf("code = %v, want %v (err %v)", got, c.want, err)
			}
			if !proto.Equal(before, c.state) {
				t.Fatal("a decision changed the state")
			}
			if err != nil {
				if len(events) != 0 {
					t.Fatalf("refusal with events %v", events)
				}
				return
			}
			if len(events) != 1 {
				t.Fatalf("events = %v, want one RestaurantCreated", events)
			}
			created, ok := events[0].(*messages.RestaurantCreated)
			if !ok {
				t.Fatalf("event = %T", events[0])
			}
			if created.GetName() != strings.TrimSpace(c.cmd.GetName()) || created.GetCuisine() != strings.TrimSpace(c.cmd.GetCuisine()) ||
				!proto.Equal(created.GetPosition(), c.cmd.GetPosition()) || !created.GetCreatedAt().AsTime().Equal(testNow) {
				t.Fatalf("event = %v for %v", created, c.cmd)
			}
			if err := applyRestaurant(c.state, created); err != nil || !c.state.GetCreated() {
				t.Fatalf("fold of RestaurantCreated: %v, state %v", err, c.state)
			}
		})
	}
}

func TestDecideUpdateMenu(t *testing.T) {
	item := func(edit func(it *messages.MenuItem)) []*messages.MenuItem {
		it := padThai()
		edit(it)
		return []*messages.MenuItem{it}
	}
	tooManyItems := make([]*messages.MenuItem, MaxMenuItems+1)
	for i := range tooManyItems {
		tooManyItems[i] = &messages.MenuItem{Id: strings.Repeat("i", i%50+1) + string(rune('a'+i/50)), Name: "x", PriceCents: 1}
	}
	invalid := map[string][]*messages.MenuItem{
		"empty id":           item(func(it *messages.MenuItem) { it.Id = "" }),
		"id with spaces":     item(func(it *messages.MenuItem) { it.Id = " m1" }),
		"duplicate id":       {padThai(), padThai()},
		"no name":            item(func(it *messages.MenuItem) { it.Name = " " }),
		"long description":   item(func(it *messages.MenuItem) { it.Description = strings.Repeat("d", MaxDescriptionLen+1) }),
		"zero price":         item(func(it *messages.MenuItem) { it.PriceCents = 0 }),
		"negative price":     item(func(it *messages.MenuItem) { it.PriceCents = -5 }),
		"price too high":     item(func(it *messages.MenuItem) { it.PriceCents = MaxPriceCents + 1 }),
		"blank tag":          item(func(it *messages.MenuItem) { it.Tags = []string{"ok", ""} }),
		"long tag":           item(func(it *messages.MenuItem) { it.Tags = []string{strings.Repeat("t", MaxTagLen+1)} }),
		"too many tags":      item(func(it *messages.MenuItem) { it.Tags = make([]string, MaxTagsPerItem+1) }),
		"too many items":     tooManyItems,
		"bad utf-8 in a tag": item(func(it *messages.MenuItem) { it.Tags = []string{"\xc3"} }),
	}
	newMenu := []*messages.MenuItem{padThai(), {Id: "m2", Name: "Green curry", PriceCents: 1400}}
	type tc struct {
		name   string
		state  *messages.RestaurantState
		items  []*messages.MenuItem
		want   messages.ErrorReason
		events int
	}
	cases := []tc{
		{"absent: refused", absentRestaurant(), newMenu, messages.ErrorReason_NOT_FOUND, 0},
		{"absent: empty menu refused", absentRestaurant(), nil, messages.ErrorReason_NOT_FOUND, 0},
		{"created: replaced", createdRestaurant(), newMenu, messages.ErrorReason_ERROR_REASON_UNSPECIFIED, 1},
		{"created: cleared", createdRestaurant(), nil, messages.ErrorReason_ERROR_REASON_UNSPECIFIED, 1},
		{"created: unchanged, no event", createdRestaurant(), []*messages.MenuItem{padThai()}, messages.ErrorReason_ERROR_REASON_UNSPECIFIED, 0},
	}
	for name, items := range invalid {
		cases = append(cases,
			tc{"absent: " + name, absentRestaurant(), items, messages.ErrorReason_INVALID_ARGUMENT, 0},
			tc{"created: " + name, createdRestaurant(), items, messages.ErrorReason_INVALID_ARGUMENT, 0})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := proto.Clone(c.state)
			cmd := &messages.UpdateMenu{CommandId: "c2", Items: c.items}
			events, err := decideUpdateMenu(c.state, cmd, testNow)
			if got := codeOf(t, err); got != c.want {
				t.Fatalf("code = %v, want %v (err %v)", got, c.want, err)
			}
			if !proto.Equal(before, c.state) {
				t.Fatal("a decision changed the state")
			}
			if len(events) != c.events {
				t.Fatalf("events = %v, want %d", events, c.events)
			}
			if c.events == 0 {
				return
			}
			updated := events[0].(*messages.MenuUpdated)
			if !menuEqual(c.items, updated.GetItems()) {
				t.Fatalf("MenuUpdated items %v differ from the command's %v", updated.GetItems(), c.items)
			}
			if len(c.items) > 0 && updated.GetItems()[0] == c.items[0] {
				t.Fatal("the event shares items with the command")
			}
			if err := applyRestaurant(c.state, updated); err != nil {
				t.Fatal(err)
			}
			if !menuEqual(c.items, c.state.GetMenu()) {
				t.Fatalf("menu after fold = %v, want %v", c.state.GetMenu(), c.items)
			}
		})
	}
}

func TestDecideGetRestaurant(t *testing.T) {
	if got := codeOf(t, errOrNil(decideGetRestaurant(absentRestaurant()))); got != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("absent: %v, want NOT_FOUND", got)
	}
	if err := decideGetRestaurant(createdRestaurant()); err != nil {
		t.Fatalf("created: %v", err)
	}
}

// errOrNil keeps a nil *Error from becoming a non-nil error.
func errOrNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

func TestApplyRestaurantRefusesForeignEvents(t *testing.T) {
	if err := applyRestaurant(absentRestaurant(), &messages.CommandApplied{}); err == nil {
		t.Fatal("fold accepted an event of another kind")
	}
}

func TestRestaurantViewIsACopy(t *testing.T) {
	s := createdRestaurant()
	v := restaurantView("r_1", s)
	v.Menu[0].Name = "changed"
	v.Position.Lat = 0
	if s.Menu[0].Name != "Pad thai" || s.Position.Lat != 37.77 {
		t.Fatal("the view shares memory with the state")
	}
}

// Every row of the restaurant's workflow table: the open order after the message, and the feed entry.
func TestDecideDeliverRestaurant(t *testing.T) {
	const order = "o_1"
	type row struct {
		from   string // the open order's status before; "" = not open
		msg    proto.Message
		status string // after; "" = not open
		dasher string
		feed   string
	}
	rows := []row{
		{"", &messages.OrderPlaced{OrderId: order, CustomerId: "c_1", TotalCents: 900}, StatusPendingAcceptance, "", "ORDER_PLACED"},
		{StatusPendingAcceptance, &messages.OrderPlaced{OrderId: order}, StatusPendingAcceptance, "", ""},
		{StatusPendingAcceptance, &messages.OrderAccepted{OrderId: order}, StatusAccepted, "", ""},
		{StatusAccepted, &messages.DasherAssigned{OrderId: order, DasherId: "d_1"}, StatusDasherAssigned, "d_1", "DASHER_ASSIGNED"},
		{StatusReadyForPickup, &messages.DasherAssigned{OrderId: order, DasherId: "d_1"}, StatusReadyForPickup, "d_1", "DASHER_ASSIGNED"},
		{StatusAccepted, &messages.FoodReady{OrderId: order}, StatusReadyForPickup, "", ""},
		{StatusReadyForPickup, &messages.OrderPickedUp{OrderId: order}, StatusPickedUp, "", ""},
		{StatusDasherAssigned, &messages.DasherReleased{OrderId: order, DasherId: "d_1"}, StatusAccepted, "", ""},
		{StatusDasherAssigned, &messages.DasherReleased{OrderId: order, DasherId: "d_9"}, StatusDasherAssigned, "d_1", ""},
		{StatusPickedUp, &messages.OrderDelivered{OrderId: order}, "", "", "ORDER_DELIVERED"},
		{StatusAccepted, &messages.OrderCancelled{OrderId: order}, "", "", "ORDER_CANCELLED"},
		{StatusPendingAcceptance, &messages.OrderRejected{OrderId: order}, "", "", "ORDER_REJECTED"},
		{"", &messages.OrderAccepted{OrderId: order}, "", "", ""},
		{"", &messages.DasherAssigned{OrderId: order, DasherId: "d_1"}, "", "", ""},
		{"", &messages.OrderDelivered{OrderId: order}, "", "", ""},
		{"", &messages.OrderCancelled{OrderId: order}, "", "", ""},
	}
	for i, r := range rows {
		t.Run(fmt.Sprintf("%d %s %s", i, r.from, r.msg.ProtoReflect().Descriptor().Name()), func(t *testing.T) {
			s := createdRestaurant()
			if r.from != "" {
				s.OpenOrders = map[string]*messages.OpenOrder{order: {OrderId: order, Status: r.from}}
				if r.from == StatusDasherAssigned {
					s.OpenOrders[order].DasherId = "d_1"
				}
			}
			before := proto.Clone(s)
			events, err := decideDeliverRestaurant(s, "order/"+order, r.msg, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(before, s) {
				t.Fatal("a decision changed the state")
			}
			var feed []*messages.FeedItem
			for _, ev := range events {
				if f, ok := ev.(*messages.FeedItem); ok {
					feed = append(feed, f)
					continue
				}
				if err := applyRestaurant(s, ev); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case r.feed == "" && len(feed) > 0:
				t.Fatalf("feed %v, want none", feed)
			case r.feed != "" && (len(feed) != 1 || feed[0].GetType() != r.feed || feed[0].GetOrderId() != order):
				t.Fatalf("feed %v, want %s", feed, r.feed)
			}
			o := s.GetOpenOrders()[order]
			if r.status == "" {
				if o != nil {
					t.Fatalf("open order %v, want none", o)
				}
				return
			}
			if o.GetStatus() != r.status || o.GetDasherId() != r.dasher {
				t.Fatalf("open order %v, want %s with dasher %q", o, r.status, r.dasher)
			}
		})
	}
	// A restaurant that does not exist refuses (applied without effect); an unexpected payload is an error.
	if _, err := decideDeliverRestaurant(absentRestaurant(), "order/o_1", &messages.OrderPlaced{OrderId: order}, testNow); codeOf(t, err) != messages.ErrorReason_NOT_FOUND {
		t.Fatalf("absent restaurant: %v", err)
	}
	for _, s := range []*messages.RestaurantState{absentRestaurant(), createdRestaurant()} {
		if _, err := decideDeliverRestaurant(s, "x/1", &messages.Wake{}, testNow); !errors.Is(err, errUnexpectedPayload) {
			t.Fatalf("unexpected payload: %v", err)
		}
	}
}

func TestRestaurantOrdersOldestFirst(t *testing.T) {
	s := createdRestaurant()
	s.OpenOrders = map[string]*messages.OpenOrder{
		"o_b": {OrderId: "o_b", PlacedAt: timestamppb.New(testNow)},
		"o_a": {OrderId: "o_a", PlacedAt: timestamppb.New(testNow)},
		"o_0": {OrderId: "o_0", PlacedAt: timestamppb.New(testNow.Add(-time.Minute))},
	}
	got := restaurantOrders(s)
	var ids []string
	for _, o := range got.GetOrders() {
		ids = append(ids, o.GetOrderId())
	}
	if strings.Join(ids, ",") != "o_0,o_a,o_b" {
		t.Fatalf("orders %v", ids)
	}
	got.Orders[0].Status = "changed"
	if s.GetOpenOrders()["o_0"].GetStatus() == "changed" {
		t.Fatal("the answer shares the state")
	}
}
