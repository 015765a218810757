package http

import (
	_ "embed"
	nethttp "net/http"
)

// OpenAPIDocument is the OpenAPI 3.1 document of every route the edge serves, written by hand next to the route
// table and served at GET /openapi.json. Tests keep it true: its paths are exactly the router's, and every
// response of the end-to-end test validates against it.
//
//go:embed openapi.json
var OpenAPIDocument []byte

func (s *Server) handleOpenAPI(c *call) error {
	c.ctx.SetStatusCode(nethttp.StatusOK)
	c.ctx.SetContentType("application/json")
	c.ctx.SetBody(OpenAPIDocument)
	return nil
}
