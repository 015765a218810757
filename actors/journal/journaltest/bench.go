package journaltest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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
