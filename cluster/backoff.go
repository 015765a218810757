package cluster

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes exponential delays with "equal jitter": attempt n waits a random time in [d/2, d] where
// d = min(max, min*2^n). Half the delay is guaranteed (callers really back off), half is random (callers that
// failed together do not retry together). Safe for concurrent use.
type backoff struct {
	min, max time.Duration
	// jitter returns a random value in [0, n); rand.Int64N unless a test fixes it.
	jitter func(n int64) int64
}

func newBackoff(min, max time.Duration) backoff {
	return backoff{min: min, max: max, jitter: rand.Int64N}
}

// delay returns the wait before retry number attempt (0 for the first retry).
func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(b.jitter(int64(d-half)+1))
}

// wait sleeps for delay(attempt) or until ctx ends, whichever is first; it returns ctx.Err() in the second case.
func (b backoff) wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(b.delay(attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
