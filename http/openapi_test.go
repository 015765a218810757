package http_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/platterhq/platter/http"
)

// The OpenAPI document (http/openapi.json) is checked three ways: kin-openapi loads and validates it as OpenAPI
// 3.1; its operations are exactly the router's routes; and every response the tests receive on a documented
// route is validated against it (doRequest calls checkResponse), the end-to-end test included.

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func spec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(http.OpenAPIDocument)
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		specRouter, specErr = gorillamux.NewRouter(specDoc)
	})
	if specErr != nil {
		t.Fatalf("openapi.json: %v", specErr)
	}
	return specDoc, specRouter
}

func TestOpenAPIDocumentIsValid31(t *testing.T) {
	doc, _ := spec(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
}

// TestOpenAPIMatchesRoutes: every route the router serves is an operation of the document, and vice versa.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := spec(t)
	h := newHarness(t)
	served := map[string]bool{}
	for _, r := range h.srv.Routes() {
		served[r.String()] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("served but not documented: %v\ndocumented but not served: %v", missing, extra)
	}

	// The served document is the embedded one.
	res := h.do(t, "GET", "/openapi.json", "", nil)
	if res.status != 200 || !bytes.Equal(res.body, http.OpenAPIDocument) || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %q", res.status, res.header.Get("Content-Type"))
	}
}

// checkResponse validates a response against the document when the request's route is documented (unknown
// paths and methods are not operations; their 404/405 problems are checked by the tests that make them).
func checkResponse(t testing.TB, req *nethttp.Request, body []byte, res *nethttp.Response, resBody []byte) {
	t.Helper()
	_, router := spec(t)
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, pathParams, err := router.FindRoute(vreq)
	if err != nil {
		if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
			return
		}
		t.Fatalf("openapi route of %s %s: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: pathParams, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(resBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s answered %d %s\nwhich does not match openapi.json: %v", req.Method, req.URL.RequestURI(), res.StatusCode, truncateBody(resBody), err)
	}
}

// checkRequest validates a request the tests consider valid against the document.
func checkRequest(t testing.TB, req *nethttp.Request, body []byte) {
	t.Helper()
	_, router := spec(t)
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, pathParams, err := router.FindRoute(vreq)
	if err != nil {
		t.Fatalf("openapi route of %s %s: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: pathParams, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Fatalf("request %s %s %s does not match openapi.json: %v", req.Method, req.URL.RequestURI(), truncateBody(body), err)
	}
}

func truncateBody(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "…"
	}
	return string(b)
}
