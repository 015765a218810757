package actors

// Restaurant: one actor per restaurant (identity = restaurant id, stream "restaurant/<id>").
//
// Transition table. Every command is validated first (INVALID_ARGUMENT regardless of state), then decided:
//
//	state    command      decision                                  events
//	-------  -----------  ----------------------------------------  -----------------
//	absent   Create       create                                    RestaurantCreated
//	created  Create       refuse ALREADY_EXISTS                     -
//	absent   UpdateMenu   refuse NOT_FOUND                          -
//	created  UpdateMenu   replace the menu (no event if unchanged)  MenuUpdated
//	absent   Get          refuse NOT_FOUND (a read never creates)   -
//	created  Get          answer the view                           -
//
//	absent   ListOrders   refuse NOT_FOUND                          -
//	created  ListOrders   answer the open orders, oldest first      -
//
// A command retried with the command_id that was applied is answered again (current view) without a new event;
// the same command_id with a different command is refused IDEMPOTENCY_KEY_REUSED (see entity).
//
// Workflow side: messages the Order sends (Deliver; docs/workflow.md). The restaurant keeps its open orders and its
// feed; the Order stays the source of truth. A message about an order that is not open (closed already, or never
// placed here) changes nothing. A restaurant that does not exist refuses every message (NOT_FOUND: logged, applied
// without effect).
//
//	message          open order                                   feed entry
//	---------------  -------------------------------------------  ----------------
//	OrderPlaced      added, PENDING_ACCEPTANCE (once per order)   ORDER_PLACED
//	OrderAccepted    status ACCEPTED                              -
//	DasherAssigned   dasher set; status DASHER_ASSIGNED unless    DASHER_ASSIGNED
//	                 it is READY_FOR_PICKUP already
//	FoodReady        status READY_FOR_PICKUP                      -
//	OrderPickedUp    status PICKED_UP                             -
//	DasherReleased   dasher cleared                               -
//	OrderDelivered   closed DELIVERED                             ORDER_DELIVERED
//	OrderCancelled   closed CANCELLED                             ORDER_CANCELLED
//	OrderRejected    closed REJECTED                              ORDER_REJECTED
//	anything else    not handled: the sender retries (a bug)      -

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Limits of restaurant fields (characters unless said otherwise).
const (
	MaxNameLen        = 200
	MaxCuisineLen     = 100
	MaxMenuItems      = 500
	MaxItemIDLen      = 100
	MaxDescriptionLen = 2000
	MaxTagsPerItem    = 20
	MaxTagLen         = 50
	MaxPriceCents     = 1_000_000
)

// Restaurant is the Restaurant grain: profile, position and menu.
type Restaurant struct {
	grain[*messages.RestaurantState]
}

var _ messages.Restaurant = (*Restaurant)(nil)

// Init loads the restaurant's stream.
func (r *Restaurant) Init(ctx pcluster.GrainContext) {
	r.activate(ctx, KindRestaurant, &messages.RestaurantState{}, applyRestaurant, withDeliver(decideDeliverRestaurant))
}

// Create creates the restaurant.
func (r *Restaurant) Create(req *messages.CreateRestaurant, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
	err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return withListing(ctx.Identity(), s, now)(decideCreateRestaurant(s, req, now))
	})
	if err != nil {
		return nil, err
	}
	return restaurantView(ctx.Identity(), r.state()), nil
}

// UpdateMenu replaces the menu.
func (r *Restaurant) UpdateMenu(req *messages.UpdateMenu, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
	err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return withListing(ctx.Identity(), s, now)(decideUpdateMenu(s, req, now))
	})
	if err != nil {
		return nil, err
	}
	return restaurantView(ctx.Identity(), r.state()), nil
}

// Get answers the view, or NOT_FOUND for a restaurant never created; that activation then stops at once, so that
// reads of unknown ids leave nothing behind.
func (r *Restaurant) Get(_ *messages.GetRestaurant, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
	if err := r.query(); err != nil {
		return nil, err
	}
	if err := decideGetRestaurant(r.state()); err != nil {
		r.stop(ctx)
		return nil, grainError(err)
	}
	return restaurantView(ctx.Identity(), r.state()), nil
}

