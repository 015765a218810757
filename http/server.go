package http

import (
	"context"
	"crypto/tls"
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
	"google.golang.org/protobuf/proto"
)

// Config configures the edge. The zero value of a field means its default (see DefaultConfig).
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8080"; port 0 picks a free port (see Server.Addr).
	Addr string
	// ReadTimeout bounds reading one request, headers and body, so a slow client cannot hold a connection and
	// its buffers. It does not bound a handler: a long poll parks after the request is read. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response; fasthttp starts it when the handler returns, so long polls are
	// not cut by it. Default 10 s.
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
	// MaxHeaderSize is the largest request line plus headers accepted (fasthttp's read buffer, taken from a pool
	// per request being read); larger get 431 HEADERS_TOO_LARGE. Default 4 KiB, fasthttp's own.
	MaxHeaderSize int
	// MaxPollWait is the longest wait a feed poll may ask for (?wait=, in seconds). Default 30 s.
	MaxPollWait time.Duration
	// DefaultPollWait is the wait of a feed poll without ?wait=. Default 25 s.
	DefaultPollWait time.Duration
	// MaxPollsPerClient bounds the feed polls one client (principal, or remote address when anonymous) may have
	// waiting at once; more are answered 429 TOO_MANY_POLLS. Default 4.
	MaxPollsPerClient int
	// IdempotencyLease is how long a request holds its Idempotency-Key: a retry within it is 409
	// IDEMPOTENCY_KEY_IN_USE; after it (the first request's node died) a retry runs the request again. Default
	// 30 s; it must exceed RequestTimeout.
	IdempotencyLease time.Duration
	// SearchLimit, OrderLimit and LoginLimit are the per-client rate limits of search, placing orders, and
	// sign-up/sign-in/token revocation (one budget). Defaults: search 5/s burst 20, order 0.2/s burst 5, login 0.5/s burst 10.
	SearchLimit RateLimit
	OrderLimit  RateLimit
	LoginLimit  RateLimit
	// MaxRateLimitClients bounds the clients the rate limiter remembers. Default 100 000.
	MaxRateLimitClients int
	// DrainTimeout bounds the background drain POST /v1/admin/drain starts. Default 30 s.
	DrainTimeout time.Duration
	// MaxHandshakes bounds the TLS handshakes in progress at once (each on a goroutine of its own, bounded by
	// ReadTimeout); at the bound, new connections wait in the kernel's accept queue. The default is fasthttp's
	// own connection bound (fasthttp.DefaultConcurrency), which bounded handshakes before they moved off the
	// connections' goroutines: a small bound would let a few silent connections starve every new client.
	MaxHandshakes int
	// Now is the clock (idempotency records, rate limits). Default time.Now.
	Now func() time.Time
	// TLS, when set, makes the edge serve HTTPS only (node/tls.go builds it: TLS 1.2 minimum, AEAD suites).
	// nil serves plain HTTP, which the node allows only with --insecure. Default nil.
	TLS *tls.Config
	// Logger receives the edge's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the production defaults for listening on addr.
