package http

import (
	nethttp "net/http"
	"strconv"
	"strings"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/messages"
)

// handleSearch answers GET /v1/search?q=pad+thai&q=spicy&lat=..&lng=..[&limit=]: the Area of the position
// searches its index (restaurants of its cell and the neighbours), relevant and near first. No q lists the
// restaurants nearby.
func (s *Server) handleSearch(c *call) error {
	ctx := c.ctx
	if err := knownQuery(ctx, "q", "lat", "lng", "limit"); err != nil {
		return err
	}
	var terms []string
	for _, raw := range ctx.QueryArgs().PeekMulti("q") {
		t := strings.TrimSpace(string(raw))
		if t == "" {
			continue
		}
		if err := checkText("q", t, maxSearchTermLn, true); err != nil {
			return err
		}
		terms = append(terms, t)
	}
	if len(terms) > maxSearchTerms {
		return Errorf(CodeInvalidArgument, "at most %d search terms (q) are allowed", maxSearchTerms)
	}
	lat, err := queryFloat(c, "lat")
	if err != nil {
		return err
	}
	lng, err := queryFloat(c, "lng")
	if err != nil {
		return err
	}
	pos, err := checkLatLng("position", lat, lng)
	if err != nil {
		return err
	}
	limit, err := queryInt(ctx, "limit", 20, 1, 50)
	if err != nil {
		return err
	}
	rctx, cancel := s.deadline()
	defer cancel()
	res, err := callActor[*messages.SearchResults](rctx, s.backend.Actors, kindArea, actors.AreaOf(pos), "Search",
		&messages.SearchRestaurants{Terms: terms, Position: pos, Limit: int32(limit)})
	if err != nil {
		return err
	}
	return s.writeProto(ctx, nethttp.StatusOK, res)
}

// queryFloat reads a required number query parameter.
func queryFloat(c *call, name string) (float64, error) {
	v, err := queryString(c.ctx, name)
	if err != nil {
		return 0, err
	}
	if v == "" {
		return 0, Errorf(CodeInvalidArgument, "query parameter %s is required", name)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, Errorf(CodeInvalidArgument, "query parameter %s must be a number", name)
	}
	return f, nil
}
