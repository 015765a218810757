package http

import (
	"context"
	"log/slog"
	nethttp "net/http"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/messages"
)

// Role is what kind of caller a principal is (API.md, "Roles").
type Role string

// The roles of API.md.
const (
	RoleCustomer   Role = "customer"   // ID is the customer id
	RoleRestaurant Role = "restaurant" // staff of the restaurants in Restaurants; ID is the client id
	RoleDasher     Role = "dasher"     // ID is the dasher id
	RoleOperator   Role = "operator"   // may do everything; ID is the client id
)

// Principal is who makes a request. The zero Principal is the anonymous caller.
type Principal struct {
	Role        Role
	ID          string   // the customer or dasher id, or the OAuth client id
	Restaurants []string // for RoleRestaurant: the restaurant ids the client is bound to
}

// Anonymous reports whether the request carried no credentials.
func (p Principal) Anonymous() bool { return p.Role == "" }

// Authenticator finds the principal of a request (the security issue provides one that verifies bearer JWTs).
// Implementations must be safe for concurrent use.
type Authenticator interface {
	// Authenticate returns the zero Principal for a request without credentials, the principal for valid ones,
	// and an *Error with CodeUnauthenticated for invalid or expired ones.
	Authenticate(ctx *fasthttp.RequestCtx) (Principal, error)
}

// Accounts keeps credentials (http/oauth implements it over the Account actors). Implementations must be safe
// for concurrent use and return *Error values (ALREADY_EXISTS, UNAVAILABLE, ...) for failures a client may see.
type Accounts interface {
	// CreateLogin keeps the email and password (hashed) of a customer or dasher, so that they can sign in through
	// the authorize form. ALREADY_EXISTS when another account has the email; a retry for the same subject succeeds.
	CreateLogin(ctx context.Context, role Role, subject, email, password string) error
	// CreateStaffClient creates a client_credentials client bound to the restaurant and answers its credentials.
	CreateStaffClient(ctx context.Context, restaurantID, name string) (clientID, clientSecret string, err error)
}

// OAuthEndpoints serves the authorization server's own paths (OAuthPaths): RFC 6749 answers, not problem+json.
type OAuthEndpoints interface {
	Serve(ctx *fasthttp.RequestCtx)
}

// securityRoutes adds the routes of the security issue to the table: the authorization server's endpoints (served
// by Backend.OAuth) and the operator's creation of restaurant staff clients.
func (s *Server) securityRoutes() {
	const get, post = fasthttp.MethodGet, fasthttp.MethodPost
	add := s.router.add
	add(get, "/.well-known/jwks.json", accessPublic, limitNone, s.handleOAuth)
	add(get, "/oauth2/authorize", accessPublic, limitNone, s.handleOAuth)
	add(post, "/oauth2/authorize", accessPublic, limitLogin, s.handleOAuth)
	add(post, "/oauth2/token", accessPublic, limitNone, s.handleOAuth)
	add(post, "/oauth2/revoke", accessPublic, limitLogin, s.handleOAuth) // a signature check each, open to the public client
	add(post, staffClientsPattern, accessOperator, limitNone, s.handleCreateStaffClient)
}

// answersSecrets reports whether a route's answer holds credentials that are never kept for Idempotency-Key
// replay, so that the route ignores the header: the OAuth endpoints (/oauth2/...), which follow RFC 6749 and
// RFC 7009 (a lost token response is retried with a new grant; revocation is idempotent by itself). openapi.json
// says so on each of them.
func (r *route) answersSecrets() bool {
	return strings.HasPrefix(r.Pattern, "/oauth2/")
}

// sealsReplay reports whether a route's answer holds a secret yet honours Idempotency-Key: POST
// /v1/restaurants/{id}/staff-clients, whose client secret a lost answer would otherwise lose for good (a retry
// would create a second client). Its stored answer is sealed (sealResponse): encrypted with a key derived from the
// caller's scope and the Idempotency-Key itself, which the store never holds, and deleted with the record when
// its retention (24 h) ends. One window remains: a node that fails after Accounts.CreateStaffClient and before
// the answer is stored leaves a claim that lapses (IdempotencyLease), and the retry creates another client
// (closing it needs a client id derived from the key, which Accounts does not take).
func (r *route) sealsReplay() bool {
	return r.Pattern == staffClientsPattern
}

const staffClientsPattern = "/v1/restaurants/{id}/staff-clients"

func (s *Server) handleOAuth(c *call) error {
	if s.backend.OAuth == nil {
		return Errorf(CodeNotFound, "this node runs no authorization server")
	}
	s.backend.OAuth.Serve(c.ctx)
	return nil
}

type staffClientRequest struct {
	Name string `json:"name"`
}

type staffClientResponse struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RestaurantID string `json:"restaurant_id"`
}

