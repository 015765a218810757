package actors

// Customer: one actor per customer (identity = customer id, stream "customer/<id>"): profile, address, payment
// method reference, cart (items of one restaurant), orders index and feed.
//
// Transition table. Every command is validated first (INVALID_ARGUMENT regardless of state), then decided:
//
//	state    command           decision                                                  events (→ sends)
//	-------  ----------------  --------------------------------------------------------  ---------------------------------
//	absent   Create            create                                                    CustomerCreated
//	created  Create            refuse ALREADY_EXISTS                                     -
//	absent   any other         refuse NOT_FOUND (reads never create)                     -
//	created  UpdateProfile     change name and/or phone (nothing if unchanged)           CustomerProfileUpdated
//	created  SetAddress        replace the address (nothing if unchanged)                AddressSet
//	created  SetPaymentMethod  card tokenized by the gateway first (declined:            PaymentMethodSet
//	                           PAYMENT_DECLINED, nothing written); replace the method
//	created  AddToCart         empty cart, or same restaurant: add quantity to the       CartLineSet
//	                           item's line (price and name from the item); line over
//	                           MaxCartQuantity or more than MaxCartLines lines: refuse
//	                           INVALID_ARGUMENT; another restaurant: CART_CONFLICT
//	created  RemoveFromCart    line present: remove it; else NOT_FOUND                   CartLineRemoved
//	created  OrderCart         empty cart, no address or no payment method: refuse       OrderRequested
//	                           FAILED_PRECONDITION; else order the cart, empty it        (→ PlaceOrder to Order <id>)
//	created  Get, ListOrders   answer                                                    -
//
// A command retried with the command_id that was applied is answered again (current view) without a new event;
// the same command_id with a different command is refused IDEMPOTENCY_KEY_REUSED (see entity).
//
// The order id of OrderCart is derived from the customer id and the command id (orderIDFor), so a retried
// OrderCart names the same order, and the Order de-duplicates PlaceOrder by it. The Order answers through the
// outbox; its messages update the orders index and each adds a feed entry:
//
//	message          orders index                                              feed entry
//	---------------  --------------------------------------------------------  ---------------
//	OrderPlaced      status PENDING_ACCEPTANCE (added if the order is unknown) ORDER_PLACED
//	OrderAccepted    status ACCEPTED                                           ORDER_ACCEPTED
//	DasherAssigned   dasher set; DASHER_ASSIGNED unless the kitchen is ahead   DASHER_ASSIGNED
//	FoodReady        status READY_FOR_PICKUP                                   FOOD_READY
//	OrderPickedUp    status PICKED_UP                                          ORDER_PICKED_UP
//	OrderDelivered   status DELIVERED                                          ORDER_DELIVERED
//	OrderCancelled   status CANCELLED                                          ORDER_CANCELLED
//	OrderRejected    status REJECTED                                           ORDER_REJECTED
//	DasherReleased   dasher cleared (back to ACCEPTED if DASHER_ASSIGNED)      -
//	anything else    not handled: the sender retries (a bug)                   -
//
// A terminal status (DELIVERED, CANCELLED, REJECTED) never changes. A message for an order the index does not hold
// (other than OrderPlaced) only adds its feed entry. A customer that does not exist refuses every message
// (NOT_FOUND: logged, applied without effect).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Limits of customer fields (characters unless said otherwise).
const (
	MaxEmailLen       = 254
	MaxPhoneLen       = 32
	MaxAddressLineLen = 200
	MaxCityLen        = 100
	MaxPostalCodeLen  = 20
	MaxCartLines      = 100
	MaxCartQuantity   = 99 // per line
	DefaultOrdersPage = 20
	MaxOrdersPage     = 100
)

// Customer is the Customer grain.
type Customer struct {
	grain[*messages.CustomerState]
}

var _ messages.Customer = (*Customer)(nil)

// customerActor is what the Customer kind spawns: the generated dispatcher plus the node's Deps.
type customerActor struct {
	messages.CustomerActor
	hosted
}

func (a *customerActor) Receive(ctx actor.Context) { a.receive(ctx, a.CustomerActor.Receive) }

