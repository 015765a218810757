package journaltest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal"
)

// Bench runs the shared append benchmarks against a backend:
//
//   - Single: one writer appending one event at a time (latency of one durable commit).
//   - Parallel: many writers (GOMAXPROCS × parallelism) each appending to its own stream, as actors do; this is
//     what group commit is for.
//
// Both report events/s.
func Bench(b *testing.B, newStore NewStore) {
	payload := make([]byte, 200) // about the size of a workflow event
	b.Run("Single", func(b *testing.B) {
		j := openBench(b, newStore)
		ctx := context.Background()
		var seq uint64
		b.ResetTimer()
		for b.Loop() {
			next, err := j.Append(ctx, "order/bench", seq, []journal.Event{{Type: "E", Data: payload}})
			if err != nil {
				b.Fatal(err)
			}
			seq = next
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	for _, par := range []int{16, 64} {
		b.Run(fmt.Sprintf("Parallel%d", par), func(b *testing.B) {
			j := openBench(b, newStore)
			ctx := context.Background()
			var writer atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				stream := fmt.Sprintf("order/bench-%d", writer.Add(1))
				var seq uint64
				for pb.Next() {
					next, err := j.Append(ctx, stream, seq, []journal.Event{{Type: "E", Data: payload}})
					if err != nil {
						b.Error(err)
						return
					}
					seq = next
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func openBench(b *testing.B, newStore NewStore) journal.Journal {
	b.Helper()
	j, err := newStore(b)()
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { _ = j.Close() })
	return j
}

// BenchWorkflow is the write pattern of actors rather than of one event per stream: writers each living through
// orders one after the other. An order is a stream with a random name (order ids are hashes), written by 12
// appends of one event each; every append moves the stream's reminder (an actor's earliest timer or outbox retry)
// and every other one adds a feed entry to the stream's feed; the last append deletes the reminder. Writers4 has
// few appends in flight, as a node under the simulator (small group commits); Writers128 has many (large ones).
// It reports events/s and, where the platform tells, the process's CPU time per event (cpu-µs/event): what a
// node pays for its journal.
func BenchWorkflow(b *testing.B, newStore NewStore) {
	for _, writers := range []int{4, 128} {
		b.Run(fmt.Sprintf("Writers%d", writers), func(b *testing.B) { benchWorkflow(b, newStore, writers) })
	}
}

func benchWorkflow(b *testing.B, newStore NewStore, writers int) {
	const appendsPerOrder = 12
	event, entry := make([]byte, 300), make([]byte, 150)
	j := openBench(b, newStore)
	ctx := context.Background()
	base := time.Unix(1_800_000_000, 0)
	var (
		left atomic.Int64 // appends still to do
		wg   sync.WaitGroup
	)
	left.Store(int64(b.N))
	cpu0, cpuKnown := processCPU()
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				stream string
				seq    uint64
				order  int
			)
			for left.Add(-1) >= 0 {
				if seq == 0 {
					order++
					sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", w, order))
					stream = "order/o_" + hex.EncodeToString(sum[:12])
				}
				opts := []journal.AppendOption{journal.WithReminder(base.Add(time.Duration(seq*7919%3600) * time.Second))}
				if seq == appendsPerOrder-1 {
					opts[0] = journal.WithoutReminder()
				}
				if seq%2 == 1 {
					opts = append(opts, journal.WithFeed(stream, journal.FeedEntry{Type: "F", Data: entry}))
				}
				next, err := j.Append(ctx, stream, seq, []journal.Event{{Type: "E", Data: event}}, opts...)
				if err != nil {
					b.Error(err)
					return
				}
				seq = next
				if seq == appendsPerOrder {
					seq = 0
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu1, ok := processCPU(); ok && cpuKnown {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	}
}