// handleCreateStaffClient creates a client_credentials client for the staff of a restaurant (operator). The
// secret is in this answer only, and in its sealed copy for Idempotency-Key replay (sealsReplay).
func (s *Server) handleCreateStaffClient(c *call) error {
	var req staffClientRequest
	if len(c.ctx.PostBody()) > 0 {
		if err := decodeBody(c.ctx, &req, false); err != nil {
			return err
		}
	}
	if err := checkText("name", req.Name, maxNameLen, false); err != nil {
		return err
	}
	if s.backend.Accounts == nil {
		return Errorf(CodeFailedPrecondition, "this node keeps no accounts")
	}
	id := c.params["id"]
	ctx, cancel := s.deadline()
	defer cancel()
	if _, err := callActor[*messages.RestaurantView](ctx, s.backend.Actors, kindRestaurant, id, "Get", &messages.GetRestaurant{}); err != nil {
		return err
	}
	clientID, secret, err := s.backend.Accounts.CreateStaffClient(ctx, id, req.Name)
	if err != nil {
		return err
	}
	s.log.Info("staff client created", slog.String("restaurant_id", id), slog.String("client_id", clientID), slog.String("by", c.who.ID))
	c.ctx.Response.Header.Set("Cache-Control", "no-store")
	return s.writeJSON(c.ctx, nethttp.StatusCreated, staffClientResponse{ClientID: clientID, ClientSecret: secret, RestaurantID: id})
}

// createLogin keeps the sign-in of a new customer or dasher (nothing without Backend.Accounts: the skeleton).
func (s *Server) createLogin(ctx context.Context, role Role, subject, email, password string) error {
	if s.backend.Accounts == nil {
		return nil
	}
	return s.backend.Accounts.CreateLogin(ctx, role, subject, email, password)
}

// access is who may use a route; the router table gives one to every route.
type access uint8

const (
	// accessPublic: anyone, without credentials (health, documents, sign-up, search, restaurant profiles).
	accessPublic access = iota
	// accessCustomer: a customer acting on itself (/v1/customers/me..., the cart, its orders).
	accessCustomer
	// accessDasher: a dasher acting on itself (/v1/dashers/me...).
	accessDasher
	// accessRestaurant: the staff of the restaurant named by the route's {id}, or an operator.
	accessRestaurant
	// accessOperator: operators only.
	accessOperator
	// accessOrderParty: any authenticated party of an order (its customer, restaurant staff, dasher) or an
	// operator; the handler checks ownership with authorizeOrder once it has read the order.
	accessOrderParty
)

func (a access) String() string {
	return [...]string{"public", "customer", "dasher", "restaurant", "operator", "order party"}[a]
}

// authorize is the one authorisation hook: every matched route passes through it before its handler (see
// Server.handle). It authenticates the request and checks the route's access against the principal.
//
// Until the security issue configures Backend.Auth, no request carries a principal. Then routes that act as a
// customer or a dasher (…/me, cart, orders) answer 401 UNAUTHENTICATED, because there is nobody to act as, while
// operator and restaurant-staff routes stay open as the walking skeleton had them (the node says so when it
// starts). Once an Authenticator is configured, an anonymous caller gets 401 on every non-public route.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, r *route, p params) (Principal, error) {
	var who Principal
	if s.backend.Auth != nil {
		var err error
		if who, err = s.backend.Auth.Authenticate(ctx); err != nil {
			return Principal{}, err
		}
	}
	if err := allowed(who, r.access, p, s.backend.Auth == nil); err != nil {
		return Principal{}, err
	}
	return who, nil
}

// allowed applies a route's access to a principal. openSkeleton is true while no Authenticator is configured.
func allowed(who Principal, a access, p params, openSkeleton bool) error {
	if a == accessPublic {
		return nil
	}
	if who.Anonymous() {
		if openSkeleton && (a == accessOperator || a == accessRestaurant) {
			return nil
		}
		return Errorf(CodeUnauthenticated, "this route needs credentials: a bearer access token")
	}
	if who.Role == RoleOperator {
		return nil
	}
	ok := false
	switch a {
	case accessCustomer:
		ok = who.Role == RoleCustomer && who.ID != ""
	case accessDasher:
		ok = who.Role == RoleDasher && who.ID != ""
	case accessRestaurant:
		ok = who.Role == RoleRestaurant && slices.Contains(who.Restaurants, p["id"])
	case accessOrderParty:
		ok = (who.Role == RoleCustomer || who.Role == RoleDasher || who.Role == RoleRestaurant) && (who.ID != "" || len(who.Restaurants) > 0)
	}
	if !ok {
		if a == accessRestaurant && who.Role == RoleRestaurant {
			// Staff of another restaurant: the restaurant is someone else's, so it does not exist for them.
			return Errorf(CodeNotFound, "restaurant %s not found", p["id"])
		}
		return Errorf(CodePermissionDenied, "a %s may not use this route", who.Role)
	}
	return nil
}

// orderParties is what authorizeOrder needs to know of an order.
type orderParties struct {
	customer, restaurant, dasher string
}

// authorizeOrder is the ownership check of accessOrderParty routes, made once the order is read: its customer,
// the staff of its restaurant, its dasher and operators may see it. Anyone else is told the order does not exist
// (404), so that order ids cannot be probed.
func authorizeOrder(who Principal, id string, o orderParties) error {
	switch {
	case who.Role == RoleOperator,
		who.Role == RoleCustomer && who.ID == o.customer,
		who.Role == RoleDasher && o.dasher != "" && who.ID == o.dasher,
		who.Role == RoleRestaurant && slices.Contains(who.Restaurants, o.restaurant):
		return nil
	}
	return Errorf(CodeNotFound, "order %s not found", id)
}