// Init loads the customer's stream.
func (c *Customer) Init(ctx pcluster.GrainContext) {
	c.activate(ctx, KindCustomer, &messages.CustomerState{}, applyCustomer, withDeliver(decideDeliverCustomer))
}

// Create creates the customer.
func (c *Customer) Create(req *messages.CreateCustomer, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	return c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideCreateCustomer(s, req, now)
	})
}

// UpdateProfile changes the name and/or the phone.
func (c *Customer) UpdateProfile(req *messages.UpdateCustomerProfile, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	return c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideUpdateProfile(s, req, now)
	})
}

// SetAddress replaces the delivery address.
func (c *Customer) SetAddress(req *messages.SetAddress, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	return c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideSetAddress(s, req, now)
	})
}

// SetPaymentMethod tokenizes the card with the payment gateway, then keeps the token and the card's public facts.
// The command is de-duplicated by a copy without the card number and CVC (redactCard), so they are never stored,
// not even hashed.
func (c *Customer) SetPaymentMethod(req *messages.SetPaymentMethod, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	if err := c.query(); err != nil {
		return nil, err
	}
	redacted := redactCard(req)
	replayed, err := c.entity.replayed(req.GetCommandId(), redacted)
	if err != nil {
		return nil, c.answer(err)
	}
	if replayed {
		return customerView(ctx.Identity(), c.state()), nil
	}
	if err := checkSetPaymentMethod(c.state(), req); err != nil {
		return nil, grainError(err)
	}
	method, err := c.tokenize(req)
	if err != nil {
		return nil, err
	}
	return c.run(ctx, req.GetCommandId(), redacted, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideSetPaymentMethod(s, req, method, now)
	})
}

// tokenize hands the card to the gateway (the only place the card number and CVC go).
func (c *Customer) tokenize(req *messages.SetPaymentMethod) (PaymentMethod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.deps.Workflow.PaymentTimeout)
	defer cancel()
	method, err := c.deps.Payments.Tokenize(ctx, Card{
		Number: req.GetCardNumber(), ExpMonth: int(req.GetExpMonth()), ExpYear: int(req.GetExpYear()), CVC: req.GetCvc(),
	})
	var refusal *Error
	switch {
	case err == nil:
		return method, nil
	case errors.As(err, &refusal):
		return PaymentMethod{}, grainError(refusal)
	default:
		c.log.Warn("tokenizing a card failed", slog.Any("error", err)) // the error never holds the card number
		return PaymentMethod{}, grainError(&Error{Code: messages.ErrorReason_UNAVAILABLE, Message: "the payment gateway is unavailable; retry later"})
	}
}

// AddToCart adds an item to the cart.
func (c *Customer) AddToCart(req *messages.AddToCart, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	return c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideAddToCart(s, req, now)
	})
}

// RemoveFromCart removes an item's line from the cart.
func (c *Customer) RemoveFromCart(req *messages.RemoveFromCart, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	return c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideRemoveFromCart(s, req, now)
	})
}

// OrderCart orders the cart; the answer's last_order is the order placed (also for a retried command).
func (c *Customer) OrderCart(req *messages.OrderCart, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	id := ctx.Identity()
	view, err := c.run(ctx, req.GetCommandId(), req, func(s *messages.CustomerState, now time.Time) ([]proto.Message, error) {
		return decideOrderCart(id, s, req, now)
	})
	if err != nil {
		return nil, err
	}
	if o := findOrder(c.state(), orderIDFor(id, req.GetCommandId())); o != nil {
		view.LastOrder = proto.Clone(o).(*messages.CustomerOrder)
	}
	return view, nil
}

// Get answers the view, or NOT_FOUND for a customer never created (that activation then stops at once).
func (c *Customer) Get(_ *messages.GetCustomer, ctx pcluster.GrainContext) (*messages.CustomerView, error) {
	if err := c.query(); err != nil {
		return nil, err
	}
	if err := requireCustomer(c.state()); err != nil {
		c.stop(ctx)
		return nil, grainError(err)
	}
	return customerView(ctx.Identity(), c.state()), nil
}

