package http

import (
	"log/slog"
	nethttp "net/http"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// Areas (operators): an Area actor is one H3 cell at actors.AreaResolution, named by its index in lower-case hex
// (actors.AreaOf, e.g. "8828308281fffff"). In auto-assign mode the area assigns each order it starts to dispatch
// afterwards to one dasher without waiting for an accept.

type autoAssignRequest struct {
	Enabled *bool `json:"enabled"`
}

// autoAssignMode is the answer of PUT /v1/admin/areas/{area}/auto-assign.
type autoAssignMode struct {
	Area       string `json:"area"`
	AutoAssign bool   `json:"auto_assign"`
}

// handleSetAutoAssign turns an area's auto-assign mode on or off (Area.SetAutoAssign). A path that is not an area
// (not a valid cell at the areas' resolution, or not written as AreaOf writes it) is 404 without activating an
// actor.
func (s *Server) handleSetAutoAssign(c *call) error {
	area := c.params["area"]
	if !actors.ValidArea(area) {
		return Errorf(CodeNotFound, "area %q not found", truncate(area, 100))
	}
	var req autoAssignRequest
	if err := decodeBody(c.ctx, &req, false); err != nil {
		return err
	}
	if req.Enabled == nil {
		return Errorf(CodeInvalidArgument, "enabled is required")
	}
	ctx, cancel := s.deadline()
	defer cancel()
	view, err := callActor[*messages.AreaView](ctx, s.backend.Actors, kindArea, area, "SetAutoAssign",
		&messages.SetAutoAssign{CommandId: c.commandID("auto-assign"), Enabled: *req.Enabled})
	if err != nil {
		return err
	}
	s.log.Info("area auto-assign set", slog.String("area", area), slog.Bool("enabled", view.GetAutoAssign()), slog.String("by", c.who.ID))
	return s.writeJSON(c.ctx, nethttp.StatusOK, autoAssignMode{Area: area, AutoAssign: view.GetAutoAssign()})
}
