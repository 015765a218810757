package http

import (
	nethttp "net/http"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// Dashers (API.md, "Dashers"): the Dasher actor whose identity is the caller's dasher id. Accepting an offer goes
// through the Dasher (capacity and the pending offer), which asks the Order (first valid acceptance wins, 409
// OFFER_TAKEN or OFFER_EXPIRED for the others).

type createDasherRequest struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Vehicle  string `json:"vehicle"`
	Capacity *int64 `json:"capacity"`
}

type dasherStatusRequest struct {
	Online   *bool     `json:"online"`
	Position *position `json:"position"`
}

type dasherLocationRequest struct {
	Position *position `json:"position"`
}

type declineRequest struct {
	Reason string `json:"reason"`
}

// handleCreateDasher creates a dasher (operator): Backend.Accounts keeps the email and the password's hash for
// sign-in, then the Dasher actor is created.
func (s *Server) handleCreateDasher(c *call) error {
	var req createDasherRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if err := checkNewAccount(req.Name, req.Email, req.Password); err != nil {
		return err
	}
	if err := checkText("vehicle", req.Vehicle, actors.MaxVehicleLen, true); err != nil {
		return err
	}
	capacity := int64(1)
	if req.Capacity != nil {
		var err error
		if capacity, err = checkInt("capacity", req.Capacity, 1, actors.MaxDasherCapacity); err != nil {
			return err
		}
	}
	id := c.newID("d_")
	ctx, cancel := s.deadline()
	defer cancel()
	if err := s.createLogin(ctx, RoleDasher, id, req.Email, req.Password); err != nil {
		return err
	}
	view, err := callActor[*messages.DasherView](ctx, s.backend.Actors, kindDasher, id, "Create", &messages.CreateDasher{
		CommandId: c.commandID("create"), Name: req.Name, Vehicle: req.Vehicle, Capacity: int32(capacity),
	})
	if err != nil {
		return err
	}
	c.ctx.Response.Header.Set("Location", "/v1/dashers/me")
	return s.writeProto(c.ctx, nethttp.StatusCreated, view)
}

// dasherCall sends req to the caller's Dasher actor and answers its view.
func (s *Server) dasherCall(c *call, method string, req proto.Message) error {
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.DasherView](ctx, s.backend.Actors, kindDasher, c.who.ID, method, req)
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, view)
}

func (s *Server) handleGetDasher(c *call) error {
	if err := knownQuery(c.ctx); err != nil {
		return err
	}
	return s.dasherCall(c, "Get", &messages.GetDasher{})
}

func (s *Server) handleDasherStatus(c *call) error {
	var req dasherStatusRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if req.Online == nil {
		return Errorf(CodeInvalidArgument, "online is required")
	}
	cmd := &messages.SetDasherStatus{CommandId: c.commandID("status"), Online: *req.Online}
	if *req.Online || req.Position != nil {
		pos, err := checkPosition("position", req.Position)
		if err != nil {
			return err
		}
		cmd.Position = pos
	}
	return s.dasherCall(c, "SetStatus", cmd)
}

func (s *Server) handleDasherLocation(c *call) error {
	var req dasherLocationRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	pos, err := checkPosition("position", req.Position)
	if err != nil {
		return err
	}
	return s.dasherCall(c, "UpdateLocation", &messages.UpdateDasherLocation{CommandId: c.commandID("location"), Position: pos})
}

func (s *Server) handleAcceptOffer(c *call) error {
	order := c.params["order_id"]
	if err := checkPathID("offer", orderIDPattern, order); err != nil {
		return err
	}
	if err := noBody(c.ctx); err != nil {
		return err
	}
	return s.dasherCall(c, "AcceptOffer", &messages.AcceptOffer{CommandId: c.commandID("accept"), OrderId: order})
}

func (s *Server) handleDeclineOffer(c *call) error {
	order := c.params["order_id"]
	if err := checkPathID("offer", orderIDPattern, order); err != nil {
		return err
	}
	var req declineRequest
	if err := decodeBody(c.ctx, &req, true); err != nil {
		return err
	}
	if err := checkText("reason", req.Reason, actors.MaxDeclineReasonLen, false); err != nil {
		return err
	}
	return s.dasherCall(c, "DeclineOffer", &messages.DeclineOffer{CommandId: c.commandID("decline"), OrderId: order, Reason: req.Reason})
}

// handleDelivered marks the caller's order delivered; the Order checks that the caller is its dasher.
func (s *Server) handleDelivered(c *call) error {
	order := c.params["order_id"]
	if err := checkPathID("order", orderIDPattern, order); err != nil {
		return err
	}
	if err := noBody(c.ctx); err != nil {
		return err
	}
	ctx, cancel := s.deadline()
	defer cancel()
	o, err := callActor[*messages.OrderView](ctx, s.backend.Actors, kindOrder, order, "MarkDelivered",
		&messages.MarkOrderDelivered{CommandId: c.commandID("delivered"), DasherId: c.who.ID})
	if err != nil {
		return err
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, o)
}

func (s *Server) handleDasherFeed(c *call) error {
	return s.poll(c, kindDasher, c.who.ID)
}
