// Package http is Platter's HTTP edge, on fasthttp: it decodes a request, authorises it, calls an actor through a
// small backend port, and encodes the answer. It holds no business rules. (The standard library's net/http is
// imported as nethttp where its constants are needed.) ../shared/API.md is the contract; openapi.json documents
// every route and is served at GET /openapi.json.
//
// # Using it
//
//	backend := http.NewClusterBackend(node, store, journal, http.DefaultIdempotencyRetention)
//	srv, err := http.NewServer(http.DefaultConfig("127.0.0.1:8080"), backend)
//	err = srv.Open()           // listens (port 0 picks one: srv.Addr()) and serves in the background
//	defer srv.Close(ctx)       // answers parked polls, stops accepting, drains requests in flight until ctx ends
//
// Backend holds the ports handler tests fake: Cluster (membership, drain), Store (readiness), Actors (grain calls
// by kind and method name, and PollFeed), Idempotency (Idempotency-Key records), and the security issue's Auth
// (the Authenticator), Accounts (credentials, staff clients) and OAuth (the authorization server's endpoints).
// NewClusterBackend adapts a running cluster node and keeps idempotency records in the journal
// (JournalIdempotency); an IdempotencySweeper, started by the node, deletes the records whose retention
// (DefaultIdempotencyRetention, 24 h) has passed, found through the journal's expiry marks.
//
// # A request's way through the edge (Server.handle)
//
//  1. Route (router.go, table in routes.go): unknown path 404 NOT_FOUND; known path, other method 405
//     METHOD_NOT_ALLOWED with Allow.
//  2. Authorise (auth.go, the one hook): Backend.Auth finds the Principal; the route's access (public, customer,
//     dasher, restaurant staff of {id}, operator, order party) is checked. Order routes check ownership once the
//     order is read (authorizeOrder: others get 404); staff of another restaurant get 404 too. An order whose
//     Order does not exist yet (its placement waits for the payment processor) answers only its customer, from
//     that customer's own orders index (orders.go, placingOrder); anyone else gets 404. Backend.Auth is
//     http/oauth (bearer JWTs); its endpoints (/oauth2/..., /.well-known/jwks.json) are routes served by
//     Backend.OAuth and ignore Idempotency-Key (their answers are never kept for replay). POST
//     /v1/restaurants/{id}/staff-clients honours it: its stored answer is sealed with a key derived from the
//     Idempotency-Key (idempotency.go, sealResponse).
//  3. Rate-limit (ratelimit.go): search, placing orders, and sign-up with the sign-in form (POST /oauth2/authorize)
//     and token revocation (POST /oauth2/revoke, a signature check each, open to the public client) count against
//     a per-client token bucket of their class; 429 RATE_LIMITED with Retry-After.
//  4. Idempotency-Key on mutating routes (idempotency.go): replay, 422 IDEMPOTENCY_KEY_REUSED, 409
//     IDEMPOTENCY_KEY_IN_USE; keys are scoped per principal, or per remote address for anonymous callers; the
//     actors' command ids and new entity ids derive from that scope and the key.
//  5. The handler (customers.go, orders.go, search.go, restaurants.go, dashers.go, areas.go, feeds.go, health.go,
//     admin_keys.go) decodes strictly (decode.go: unknown fields, wrong types, trailing data, missing or
//     out-of-range values are 400 INVALID_ARGUMENT; 415 for a body that is not JSON; 413 over
//     Config.MaxBodySize), validates ids (a malformed path id is 404 without activating an actor), calls the
//     actor, and encodes (encode.go: snake_case, every field present, 64-bit integers as JSON numbers, RFC 3339
//     times).
//
// # Errors
//
// Every failure is an RFC 9457 application/problem+json document {type, title, status, detail, code}. Handlers
// return errors; Server.fail is the single place that maps them: an *Error carries a stable code, and the table in
// errors.go is the only mapping from code to status. Any other error (or a panic) is logged with its details and
// shown as 500 INTERNAL. 503 and 429 answers carry Retry-After.
//
// Requests fasthttp refuses before routing are problem+json too (Server.handleParseError), and their connection is
// closed: 400 INVALID_ARGUMENT for a malformed request line or header, 408 REQUEST_TIMEOUT for a request not read
// within Config.ReadTimeout, 413 PAYLOAD_TOO_LARGE over Config.MaxBodySize, 431 HEADERS_TOO_LARGE for a request
// line and headers over Config.MaxHeaderSize.
//
// # Slow clients
//
// Config.ReadTimeout bounds reading a whole request, headers and body, not each read: a client that trickles its
// request is answered 408 and disconnected when it passes. Config.WriteTimeout bounds writing a response: a client
// that stops reading is disconnected. Config.IdleTimeout closes a keep-alive connection that sends no next request.
// (conn_limits_test.go shows each over raw sockets.)
//
// # Feeds
//
// GET /v1/customers/me/feed, /v1/restaurants/{id}/feed and /v1/dashers/me/feed take ?after=CURSOR&wait=SECONDS
// (wait ≤ Config.MaxPollWait = 30 s, default 25 s, fractions allowed) and &limit. The poll parks in the feed's
// actor (Actors.PollFeed makes one cluster call that outlasts the node's per-attempt timeout); it answers 200 with
// the entries after the cursor, or 204 when the wait ends; a new entry answers a parked poll at once (API.md:
// within 100 ms; TestFeedWakesUpThroughTheActors times it through the actors). A client has at most
// Config.MaxPollsPerClient polls waiting (429 TOO_MANY_POLLS). fasthttp applies WriteTimeout only once the handler
// returns and ReadTimeout only to reading the request, so a poll may wait longer than both, while slow clients are
// still cut off (see Slow clients).
//
// # Operator routes
//
// GET /v1/admin/cluster (health.go) answers the node's state and activations and every member as
// cluster.Node.Members sees it: status (alive or suspect), draining, attributes (the journal) and activations per
// kind (null for a suspect member). POST /v1/admin/drain starts the node's drain (202 at once). PUT
// /v1/admin/areas/{area}/auto-assign (areas.go) sets an area's auto-assign mode through Area.SetAutoAssign; a path
// that is not an H3 cell at the areas' resolution is 404 without an actor call. POST
// /v1/admin/signing-keys/rotate (admin_keys.go) asks Backend.OAuth, as a SigningKeyRotator, for a new signing key;
// {"retire_previous":true} also revokes the previous keys at once.
//
// # Metrics
//
// GET /metrics serves Prometheus text: platter_http_requests_total{route,status},
// platter_http_request_duration_seconds{route}, platter_http_feed_polls_in_flight,
// platter_http_rate_limited_total{class}, platter_http_idempotent_replays_total, and the Go and process
// collectors. Routes are patterns, never raw paths.
//
// # Authentication
//
// The node (node/platter.go) wires http/oauth as Backend.Auth, Accounts and OAuth: a request's principal comes from
// its bearer access token (an EdDSA JWT the node's authorization server issued; none: anonymous, which only public
// routes accept), and the authorization server's endpoints are routes of this edge. A Backend without an
// Authenticator (Auth nil) exists only in tests of the walking skeleton (withSkeletonAuth): there customer and
// dasher routes answer 401 UNAUTHENTICATED, and operator and restaurant-staff routes are open. Handler tests
// inject principals through a test Authenticator.
package http
