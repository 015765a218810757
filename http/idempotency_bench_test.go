package http_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/http"
)

// BenchmarkIdempotent: a mutating route (POST /v1/restaurants as an operator, on the fake actors) over a real
// listener and the journal's idempotency store (bbolt in a temp dir), from parallel keep-alive connections:
// without Idempotency-Key (NoKey), with a new key per request (NewKey: claim, handler, stored response) and with a
// key already answered (Replay). The difference between NoKey and NewKey is what idempotent() costs a request;
// cpu-ns/op is the process's CPU time per request (user and system, client and journal included), which other
// load on a shared machine disturbs less than req/s.
func BenchmarkIdempotent(b *testing.B) {
	for _, tc := range []struct {
		name string
		key  func(i uint64) string
	}{
		{"NoKey", func(uint64) string { return "" }},
		{"NewKey", func(i uint64) string { return fmt.Sprintf("bench-key-%d", i) }},
		{"Replay", func(uint64) string { return "bench-key-replayed" }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			url := startBenchEdge(b)
			var seq atomic.Uint64
			hc := &fasthttp.HostClient{Addr: url[len("http://"):], MaxConns: 1024}
			body := []byte(`{"name":"R","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`)
			if k := tc.key(0); k != "" { // Replay's key is answered once before the clock starts
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI(url + "/v1/restaurants")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.Header.Set("X-Test-Principal", "operator:op")
				req.Header.Set("Idempotency-Key", k)
				req.SetBody(body)
				if err := hc.Do(req, res); err != nil || res.StatusCode() != 201 {
					b.Fatalf("POST: %v %d %s", err, res.StatusCode(), res.Body())
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(res)
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(res)
				req.SetRequestURI(url + "/v1/restaurants")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.Header.Set("X-Test-Principal", "operator:op")
				req.SetBody(body)
				for pb.Next() {
					if k := tc.key(seq.Add(1)); k != "" {
						req.Header.Set("Idempotency-Key", k)
					}
					if err := hc.Do(req, res); err != nil || res.StatusCode() != 201 {
						b.Errorf("POST: %v %d %s", err, res.StatusCode(), res.Body())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// startBenchEdge starts the edge on the fake actors and a bbolt journal, logging at info, and returns its URL.
func startBenchEdge(b *testing.B) string {
	b.Helper()
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "journal.db"), journal.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cl := &fakeCluster{activations: map[string]int{}}
	cl.ready.Store(true)
	cfg := http.DefaultConfig("127.0.0.1:0")
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := http.NewServer(cfg, http.Backend{
		Cluster: cl, Store: &fakeStore{}, Actors: newFakeActors(), Auth: testAuth{},
		Idempotency: http.NewJournalIdempotency(j, http.DefaultIdempotencyRetention),
	})
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
		_ = j.Close()
	})
	return srv.URL()
}
