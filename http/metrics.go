package http

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// metrics are the edge's Prometheus metrics, served as text by GET /metrics. Labels are bounded: routes are
// patterns ("GET /v1/orders/{id}", or "unmatched"), never raw paths.
type metrics struct {
	registry          *prometheus.Registry
	requests          *prometheus.CounterVec   // by route and status
	duration          *prometheus.HistogramVec // by route
	pollsInFlight     prometheus.Gauge
	rateLimited       *prometheus.CounterVec // by class
	idempotentReplays prometheus.Counter
	handler           fasthttp.RequestHandler
	series            sync.Map // routeStatus -> *routeSeries
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platter_http_requests_total", Help: "HTTP requests answered, by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "platter_http_request_duration_seconds", Help: "Time to answer an HTTP request, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		pollsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "platter_http_feed_polls_in_flight", Help: "Feed long polls waiting now.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "platter_http_rate_limited_total", Help: "Requests refused with 429, by limit class.",
		}, []string{"class"}),
		idempotentReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "platter_http_idempotent_replays_total", Help: "Responses replayed for a repeated Idempotency-Key.",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.pollsInFlight, m.rateLimited, m.idempotentReplays,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return m
}

// routeStatus names the series of one answer; both are bounded (route patterns, HTTP statuses).
type routeStatus struct {
	route  string
	status int
}

// routeSeries are the series one answer updates, looked up once: WithLabelValues hashes the labels under a lock
// on every call.
type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	key := routeStatus{route, status}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, &routeSeries{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route),
		})
	}
	rs := v.(*routeSeries)
	rs.requests.Inc()
	rs.duration.Observe(d.Seconds())
}

func (s *Server) handleMetrics(c *call) error {
	s.metrics.handler(c.ctx)
	return nil
}
