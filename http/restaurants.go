package http

import (
	"context"
	"mime"
	nethttp "net/http"
	"regexp"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/platterhq/platter/messages"
)

// Restaurants is the port to the Restaurant actors. Implementations must be safe for concurrent use and return an
// *Error (e.g. NOT_FOUND, INVALID_ARGUMENT, ErrNotReady, ErrUnavailable) for every failure a client should see;
// any other error is reported to the client as INTERNAL.
type Restaurants interface {
	// Create creates restaurant id. A repeated cmd.CommandId for the same id returns the first result.
	Create(ctx context.Context, id string, cmd *messages.CreateRestaurant) (*messages.RestaurantView, error)
	// Get returns restaurant id, or NOT_FOUND.
	Get(ctx context.Context, id string) (*messages.RestaurantView, error)
}

// restaurantIDPrefix starts every restaurant id; the rest is a UUID.
const restaurantIDPrefix = "r_"

// restaurantID matches the ids the edge hands out, so that a malformed id is answered 404 without activating an
// actor for it.
var restaurantID = regexp.MustCompile(`^r_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// idempotencyNamespace scopes the UUIDs derived from Idempotency-Key values. Until the security issue brings
// callers, every request is the same (anonymous) caller; it will then derive the id within the caller's namespace
// so that two callers' keys never collide.
var idempotencyNamespace = uuid.MustParse("5b0b8bd4-6f43-4f7c-9a3e-6b9a8a7f3c11")

// protoStrict decodes request bodies; unknown fields are an error (400 INVALID_ARGUMENT).
var protoStrict = protojson.UnmarshalOptions{DiscardUnknown: false}

func (s *Server) handleCreateRestaurant(ctx *fasthttp.RequestCtx, _ params) error {
	if err := requireJSON(ctx); err != nil {
		return err
	}
	key, err := idempotencyKey(ctx)
	if err != nil {
		return err
	}
	cmd := &messages.CreateRestaurant{}
	if err := protoStrict.Unmarshal(ctx.PostBody(), cmd); err != nil {
		return Errorf(CodeInvalidArgument, "invalid restaurant: %v", err)
	}
	if cmd.CommandId != "" { // a field of the command, not of the API: it comes from Idempotency-Key
		return Errorf(CodeInvalidArgument, `unknown field "command_id"`)
	}

	// With an Idempotency-Key the id is derived from it, so a retried request reaches the same actor with the same
	// command id and gets the first response back; without one, both are fresh.
	var id string
	if key != "" {
		id = restaurantIDPrefix + uuid.NewSHA1(idempotencyNamespace, []byte(key)).String()
		cmd.CommandId = key
	} else {
		id = restaurantIDPrefix + uuid.Must(uuid.NewV7()).String()
		cmd.CommandId = uuid.Must(uuid.NewV7()).String()
	}

	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	view, err := s.backend.Restaurants.Create(rctx, id, cmd)
	if err != nil {
		return err
	}
	ctx.Response.Header.Set(fasthttp.HeaderLocation, "/v1/restaurants/"+view.GetId())
	return s.writeProto(ctx, nethttp.StatusCreated, view)
}

func (s *Server) handleGetRestaurant(ctx *fasthttp.RequestCtx, p params) error {
	id := p["id"]
	if !restaurantID.MatchString(id) {
		return Errorf(CodeNotFound, "restaurant %q not found", id)
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	view, err := s.backend.Restaurants.Get(rctx, id)
	if err != nil {
		return err
	}
	return s.writeProto(ctx, nethttp.StatusOK, view)
}

// requireJSON refuses a body that is not declared application/json (415).
func requireJSON(ctx *fasthttp.RequestCtx) error {
	ct := string(ctx.Request.Header.ContentType())
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return Errorf(CodeUnsupportedMediaType, "the body must be application/json, not %q", ct)
	}
	return nil
}

// idempotencyKey returns the request's Idempotency-Key ("" when absent); a key must be 1-255 printable ASCII
// characters.
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, error) {
	key := string(ctx.Request.Header.Peek("Idempotency-Key"))
	if len(key) > 255 {
		return "", Errorf(CodeInvalidArgument, "Idempotency-Key is longer than 255 characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", Errorf(CodeInvalidArgument, "Idempotency-Key must be printable ASCII")
		}
	}
	return key, nil
}
