package http

import (
	"sort"
	"strings"

	"github.com/valyala/fasthttp"
)

// handlerFunc serves one route. It returns an error instead of writing failures itself, so that every failure goes
// through Server.fail: one mapping to status and problem+json, one log line.
type handlerFunc func(c *call) error

// call is one request as a handler sees it: the fasthttp context, the route's parameters and the authorised
// principal.
type call struct {
	ctx    *fasthttp.RequestCtx
	params params
	who    Principal
	// key is the request's Idempotency-Key ("" without one); commandID derives the actors' command ids from it.
	key string
}

// Route names a route for the authorisation hook, logs and metrics, e.g. "GET /v1/restaurants/{id}".
type Route struct {
	Method  string
	Pattern string
}

func (r Route) String() string { return r.Method + " " + r.Pattern }

// mutating reports whether the route changes state: those take Idempotency-Key.
func (r Route) mutating() bool {
	switch r.Method {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch, fasthttp.MethodDelete:
		return true
	}
	return false
}

type route struct {
	Route
	access   access     // who may use it (auth.go)
	limit    limitClass // the rate limit it counts against (ratelimit.go), limitNone for most
	segments []string   // the pattern split on "/"; "{name}" matches one non-empty segment
	handle   handlerFunc
}

// params holds the values of a route's "{name}" segments.
type params map[string]string

// router matches a method and a path against a short route table. The table is small and fixed, so a linear scan
// is both the simplest and fast enough; it also lets us tell 404 (no pattern matches) from 405 (a pattern matches,
// not the method) and build the Allow header.
type router struct {
	routes []route
}

func (rt *router) add(method, pattern string, a access, l limitClass, h handlerFunc) {
	rt.routes = append(rt.routes, route{
		Route:    Route{Method: method, Pattern: pattern},
		access:   a,
		limit:    l,
		segments: strings.Split(strings.TrimPrefix(pattern, "/"), "/"),
		handle:   h,
	})
}

// Routes lists the served routes in table order.
func (rt *router) list() []Route {
	out := make([]Route, len(rt.routes))
	for i, r := range rt.routes {
		out[i] = r.Route
	}
	return out
}

// match returns the route for method and path with its parameters, or nil and the methods the path allows (empty
// when no route has that path).
func (rt *router) match(method, path string) (*route, params, []string) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var allow []string
	for i := range rt.routes {
		r := &rt.routes[i]
		p, ok := matchSegments(r.segments, segs)
		if !ok {
			continue
		}
		if r.Method == method {
			return r, p, nil
		}
		allow = append(allow, r.Method)
	}
	sort.Strings(allow)
	return nil, nil, allow
}

func matchSegments(pattern, path []string) (params, bool) {
	if len(pattern) != len(path) {
		return nil, false
	}
	// Compare first and collect the parameters only for the route that matches: most routes a request is compared
	// with fail on a later literal segment.
	n := 0
	for i, seg := range pattern {
		if isParam(seg) {
			if path[i] == "" {
				return nil, false
			}
			n++
			continue
		}
		if seg != path[i] {
			return nil, false
		}
	}
	if n == 0 {
		return nil, true
	}
	p := make(params, n)
	for i, seg := range pattern {
		if isParam(seg) {
			p[seg[1:len(seg)-1]] = path[i]
		}
	}
	return p, true
}

func isParam(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }
