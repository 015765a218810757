package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/messages"
)

// Request decoding and validation. Nothing reaches an actor unvalidated: a handler decodes its body with
// decodeBody (strict JSON into a request struct of this package), checks every field with the check* helpers,
// and only then builds the actor's command. Every refusal is an *Error with a 4xx code.

// requireJSON refuses a body that is not declared application/json (415).
func requireJSON(ctx *fasthttp.RequestCtx) error {
	ct := string(ctx.Request.Header.ContentType())
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return Errorf(CodeUnsupportedMediaType, "the body must be application/json, not %q", truncate(ct, 100))
	}
	return nil
}

// decodeBody decodes the request body, which must be application/json, into v (a pointer to a request struct).
// An empty body is decoded as {} when emptyOK (routes whose body is optional, e.g. POST /v1/orders).
func decodeBody(ctx *fasthttp.RequestCtx, v any, emptyOK bool) error {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 && emptyOK {
		return nil
	}
	if err := requireJSON(ctx); err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes one JSON object into v strictly: unknown fields (matched case-sensitively: encoding/json
// alone would accept "Name" for "name"), wrong types, trailing data and non-object documents are 400
// INVALID_ARGUMENT. A null member counts as absent.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(CodeInvalidArgument, "the body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return Errorf(CodeInvalidArgument, "the body is not valid UTF-8")
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return Errorf(CodeInvalidArgument, "the body is not valid JSON: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(CodeInvalidArgument, "the body has data after its JSON object")
	}
	if _, ok := tree.(map[string]any); !ok {
		return Errorf(CodeInvalidArgument, "the body must be a JSON object")
	}
	if err := checkFields(tree, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidArgument, "%s", jsonErrorText(err))
	}
	return nil
}

