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
// A command retried with the command_id that was applied is answered again (current view) without a new event;
// the same command_id with a different command is refused IDEMPOTENCY_KEY_REUSED (see entity).

import (
	"fmt"
	"math"
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
	r.activate(ctx, KindRestaurant, &messages.RestaurantState{}, applyRestaurant)
}

// Terminate runs when the activation stops (passivation, fence, shutdown); the state is already durable.
func (r *Restaurant) Terminate(pcluster.GrainContext) {
	if r.log != nil {
		r.log.Debug("deactivated")
	}
}

// ReceiveDefault ignores messages that are not grain requests.
func (r *Restaurant) ReceiveDefault(pcluster.GrainContext) {}

// Create creates the restaurant.
func (r *Restaurant) Create(req *messages.CreateRestaurant, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
	err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return decideCreateRestaurant(s, req, now)
	})
	if err != nil {
		return nil, err
	}
	return restaurantView(ctx.Identity(), r.state()), nil
}

// UpdateMenu replaces the menu.
func (r *Restaurant) UpdateMenu(req *messages.UpdateMenu, ctx pcluster.GrainContext) (*messages.RestaurantView, error) {
	err := r.command(ctx, req.GetCommandId(), req, func(s *messages.RestaurantState, now time.Time) ([]proto.Message, error) {
		return decideUpdateMenu(s, req, now)
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
	default:
		return fmt.Errorf("restaurant: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
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
