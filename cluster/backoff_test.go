package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

// TestRequestBacksOff: a request to an identity whose owner refuses every activation retries until its deadline,
// and the number of attempts is what the back-off bounds allow: at most as many as the shortest delays
// (RetryBackoffMin doubling up to RetryBackoffMax, halved by the jitter) fit in the time it ran, so a request
// that retried without waiting (hundreds of attempts) fails the test; and it retried at all.
func TestRequestBacksOff(t *testing.T) {
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
	defer n.Kill() // its placement actor is replaced: a graceful stop would wait DrainTimeout for it
	// Replace the placement actor with one that counts and refuses every activation request.
	inc := n.current()
	if err := inc.system.Root.StopFuture(inc.placement).Wait(); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	refuser := actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*pcluster.ActivationRequest); ok {
			attempts.Add(1)
			c.Respond(&pcluster.ActivationResponse{Failed: true})
		}
	})
	if _, err := inc.system.Root.SpawnNamed(refuser, placementName); err != nil {
		t.Fatal(err)
	}

	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	defer rcancel()
	start := time.Now()
	_, err = n.Request(rctx, "refused-1", "k", &pcluster.ActivationRequest{})
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
}