// ListOrders answers a page of the orders index, newest first.
func (c *Customer) ListOrders(req *messages.ListCustomerOrders, ctx pcluster.GrainContext) (*messages.CustomerOrders, error) {
	if err := c.query(); err != nil {
		return nil, err
	}
	if err := requireCustomer(c.state()); err != nil {
		c.stop(ctx)
		return nil, grainError(err)
	}
	page, err := listCustomerOrders(c.state(), req)
	if err != nil {
		return nil, grainError(err)
	}
	return page, nil
}

// run executes a command and answers the view.
func (c *Customer) run(ctx pcluster.GrainContext, commandID string, cmd proto.Message, decide func(*messages.CustomerState, time.Time) ([]proto.Message, error)) (*messages.CustomerView, error) {
	if err := c.command(ctx, commandID, cmd, decide); err != nil {
		return nil, err
	}
	return customerView(ctx.Identity(), c.state()), nil
}

// ---- Decisions: pure functions of state and command ----

func requireCustomer(s *messages.CustomerState) *Error {
	if !s.GetCreated() {
		return refuse(messages.ErrorReason_NOT_FOUND, "the customer does not exist")
	}
	return nil
}

func decideCreateCustomer(s *messages.CustomerState, c *messages.CreateCustomer, now time.Time) ([]proto.Message, error) {
	if err := checkText("name", c.GetName(), MaxNameLen, true); err != nil {
		return nil, err
	}
	if err := checkEmail(c.GetEmail()); err != nil {
		return nil, err
	}
	if err := checkPhone(c.GetPhone()); err != nil {
		return nil, err
	}
	if s.GetCreated() {
		return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the customer exists already")
	}
	return []proto.Message{&messages.CustomerCreated{
		Name:      strings.TrimSpace(c.GetName()),
		Email:     strings.ToLower(strings.TrimSpace(c.GetEmail())),
		Phone:     strings.TrimSpace(c.GetPhone()),
		CreatedAt: timestamppb.New(now),
	}}, nil
}

func decideUpdateProfile(s *messages.CustomerState, c *messages.UpdateCustomerProfile, now time.Time) ([]proto.Message, error) {
	if strings.TrimSpace(c.GetName()) == "" && strings.TrimSpace(c.GetPhone()) == "" {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "name or phone is required")
	}
	if err := checkText("name", c.GetName(), MaxNameLen, false); err != nil {
		return nil, err
	}
	if err := checkPhone(c.GetPhone()); err != nil {
		return nil, err
	}
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	ev := &messages.CustomerProfileUpdated{At: timestamppb.New(now)}
	if name := strings.TrimSpace(c.GetName()); name != "" && name != s.GetName() {
		ev.Name = name
	}
	if phone := strings.TrimSpace(c.GetPhone()); phone != "" && phone != s.GetPhone() {
		ev.Phone = phone
	}
	if ev.Name == "" && ev.Phone == "" {
		return nil, nil
	}
	return []proto.Message{ev}, nil
}

func decideSetAddress(s *messages.CustomerState, c *messages.SetAddress, now time.Time) ([]proto.Message, error) {
	a := c.GetAddress()
	if a == nil {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "address is required")
	}
	if err := checkText("address.line1", a.GetLine1(), MaxAddressLineLen, true); err != nil {
		return nil, err
	}
	if err := checkText("address.city", a.GetCity(), MaxCityLen, true); err != nil {
		return nil, err
	}
	if err := checkText("address.postal_code", a.GetPostalCode(), MaxPostalCodeLen, false); err != nil {
		return nil, err
	}
	if err := checkPosition(a.GetPosition()); err != nil {
		return nil, err
	}
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	addr := &messages.Address{
		Line1:      strings.TrimSpace(a.GetLine1()),
		City:       strings.TrimSpace(a.GetCity()),
		PostalCode: strings.TrimSpace(a.GetPostalCode()),
		Position:   &messages.Position{Lat: a.GetPosition().GetLat(), Lng: a.GetPosition().GetLng()},
	}
	if proto.Equal(addr, s.GetAddress()) {
		return nil, nil
	}
	return []proto.Message{&messages.AddressSet{Address: addr, At: timestamppb.New(now)}}, nil
}