// checkFields walks a decoded JSON tree against the Go type it will be decoded into and refuses members that no
// field names exactly.
func checkFields(tree any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := tree.(map[string]any)
		if !ok {
			return nil // a type mismatch: the typed decode reports it
		}
		for name, member := range obj {
			f, ok := jsonField(t, name)
			if !ok {
				return Errorf(CodeInvalidArgument, "unknown field %q", joinPath(path, truncate(name, 64)))
			}
			if err := checkFields(member, f.Type, joinPath(path, name)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		arr, ok := tree.([]any)
		if !ok {
			return nil
		}
		for i, el := range arr {
			if err := checkFields(el, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// jsonErrorText describes a decoding error for the client without Go type names.
func jsonErrorText(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		want := typeErr.Type.Kind().String()
		switch typeErr.Type.Kind() {
		case reflect.Int, reflect.Int32, reflect.Int64:
			want = "an integer"
		case reflect.Float64:
			want = "a number"
		case reflect.Struct, reflect.Map:
			want = "an object"
		case reflect.Slice:
			want = "an array"
		case reflect.Bool:
			want = "a boolean"
		case reflect.String:
			want = "a string"
		}
		if typeErr.Field == "" {
			return "the body must be a JSON object"
		}
		return fmt.Sprintf("field %q must be %s, not %s", typeErr.Field, want, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("%s at offset %d", syntaxErr.Error(), syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of JSON"
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// ---- Field checks ----

// position is a {lat, lng} position in a request body; both members are required.
type position struct {
	Lat *float64 `json:"lat"`
	Lng *float64 `json:"lng"`
}

// checkPosition validates a required position and converts it.
func checkPosition(field string, p *position) (*messages.Position, error) {
	switch {
	case p == nil:
		return nil, Errorf(CodeInvalidArgument, "%s is required", field)
	case p.Lat == nil:
		return nil, Errorf(CodeInvalidArgument, "%s.lat is required", field)
	case p.Lng == nil:
		return nil, Errorf(CodeInvalidArgument, "%s.lng is required", field)
	}
	return checkLatLng(field, *p.Lat, *p.Lng)
}

func checkLatLng(field string, lat, lng float64) (*messages.Position, error) {
	if math.IsNaN(lat) || lat < -90 || lat > 90 {
		return nil, Errorf(CodeInvalidArgument, "%s.lat must be within -90..90", field)
	}
	if math.IsNaN(lng) || lng < -180 || lng > 180 {
		return nil, Errorf(CodeInvalidArgument, "%s.lng must be within -180..180", field)
	}
	return &messages.Position{Lat: lat, Lng: lng}, nil
}

// checkText validates a string field: valid UTF-8 (decoding guarantees it for bodies; query and path values are
// checked here), no control characters, at most max characters, and not blank when required.
func checkText(field, s string, max int, required bool) error {
	switch {
	case !utf8.ValidString(s):
		return Errorf(CodeInvalidArgument, "%s is not valid UTF-8", field)
	case required && strings.TrimSpace(s) == "":
		return Errorf(CodeInvalidArgument, "%s is required", field)
	case utf8.RuneCountInString(s) > max:
		return Errorf(CodeInvalidArgument, "%s is longer than %d characters", field, max)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return Errorf(CodeInvalidArgument, "%s contains control characters", field)
	}
	return nil
}

// checkInt validates a required integer field within min..max.
func checkInt(field string, v *int64, min, max int64) (int64, error) {
	if v == nil {
		return 0, Errorf(CodeInvalidArgument, "%s is required", field)
	}
	if *v < min || *v > max {
		return 0, Errorf(CodeInvalidArgument, "%s must be %d-%d", field, min, max)
	}
	return *v, nil
}

// Id shapes. The edge makes customer, restaurant and dasher ids ("c_", "r_", "d_" + UUID); order ids are derived
// by the Customer actor ("o_" + 24 hex digits). A malformed id is answered 404 without activating an actor.
var (
	restaurantIDPattern = regexp.MustCompile(`^r_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	orderIDPattern      = regexp.MustCompile(`^o_[0-9a-f]{24}$`)
	// menuItemIDPattern is what the edge accepts as a menu item id (restaurants choose them): letters, digits and
	// "_.-", at most 100.
	menuItemIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
)

// checkID validates an id in a path (404 when malformed: no such resource) or a body (400).
func checkPathID(what string, re *regexp.Regexp, id string) error {
	if !re.MatchString(id) {
		return Errorf(CodeNotFound, "%s %q not found", what, truncate(id, 100))
	}
	return nil
}

func checkBodyID(field string, re *regexp.Regexp, id string) error {
	if id == "" {
		return Errorf(CodeInvalidArgument, "%s is required", field)
	}
	if !re.MatchString(id) {
		return Errorf(CodeInvalidArgument, "%s is not a valid id", field)
	}
	return nil
}

// queryInt reads an optional integer query parameter within min..max (def when absent).
func queryInt(ctx *fasthttp.RequestCtx, name string, def, min, max int64) (int64, error) {
	args := ctx.QueryArgs()
	if !args.Has(name) {
		return def, nil
	}
	if len(args.PeekMulti(name)) > 1 {
		return 0, Errorf(CodeInvalidArgument, "query parameter %s is given more than once", name)
	}
	v, err := strconv.ParseInt(string(args.Peek(name)), 10, 64)
	if err != nil || v < min || v > max {
		return 0, Errorf(CodeInvalidArgument, "query parameter %s must be an integer %d-%d", name, min, max)
	}
	return v, nil
}

// queryString reads an optional single-valued query parameter.
func queryString(ctx *fasthttp.RequestCtx, name string) (string, error) {
	args := ctx.QueryArgs()
	if len(args.PeekMulti(name)) > 1 {
		return "", Errorf(CodeInvalidArgument, "query parameter %s is given more than once", name)
	}
	v := string(args.Peek(name))
	if !utf8.ValidString(v) {
		return "", Errorf(CodeInvalidArgument, "query parameter %s is not valid UTF-8", name)
	}
	return v, nil
}

// knownQuery refuses query parameters a route does not take (a misspelt parameter would otherwise be ignored).
func knownQuery(ctx *fasthttp.RequestCtx, names ...string) error {
	for k := range ctx.QueryArgs().All() {
		if !contains(names, string(k)) {
			return Errorf(CodeInvalidArgument, "unknown query parameter %q", truncate(string(k), 64))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// noBody refuses a body on routes that take none (a client sending one probably meant another route).
func noBody(ctx *fasthttp.RequestCtx) error {
	if len(bytes.TrimSpace(ctx.PostBody())) == 0 {
		return nil
	}
	if err := requireJSON(ctx); err != nil {
		return err
	}
	var empty struct{}
	return decodeJSON(ctx.PostBody(), &empty)
}