// ListOrders answers the open orders, oldest first.
func (r *Restaurant) ListOrders(_ *messages.ListRestaurantOrders, ctx pcluster.GrainContext) (*messages.RestaurantOrders, error) {
	if err := r.query(); err != nil {
		return nil, err
	}
	if err := decideGetRestaurant(r.state()); err != nil {
		r.stop(ctx)
		return nil, grainError(err)
	}
	return restaurantOrders(r.state()), nil
}

// ---- Decisions: pure functions of state and command ----

func decideCreateRestaurant(s *messages.RestaurantState, c *messages.CreateRestaurant, now time.Time) ([]proto.Message, error) {
	if err := validateCreateRestaurant(c); err != nil {
		return nil, err
	}
	if s.GetCreated() {
		return nil, refuse(messages.ErrorReason_ALREADY_EXISTS, "the restaurant exists already")
	}
	return []proto.Message{&messages.RestaurantCreated{
		Name:      strings.TrimSpace(c.GetName()),
		Position:  &messages.Position{Lat: c.GetPosition().GetLat(), Lng: c.GetPosition().GetLng()},
		Cuisine:   strings.TrimSpace(c.GetCuisine()),
		CreatedAt: timestamppb.New(now),
	}}, nil
}

func decideUpdateMenu(s *messages.RestaurantState, c *messages.UpdateMenu, now time.Time) ([]proto.Message, error) {
	if err := validateMenu(c.GetItems()); err != nil {
		return nil, err
	}
	if !s.GetCreated() {
		return nil, refuse(messages.ErrorReason_NOT_FOUND, "the restaurant does not exist")
	}
	if menuEqual(s.GetMenu(), c.GetItems()) {
		return nil, nil
	}
	items := make([]*messages.MenuItem, len(c.GetItems()))
	for i, it := range c.GetItems() {
		items[i] = proto.Clone(it).(*messages.MenuItem)
	}
	return []proto.Message{&messages.MenuUpdated{Items: items, UpdatedAt: timestamppb.New(now)}}, nil
}

func decideGetRestaurant(s *messages.RestaurantState) *Error {
	if !s.GetCreated() {
		return refuse(messages.ErrorReason_NOT_FOUND, "the restaurant does not exist")
	}
	return nil
}

func validateCreateRestaurant(c *messages.CreateRestaurant) *Error {
	if err := checkText("name", c.GetName(), MaxNameLen, true); err != nil {
		return err
	}
	if err := checkText("cuisine", c.GetCuisine(), MaxCuisineLen, true); err != nil {
		return err
	}
	return checkPosition(c.GetPosition())
}

func validateMenu(items []*messages.MenuItem) *Error {
	if len(items) > MaxMenuItems {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "a menu has at most %d items", MaxMenuItems)
	}
	ids := make(map[string]bool, len(items))
	for i, it := range items {
		field := fmt.Sprintf("items[%d]", i)
		if err := checkText(field+".id", it.GetId(), MaxItemIDLen, true); err != nil {
			return err
		}
		if it.GetId() != strings.TrimSpace(it.GetId()) {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.id has leading or trailing spaces", field)
		}
		if ids[it.GetId()] {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.id %q is used twice", field, it.GetId())
		}
		ids[it.GetId()] = true
		if err := checkText(field+".name", it.GetName(), MaxNameLen, true); err != nil {
			return err
		}
		if err := checkText(field+".description", it.GetDescription(), MaxDescriptionLen, false); err != nil {
			return err
		}
		if p := it.GetPriceCents(); p <= 0 || p > MaxPriceCents {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s.price_cents must be 1-%d", field, MaxPriceCents)
		}
		if len(it.GetTags()) > MaxTagsPerItem {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s has more than %d tags", field, MaxTagsPerItem)
		}
		for j, tag := range it.GetTags() {
			if err := checkText(fmt.Sprintf("%s.tags[%d]", field, j), tag, MaxTagLen, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses invalid UTF-8, text longer than max characters, and (when required) blank text.
func checkText(field, s string, max int, required bool) *Error {
	switch {
	case !utf8.ValidString(s):
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s is not valid UTF-8", field)
	case required && strings.TrimSpace(s) == "":
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s is required", field)
	case utf8.RuneCountInString(s) > max:
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "%s is longer than %d characters", field, max)
	}
	return nil
}

func checkPosition(p *messages.Position) *Error {
	switch {
	case p == nil:
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "position is required")
	case math.IsNaN(p.GetLat()) || p.GetLat() < -90 || p.GetLat() > 90:
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "position.lat must be within -90..90")
	case math.IsNaN(p.GetLng()) || p.GetLng() < -180 || p.GetLng() > 180:
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "position.lng must be within -180..180")
	}
	return nil
}