// checkSetPaymentMethod is what the grain checks before it calls the gateway: a plausible card of an existing
// customer.
func checkSetPaymentMethod(s *messages.CustomerState, c *messages.SetPaymentMethod) *Error {
	n := c.GetCardNumber()
	if len(n) < 12 || len(n) > 19 || strings.IndexFunc(n, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "card_number must be 12-19 digits")
	}
	if m := c.GetExpMonth(); m < 1 || m > 12 {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "exp_month must be 1-12")
	}
	if y := c.GetExpYear(); y < 2000 || y > 2100 {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "exp_year must be a four-digit year")
	}
	cvc := c.GetCvc()
	if len(cvc) < 3 || len(cvc) > 4 || strings.IndexFunc(cvc, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "cvc must be 3 or 4 digits")
	}
	return requireCustomer(s)
}

// decideSetPaymentMethod keeps the method the gateway returned for the card of c.
func decideSetPaymentMethod(s *messages.CustomerState, c *messages.SetPaymentMethod, m PaymentMethod, now time.Time) ([]proto.Message, error) {
	if err := checkSetPaymentMethod(s, c); err != nil {
		return nil, err
	}
	if m.Token == "" {
		return nil, errors.New("the payment gateway returned no token")
	}
	added := m.AddedAt
	if added.IsZero() {
		added = now
	}
	return []proto.Message{&messages.PaymentMethodSet{Method: &messages.PaymentMethod{
		Token: m.Token, Brand: m.Brand, Last4: m.Last4, ExpMonth: int32(m.ExpMonth), ExpYear: int32(m.ExpYear),
		AddedAt: timestamppb.New(added),
	}}}, nil
}

// redactCard returns the copy of c the entity fingerprints: the card number reduced to its last four digits and
// no CVC.
func redactCard(c *messages.SetPaymentMethod) *messages.SetPaymentMethod {
	r := proto.Clone(c).(*messages.SetPaymentMethod)
	if n := r.GetCardNumber(); len(n) > 4 {
		r.CardNumber = n[len(n)-4:]
	}
	r.Cvc = ""
	return r
}

func decideAddToCart(s *messages.CustomerState, c *messages.AddToCart, now time.Time) ([]proto.Message, error) {
	if err := checkID("restaurant_id", c.GetRestaurantId()); err != nil { // as the Order checks it
		return nil, err
	}
	if err := checkText("restaurant_name", c.GetRestaurantName(), MaxNameLen, true); err != nil {
		return nil, err
	}
	if err := checkPosition(c.GetPickup()); err != nil {
		return nil, err
	}
	item := c.GetItem()
	if item == nil {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "item is required")
	}
	if err := checkID("item.id", item.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("item.name", item.GetName(), MaxNameLen, true); err != nil {
		return nil, err
	}
	if p := item.GetPriceCents(); p <= 0 || p > MaxPriceCents {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "item.price_cents must be 1-%d", MaxPriceCents)
	}
	if q := c.GetQuantity(); q < 1 || q > MaxCartQuantity {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "quantity must be 1-%d", MaxCartQuantity)
	}
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	cart := s.GetCart()
	if len(cart.GetItems()) > 0 && cart.GetRestaurantId() != c.GetRestaurantId() {
		return nil, refuse(messages.ErrorReason_CART_CONFLICT, "the cart holds items of restaurant %s; a cart holds items of one restaurant", cart.GetRestaurantId())
	}
	qty := c.GetQuantity()
	if l := cartLine(cart, item.GetId()); l != nil {
		qty += l.GetQuantity()
	} else if len(cart.GetItems()) >= MaxCartLines {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a cart holds at most %d lines", MaxCartLines)
	}
	if qty > MaxCartQuantity {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "a line holds at most %d of an item", MaxCartQuantity)
	}
	return []proto.Message{&messages.CartLineSet{
		RestaurantId:   c.GetRestaurantId(),
		RestaurantName: strings.TrimSpace(c.GetRestaurantName()),
		Pickup:         &messages.Position{Lat: c.GetPickup().GetLat(), Lng: c.GetPickup().GetLng()},
		Line: &messages.OrderLine{
			MenuItemId: item.GetId(), Name: strings.TrimSpace(item.GetName()), Quantity: qty, PriceCents: item.GetPriceCents(),
		},
	}}, nil
}