func DefaultConfig(addr string) Config {
	return Config{
		Addr:                addr,
		ReadTimeout:         10 * time.Second,
		WriteTimeout:        10 * time.Second,
		IdleTimeout:         60 * time.Second,
		RequestTimeout:      5 * time.Second,
		RetryAfter:          time.Second,
		MaxBodySize:         64 << 10,
		MaxHeaderSize:       4 << 10,
		MaxPollWait:         30 * time.Second,
		DefaultPollWait:     25 * time.Second,
		MaxPollsPerClient:   4,
		IdempotencyLease:    30 * time.Second,
		SearchLimit:         RateLimit{Rate: 5, Burst: 20},
		OrderLimit:          RateLimit{Rate: 0.2, Burst: 5},
		LoginLimit:          RateLimit{Rate: 0.5, Burst: 10},
		MaxRateLimitClients: 100_000,
		DrainTimeout:        30 * time.Second,
		MaxHandshakes:       fasthttp.DefaultConcurrency,
		Now:                 time.Now,
		Logger:              slog.Default(),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Addr)
	setDefault(&c.ReadTimeout, d.ReadTimeout)
	setDefault(&c.WriteTimeout, d.WriteTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.RetryAfter, d.RetryAfter)
	setDefault(&c.MaxBodySize, d.MaxBodySize)
	setDefault(&c.MaxHeaderSize, d.MaxHeaderSize)
	setDefault(&c.MaxPollWait, d.MaxPollWait)
	setDefault(&c.DefaultPollWait, min(d.DefaultPollWait, c.MaxPollWait))
	setDefault(&c.MaxPollsPerClient, d.MaxPollsPerClient)
	setDefault(&c.IdempotencyLease, max(d.IdempotencyLease, c.RequestTimeout+time.Second))
	setDefault(&c.MaxRateLimitClients, d.MaxRateLimitClients)
	setDefault(&c.DrainTimeout, d.DrainTimeout)
	setDefault(&c.MaxHandshakes, d.MaxHandshakes)
	if c.SearchLimit == (RateLimit{}) {
		c.SearchLimit = d.SearchLimit
	}
	if c.OrderLimit == (RateLimit{}) {
		c.OrderLimit = d.OrderLimit
	}
	if c.LoginLimit == (RateLimit{}) {
		c.LoginLimit = d.LoginLimit
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Backend is what the edge calls. Every implementation must be safe for concurrent use: handlers run on many
// goroutines at once.
type Backend struct {
	Cluster     Cluster
	Store       Store
	Actors      Actors
	Idempotency IdempotencyStore
	// Auth finds the principal of a request; nil until the security issue provides one (see authorize).
	Auth Authenticator
	// Accounts keeps sign-in credentials and clients; nil: sign-ups keep none (the skeleton). See auth.go.
	Accounts Accounts
	// OAuth serves the authorization server's endpoints; nil: they answer 404. See auth.go.
	OAuth OAuthEndpoints
}

// Server is the HTTP edge of one node: it decodes, authorises, calls the backend and encodes. It holds no business
// rules. Open starts it, Close drains it.
type Server struct {
	cfg      Config
	backend  Backend
	log      *slog.Logger
	router   router
	srv      *fasthttp.Server
	ln       net.Listener
	served   chan error
	metrics  *metrics
	limiters *limiters
	polls    pollCounter

	// closing ends when Close starts, releasing parked polls.
	closing     context.Context
	stopPolling context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// NewServer returns an edge that is not yet listening.
func NewServer(cfg Config, backend Backend) (*Server, error) {
	if backend.Cluster == nil || backend.Store == nil || backend.Actors == nil || backend.Idempotency == nil {
		return nil, errors.New("http: backend needs Cluster, Store, Actors and Idempotency")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg: cfg, backend: backend, log: cfg.Logger, metrics: newMetrics(),
		limiters: newLimiters(cfg.SearchLimit, cfg.OrderLimit, cfg.LoginLimit, cfg.MaxRateLimitClients),
		polls:    pollCounter{n: map[string]int{}},
	}
	s.closing, s.stopPolling = context.WithCancel(context.Background())
	s.routes()
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleParseError,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		MaxRequestBodySize:    cfg.MaxBodySize,
		ReadBufferSize:        cfg.MaxHeaderSize,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		// A parked feed poll holds its connection for up to MaxPollWait; without this fasthttp keeps the
		// connection's 4 KiB read and 4 KiB write buffers (and the request body buffer) through the wait. With it
		// they go back to their pools once the request is read and after each response, so thousands of parked
		// polls and idle keep-alive connections hold no buffers (issue 7: ~8 KiB of heap per held poll, twice that
		// in resident memory at the GC's default target). The cost is a pool get/put per request.
		ReduceMemoryUsage: true,
		Logger:            fasthttpLogger{s.log},
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// Routes lists every route the server serves (the OpenAPI document lists the same, see openapi_test.go).
func (s *Server) Routes() []Route { return s.router.list() }

// Open listens on Config.Addr and serves in the background. It fails (without serving) when the address is bad or
// in use.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.TLS != nil {
		ln = newHandshakeListener(ln, s.cfg.TLS, s.cfg.ReadTimeout, s.cfg.MaxHandshakes)
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
	if s.cfg.TLS != nil {
		return "https://" + s.ln.Addr().String()
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
		s.stopPolling() // parked polls answer 204 now instead of holding the stop for their whole wait
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

// handle is the one entry point of every request: route, authorise, rate-limit, run (under the Idempotency-Key
// of mutating routes), and turn any failure or panic into a problem+json response.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	label := "unmatched"
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("http handler panicked",
				slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			ctx.Response.Reset()
			s.writeProblem(ctx, internalError)
		}
		status := ctx.Response.StatusCode()
		elapsed := time.Since(start)
		s.metrics.observe(label, status, elapsed)
		if s.log.Enabled(context.Background(), slog.LevelDebug) { // the attributes cost more than the check
			s.log.Debug("http request",
				slog.String("method", string(ctx.Method())), slog.String("path", string(ctx.Path())),
				slog.Int("status", status), slog.Duration("duration", elapsed))
		}
	}()

	method, path := string(ctx.Method()), string(ctx.Path())
	r, p, allow := s.router.match(method, path)
	if r == nil {
		if len(allow) > 0 {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, strings.Join(allow, ", "))
			s.fail(ctx, Errorf(CodeMethodNotAllowed, "%s is not allowed on %s", method, truncate(path, 200)))
			return
		}
		s.fail(ctx, Errorf(CodeNotFound, "no route for %s", truncate(path, 200)))
		return
	}
	label = r.String()
	who, err := s.authorizeFor(ctx, r, p)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c := &call{ctx: ctx, params: p, who: who}
	if ok, wait := s.limiters.allow(r.limit, c.client(), s.now()); !ok {
		s.metrics.rateLimited.WithLabelValues(r.limit.String()).Inc()
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, retryAfterSeconds(wait))
		s.fail(ctx, Errorf(CodeRateLimited, "too many %s requests; retry after the time in Retry-After", r.limit))
		return
	}
	if r.mutating() && !r.answersSecrets() {
		if c.key, err = idempotencyKey(ctx); err != nil {
			s.fail(ctx, err)
			return
		}
		err = s.idempotent(c, r)
	} else {
		err = r.handle(c)
	}
	if err != nil {
		s.fail(ctx, err)
	}
}

// authorizeFor runs authorize; for a feed poll, which may park its goroutine for up to MaxPollWait, on a
// goroutine of its own. Verifying a bearer token (EdDSA curve arithmetic has large stack frames) grows the stack
// of the goroutine that runs it, and the runtime shrinks a parked goroutine's stack only at garbage collections,
// which are rare while thousands of polls wait and little allocates: run on the connection's goroutine, each
// parked poll would keep that grown stack through its wait (issue 7; with handshakeListener, about 7 KiB less
// stack per held poll). The short-lived goroutine's stack goes back to the runtime when it ends. A panic in it is
// raised again here, where handle recovers it.
func (s *Server) authorizeFor(ctx *fasthttp.RequestCtx, r *route, p params) (Principal, error) {
	if !strings.HasSuffix(r.Pattern, "/feed") { // the three feed routes (routes.go), the only ones that park
		return s.authorize(ctx, r, p)
	}
	type result struct {
		who    Principal
		err    error
		panicV any
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() {
			if v := recover(); v != nil {
				res.panicV = v
			}
			done <- res
		}()
		res.who, res.err = s.authorize(ctx, r, p)
	}()
	res := <-done
	if res.panicV != nil {
		panic(res.panicV)
	}
	return res.who, res.err
}

// client names the caller for the state the edge keeps per caller (rate limits, poll bounds, Idempotency-Keys):
// its principal, or its remote address when anonymous. Anonymous callers must not share one name: a stranger's
// sign-up would meet another's Idempotency-Key (422 IDEMPOTENCY_KEY_REUSED for a day) and derive the same customer
// id (newID). Two anonymous clients behind one address (a NAT) still share a name; the body fingerprint keeps
// their requests apart (422 rather than another's response).
func (c *call) client() string {
	if c.who.Anonymous() {
		return "ip:" + c.ctx.RemoteIP().String()
	}
	return string(c.who.Role) + ":" + c.who.ID
}

// deadline returns the context of one call into the cluster.
func (s *Server) deadline() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
}

