package main

// Go benchmarks of the layers under the simulator: an actor request on one node and across nodes (clustertest),
// an edge handler over a real listener and a one-node cluster, and a long-poll fan-out. `go run ./node/bench` runs
// them with the journal's own benchmarks (actors/journal BenchmarkBolt) and puts each next to its ceiling.

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/node/sim"
)

// BenchmarkActorRequest: one request-response to a virtual actor, through the member that hosts it (OneNode) and
// through the other member of a two-member cluster (CrossNode: one gRPC hop each way). Sequential, so ns/op is the
// latency of one request.
func BenchmarkActorRequest(b *testing.B) {
	c := clustertest.New(b, 2)
	c.WaitConverged(30 * time.Second)
	ctx := context.Background()
	local, remote := "", ""
	self := c.Node(0).Self().ID
	for i := 0; local == "" || remote == ""; i++ {
		id := fmt.Sprintf("bench-%d", i)
		at, err := c.Request(ctx, 0, id)
		if err != nil {
			b.Fatal(err)
		}
		if at == self && local == "" {
			local = id
		} else if at != self && remote == "" {
			remote = id
		}
	}
	for _, tc := range []struct{ name, id string }{{"OneNode", local}, {"CrossNode", remote}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Request(ctx, 0, tc.id); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// benchAuth takes the principal from the bearer token "role:id[:restaurant,...]" (no signature: the benchmark
// measures the edge and the actors, not token verification, which the simulator scenarios include).
type benchAuth struct{}

func (benchAuth) Authenticate(ctx *fasthttp.RequestCtx) (http.Principal, error) {
	tok, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	if !ok {
		return http.Principal{}, nil
	}
	parts := strings.Split(tok, ":")
	p := http.Principal{Role: http.Role(parts[0])}
	if len(parts) > 1 {
		p.ID = parts[1]
	}
	if len(parts) > 2 {
		p.Restaurants = strings.Split(parts[2], ",")
	}
	return p, nil
}

type okStore struct{}

func (okStore) Ping() error { return nil }

// startEdge starts a one-node cluster over a temp-dir bbolt journal behind a real HTTP listener, with limits
// raised so that the benchmark, not the rate limiter, sets the pace.
func startEdge(b *testing.B) string {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "journal.db"), journal.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	deps := actors.Deps{Journal: j, Logger: log, Now: time.Now}
	ccfg := cluster.DefaultLocalConfig()
	ccfg.Logger = log
	node, err := cluster.NewNode(ccfg, func() []*pcluster.Kind { return actors.Kinds(deps) })
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		b.Fatal(err)
	}
	scanner := actors.StartReminderScanner(deps, node.Cluster)
	cfg := http.DefaultConfig("127.0.0.1:0")
	cfg.Logger = log
	unlimited := http.RateLimit{Rate: 1e9, Burst: 1 << 30}
	cfg.SearchLimit, cfg.OrderLimit, cfg.LoginLimit, cfg.MaxPollsPerClient = unlimited, unlimited, unlimited, 1<<20
	backend := http.NewClusterBackend(node, okStore{}, j, http.DefaultIdempotencyRetention)
	backend.Auth = benchAuth{}
	srv, err := http.NewServer(cfg, backend)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		scanner.Stop()
		_ = node.Stop(ctx)
		_ = j.Close()
	})
	return srv.URL()
}

// marketplace is a restaurant with a menu and a customer with an address and a card, made through the edge.
type marketplace struct {
	c          *sim.Client
	url        string
	restaurant string
	customer   sim.TokenSource
	customerID string
}

func newMarketplace(b *testing.B, url string) *marketplace {
	b.Helper()
	ctx := context.Background()
	c := sim.NewClient(sim.ClientOptions{})
	op := sim.StaticToken("operator:op")
	pos := sim.Position{Lat: 37.7749, Lng: -122.4194}
	rid, err := c.CreateRestaurant(ctx, url, op, "r1", "Bench Kitchen", "thai", pos)
	if err != nil {
		b.Fatal(err)
	}
	staff := sim.StaticToken("restaurant:rs_1:" + rid)
	if err := c.PutMenu(ctx, url, staff, rid, []sim.MenuItem{{ID: "pad-thai", Name: "Pad Thai", PriceCents: 1250, Tags: []string{"thai"}}}); err != nil {
		b.Fatal(err)
	}
	cid, err := c.SignUp(ctx, url, 0, "c1", "Bench", "bench@example.com", "bench password", "+1 415 555 0100")
	if err != nil {
		b.Fatal(err)
	}
	cust := sim.StaticToken("customer:" + cid)
	if err := c.SetAddress(ctx, url, cust, "1 Market St", "San Francisco", "94105", pos); err != nil {
		b.Fatal(err)
	}
	if err := c.SetPaymentMethod(ctx, url, cust, "4242424242424242", 12, 2031, "123"); err != nil {
		b.Fatal(err)
	}
	return &marketplace{c: c, url: url, restaurant: rid, customer: cust, customerID: cid}
}