func decideRemoveFromCart(s *messages.CustomerState, c *messages.RemoveFromCart, _ time.Time) ([]proto.Message, error) {
	if err := checkID("menu_item_id", c.GetMenuItemId()); err != nil {
		return nil, err
	}
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	if cartLine(s.GetCart(), c.GetMenuItemId()) == nil {
		return nil, refuse(messages.ErrorReason_NOT_FOUND, "the cart holds no item %q", c.GetMenuItemId())
	}
	return []proto.Message{&messages.CartLineRemoved{MenuItemId: c.GetMenuItemId()}}, nil
}

// decideOrderCart orders the cart of customer id: the order is recorded in the index and PlaceOrder goes to the
// Order through the outbox.
func decideOrderCart(id string, s *messages.CustomerState, c *messages.OrderCart, now time.Time) ([]proto.Message, error) {
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	cart := s.GetCart()
	switch {
	case len(cart.GetItems()) == 0:
		return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "the cart is empty")
	case s.GetAddress() == nil:
		return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "set a delivery address first")
	case s.GetPaymentMethod().GetToken() == "":
		return nil, refuse(messages.ErrorReason_FAILED_PRECONDITION, "set a payment method first")
	}
	orderID := orderIDFor(id, c.GetCommandId())
	lines := make([]*messages.OrderLine, len(cart.GetItems()))
	for i, l := range cart.GetItems() {
		lines[i] = proto.Clone(l).(*messages.OrderLine)
	}
	at := timestamppb.New(now)
	requested := &messages.OrderRequested{Order: &messages.CustomerOrder{
		OrderId: orderID, RestaurantId: cart.GetRestaurantId(), TotalCents: cartTotal(cart), Status: StatusPendingAcceptance,
		PlacedAt: at, UpdatedAt: at, Items: lines,
	}, CartOrdered: true}
	place, err := sendTo(KindOrder, orderID, &messages.PlaceOrder{
		CommandId:    orderID,
		CustomerId:   id,
		RestaurantId: cart.GetRestaurantId(),
		Lines:        lines,
		Pickup:       cart.GetPickup(),
		Dropoff:      s.GetAddress().GetPosition(),
		PaymentToken: s.GetPaymentMethod().GetToken(),
	})
	if err != nil {
		return nil, err
	}
	return []proto.Message{requested, place}, nil
}

// orderIDFor derives the id of the order that customer's OrderCart command commandID places: "o_" and 24 hex
// digits of a hash, so a retry names the same order and two customers never collide.
func orderIDFor(customer, commandID string) string {
	sum := sha256.Sum256([]byte(customer + "\x00" + commandID))
	return "o_" + hex.EncodeToString(sum[:12])
}

func listCustomerOrders(s *messages.CustomerState, q *messages.ListCustomerOrders) (*messages.CustomerOrders, *Error) {
	if id := q.GetOrderId(); id != "" {
		page := &messages.CustomerOrders{}
		if o := findOrder(s, id); o != nil {
			page.Orders = append(page.Orders, proto.Clone(o).(*messages.CustomerOrder))
		}
		return page, nil
	}
	limit := int(q.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultOrdersPage
	case limit < 0 || limit > MaxOrdersPage:
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "limit must be 1-%d", MaxOrdersPage)
	}
	orders := s.GetOrders()
	end := len(orders) // newest first: walk back from end-1
	if q.GetAfter() != "" {
		end = -1
		for i, o := range orders {
			if o.GetOrderId() == q.GetAfter() {
				end = i
			}
		}
		if end < 0 {
			return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "after names no order of the customer")
		}
	}
	page := &messages.CustomerOrders{}
	for i := end - 1; i >= 0 && len(page.Orders) < limit; i-- {
		page.Orders = append(page.Orders, proto.Clone(orders[i]).(*messages.CustomerOrder))
		if i > 0 && len(page.Orders) == limit {
			page.NextAfter = orders[i].GetOrderId()
		}
	}
	return page, nil
}

