package http_test

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// TestSetAutoAssign: PUT /v1/admin/areas/{area}/auto-assign sends SetAutoAssign to the Area of the cell and answers
// its mode; a path that is not an area at the areas' resolution, a missing or mistyped flag, and callers other than
// operators are refused without calling an actor.
func TestSetAutoAssign(t *testing.T) {
	h := newHarness(t)
	const cell = "8828308281fffff" // San Francisco, resolution 8
	h.actors.handle("Area.SetAutoAssign", func(id string, req proto.Message) (proto.Message, error) {
		return &messages.AreaView{Cell: id, AutoAssign: req.(*messages.SetAutoAssign).GetEnabled()}, nil
	})
	for _, enabled := range []bool{true, false} {
		body := `{"enabled":false}`
		if enabled {
			body = `{"enabled":true}`
		}
		res := h.do(t, "PUT", "/v1/admin/areas/"+cell+"/auto-assign", ctJSON, []byte(body), as(operator)...)
		var mode struct {
			Area       string `json:"area"`
			AutoAssign bool   `json:"auto_assign"`
		}
		if res.status != 200 || json.Unmarshal(res.body, &mode) != nil || mode.Area != cell || mode.AutoAssign != enabled {
			t.Fatalf("enabled=%v: %d %s", enabled, res.status, res.body)
		}
		got := h.actors.lastCall(t, "Area", "SetAutoAssign")
		cmd := got.req.(*messages.SetAutoAssign)
		if got.identity != cell || cmd.GetEnabled() != enabled || cmd.GetCommandId() == "" {
			t.Fatalf("call %s %v", got.identity, cmd)
		}
	}
	calls := h.actors.callCount("Area", "SetAutoAssign")
	for _, b := range []badInput{
		{name: "not hex", who: operator, path: "/v1/admin/areas/not-an-area/auto-assign", body: `{"enabled":true}`, status: 404, code: http.CodeNotFound},
		{name: "upper case", who: operator, path: "/v1/admin/areas/8828308281FFFFF/auto-assign", body: `{"enabled":true}`, status: 404, code: http.CodeNotFound},
		{name: "another resolution", who: operator, path: "/v1/admin/areas/8928308280fffff/auto-assign", body: `{"enabled":true}`, status: 404, code: http.CodeNotFound},
		{name: "not a cell", who: operator, path: "/v1/admin/areas/8f28308281fffff/auto-assign", body: `{"enabled":true}`, status: 404, code: http.CodeNotFound},
		{name: "no flag", who: operator, path: "/v1/admin/areas/" + cell + "/auto-assign", body: `{}`, status: 400, code: http.CodeInvalidArgument},
		{name: "flag not a boolean", who: operator, path: "/v1/admin/areas/" + cell + "/auto-assign", body: `{"enabled":"yes"}`, status: 400, code: http.CodeInvalidArgument},
		{name: "unknown field", who: operator, path: "/v1/admin/areas/" + cell + "/auto-assign", body: `{"enabled":true,"mode":1}`, status: 400, code: http.CodeInvalidArgument},
		{name: "dasher", who: dasher, path: "/v1/admin/areas/" + cell + "/auto-assign", body: `{"enabled":true}`, status: 403, code: http.CodePermissionDenied},
		{name: "anonymous", path: "/v1/admin/areas/" + cell + "/auto-assign", body: `{"enabled":true}`, status: 401, code: http.CodeUnauthenticated},
	} {
		t.Run(b.name, func(t *testing.T) {
			var header []string // anonymous without who
			if b.who != "" {
				header = as(b.who)
			}
			wantProblem(t, h.do(t, "PUT", b.path, ctJSON, []byte(b.body), header...), b.status, b.code)
		})
	}
	if n := h.actors.callCount("Area", "SetAutoAssign"); n != calls {
		t.Fatalf("refused requests called the area %d times", n-calls)
	}
}
