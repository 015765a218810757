package http

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limits. Expensive routes count against a per-client token bucket of their class; a request that finds the
// bucket empty is answered 429 RATE_LIMITED with Retry-After (whole seconds until a token is back). The client is
// the principal when the request has one, else the remote IP address (the edge trusts no forwarding header).

// limitClass groups routes that share a budget.
type limitClass uint8

const (
	limitNone   limitClass = iota
	limitSearch            // GET /v1/search
	limitOrder             // POST /v1/orders
	limitLogin             // sign-up, sign-in and revocation (POST /v1/customers, /oauth2/authorize, /oauth2/revoke)
	numLimitClasses
)

func (l limitClass) String() string {
	return [...]string{"none", "search", "order", "login"}[l]
}

// RateLimit is a token bucket: Rate requests per second on average, bursts of up to Burst.
type RateLimit struct {
	Rate  float64
	Burst int
}

// limiters keeps one bucket per class and client. Buckets that are full again are forgotten in a sweep once the
// table holds maxClients, so the table stays bounded; when every bucket is busy, new clients share the refusal.
type limiters struct {
	mu         sync.Mutex
	limits     [numLimitClasses]RateLimit
	buckets    map[limiterKey]*rate.Limiter
	maxClients int
}

type limiterKey struct {
	class  limitClass
	client string
}

func newLimiters(search, order, login RateLimit, maxClients int) *limiters {
	l := &limiters{buckets: map[limiterKey]*rate.Limiter{}, maxClients: maxClients}
	l.limits[limitSearch], l.limits[limitOrder], l.limits[limitLogin] = search, order, login
	return l
}

// allow takes a token for client in class at now; when none is left it returns how long until one is.
func (l *limiters) allow(class limitClass, client string, now time.Time) (bool, time.Duration) {
	if class == limitNone {
		return true, 0
	}
	lim := l.limits[class]
	if lim.Rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := limiterKey{class, client}
	b, ok := l.buckets[k]
	if !ok {
		if len(l.buckets) >= l.maxClients {
			l.sweep(now)
		}
		if len(l.buckets) >= l.maxClients {
			return false, time.Second
		}
		b = rate.NewLimiter(rate.Limit(lim.Rate), max(lim.Burst, 1))
		l.buckets[k] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// sweep forgets the buckets that are full (their clients have been quiet long enough to regain every token).
func (l *limiters) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.buckets, k)
		}
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
