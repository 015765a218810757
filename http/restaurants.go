package http

import (
	nethttp "net/http"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// Restaurants (API.md, "Restaurants"): profiles and menus on the Restaurant actor; the staff's order actions on
// the Order actor, which checks that the order is the restaurant's (404 otherwise).

type createRestaurantRequest struct {
	Name     string    `json:"name"`
	Position *position `json:"position"`
	Cuisine  string    `json:"cuisine"`
}

type menuRequest struct {
	Items []menuItemRequest `json:"items"`
}

type menuItemRequest struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	PriceCents  *int64   `json:"price_cents"`
	Tags        []string `json:"tags"`
}

type acceptRequest struct {
	PrepMinutes *int64 `json:"prep_minutes"`
}

type rejectRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) handleCreateRestaurant(c *call) error {
	var req createRestaurantRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkText("name", req.Name, maxNameLen, true); err != nil {
		return err
	}
	if err := checkText("cuisine", req.Cuisine, actors.MaxCuisineLen, true); err != nil {
		return err
	}
	pos, err := checkPosition("position", req.Position)
	if err != nil {
		return err
	}
	id := c.newID("r_")
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.RestaurantView](ctx, s.backend.Actors, kindRestaurant, id, "Create", &messages.CreateRestaurant{
		CommandId: c.commandID("create"), Name: req.Name, Position: pos, Cuisine: req.Cuisine,
	})
	if err != nil {
		return err
	}
	c.ctx.Response.Header.Set("Location", "/v1/restaurants/"+view.GetId())
	return s.writeProto(c.ctx, nethttp.StatusCreated, view)
}

func (s *Server) restaurantID(c *call) (string, error) {
	id := c.params["id"]
	return id, checkPathID("restaurant", restaurantIDPattern, id)
}

func (s *Server) handleGetRestaurant(c *call) error {
	id, err := s.restaurantID(c)
	if err != nil {
		return err
	}
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.RestaurantView](ctx, s.backend.Actors, kindRestaurant, id, "Get", &messages.GetRestaurant{})
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

func (s *Server) handleUpdateMenu(c *call) error {
	id, err := s.restaurantID(c)
	if err != nil {
		return err
	}
	var req menuRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if req.Items == nil {
		return Errorf(CodeInvalidArgument, "items is required (an empty list clears the menu)")
	}
	if len(req.Items) > actors.MaxMenuItems {
		return Errorf(CodeInvalidArgument, "a menu has at most %d items", actors.MaxMenuItems)
	}
	cmd := &messages.UpdateMenu{CommandId: c.commandID("menu")}
	seen := map[string]bool{}
	for i, it := range req.Items {
		field := "items[" + strconv.Itoa(i) + "]"
		if err := checkBodyID(field+".id", menuItemIDPattern, it.ID); err != nil {
			return err
		}
		if seen[it.ID] {
			return Errorf(CodeInvalidArgument, "%s.id %q is used twice", field, it.ID)
		}
		seen[it.ID] = true
		if err := checkText(field+".name", it.Name, maxNameLen, true); err != nil {
			return err
		}
		if err := checkText(field+".description", it.Description, actors.MaxDescriptionLen, false); err != nil {
			return err
		}
		price, err := checkInt(field+".price_cents", it.PriceCents, 1, actors.MaxPriceCents)
		if err != nil {
			return err
		}
		if len(it.Tags) > actors.MaxTagsPerItem {
			return Errorf(CodeInvalidArgument, "%s has more than %d tags", field, actors.MaxTagsPerItem)
		}
		for j, tag := range it.Tags {
			if err := checkText(field+".tags["+strconv.Itoa(j)+"]", tag, actors.MaxTagLen, true); err != nil {
				return err
			}
		}
		cmd.Items = append(cmd.Items, &messages.MenuItem{Id: it.ID, Name: it.Name, Description: it.Description, PriceCents: price, Tags: it.Tags})
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.RestaurantView](ctx, s.backend.Actors, kindRestaurant, id, "UpdateMenu", cmd)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

// handleRestaurantOrders lists the open orders (?state=open, the only state the Restaurant actor keeps).
func (s *Server) handleRestaurantOrders(c *call) error {
	id, err := s.restaurantID(c)
	if err != nil {
		return err
	}
	if err := knownQuery(c.ctx, "state"); err != nil {
		return err
	}
	if state, err := queryString(c.ctx, "state"); err != nil {
		return err
	} else if state != "" && state != "open" {
		return Errorf(CodeInvalidArgument, "state must be open")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	list, err := callActor[*messages.RestaurantOrders](ctx, s.backend.Actors, kindRestaurant, id, "ListOrders", &messages.ListRestaurantOrders{})
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, list)
}

// orderAction validates the restaurant and order ids of a staff action and sends cmd to the Order.
func (s *Server) orderAction(c *call, method string, cmd func(restaurant string) proto.Message) error {
	id, err := s.restaurantID(c)
	if err != nil {
		return err
	}
	order := c.params["order_id"]
	if err := checkPathID("order", orderIDPattern, order); err != nil {
		return err
	}
	req := cmd(id)
	ctx, cancel := s.deadline()
	defer cancel()
	o, err := callActor[*messages.OrderView](ctx, s.backend.Actors, kindOrder, order, method, req)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, o)
}

func (s *Server) handleAcceptOrder(c *call) error {
	var req acceptRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	prep, err := checkInt("prep_minutes", req.PrepMinutes, 1, actors.MaxPrepMinutes)
	if err != nil {
		return err
	}
	return s.orderAction(c, "Accept", func(r string) proto.Message {
		return &messages.AcceptOrder{CommandId: c.commandID("accept"), RestaurantId: r, PrepMinutes: int32(prep)}
	})
}

func (s *Server) handleRejectOrder(c *call) error {
	var req rejectRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkText("reason", req.Reason, maxReasonLen, true); err != nil {
		return err
	}
	return s.orderAction(c, "Reject", func(r string) proto.Message {
		return &messages.RejectOrder{CommandId: c.commandID("reject"), RestaurantId: r, Reason: req.Reason}
	})
}

func (s *Server) handleOrderReady(c *call) error {
	if err := noBody(c.ctx); err != nil {
		return err
	}
	return s.orderAction(c, "MarkReady", func(r string) proto.Message {
		return &messages.MarkOrderReady{CommandId: c.commandID("ready"), RestaurantId: r}
	})
}

func (s *Server) handleOrderPickedUp(c *call) error {
	if err := noBody(c.ctx); err != nil {
		return err
	}
	return s.orderAction(c, "MarkPickedUp", func(r string) proto.Message {
		return &messages.MarkOrderPickedUp{CommandId: c.commandID("picked-up"), RestaurantId: r}
	})
}

func (s *Server) handleRestaurantFeed(c *call) error {
	id, err := s.restaurantID(c)
	if err != nil {
		return err
	}
	return s.poll(c, kindRestaurant, id)
}