// handleParseError answers requests fasthttp refused before routing, as problem+json like every other rejection
// (fasthttp's own answers are text/plain); fasthttp then closes the connection.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.writeProblem(ctx, Errorf(CodePayloadTooLarge, "the request body exceeds %d bytes", s.cfg.MaxBodySize))
	case errors.As(err, &small):
		s.writeProblem(ctx, Errorf(CodeHeadersTooLarge, "the request line and headers exceed %d bytes", s.cfg.MaxHeaderSize))
	case errors.As(err, &timeout) && timeout.Timeout():
		s.log.Debug("http request read timed out", errAttr(err))
		s.writeProblem(ctx, Errorf(CodeRequestTimeout, "the request was not received within %v", s.cfg.ReadTimeout))
	default:
		s.log.Debug("http request malformed", errAttr(err))
		s.writeProblem(ctx, Errorf(CodeInvalidArgument, "malformed HTTP request"))
	}
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
	if kind.status == nethttp.StatusServiceUnavailable && len(ctx.Response.Header.Peek(fasthttp.HeaderRetryAfter)) == 0 {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
	}
	// Every 401 names the scheme it wants (RFC 9110 section 11.6.1, RFC 6750 section 3).
	if kind.status == nethttp.StatusUnauthorized && len(ctx.Response.Header.Peek(fasthttp.HeaderWWWAuthenticate)) == 0 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="platter"`)
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

// writeProto writes m as JSON with the status.
func (s *Server) writeProto(ctx *fasthttp.RequestCtx, status int, m proto.Message) error {
	buf := encodeBuffers.Get().(*[]byte)
	body, err := appendMessage((*buf)[:0], m.ProtoReflect())
	if err != nil {
		encodeBuffers.Put(buf)
		return fmt.Errorf("encode response: %w", err)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body) // copies
	if cap(body) <= maxPooledBuffer {
		*buf = body
		encodeBuffers.Put(buf)
	}
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

// handshakeListener is tls.NewListener that also completes each connection's TLS handshake, on a goroutine of its
// own, before fasthttp gets the connection. fasthttp would run the handshake on the connection's goroutine, whose
// stack grows for the handshake's cryptography and then stays grown while the connection is served: through a
// parked feed poll, most of the connection's life (issue 7; see authorizeFor). A handshake goroutine ends with its
// handshake, and its stack goes back to the runtime. The handshake is bounded by Config.ReadTimeout, as fasthttp
// bounds it; a connection whose handshake fails is closed (fasthttp would have closed it on its first read).
// Accept, Close and Addr are safe for concurrent use.
type handshakeListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
	slots   chan struct{} // one per handshake in progress (Config.MaxHandshakes)
	ready   chan net.Conn // connections whose handshake succeeded
	errs    chan error    // accept errors other than the listener's closing, for fasthttp to handle
	done    chan struct{} // closed by Close
	close   sync.Once
}

func newHandshakeListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, maxHandshakes int) *handshakeListener {
	l := &handshakeListener{Listener: inner, cfg: cfg, timeout: timeout, slots: make(chan struct{}, max(1, maxHandshakes)),
		ready: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	for {
		select { // a slot first: at the bound, connections wait in the kernel's accept queue
		case l.slots <- struct{}{}:
		case <-l.done:
			return
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			if errors.Is(err, net.ErrClosed) {
				_ = l.Close()
				return
			}
			select { // e.g. too many open files: fasthttp decides whether to wait and accept again
			case l.errs <- err:
				continue
			case <-l.done:
				return
			}
		}
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	defer func() { <-l.slots }()
	tc := tls.Server(c, l.cfg)
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.Handshake(); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{}) // fasthttp sets its own read and write deadlines per request
	select {
	case l.ready <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; a connection still in its handshake is closed when the handshake ends.
func (l *handshakeListener) Close() error {
	err := net.ErrClosed
	l.close.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}
