package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	nethttp "net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Config configures the edge. The zero value of a field means its default (see DefaultConfig).
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8080"; port 0 picks a free port (see Server.Addr).
	Addr string
	// ReadTimeout bounds reading one request, headers and body. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 10 s.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long; it also bounds how long a graceful stop waits for
	// idle connections. Default 60 s.
	IdleTimeout time.Duration
	// RequestTimeout bounds one call into the cluster; when it passes the client gets 503 UNAVAILABLE. Default 5 s.
	RequestTimeout time.Duration
	// RetryAfter is the Retry-After a 503 response advises. Default 1 s.
	RetryAfter time.Duration
	// MaxBodySize is the largest request body accepted; larger bodies get 413. Default 64 KiB.
	MaxBodySize int
	// Logger receives the edge's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the production defaults for listening on addr.
func DefaultConfig(addr string) Config {
	return Config{
		Addr:           addr,
		ReadTimeout:    10 * time.Second,
		WriteTimeout:   10 * time.Second,
		IdleTimeout:    60 * time.Second,
		RequestTimeout: 5 * time.Second,
		RetryAfter:     time.Second,
		MaxBodySize:    64 << 10,
		Logger:         slog.Default(),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Addr)
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = d.MaxBodySize
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Backend is what the edge calls. Every implementation must be safe for concurrent use: handlers run on many
// goroutines at once.
type Backend struct {
	Cluster     Cluster
	Store       Store
	Restaurants Restaurants
}

// Server is the HTTP edge of one node: it decodes, authorises, calls the backend and encodes. It holds no business
// rules. Open starts it, Close drains it.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	router  router
	srv     *fasthttp.Server
	ln      net.Listener
	served  chan error

	closeOnce sync.Once
	closeErr  error
}

// NewServer returns an edge that is not yet listening.
func NewServer(cfg Config, backend Backend) (*Server, error) {
	if backend.Cluster == nil || backend.Store == nil || backend.Restaurants == nil {
		return nil, errors.New("http: backend needs Cluster, Store and Restaurants")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, backend: backend, log: cfg.Logger}
	s.routes()
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleParseError,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		MaxRequestBodySize:    cfg.MaxBodySize,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{s.log},
	}
	return s, nil
}

func (s *Server) routes() {
	s.router.add(fasthttp.MethodGet, "/healthz", s.handleHealthz)
	s.router.add(fasthttp.MethodGet, "/readyz", s.handleReadyz)
	s.router.add(fasthttp.MethodGet, "/v1/admin/cluster", s.handleAdminCluster)
	s.router.add(fasthttp.MethodPost, "/v1/restaurants", s.handleCreateRestaurant)
	s.router.add(fasthttp.MethodGet, "/v1/restaurants/{id}", s.handleGetRestaurant)
}

// Open listens on Config.Addr and serves in the background. It fails (without serving) when the address is bad or
// in use.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.served = make(chan error, 1)
	go func() { s.served <- s.srv.Serve(ln) }()
	return nil
}

// Addr is the address the server listens on (with the real port when Config.Addr had port 0); nil before Open.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL is the base URL of the server, e.g. "http://127.0.0.1:8080"; empty before Open.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops accepting connections and waits, until ctx ends, for requests in flight to finish. Idle keep-alive
// connections are closed; busy ones get "Connection: close" on their last response. Calls after the first return
// the first result.
func (s *Server) Close(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		err := s.srv.ShutdownWithContext(ctx)
		// Shutdown closes only the listeners Serve has registered; when Close follows Open closely, Serve may not
		// have started yet and would then serve forever. Closing the listener ourselves ends it either way.
		_ = s.ln.Close()
		if serveErr := <-s.served; serveErr != nil && err == nil {
			err = serveErr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("stop http: %w", err)
		}
	})
	return s.closeErr
}

