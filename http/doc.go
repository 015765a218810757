// Package http is Platter's HTTP edge, on fasthttp: it decodes a request, authorises it, calls an actor through a
// small backend port, and encodes the answer. It holds no business rules. (The standard library's net/http is
// imported as nethttp where its constants are needed.)
//
// # Using it
//
//	srv, err := http.NewServer(http.DefaultConfig("127.0.0.1:8080"), http.Backend{Cluster: c, Store: st, Restaurants: r})
//	err = srv.Open()           // listens (port 0 picks one: srv.Addr()) and serves in the background
//	defer srv.Close(ctx)       // stops accepting, drains requests in flight until ctx ends
//
// The Backend interfaces (Cluster, Store, Restaurants) are what handler tests fake; NewClusterBackend adapts a
// running cluster node for production.
//
// # Routes
//
//	GET  /healthz               200 {"status":"ok"} while the process is up
//	GET  /readyz                200 when the node is a serving cluster member and the store is open, else 503 NOT_READY
//	GET  /v1/admin/cluster      members (id, name, address, remote_address, status, kinds, self) and activations
//	POST /v1/restaurants        {name, position{lat,lng}, cuisine} -> 201 restaurant view, Location header
//	GET  /v1/restaurants/{id}   200 restaurant view, or 404 NOT_FOUND
//
// Bodies are JSON with snake_case names (protojson with proto names); request decoding is strict (unknown fields
// are 400 INVALID_ARGUMENT); a body must be application/json (415) and at most Config.MaxBodySize (413).
// Restaurant ids are "r_" + UUID, made at the edge; with an Idempotency-Key the id and command id derive from the
// key, so a retried create returns the first result.
//
// # Errors
//
// Every failure is an RFC 9457 application/problem+json document {type, title, status, detail, code}. Handlers
// return errors; Server.fail is the single place that maps them: an *Error carries a stable code, and the table in
// errors.go is the only mapping from code to status. Any other error (or a panic) is logged with its details and
// shown as 500 INTERNAL. 503 answers (NOT_READY, UNAVAILABLE) carry Retry-After. Unknown paths are 404 NOT_FOUND,
// a known path with another method 405 METHOD_NOT_ALLOWED with Allow.
//
// # Authorisation
//
// Every matched route passes through authorize (auth.go) before its handler. It allows everything today; the
// security issue fills it in.
package http
