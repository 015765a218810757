package actors_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// countingGateway counts Tokenize calls of the simulated gateway; down makes every call fail as an unreachable
// processor would.
type countingGateway struct {
	*actors.PaymentSim
	tokenized atomic.Int64
	down      atomic.Bool
}

func (g *countingGateway) Tokenize(ctx context.Context, card actors.Card) (actors.PaymentMethod, error) {
	g.tokenized.Add(1)
	if g.down.Load() {
		return actors.PaymentMethod{}, errors.New("dial processor: connection refused")
	}
	return g.PaymentSim.Tokenize(ctx, card)
}

// The card number and CVC go to the gateway only: a declined card writes nothing, an accepted one keeps the token
// and public facts, a retry does not tokenize again, and the journal file never holds the number or the CVC.
func TestCustomerPaymentMethodThroughTheGateway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	clk := newTestClock()
	gw := &countingGateway{PaymentSim: actors.NewPaymentSim(actors.PaymentSimConfig{Now: clk.Now})}
	n := startNode(t, path, nodeOptions{clock: clk, payments: gw})
	c := n.customer("c_pay")
	if _, err := c.Create(&messages.CreateCustomer{CommandId: "create", Name: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	const stream = "customer/c_pay"
	events := domainLen(t, n.journal, stream)

	card := func(id, number string) *messages.SetPaymentMethod {
		return &messages.SetPaymentMethod{CommandId: id, CardNumber: number, ExpMonth: 12, ExpYear: 2030, Cvc: "987"}
	}
	_, err := c.SetPaymentMethod(card("declined", actors.TestCardDeclined))
	wantCode(t, "declined card", err, messages.ErrorReason_PAYMENT_DECLINED)
	gw.down.Store(true)
	_, err = c.SetPaymentMethod(card("down", actors.TestCardVisa))
	wantCode(t, "gateway down", err, messages.ErrorReason_UNAVAILABLE)
	gw.down.Store(false)
	_, err = c.SetPaymentMethod(&messages.SetPaymentMethod{CommandId: "bad", CardNumber: "42", ExpMonth: 12, ExpYear: 2030, Cvc: "987"})
	wantCode(t, "malformed card", err, messages.ErrorReason_INVALID_ARGUMENT)
	_, err = n.customer("c_nobody").SetPaymentMethod(card("x", actors.TestCardVisa))
	wantCode(t, "unknown customer", err, messages.ErrorReason_NOT_FOUND)
	if got := gw.tokenized.Load(); got != 2 {
		t.Fatalf("gateway called %d times, want 2 (declined, down; not for invalid input or an unknown customer)", got)
	}
	if got := domainLen(t, n.journal, stream); got != events {
		t.Fatalf("refused payment methods wrote %d events", got-events)
	}

	view, err := c.SetPaymentMethod(card("visa", actors.TestCardVisa))
	if err != nil {
		t.Fatal(err)
	}
	if pm := view.GetPaymentMethod(); pm.GetBrand() != "visa" || pm.GetLast4() != "4242" || pm.GetExpMonth() != 12 || pm.GetExpYear() != 2030 {
		t.Fatalf("payment method %v", pm)
	}
	again, err := c.SetPaymentMethod(card("visa", actors.TestCardVisa))
	if err != nil || again.GetPaymentMethod().GetLast4() != "4242" {
		t.Fatalf("retried: %v, %v", again, err)
	}
	if got := gw.tokenized.Load(); got != 3 {
		t.Fatalf("gateway called %d times, want 3 (a retry is answered without tokenizing)", got)
	}
	_, err = c.SetPaymentMethod(card("visa", actors.TestCardMastercard))
	wantCode(t, "command id reused with another card", err, messages.ErrorReason_IDEMPOTENCY_KEY_REUSED)
	// An Amex card takes a 4-digit CVC: a value distinctive enough to look for as bare digits in the journal file
	// (a 3-digit one could occur in its binary pages by chance).
	const amexCVC = "7391"
	if _, err := c.SetPaymentMethod(&messages.SetPaymentMethod{CommandId: "amex", CardNumber: actors.TestCardAmex, ExpMonth: 12, ExpYear: 2030, Cvc: amexCVC}); err != nil {
		t.Fatal(err)
	}

	n.stop()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, number := range []string{actors.TestCardVisa, actors.TestCardDeclined, actors.TestCardMastercard, actors.TestCardAmex} {
		if bytes.Contains(raw, []byte(number)) {
			t.Fatalf("the journal file holds the card number %s", number)
		}
	}
	if bytes.Contains(raw, []byte(amexCVC)) {
		t.Fatalf("the journal file holds the CVC %s", amexCVC)
	}
	n2 := startNode(t, path, nodeOptions{clock: clk, payments: gw})
	got, err := n2.customer("c_pay").Get(&messages.GetCustomer{})
	if err != nil || got.GetPaymentMethod().GetLast4() != "0005" || got.GetPaymentMethod().GetBrand() != "amex" {
		t.Fatalf("after restart: %v, %v", got, err)
	}
}

// The cart through the grain: items of one restaurant, CART_CONFLICT for another, removal, and an order that
// empties it.
func TestCustomerCartThroughTheGrain(t *testing.T) {
	n := startNode(t, filepath.Join(t.TempDir(), "journal.db"), nodeOptions{})
	_, err := n.customer("c_none").Get(&messages.GetCustomer{})
	wantCode(t, "get of an unknown customer", err, messages.ErrorReason_NOT_FOUND)
	readyCustomer(t, n, "c_cart")
	c := n.customer("c_cart")
	_, err = c.AddToCart(&messages.AddToCart{CommandId: "other", RestaurantId: "r_2", RestaurantName: "Elsewhere",
		Pickup: &messages.Position{Lat: 1, Lng: 1}, Quantity: 1, Item: &messages.MenuItem{Id: "z", Name: "Z", PriceCents: 100}})
	wantCode(t, "item of another restaurant", err, messages.ErrorReason_CART_CONFLICT)
	view, err := c.AddToCart(&messages.AddToCart{CommandId: "more", RestaurantId: "r_1", RestaurantName: "Thai Corner",
		Pickup: &messages.Position{Lat: 37.77, Lng: -122.41}, Quantity: 1, Item: &messages.MenuItem{Id: "m2", Name: "Spring rolls", PriceCents: 600}})
	if err != nil || len(view.GetCart().GetItems()) != 2 || view.GetCart().GetTotalCents() != 2*1250+600 {
		t.Fatalf("add: %v, %v", view, err)
	}
	view, err = c.RemoveFromCart(&messages.RemoveFromCart{CommandId: "rm", MenuItemId: "m2"})
	if err != nil || len(view.GetCart().GetItems()) != 1 {
		t.Fatalf("remove: %v, %v", view, err)
	}
	_, err = c.RemoveFromCart(&messages.RemoveFromCart{CommandId: "rm-again", MenuItemId: "m2"})
	wantCode(t, "remove of an item not in the cart", err, messages.ErrorReason_NOT_FOUND)
	view, err = c.OrderCart(&messages.OrderCart{CommandId: "order"})
	if err != nil || view.GetCart() != nil || view.GetLastOrder().GetStatus() != actors.StatusPendingAcceptance {
		t.Fatalf("order: %v, %v", view, err)
	}
	_, err = c.OrderCart(&messages.OrderCart{CommandId: "order-again"})
	wantCode(t, "order of an empty cart", err, messages.ErrorReason_FAILED_PRECONDITION)
	orders, err := c.ListOrders(&messages.ListCustomerOrders{})
	if err != nil || len(orders.GetOrders()) != 1 || orders.GetOrders()[0].GetOrderId() != view.GetLastOrder().GetOrderId() {
		t.Fatalf("orders: %v, %v", orders, err)
	}
}