// handle is the one entry point of every request: route, authorise, run, and turn any failure or panic into a
// problem+json response.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("http handler panicked",
				slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			ctx.Response.Reset()
			s.writeProblem(ctx, internalError)
		}
		s.log.Debug("http request",
			slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
			slog.Int("status", ctx.Response.StatusCode()), slog.Duration("duration", time.Since(start)))
	}()

	method, path := string(ctx.Method()), string(ctx.Path())
	r, p, allow := s.router.match(method, path)
	if r == nil {
		if len(allow) > 0 {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, strings.Join(allow, ", "))
			s.fail(ctx, Errorf(CodeMethodNotAllowed, "%s is not allowed on %s", method, path))
			return
		}
		s.fail(ctx, Errorf(CodeNotFound, "no route for %s", path))
		return
	}
	if err := authorize(ctx, r.Route); err != nil {
		s.fail(ctx, err)
		return
	}
	if err := r.handle(ctx, p); err != nil {
		s.fail(ctx, err)
	}
}

// handleParseError answers requests fasthttp refused before routing (body too large, malformed request line, ...).
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.writeProblem(ctx, Errorf(CodePayloadTooLarge, "the request body exceeds %d bytes", s.cfg.MaxBodySize))
		return
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		s.log.Debug("http request read timed out", errAttr(err))
		ctx.Error("request timeout", fasthttp.StatusRequestTimeout)
		return
	}
	s.writeProblem(ctx, Errorf(CodeInvalidArgument, "malformed HTTP request"))
}

// fail writes err as problem+json. Expected errors (an *Error with a known code other than INTERNAL) are shown
// as they are; anything else is logged with its details and shown only as INTERNAL.
func (s *Server) fail(ctx *fasthttp.RequestCtx, err error) {
	e, expected := asError(err)
	if !expected {
		s.log.Error("http request failed",
			slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
			errAttr(err))
	} else if e.Code == CodeNotReady || e.Code == CodeUnavailable {
		s.log.Warn("http request refused",
			slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
			slog.String("code", e.Code), errAttr(err))
	}
	s.writeProblem(ctx, e)
}

// problem is an RFC 9457 problem details document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

// ProblemType is the problem "type" URI of a code: a URN, stable, and not meant to be dereferenced.
func ProblemType(code string) string { return "urn:platter:problem:" + code }

func (s *Server) writeProblem(ctx *fasthttp.RequestCtx, e *Error) {
	kind, ok := problems[e.Code]
	if !ok {
		kind = problems[CodeInternal]
	}
	if kind.status == nethttp.StatusServiceUnavailable {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
	}
	body, err := json.Marshal(problem{
		Type: ProblemType(e.Code), Title: kind.title, Status: kind.status, Detail: e.Detail, Code: e.Code,
	})
	if err != nil { // cannot happen with these field types
		s.log.Error("encode problem", errAttr(err))
		ctx.Error("internal error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetStatusCode(kind.status)
	ctx.SetContentType("application/problem+json")
	ctx.SetBody(body)
}

// writeJSON writes v (encoded with encoding/json) with the status.
func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// protoJSON encodes API shapes with snake_case names and every field present, so clients see a stable shape.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// writeProto writes m as JSON with the status.
func (s *Server) writeProto(ctx *fasthttp.RequestCtx, status int, m proto.Message) error {
	body, err := protoJSON.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	return nil
}

// errAttr is the one key under which errors are logged.
func errAttr(err error) slog.Attr { return slog.Any("error", err) }

// fasthttpLogger routes fasthttp's own messages (accept errors and the like) to slog.
type fasthttpLogger struct{ log *slog.Logger }

// Errors serving one connection are the client's doing (a reset, an oversized body) and stay at debug; the rest
// (accept failures) are warnings.
func (l fasthttpLogger) Printf(format string, args ...any) {
	level := slog.LevelWarn
	if strings.HasPrefix(format, "error when serving connection") {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, "fasthttp", slog.String("message", fmt.Sprintf(format, args...)))
}