// decideDeliverCustomer decides on a message the Order sent (see the table at the top).
func decideDeliverCustomer(s *messages.CustomerState, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
	switch payload.(type) {
	case *messages.OrderPlaced, *messages.OrderAccepted, *messages.DasherAssigned, *messages.FoodReady, *messages.OrderPickedUp,
		*messages.OrderDelivered, *messages.OrderCancelled, *messages.OrderRejected, *messages.DasherReleased:
	default:
		return nil, unexpectedPayload(KindCustomer, payload)
	}
	if err := requireCustomer(s); err != nil {
		return nil, err
	}
	at := timestamppb.New(now)
	var events []proto.Message
	switch p := payload.(type) {
	case *messages.OrderPlaced:
		if findOrder(s, p.GetOrderId()) == nil {
			events = append(events, &messages.OrderRequested{Order: &messages.CustomerOrder{
				OrderId: p.GetOrderId(), RestaurantId: p.GetRestaurantId(), TotalCents: p.GetTotalCents(),
				Status: StatusPendingAcceptance, PlacedAt: p.GetPlacedAt(), UpdatedAt: at, Items: p.GetLines(),
			}})
		} else {
			events = customerOrderUpdate(s, p.GetOrderId(), StatusPendingAcceptance, nil, at)
		}
	case *messages.OrderAccepted:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusAccepted, nil, at)
	case *messages.DasherAssigned:
		status := StatusDasherAssigned
		if o := findOrder(s, p.GetOrderId()); o.GetStatus() == StatusReadyForPickup || o.GetStatus() == StatusPickedUp {
			status = o.GetStatus() // the kitchen is ahead; the order keeps both facts
		}
		dasher := p.GetDasherId()
		events = customerOrderUpdate(s, p.GetOrderId(), status, &dasher, at)
	case *messages.FoodReady:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusReadyForPickup, nil, at)
	case *messages.OrderPickedUp:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusPickedUp, nil, at)
	case *messages.OrderDelivered:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusDelivered, nil, at)
	case *messages.OrderCancelled:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusCancelled, nil, at)
	case *messages.OrderRejected:
		events = customerOrderUpdate(s, p.GetOrderId(), StatusRejected, nil, at)
	case *messages.DasherReleased:
		o := findOrder(s, p.GetOrderId())
		if o == nil || o.GetDasherId() != p.GetDasherId() {
			return nil, nil
		}
		status := o.GetStatus()
		if status == StatusDasherAssigned {
			status = StatusAccepted
		}
		none := ""
		return customerOrderUpdate(s, p.GetOrderId(), status, &none, at), nil
	default:
		return nil, unexpectedPayload(KindCustomer, payload)
	}
	item, err := notify(payload, now)
	if err != nil {
		return nil, err
	}
	return append(events, item), nil
}

// customerOrderUpdate returns the event that moves an indexed order to status (and sets its dasher when dasher is
// not nil), or nothing when the order is unknown, terminal already, or nothing changes.
func customerOrderUpdate(s *messages.CustomerState, orderID, status string, dasher *string, at *timestamppb.Timestamp) []proto.Message {
	o := findOrder(s, orderID)
	if o == nil || terminalStatus(o.GetStatus()) {
		return nil
	}
	ev := &messages.CustomerOrderUpdated{OrderId: orderID, Status: status, DasherId: o.GetDasherId(), At: at}
	if dasher != nil {
		ev.DasherId = *dasher
	}
	if ev.Status == o.GetStatus() && ev.DasherId == o.GetDasherId() {
		return nil
	}
	return []proto.Message{ev}
}

func terminalStatus(status string) bool {
	return status == StatusDelivered || status == StatusCancelled || status == StatusRejected
}

// checkEmail accepts a plausible address: one "@" with text on both sides, no spaces.
func checkEmail(email string) *Error {
	e := strings.TrimSpace(email)
	if err := checkText("email", e, MaxEmailLen, true); err != nil {
		return err
	}
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.ContainsFunc(e, unicode.IsSpace) {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "email is not an email address")
	}
	return nil
}

// checkPhone accepts an optional phone number: digits, spaces, "+", "-", "(", ")", with 5-15 digits.
func checkPhone(phone string) *Error {
	p := strings.TrimSpace(phone)
	if p == "" {
		return nil
	}
	if len(p) > MaxPhoneLen {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "phone is longer than %d characters", MaxPhoneLen)
	}
	digits := 0
	for _, r := range p {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune(" +-()", r):
		default:
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "phone may hold only digits, spaces and + - ( )")
		}
	}
	if digits < 5 || digits > 15 {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "phone must have 5-15 digits")
	}
	return nil
}