func menuEqual(a, b []*messages.MenuItem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Order statuses, as the API names them (the restaurant's and the customer's copies of an order's status).
const (
	StatusPendingAcceptance = "PENDING_ACCEPTANCE"
	StatusAccepted          = "ACCEPTED"
	StatusDasherAssigned    = "DASHER_ASSIGNED"
	StatusReadyForPickup    = "READY_FOR_PICKUP"
	StatusPickedUp          = "PICKED_UP"
	StatusDelivered         = "DELIVERED"
	StatusCancelled         = "CANCELLED"
	StatusRejected          = "REJECTED"
)

// decideDeliverRestaurant decides on a message the Order sent (see the workflow table at the top).
func decideDeliverRestaurant(s *messages.RestaurantState, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
	switch payload.(type) {
	case *messages.OrderPlaced, *messages.OrderAccepted, *messages.DasherAssigned, *messages.FoodReady, *messages.OrderPickedUp,
		*messages.DasherReleased, *messages.OrderDelivered, *messages.OrderCancelled, *messages.OrderRejected:
	default:
		return nil, unexpectedPayload(KindRestaurant, payload)
	}
	if !s.GetCreated() {
		return nil, refuse(messages.ErrorReason_NOT_FOUND, "the restaurant does not exist")
	}
	at := timestamppb.New(now)
	var events []proto.Message
	switch p := payload.(type) {
	case *messages.OrderPlaced:
		if s.GetOpenOrders()[p.GetOrderId()] != nil {
			return nil, nil
		}
		events = append(events, &messages.OpenOrderAdded{Order: &messages.OpenOrder{
			OrderId:    p.GetOrderId(),
			CustomerId: p.GetCustomerId(),
			Items:      p.GetLines(),
			TotalCents: p.GetTotalCents(),
			Status:     StatusPendingAcceptance,
			PlacedAt:   p.GetPlacedAt(),
			AcceptBy:   p.GetAcceptBy(),
			UpdatedAt:  at,
		}})
	case *messages.OrderAccepted:
		return openOrderUpdate(s, p.GetOrderId(), StatusAccepted, nil, at), nil
	case *messages.DasherAssigned:
		o := s.GetOpenOrders()[p.GetOrderId()]
		if o == nil {
			return nil, nil
		}
		status := StatusDasherAssigned
		if o.GetStatus() == StatusReadyForPickup || o.GetStatus() == StatusPickedUp {
			status = o.GetStatus() // the kitchen's step is further along; the order keeps both facts
		}
		dasher := p.GetDasherId()
		events = openOrderUpdate(s, p.GetOrderId(), status, &dasher, at)
	case *messages.FoodReady:
		return openOrderUpdate(s, p.GetOrderId(), StatusReadyForPickup, nil, at), nil
	case *messages.OrderPickedUp:
		return openOrderUpdate(s, p.GetOrderId(), StatusPickedUp, nil, at), nil
	case *messages.DasherReleased:
		o := s.GetOpenOrders()[p.GetOrderId()]
		if o == nil || o.GetDasherId() != p.GetDasherId() {
			return nil, nil
		}
		none := ""
		status := o.GetStatus()
		if status == StatusDasherAssigned {
			status = StatusAccepted
		}
		return openOrderUpdate(s, p.GetOrderId(), status, &none, at), nil
	case *messages.OrderDelivered:
		events = openOrderClose(s, p.GetOrderId(), StatusDelivered, at)
	case *messages.OrderCancelled:
		events = openOrderClose(s, p.GetOrderId(), StatusCancelled, at)
	case *messages.OrderRejected:
		events = openOrderClose(s, p.GetOrderId(), StatusRejected, at)
	default:
		return nil, unexpectedPayload(KindRestaurant, payload)
	}
	if len(events) == 0 {
		return nil, nil
	}
	item, err := notify(payload, now)
	if err != nil {
		return nil, err
	}
	return append(events, item), nil
}

// openOrderUpdate returns the event that moves an open order to status (and sets its dasher when dasher is not
// nil), or nothing when the order is not open or nothing changes.
func openOrderUpdate(s *messages.RestaurantState, orderID, status string, dasher *string, at *timestamppb.Timestamp) []proto.Message {
	o := s.GetOpenOrders()[orderID]
	if o == nil {
		return nil
	}
	ev := &messages.OpenOrderUpdated{OrderId: orderID, Status: status, DasherId: o.GetDasherId(), At: at}
	if dasher != nil {
		ev.DasherId = *dasher
	}
	if ev.Status == o.GetStatus() && ev.DasherId == o.GetDasherId() {
		return nil
	}
	return []proto.Message{ev}
}

// openOrderClose returns the event that closes an open order, or nothing when it is not open.
func openOrderClose(s *messages.RestaurantState, orderID, status string, at *timestamppb.Timestamp) []proto.Message {
	if s.GetOpenOrders()[orderID] == nil {
		return nil
	}
	return []proto.Message{&messages.OpenOrderClosed{OrderId: orderID, Status: status, At: at}}
}

// ---- Fold ----

// applyRestaurant folds one event into the state. It never fails for the kind's own events.
func applyRestaurant(s *messages.RestaurantState, event proto.Message) error {
	switch e := event.(type) {
	case *messages.RestaurantCreated:
		s.Created = true
		s.Name = e.GetName()
		s.Position = e.GetPosition()
		s.Cuisine = e.GetCuisine()
		s.CreatedAt = e.GetCreatedAt()
	case *messages.MenuUpdated:
		s.Menu = e.GetItems()
	case *messages.OpenOrderAdded:
		if s.OpenOrders == nil {
			s.OpenOrders = make(map[string]*messages.OpenOrder)
		}
		s.OpenOrders[e.GetOrder().GetOrderId()] = e.GetOrder()
	case *messages.OpenOrderUpdated:
		if o := s.GetOpenOrders()[e.GetOrderId()]; o != nil {
			o.Status = e.GetStatus()
			o.DasherId = e.GetDasherId()
			o.UpdatedAt = e.GetAt()
		}
	case *messages.OpenOrderClosed:
		delete(s.OpenOrders, e.GetOrderId())
	default:
		return fmt.Errorf("restaurant: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

// restaurantOrders answers a copy of the open orders, oldest first (then by id).
func restaurantOrders(s *messages.RestaurantState) *messages.RestaurantOrders {
	out := &messages.RestaurantOrders{}
	for _, o := range s.GetOpenOrders() {
		out.Orders = append(out.Orders, proto.Clone(o).(*messages.OpenOrder))
	}
	sort.Slice(out.Orders, func(i, j int) bool {
		a, b := out.Orders[i], out.Orders[j]
		if !a.GetPlacedAt().AsTime().Equal(b.GetPlacedAt().AsTime()) {
			return a.GetPlacedAt().AsTime().Before(b.GetPlacedAt().AsTime())
		}
		return a.GetOrderId() < b.GetOrderId()
	})
	return out
}

// restaurantView answers a copy: in-process callers receive the message itself, and must not share the state.
func restaurantView(id string, s *messages.RestaurantState) *messages.RestaurantView {
	return proto.Clone(&messages.RestaurantView{
		Id:        id,
		Name:      s.GetName(),
		Position:  s.GetPosition(),
		Cuisine:   s.GetCuisine(),
		Menu:      s.GetMenu(),
		CreatedAt: s.GetCreatedAt(),
	}).(*messages.RestaurantView)
}
