package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

func TestBackoffDelays(t *testing.T) {
	b := newBackoff(10*time.Millisecond, 200*time.Millisecond)
	for _, tc := range []struct {
		name   string
		jitter func(int64) int64
	}{
		{"no jitter", func(int64) int64 { return 0 }},
		{"full jitter", func(n int64) int64 { return n - 1 }},
	} {
		b.jitter = tc.jitter
		wantCeil := []time.Duration{10, 20, 40, 80, 160, 200, 200, 200}
		for attempt, ceil := range wantCeil {
			ceil *= time.Millisecond
			d := b.delay(attempt)
			if d < ceil/2 || d > ceil {
				t.Errorf("%s: delay(%d) = %v, want within [%v, %v]", tc.name, attempt, d, ceil/2, ceil)
			}
		}
	}
	// Real randomness stays within bounds and is not constant.
	b = newBackoff(10*time.Millisecond, 200*time.Millisecond)
	seen := map[time.Duration]bool{}
	for range 100 {
		d := b.delay(3)
		if d < 40*time.Millisecond || d > 80*time.Millisecond {
			t.Fatalf("delay(3) = %v, want within [40ms, 80ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("delay(3) took only %d distinct values in 100 draws: no jitter", len(seen))
	}
	// Large attempt numbers do not overflow.
	if d := b.delay(1000); d < 100*time.Millisecond || d > 200*time.Millisecond {
		t.Fatalf("delay(1000) = %v, want within [100ms, 200ms]", d)
	}
}

func TestBackoffWaitHonoursContext(t *testing.T) {
	b := newBackoff(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.wait(ctx, 0); err != context.Canceled {
		t.Fatalf("wait on a cancelled context = %v, want context.Canceled", err)
	}
	b = newBackoff(time.Millisecond, time.Millisecond)
	if err := b.wait(context.Background(), 5); err != nil {
		t.Fatalf("wait = %v", err)
	}
}

// startWithPlacement starts a local node whose placement actor is replaced by placement (the node is killed at
// the end of the test: a graceful stop would wait DrainTimeout for the replaced actor).
func startWithPlacement(t *testing.T, placement actor.ReceiveFunc) (*Node, Config) {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := NewNode(cfg, func() []*pcluster.Kind {
		return []*pcluster.Kind{pcluster.NewKind("k", actor.PropsFromFunc(func(actor.Context) {}))}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	inc := n.current()
	if err := inc.system.Root.StopFuture(inc.placement).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := inc.system.Root.SpawnNamed(actor.PropsFromFunc(placement), placementName); err != nil {
		t.Fatal(err)
	}
	return n, cfg
}

// TestRequestBacksOff: a request to an identity whose owner refuses every activation retries until its deadline,
// and the number of attempts is what the back-off bounds allow: at most as many as the shortest delays
// (RetryBackoffMin doubling up to RetryBackoffMax, halved by the jitter) fit in the time it ran, so a request
// that retried without waiting (hundreds of attempts) fails the test; and it retried at all. Both retry loops
// are run: Node.Request, and the cluster context's RequestFuture that generated grain clients and the edge's
// feed polls use.
func TestRequestBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(n *Node, timeout time.Duration) error
	}{
		{"Request", func(n *Node, timeout time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := n.Request(ctx, "refused-1", "k", &pcluster.ActivationRequest{})
			return err
		}},
		{"RequestFuture", func(n *Node, timeout time.Duration) error {
			f, err := n.Cluster().RequestFuture("refused-1", "k", &pcluster.ActivationRequest{}, pcluster.WithTimeout(timeout))
			if err == nil {
				return fmt.Errorf("resolved a refused identity: future %v", f.PID())
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attempts atomic.Int64
			n, cfg := startWithPlacement(t, func(c actor.Context) {
				if _, ok := c.Message().(*pcluster.ActivationRequest); ok {
					attempts.Add(1)
					c.Respond(&pcluster.ActivationResponse{Failed: true})
				}
			})
			start := time.Now()
			err := tc.call(n, time.Second)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errActivationRefused) {
				t.Fatalf("request: %v, want the deadline with the last attempt refused", err)
			}
			got := int(attempts.Load())
			// Attempt k+1 comes after k waits, each at least half of its back-off step.
			b := newBackoff(cfg.RetryBackoffMin, cfg.RetryBackoffMax)
			b.jitter = func(int64) int64 { return 0 }
			maxAttempts, waited := 1, time.Duration(0)
			for waited+b.delay(maxAttempts-1) <= elapsed {
				waited += b.delay(maxAttempts - 1)
				maxAttempts++
			}
			t.Logf("%d attempts in %v (back-off %v..%v allows at most %d)", got, elapsed.Round(time.Millisecond),
				cfg.RetryBackoffMin, cfg.RetryBackoffMax, maxAttempts)
			if got > maxAttempts {
				t.Errorf("%d attempts in %v: more than the back-off allows (%d)", got, elapsed, maxAttempts)
			}
			if got < 3 {
				t.Errorf("%d attempts in %v: the request did not retry until its deadline", got, elapsed)
			}
		})
	}
}

// timeoutRecorder is a sender context that records the timeout RequestFuture is given.
type timeoutRecorder struct {
	actor.SenderContext
	mu      sync.Mutex
	at      time.Time
	timeout time.Duration
}

func (r *timeoutRecorder) RequestFuture(pid *actor.PID, msg any, timeout time.Duration) *actor.Future {
	r.mu.Lock()
	r.at, r.timeout = time.Now(), timeout
	r.mu.Unlock()
	return r.SenderContext.RequestFuture(pid, msg, timeout)
}

// TestRequestFutureKeepsItsDeadline: when resolving the activation uses up part of a RequestFuture's timeout
// (the owner refuses for 60% of it), the returned future gets only the rest, so the call ends by its deadline.
// It used to get a fresh full timeout: the call's future would then end 1.6 timeouts after the call, beyond
// both bounds checked here (the future's own deadline within a quarter of the timeout of the call's, and the
// error seen before twice the timeout).
func TestRequestFutureKeepsItsDeadline(t *testing.T) {
	const timeout = time.Second
	var mu sync.Mutex
	var silent *actor.PID // an activation that never answers
	var first time.Time
	n, _ := startWithPlacement(t, func(c actor.Context) {
		if _, ok := c.Message().(*pcluster.ActivationRequest); !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < timeout*6/10 {
			c.Respond(&pcluster.ActivationResponse{Failed: true})
			return
		}
		if silent == nil {
			silent = c.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
		}
		c.Respond(&pcluster.ActivationResponse{Pid: silent})
	})
	rec := &timeoutRecorder{SenderContext: n.current().system.Root}
	start := time.Now()
	f, err := n.Cluster().RequestFuture("slow-1", "k", &pcluster.ActivationRequest{},
		pcluster.WithTimeout(timeout), pcluster.WithContext(rec))
	if err != nil {
		t.Fatalf("request future: %v", err)
	}
	_, err = f.Result()
	elapsed := time.Since(start)
	rec.mu.Lock()
	at, got := rec.at, rec.timeout
	rec.mu.Unlock()
	resolved := at.Sub(start)
	t.Logf("resolved after %v, future timeout %v, error after %v", resolved.Round(time.Millisecond),
		got.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	if !errors.Is(err, actor.ErrTimeout) {
		t.Fatalf("future: %v, want a timeout (the activation never answers)", err)
	}
	if resolved < timeout/2 {
		t.Fatalf("resolved after %v: the refusals did not use up part of the timeout", resolved)
	}
	if end := resolved + got; end > timeout+timeout/4 {
		t.Errorf("future runs until %v after the call (resolved after %v, then given %v): beyond its %v deadline",
			end, resolved, got, timeout)
	}
	// The wall-clock check is only a backstop (the bound above is exact without timing): generous, so that a
	// loaded 2-core machine under -race cannot fail it, and still short of the doubled deadline of the old code.
	if elapsed >= 2*timeout {
		t.Errorf("the call ended %v after it began: twice its %v deadline", elapsed, timeout)
	}
}