func cartLine(c *messages.Cart, menuItemID string) *messages.OrderLine {
	for _, l := range c.GetItems() {
		if l.GetMenuItemId() == menuItemID {
			return l
		}
	}
	return nil
}

func cartTotal(c *messages.Cart) int64 {
	var total int64
	for _, l := range c.GetItems() {
		total += l.GetPriceCents() * int64(l.GetQuantity())
	}
	return total
}

func findOrder(s *messages.CustomerState, orderID string) *messages.CustomerOrder {
	for _, o := range s.GetOrders() {
		if o.GetOrderId() == orderID {
			return o
		}
	}
	return nil
}

// ---- Fold ----

// applyCustomer folds one event into the state. It never fails for the kind's own events.
func applyCustomer(s *messages.CustomerState, event proto.Message) error {
	switch e := event.(type) {
	case *messages.CustomerCreated:
		s.Created = true
		s.Name, s.Email, s.Phone, s.CreatedAt = e.GetName(), e.GetEmail(), e.GetPhone(), e.GetCreatedAt()
	case *messages.CustomerProfileUpdated:
		if e.GetName() != "" {
			s.Name = e.GetName()
		}
		if e.GetPhone() != "" {
			s.Phone = e.GetPhone()
		}
	case *messages.AddressSet:
		s.Address = e.GetAddress()
	case *messages.PaymentMethodSet:
		s.PaymentMethod = e.GetMethod()
	case *messages.CartLineSet:
		if s.Cart == nil || len(s.Cart.GetItems()) == 0 {
			s.Cart = &messages.Cart{RestaurantId: e.GetRestaurantId(), RestaurantName: e.GetRestaurantName(), Pickup: e.GetPickup()}
		}
		if l := cartLine(s.Cart, e.GetLine().GetMenuItemId()); l != nil {
			l.Quantity, l.PriceCents, l.Name = e.GetLine().GetQuantity(), e.GetLine().GetPriceCents(), e.GetLine().GetName()
		} else {
			s.Cart.Items = append(s.Cart.Items, e.GetLine())
		}
	case *messages.CartLineRemoved:
		lines := s.GetCart().GetItems()
		for i, l := range lines {
			if l.GetMenuItemId() == e.GetMenuItemId() {
				s.Cart.Items = append(lines[:i:i], lines[i+1:]...)
				break
			}
		}
		if len(s.GetCart().GetItems()) == 0 {
			s.Cart = nil
		}
	case *messages.OrderRequested:
		if findOrder(s, e.GetOrder().GetOrderId()) == nil {
			s.Orders = append(s.Orders, e.GetOrder())
		}
		if e.GetCartOrdered() {
			s.Cart = nil
		}
	case *messages.CustomerOrderUpdated:
		if o := findOrder(s, e.GetOrderId()); o != nil {
			o.Status, o.DasherId, o.UpdatedAt = e.GetStatus(), e.GetDasherId(), e.GetAt()
		}
	default:
		return unexpectedEvent(KindCustomer, event)
	}
	return nil
}

// customerView answers a copy (in-process callers receive the message itself) without the payment token.
func customerView(id string, s *messages.CustomerState) *messages.CustomerView {
	v := &messages.CustomerView{
		Id: id, Name: s.GetName(), Email: s.GetEmail(), Phone: s.GetPhone(), Address: s.GetAddress(), CreatedAt: s.GetCreatedAt(),
	}
	if m := s.GetPaymentMethod(); m != nil {
		v.PaymentMethod = &messages.PaymentMethodView{Brand: m.GetBrand(), Last4: m.GetLast4(), ExpMonth: m.GetExpMonth(), ExpYear: m.GetExpYear()}
	}
	if c := s.GetCart(); c != nil {
		v.Cart = proto.Clone(c).(*messages.Cart)
		v.Cart.TotalCents = cartTotal(c)
	}
	return proto.Clone(v).(*messages.CustomerView)
}
