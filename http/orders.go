package http

import (
	"errors"
	nethttp "net/http"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// The cart and the customer's orders (API.md, "Search, cart, orders").

type addToCartRequest struct {
	RestaurantID string `json:"restaurant_id"`
	MenuItemID   string `json:"menu_item_id"`
	Quantity     *int64 `json:"quantity"`
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

// orderSummary is an order as the customer's orders index knows it (POST /v1/orders, GET /v1/orders).
type orderSummary struct {
	ID           string      `json:"id"`
	RestaurantID string      `json:"restaurant_id"`
	Status       string      `json:"status"`
	TotalCents   int64       `json:"total_cents"`
	DasherID     string      `json:"dasher_id"`
	Items        []orderLine `json:"items"` // the order's lines (API.md: "order with items")
	PlacedAt     string      `json:"placed_at,omitempty"`
	UpdatedAt    string      `json:"updated_at,omitempty"`
}

type orderLine struct {
	MenuItemID string `json:"menu_item_id"`
	Name       string `json:"name"`
	Quantity   int32  `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

func summarize(o *messages.CustomerOrder) orderSummary {
	s := orderSummary{
		ID: o.GetOrderId(), RestaurantID: o.GetRestaurantId(), Status: o.GetStatus(), TotalCents: o.GetTotalCents(),
		DasherID: o.GetDasherId(), Items: []orderLine{}, PlacedAt: rfc3339(o.GetPlacedAt()), UpdatedAt: rfc3339(o.GetUpdatedAt()),
	}
	for _, l := range o.GetItems() {
		s.Items = append(s.Items, orderLine{MenuItemID: l.GetMenuItemId(), Name: l.GetName(), Quantity: l.GetQuantity(), PriceCents: l.GetPriceCents()})
	}
	return s
}

func rfc3339(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

func (s *Server) handleGetCart(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "Get", &messages.GetCustomer{})
	if err != nil {
		return err
	}
	return s.writeCart(c, view)
}

func (s *Server) writeCart(c *call, view *messages.CustomerView) error {
	cart := view.GetCart()
	if cart == nil {
		cart = &messages.Cart{}
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, cart)
}

// handleAddToCart reads the menu item from its restaurant and adds it to the cart: the Customer actor does not
// call other actors, so the edge copies the restaurant's name, position and the item into the command.
func (s *Server) handleAddToCart(c *call) error {
	var req addToCartRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkBodyID("restaurant_id", restaurantIDPattern, req.RestaurantID); err != nil {
		return err
	}
	if err := checkBodyID("menu_item_id", menuItemIDPattern, req.MenuItemID); err != nil {
		return err
	}
	qty, err := checkInt("quantity", req.Quantity, 1, actors.MaxCartQuantity)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	r, err := callActor[*messages.RestaurantView](ctx, s.backend.Actors, kindRestaurant, req.RestaurantID, "Get", &messages.GetRestaurant{})
	if err != nil {
		return err
	}
	var item *messages.MenuItem
	for _, it := range r.GetMenu() {
		if it.GetId() == req.MenuItemID {
			item = it
			break
		}
	}
	if item == nil {
		return Errorf(CodeNotFound, "restaurant %s has no menu item %q", req.RestaurantID, req.MenuItemID)
	}
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "AddToCart", &messages.AddToCart{
		CommandId: c.commandID("cart-add"), RestaurantId: r.GetId(), RestaurantName: r.GetName(), Pickup: r.GetPosition(),
		Item: item, Quantity: int32(qty),
	})
	if err != nil {
		return err
	}
	return s.writeCart(c, view)
}

func (s *Server) handleRemoveFromCart(c *call) error {
	item := c.params["menu_item_id"]
	if err := checkPathID("menu item", menuItemIDPattern, item); err != nil {
		return err
	}
	if err := noBody(c.ctx); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "RemoveFromCart",
		&messages.RemoveFromCart{CommandId: c.commandID("cart-remove"), MenuItemId: item})
	if err != nil {
		return err
	}
	return s.writeCart(c, view)
}

// handlePlaceOrder orders the cart. The Customer actor records the order and sends it to the Order actor through
// its outbox; the answer is the order as the customer's index holds it (PENDING_ACCEPTANCE), and its progress
// shows in GET /v1/orders/{id} and the feed.
func (s *Server) handlePlaceOrder(c *call) error {
	var req struct{}
	if err := decodeBody(c.ctx, &req, true); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.CustomerView](ctx, s.backend.Actors, kindCustomer, c.who.ID, "OrderCart",
		&messages.OrderCart{CommandId: c.commandID("order")})
	if err != nil {
		return err
	}
	o := view.GetLastOrder()
	if o == nil {
		return Errorf(CodeInternal, "the customer actor answered without the order")
	}
	c.ctx.Response.Header.Set("Location", "/v1/orders/"+o.GetOrderId())
	return s.writeJSON(c.ctx, nethttp.StatusCreated, summarize(o))
}

func (s *Server) handleListOrders(c *call) error {
	if err := knownQuery(c.ctx, "limit", "after"); err != nil {
		return err
	}
	limit, err := queryInt(c.ctx, "limit", actors.DefaultOrdersPage, 1, actors.MaxOrdersPage)
	if err != nil {
		return err
	}
	after, err := queryString(c.ctx, "after")
	if err != nil {
		return err
	}
	if after != "" && !orderIDPattern.MatchString(after) {
		return Errorf(CodeInvalidArgument, "after must be an order id from a previous page")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	page, err := callActor[*messages.CustomerOrders](ctx, s.backend.Actors, kindCustomer, c.who.ID, "ListOrders",
		&messages.ListCustomerOrders{Limit: int32(limit), After: after})
	if err != nil {
		return err
	}
	out := struct {
		Orders    []orderSummary `json:"orders"`
		NextAfter string         `json:"next_after"`
	}{Orders: []orderSummary{}, NextAfter: page.GetNextAfter()}
	for _, o := range page.GetOrders() {
		out.Orders = append(out.Orders, summarize(o))
	}
	return s.writeJSON(c.ctx, nethttp.StatusOK, out)
}

// readOrder reads order {id} and checks that the caller is a party of it.
func (s *Server) readOrder(c *call) (*messages.OrderView, error) {
	id := c.params["id"]
	if err := checkPathID("order", orderIDPattern, id); err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	o, err := callActor[*messages.OrderView](ctx, s.backend.Actors, kindOrder, id, "Get", &messages.GetOrder{})
	if err != nil {
		placing, perr := s.placingOrder(c, id, err)
		if perr != nil {
			return nil, perr
		}
		return placingView(c.who.ID, placing), nil
	}
	if err := authorizeOrder(c.who, id, orderParties{customer: o.GetCustomerId(), restaurant: o.GetRestaurantId(), dasher: o.GetDasherId()}); err != nil {
		return nil, err
	}
	return o, nil
}

// placingOrder answers order id as the calling customer's own orders index holds it when the Order answered
// err, NOT_FOUND: POST /v1/orders answers 201 once the Customer has recorded the order and queued PlaceOrder, but
// the Order is created only when its placement has the payment processor's answer, so until then it does not
// exist. Only the customer who placed it sees it this way (the lookup is in the caller's own index); anyone else,
// an id the index lacks, and every other error answer err itself.
func (s *Server) placingOrder(c *call, id string, err error) (*messages.CustomerOrder, error) {
	var e *Error
	if c.who.Role != RoleCustomer || !errors.As(err, &e) || e.Code != CodeNotFound {
		return nil, err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	// Limit: a node that predates order_id answers the newest page, which the order just placed is in.
	page, lerr := callActor[*messages.CustomerOrders](ctx, s.backend.Actors, kindCustomer, c.who.ID, "ListOrders",
		&messages.ListCustomerOrders{OrderId: id, Limit: actors.MaxOrdersPage})
	if lerr != nil {
		var le *Error
		if errors.As(lerr, &le) && le.Code == CodeNotFound {
			return nil, err
		}
		return nil, lerr
	}
	for _, o := range page.GetOrders() {
		if o.GetOrderId() == id {
			return o, nil
		}
	}
	return nil, err
}

// placingView is the order view of an order known only to its customer's index (placingOrder): what the index
// holds (items, total, status, times), the kitchen and delivery not started (PENDING, WAITING) while the status
// is PENDING_ACCEPTANCE, no timeline and no payment yet.
func placingView(customerID string, o *messages.CustomerOrder) *messages.OrderView {
	v := &messages.OrderView{
		Id: o.GetOrderId(), CustomerId: customerID, RestaurantId: o.GetRestaurantId(), Items: o.GetItems(),
		TotalCents: o.GetTotalCents(), Status: o.GetStatus(), DasherId: o.GetDasherId(), PlacedAt: o.GetPlacedAt(),
		UpdatedAt: o.GetUpdatedAt(),
	}
	if o.GetStatus() == actors.StatusPendingAcceptance {
		v.KitchenStatus, v.DeliveryStatus = "PENDING", "WAITING"
	}
	return v
}

func (s *Server) handleGetOrder(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	o, err := s.readOrder(c)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, o)
}

// orderStatus is the API's status document (OrderStatusView in openapi.json): id, status and updated_at (null
// before the first step). The parties the Order answers with it serve the ownership check only.
type orderStatus struct {
	ID        string  `json:"id"`
	Status    string  `json:"status"`
	UpdatedAt *string `json:"updated_at"`
}

// newOrderStatus is the document of a status (updated_at null when unset).
func newOrderStatus(id, status string, updatedAt *timestamppb.Timestamp) orderStatus {
	out := orderStatus{ID: id, Status: status}
	if updatedAt != nil {
		at := rfc3339(updatedAt)
		out.UpdatedAt = &at
	}
	return out
}

// readStatus reads order {id}'s status and parties with the Order's Status rpc (a small answer, not the whole
// order) and checks that the caller is a party of it.
func (s *Server) readStatus(c *call) (*messages.OrderStatusView, error) {
	id := c.params["id"]
	if err := checkPathID("order", orderIDPattern, id); err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	v, err := callActor[*messages.OrderStatusView](ctx, s.backend.Actors, kindOrder, id, "Status", &messages.GetOrderStatus{})
	if err != nil {
		placing, perr := s.placingOrder(c, id, err)
		if perr != nil {
			return nil, perr
		}
		return statusOf(placingView(c.who.ID, placing)), nil
	}
	if v.GetCustomerId() == "" {
		// Every placed order has a customer: an answer without one comes from a node that does not send the
		// parties yet (a cluster being upgraded), so they are read, and checked, from the whole order.
		o, err := s.readOrder(c)
		if err != nil {
			return nil, err
		}
		return statusOf(o), nil
	}
	if err := authorizeOrder(c.who, id, orderParties{customer: v.GetCustomerId(), restaurant: v.GetRestaurantId(), dasher: v.GetDasherId()}); err != nil {
		return nil, err
	}
	return v, nil
}

// statusOf is the status and parties of a whole order view, as the Order's Status rpc answers them.
func statusOf(o *messages.OrderView) *messages.OrderStatusView {
	return &messages.OrderStatusView{Id: o.GetId(), Status: o.GetStatus(), UpdatedAt: o.GetUpdatedAt(),
		CustomerId: o.GetCustomerId(), RestaurantId: o.GetRestaurantId(), DasherId: o.GetDasherId()}
}

// handleOrderStatus answers an order's status with one call (readStatus); the document leaves the parties out.
func (s *Server) handleOrderStatus(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	v, err := s.readStatus(c)
	if err != nil {
		return err
	}
	return s.writeJSON(c.ctx, nethttp.StatusOK, newOrderStatus(v.GetId(), v.GetStatus(), v.GetUpdatedAt()))
}

// handleCancelOrder cancels for the customer who placed the order or the staff of its restaurant; the Order
// applies the cancellation matrix (409 ORDER_NOT_CANCELLABLE after pickup) and answers with refund_cents.
func (s *Server) handleCancelOrder(c *call) error {
	var req cancelRequest
	if err := decodeBody(c.ctx, &req, true); err != nil {
		return err
	}
	if err := checkText("reason", req.Reason, maxReasonLen, false); err != nil {
		return err
	}
	cmd := &messages.CancelOrder{CommandId: c.commandID("cancel"), Reason: req.Reason}
	switch c.who.Role {
	case RoleCustomer:
		if err := checkPathID("order", orderIDPattern, c.params["id"]); err != nil {
			return err
		}
		cmd.By, cmd.RequesterId = messages.CancelledBy_CANCELLED_BY_CUSTOMER, c.who.ID
	case RoleRestaurant:
		// The staff may serve several restaurants: the order's parties name the one that cancels.
		v, err := s.readStatus(c)
		if err != nil {
			return err
		}
		cmd.By, cmd.RequesterId = messages.CancelledBy_CANCELLED_BY_RESTAURANT, v.GetRestaurantId()
	default:
		return Errorf(CodePermissionDenied, "only the order's customer or restaurant may cancel it")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	o, err := callActor[*messages.OrderView](ctx, s.backend.Actors, kindOrder, c.params["id"], "Cancel", cmd)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, o)
}
