package http

import "github.com/valyala/fasthttp"

// authorize decides whether the request may use the route. Every matched route passes through here before its
// handler runs (see Server.handle), so the security issue fills in this one function: verify the bearer JWT, then
// check the caller's role and ownership for the route, returning CodeUnauthenticated or CodePermissionDenied errors.
//
// Until then it allows every request: the skeleton has no credentials, and the admin endpoint is open.
func authorize(_ *fasthttp.RequestCtx, _ Route) error {
	return nil
}
