package cluster

import (
	"context"
	"testing"
	"time"
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