func (m *marketplace) order(b *testing.B) string {
	ctx := context.Background()
	if err := m.c.AddToCart(ctx, m.url, m.customer, m.restaurant, "pad-thai", 1); err != nil {
		b.Fatal(err)
	}
	o, err := m.c.PlaceOrder(ctx, m.url, m.customer)
	if err != nil {
		b.Fatal(err)
	}
	return o.ID
}

// BenchmarkEdgeStatus: GET /v1/orders/{id}/status over a real listener, from parallel keep-alive connections
// (GOMAXPROCS × 16), through routing, authorisation, the Order actor and encoding. Reports req/s.
func BenchmarkEdgeStatus(b *testing.B) {
	url := startEdge(b)
	m := newMarketplace(b, url)
	id := m.order(b)
	hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(url, "http://"), MaxConns: 1024}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI(url + "/v1/orders/" + id + "/status")
		req.Header.Set("Authorization", "Bearer customer:"+m.customerID)
		for pb.Next() {
			if err := hc.Do(req, res); err != nil || res.StatusCode() != 200 {
				b.Errorf("status: %v %d %s", err, res.StatusCode(), res.Body())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkLongPollFanout: 200 long polls parked on one customer's feed (the most an actor keeps parked is 256);
// each iteration places an order, whose ORDER_PLACED entry wakes them all. Reports the time from the order's 201
// to the last poller's answer (wake-p50-ms, wake-max-ms over iterations) and ns/op for the whole round.
func BenchmarkLongPollFanout(b *testing.B) {
	const pollers = 200
	url := startEdge(b)
	m := newMarketplace(b, url)
	client := sim.NewClient(sim.ClientOptions{})
	var cursor atomic.Uint64
	var wakes []time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		after := cursor.Load()
		var parked sync.WaitGroup
		var answered sync.WaitGroup
		var lastAnswer atomic.Int64
		parked.Add(pollers)
		answered.Add(pollers)
		for range pollers {
			go func() {
				defer answered.Done()
				parked.Done()
				page, err := client.Poll(context.Background(), url, m.customer, sim.CustomerFeed, after, 10*time.Second)
				if err != nil || len(page.Entries) == 0 {
					b.Errorf("poll: %v, %d entries", err, len(page.Entries))
					return
				}
				cursor.Store(max(cursor.Load(), page.NextCursor))
				for {
					prev := lastAnswer.Load()
					now := time.Now().UnixNano()
					if now <= prev || lastAnswer.CompareAndSwap(prev, now) {
						break
					}
				}
			}()
		}
		parked.Wait()
		waitPolls(b, url, pollers)
		b.StartTimer()
		m.order(b)
		placed := time.Now()
		answered.Wait()
		wakes = append(wakes, time.Duration(lastAnswer.Load()-placed.UnixNano()))
	}
	sort.Slice(wakes, func(i, j int) bool { return wakes[i] < wakes[j] })
	b.ReportMetric(float64(wakes[len(wakes)/2])/1e6, "wake-p50-ms")
	b.ReportMetric(float64(wakes[len(wakes)-1])/1e6, "wake-max-ms")
	b.ReportMetric(pollers, "pollers")
}

// waitPolls waits until the edge has n feed polls waiting (its platter_http_feed_polls_in_flight gauge).
func waitPolls(b *testing.B, url string, n int) {
	b.Helper()
	want := fmt.Sprintf("platter_http_feed_polls_in_flight %d\n", n)
	deadline := time.Now().Add(10 * time.Second)
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(url + "/metrics")
	req.Header.Set("Authorization", "Bearer operator:op")
	for time.Now().Before(deadline) {
		err := fasthttp.Do(req, res)
		if err == nil && res.StatusCode() == 200 && strings.Contains(string(res.Body()), want) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatalf("the edge never had %d polls waiting", n)
}
