package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	h3 "github.com/uber/h3-go/v4"
)

// Sim is one simulation run. Create it with New, then call Run once.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	client *Client
	stats  *Stats
	check  *Checker
	world  *world
	runID  string
	seq    atomic.Uint64 // seeds the per-goroutine random sources

	operators   []TokenSource // per target
	restaurants []*restaurant
	dashers     []*dasher
	customers   []*customer
	idle        chan *customer

	mu     sync.Mutex
	orders map[string]*order

	// ctx ends the feed pollers and workflow goroutines; wg waits for them.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	started                        time.Time // first arrival
	arrivals, placed, failed       atomic.Int64
	delivered, cancelled, rejected atomic.Int64
	endedInWindow                  atomic.Int64
	windowEnd                      atomic.Int64 // unix nanos of the end of the arrival window
}

type restaurant struct {
	n       int
	id      string
	base    string
	tok     TokenSource
	pos     Position
	cuisine string
	cursor  uint64
}

type dasher struct {
	n    int
	id   string
	base string
	tok  TokenSource
	rng  *rand.Rand // used by the dasher's feed goroutine only, under mu

	mu   sync.Mutex
	cell h3.Cell
	pos  Position
	load int // orders accepted or being accepted

	cursor uint64
}

type customer struct {
	n    int
	id   string
	base string
	tok  TokenSource
	pos  Position

	mu      sync.Mutex
	open    int  // orders placed and not ended
	polling bool // the feed poller runs
	dirty   bool // the cart may hold items of a failed arrival
	cursor  uint64
}

// order is what the simulator knows of one order; the restaurant may hear of it before the customer's POST
// returns, so any party may create it.
type order struct {
	id        string
	mu        sync.Mutex
	cust      *customer
	scheduled time.Time
	ready     bool
	assigned  bool
	pickingUp bool
	cancelled bool          // its customer asked to cancel it
	pickedUp  chan struct{} // closed once the restaurant handed the food over
	done      chan struct{} // closed once the order ended (or was cancelled)
	doneOnce  sync.Once
	ended     bool
}

func (o *order) end() { o.doneOnce.Do(func() { close(o.done) }) }

// New prepares a simulation; nothing is sent before Run.
func New(cfg Config) (*Sim, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SpreadLogins && len(cfg.LoginAddrs) == 0 && loopbackTargets(cfg.Targets) {
		cfg.LoginAddrs = LoopbackAddrs((cfg.Customers + cfg.Dashers + loginsPerAddr - 1) / loginsPerAddr)
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, stats: NewStats(), check: NewChecker(), world: newWorld(cfg.Center, cfg.GridRadius),
		orders: map[string]*order{}, runID: strconv.FormatUint(rand.Uint64()%1e10, 36)}
	s.client = NewClient(ClientOptions{InsecureSkipVerify: cfg.InsecureSkipVerify, LoginAddrs: cfg.LoginAddrs, Recorder: s.stats})
	return s, nil
}

// Stats returns the live statistics.
func (s *Sim) Stats() *Stats { return s.stats }

// rng returns a new random source for a goroutine; its choices depend on the seed and the scheduling.
func (s *Sim) rng() *rand.Rand { return rand.New(rand.NewPCG(s.cfg.Seed, 1<<40+s.seq.Add(1))) }

// rngFor returns the random source of party n of a kind: the population is the same for the same seed.
func (s *Sim) rngFor(kind, n int) *rand.Rand {
	return rand.New(rand.NewPCG(s.cfg.Seed, uint64(kind)<<32|uint64(n)))
}

// Kinds of party, for rngFor.
const (
	kindRestaurant = iota + 1
	kindDasher
	kindCustomer
)

func (s *Sim) target(n int) string { return s.cfg.Targets[n%len(s.cfg.Targets)] }

// Run creates the population, schedules arrivals for Config.Duration, waits up to Config.Drain for the orders in
// flight, checks the invariants and returns the report. It returns an error only when the simulation could not
// start (no operator token, no restaurant, dasher or customer could be made).
func (s *Sim) Run(ctx context.Context) (*Report, error) {
	s.ctx, s.stop = context.WithCancel(ctx)
	defer s.stop()
	setupStart := time.Now()
	if err := s.setup(ctx); err != nil {
		return nil, err
	}
	setup := time.Since(setupStart)
	s.log.Info("sim population ready", slog.Int("restaurants", len(s.restaurants)), slog.Int("dashers", len(s.dashers)),
		slog.Int("customers", len(s.customers)), slog.Duration("setup", setup))

	for _, r := range s.restaurants {
		s.goRun(func() { s.restaurantLoop(r) })
	}
	for _, d := range s.dashers {
		s.goRun(func() { s.dasherFeedLoop(d) })
		s.goRun(func() { s.dasherMoveLoop(d) })
	}
	s.waitSearchable(ctx)

	progressDone := make(chan struct{})
	progressStop := make(chan struct{})
	go func() { defer close(progressDone); s.progress(progressStop) }()

	if s.cfg.OnWindow != nil {
		s.cfg.OnWindow(true)
	}
	s.started = time.Now()
	s.schedule(ctx)
	window := time.Since(s.started)
	if s.cfg.OnWindow != nil {
		s.cfg.OnWindow(false)
	}
	s.drain(ctx)
	close(progressStop)
	<-progressDone
	total := time.Since(s.started)

	s.stop()
	s.wg.Wait()
	s.finalSweep(ctx)
	s.client.CloseIdle()
	return s.report(setup, window, total), nil
}

func (s *Sim) goRun(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// ---- Setup ----

func (s *Sim) setup(ctx context.Context) error {
	for i := range s.cfg.Targets {
		if s.cfg.NoAuth {
			s.operators = append(s.operators, StaticToken(""))
			continue
		}
		op := s.client.NewClientCredentialsSource(s.target(i), s.cfg.OperatorID, s.cfg.OperatorSecret)
		if _, err := op.Token(ctx); err != nil {
			return fmt.Errorf("operator token from %s: %w", s.target(i), err)
		}
		s.operators = append(s.operators, op)
	}
	rs := parallel(ctx, s.cfg.Restaurants, s.cfg.SetupConcurrency, func(i int) *restaurant {
		r, err := s.newRestaurant(ctx, i)
		if err != nil {
			s.log.Warn("sim restaurant setup failed", slog.Int("n", i), slog.Any("error", err))
			return nil
		}
		return r
	})
	ds := parallel(ctx, s.cfg.Dashers, s.cfg.SetupConcurrency, func(i int) *dasher {
		d, err := s.newDasher(ctx, i)
		if err != nil {
			s.log.Warn("sim dasher setup failed", slog.Int("n", i), slog.Any("error", err))
			return nil
		}
		return d
	})
	cs := parallel(ctx, s.cfg.Customers, s.cfg.SetupConcurrency, func(i int) *customer {
		c, err := s.newCustomer(ctx, i)
		if err != nil {
			s.log.Warn("sim customer setup failed", slog.Int("n", i), slog.Any("error", err))
			return nil
		}
		return c
	})
	s.restaurants, s.dashers, s.customers = rs, ds, cs
	if ctx.Err() != nil {
		return ctx.Err()
	}
	_, byCode := s.stats.Errors()
	switch {
	case len(rs) == 0:
		return fmt.Errorf("no restaurant could be created (errors by step and code: %v)", byCode)
	case len(ds) == 0:
		return fmt.Errorf("no dasher could be created and signed in (errors by step and code: %v)", byCode)
	case len(cs) == 0:
		return fmt.Errorf("no customer could sign up and sign in (errors by step and code: %v)", byCode)
	}
	s.idle = make(chan *customer, len(cs))
	for _, c := range cs {
		s.idle <- c
	}
	return nil
}

// parallel runs build(0..n-1) with at most conc at once and returns the non-nil results in order.
func parallel[T any](ctx context.Context, n, conc int, build func(int) *T) []*T {
	out := make([]*T, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = build(i)
		}()
	}
	wg.Wait()
	kept := out[:0]
	for _, v := range out {
		if v != nil {
			kept = append(kept, v)
		}
	}
	return kept
}

func (s *Sim) newRestaurant(ctx context.Context, n int) (*restaurant, error) {
	rng := s.rngFor(kindRestaurant, n)
	base := s.target(n)
	op := s.operators[n%len(s.operators)]
	// Restaurants and dashers are dealt to the cells in turn, so that a population at least as large as the city
	// covers every cell; customers live anywhere.
	cell := s.world.cells[n%len(s.world.cells)]
	r := &restaurant{n: n, base: base, pos: pointIn(rng, cell), cuisine: s.world.cuisines[n%len(s.world.cuisines)]}
	err := s.retry(func(key string) (err error) {
		r.id, err = s.client.CreateRestaurant(ctx, base, op, key, fmt.Sprintf("%s %s %d", titleCase(r.cuisine), "Kitchen", n), r.cuisine, r.pos)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.tok = op
	if !s.cfg.NoAuth {
		var cid, secret string
		err := s.retry(func(string) (err error) {
			cid, secret, err = s.client.CreateStaffClient(ctx, base, op, r.id)
			return err
		})
		if err != nil {
			return nil, err
		}
		r.tok = s.client.NewClientCredentialsSource(base, cid, secret)
	}
	menu := s.world.menu(rng, r.cuisine)
	if err := s.retry(func(string) error { return s.client.PutMenu(ctx, base, r.tok, r.id, menu) }); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Sim) newDasher(ctx context.Context, n int) (*dasher, error) {
	rng := s.rngFor(kindDasher, n)
	base := s.target(n)
	d := &dasher{n: n, base: base, rng: rng, cell: s.world.cells[n%len(s.world.cells)]}
	d.pos = pointIn(rng, d.cell)
	email, password := fmt.Sprintf("sim-%s-d%d@example.com", s.runID, n), "sim-password-"+s.runID
	err := s.retry(func(key string) (err error) {
		d.id, err = s.client.CreateDasher(ctx, base, s.operators[n%len(s.operators)], key, fmt.Sprintf("Dasher %d", n), email, password, s.cfg.DasherCapacity)
		return err
	})
	if err != nil {
		return nil, err
	}
	if d.tok, err = s.signIn(ctx, base, s.cfg.Customers+n, email, password); err != nil {
		return nil, err
	}
	if err := s.retry(func(string) error { return s.client.DasherOnline(ctx, base, d.tok, true, d.pos) }); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Sim) newCustomer(ctx context.Context, n int) (*customer, error) {
	rng := s.rngFor(kindCustomer, n)
	base := s.target(n)
	c := &customer{n: n, base: base, pos: pointIn(rng, s.world.randomCell(rng))}
	email, password := fmt.Sprintf("sim-%s-c%d@example.com", s.runID, n), "sim-password-"+s.runID
	err := s.retry(func(key string) (err error) {
		c.id, err = s.client.SignUp(ctx, base, n/loginsPerAddr, key, fmt.Sprintf("Customer %d", n), email, password, "+1 415 555 0100")
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.tok, err = s.signIn(ctx, base, n, email, password); err != nil {
		return nil, err
	}
	if err := s.retry(func(string) error {
		return s.client.SetAddress(ctx, base, c.tok, fmt.Sprintf("%d Market St", 1+n), "San Francisco", "94105", c.pos)
	}); err != nil {
		return nil, err
	}
	if err := s.retry(func(string) error {
		return s.client.SetPaymentMethod(ctx, base, c.tok, "4242424242424242", 12, time.Now().Year()+3, "123")
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Sim) signIn(ctx context.Context, base string, n int, email, password string) (TokenSource, error) {
	if s.cfg.NoAuth {
		return StaticToken(""), nil
	}
	var t Token
	err := s.retry(func(string) (err error) {
		t, err = s.client.SignIn(ctx, base, n/loginsPerAddr, email, password)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.client.NewSignedInSource(base, t), nil
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// waitSearchable waits (up to 20 s) until a search finds the first restaurant: restaurants list themselves with
// their areas asynchronously, and arrivals before that would find nothing.
func (s *Sim) waitSearchable(ctx context.Context) {
	r, c := s.restaurants[0], s.customers[0]
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		hits, err := s.client.Search(ctx, c.base, c.tok, []string{r.cuisine}, r.pos)
		if err == nil && len(hits) > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.log.Warn("sim search finds no restaurant yet; starting anyway")
}

// ---- Arrivals (open loop) ----

// schedule starts one arrival per scheduled time, without waiting for earlier ones: the schedule is the clock's,
// and each arrival's latency is measured from its scheduled time.
func (s *Sim) schedule(ctx context.Context) {
	rng := s.rng()
	start := s.started
	end := start.Add(s.cfg.Duration)
	s.windowEnd.Store(end.UnixNano())
	next := start
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := 0; ; k++ {
		if s.cfg.Poisson {
			next = next.Add(time.Duration(rng.ExpFloat64() / s.cfg.Rate * float64(time.Second)))
		} else {
			next = start.Add(time.Duration(float64(k) / s.cfg.Rate * float64(time.Second)))
		}
		if !next.Before(end) {
			break
		}
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		s.arrivals.Add(1)
		at := next
		s.goRun(func() { s.arrive(at) })
	}
	if d := time.Until(end); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// arrive is one customer's visit: take the customer idle the longest, search, fill the cart, order.
func (s *Sim) arrive(at time.Time) {
	var c *customer
	select {
	case c = <-s.idle:
	default:
		s.stats.Count("SIM_NO_IDLE_CUSTOMER")
		select {
		case c = <-s.idle:
		case <-s.ctx.Done():
			s.failed.Add(1)
			return
		}
		s.stats.Observe("arrival.customer_wait", time.Since(at))
	}
	taken := time.Now()
	ok := s.visit(c, at)
	if !ok {
		s.failed.Add(1)
	}
	// The customer's next visit starts CustomerGap after this one did at the earliest (the edge limits each
	// customer's orders by the clock of its requests).
	if d := time.Until(taken.Add(s.cfg.CustomerGap)); d > 0 {
		time.AfterFunc(d, func() { s.idle <- c })
	} else {
		s.idle <- c
	}
}

func (s *Sim) visit(c *customer, at time.Time) bool {
	ctx, rng := s.ctx, s.rng()
	c.mu.Lock()
	dirty := c.dirty
	c.mu.Unlock()
	if dirty {
		if err := s.client.ClearCart(ctx, c.base, c.tok); err != nil {
			return false
		}
		c.mu.Lock()
		c.dirty = false
		c.mu.Unlock()
	}
	// A craving for the cuisine of a random restaurant (popular cuisines are searched more); when nothing near
	// serves it, whatever the nearest restaurant cooks.
	hit, err := s.search(c, rng, s.restaurants[rng.IntN(len(s.restaurants))].cuisine)
	if err != nil {
		return false
	}
	if hit == nil {
		nearest, err := s.client.Search(ctx, c.base, c.tok, nil, c.pos)
		if err != nil {
			return false
		}
		if len(nearest) > 0 && nearest[0].Cuisine != "" {
			if hit, err = s.search(c, rng, nearest[0].Cuisine); err != nil {
				return false
			}
		}
	}
	if hit == nil {
		s.stats.Count("SIM_NO_RESTAURANT_FOUND")
		return false
	}
	lines := 1 + rng.IntN(min(2, len(hit.Items)))
	for _, i := range rng.Perm(len(hit.Items))[:lines] {
		if err := s.client.AddToCart(ctx, c.base, c.tok, hit.RestaurantID, hit.Items[i].MenuItemID, 1+rng.IntN(2)); err != nil {
			s.markDirty(c)
			return false
		}
	}
	placed, err := s.client.PlaceOrder(ctx, c.base, c.tok)
	if err != nil {
		s.markDirty(c)
		return false
	}
	s.stats.Observe("arrival.to_placed", time.Since(at))
	s.placed.Add(1)
	s.check.Placed(placed.ID)
	o := s.order(placed.ID)
	o.mu.Lock()
	o.cust, o.scheduled = c, at
	o.mu.Unlock()

	c.mu.Lock()
	c.open++
	startPoller := !c.polling
	c.polling = true
	c.mu.Unlock()
	if startPoller {
		s.goRun(func() { s.customerFeedLoop(c) })
	}
	if rng.Float64() < s.cfg.CancelShare {
		delay := time.Duration(rng.Float64() * float64(s.cfg.PrepTime))
		s.goRun(func() { s.cancelLater(c, o, delay) })
	}
	return true
}

// search picks one of the three most relevant restaurants that list items for the term (nil when none does).
func (s *Sim) search(c *customer, rng *rand.Rand, term string) (*SearchHit, error) {
	hits, err := s.client.Search(s.ctx, c.base, c.tok, []string{term}, c.pos)
	if err != nil {
		return nil, err
	}
	var usable []SearchHit
	for _, h := range hits {
		if len(h.Items) > 0 {
			usable = append(usable, h)
		}
	}
	if len(usable) == 0 {
		return nil, nil
	}
	return &usable[rng.IntN(min(3, len(usable)))], nil
}

func (s *Sim) markDirty(c *customer) {
	c.mu.Lock()
	c.dirty = true
	c.mu.Unlock()
}

func (s *Sim) cancelLater(c *customer, o *order, delay time.Duration) {
	select {
	case <-time.After(delay):
	case <-o.done:
		return
	case <-s.ctx.Done():
		return
	}
	o.mu.Lock()
	o.cancelled = true
	o.mu.Unlock()
	err := s.retry(func(key string) error { return s.client.CancelOrder(s.ctx, c.base, c.tok, o.id, key) })
	if hasCode(err, "ORDER_NOT_CANCELLABLE") {
		s.stats.Count("SIM_CANCEL_TOO_LATE")
	}
}

// order returns the simulator's record of an order, creating it on first sight.
func (s *Sim) order(id string) *order {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		o = &order{id: id, pickedUp: make(chan struct{}), done: make(chan struct{})}
		s.orders[id] = o
	}
	return o
}

// retried are the codes of failures that may pass: transport failures, an overloaded or joining node, rate
// limits, a duplicate still in flight, a sign-in the node could not check in time.
var retried = []string{CodeNetwork, CodeTimeout, "UNAVAILABLE", "NOT_READY", "RATE_LIMITED", "IDEMPOTENCY_KEY_IN_USE",
	"HTTP_502", "HTTP_503", "OAUTH_SERVER_ERROR", "OAUTH_TEMPORARILY_UNAVAILABLE"}

// retry runs a step up to 6 times (over about 6 s) with the same Idempotency-Key while it fails transiently.
func (s *Sim) retry(step func(key string) error) error {
	key := newKey()
	var err error
	for attempt := range 6 {
		if err = step(key); err == nil || !hasCode(err, retried...) {
			return err
		}
		select {
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		case <-s.ctx.Done():
			return err
		}
	}
	return err
}

// jitter returns d ±50%.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rng.Float64()))
}

// ---- Feeds ----

// follow long-polls a feed from *cursor until stop says so or the run ends, checking every page and handing each
// entry to handle. Failed polls back off briefly.
func (s *Sim) follow(base string, tok TokenSource, path, name string, cursor *uint64, stop func() bool, handle func(FeedEntry)) {
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil && !stop() {
		page, err := s.client.Poll(s.ctx, base, tok, path, *cursor, s.cfg.PollWait)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		s.observePage(name, page)
		for _, e := range page.Entries {
			handle(e)
		}
		if page.NextCursor > *cursor {
			*cursor = page.NextCursor
		}
	}
}

func (s *Sim) observePage(name string, page FeedPage) {
	s.check.Page(name, page)
	now := time.Now()
	for _, e := range page.Entries {
		if !e.At.IsZero() {
			s.stats.Observe("feed.delivery", now.Sub(e.At))
		}
	}
}

func (s *Sim) restaurantLoop(r *restaurant) {
	rng := s.rng()
	var rngMu sync.Mutex
	s.follow(r.base, r.tok, RestaurantFeed(r.id), "restaurant/"+r.id, &r.cursor, func() bool { return false }, func(e FeedEntry) {
		o := s.order(e.OrderID)
		switch e.Type {
		case "ORDER_PLACED":
			rngMu.Lock()
			reject, prep := rng.Float64() < s.cfg.RejectShare, jitter(rng, s.cfg.PrepTime)
			rngMu.Unlock()
			s.goRun(func() { s.kitchen(r, o, reject, prep) })
		case "DASHER_ASSIGNED":
			o.mu.Lock()
			o.assigned = true
			o.mu.Unlock()
			s.maybePickUp(r, o)
		case "ORDER_CANCELLED", "ORDER_REJECTED", "ORDER_DELIVERED":
			o.end()
		}
	})
}

// kitchen is a restaurant's work on one order: accept (or reject), cook, mark ready.
func (s *Sim) kitchen(r *restaurant, o *order, reject bool, prep time.Duration) {
	act := func(a RestaurantAction) error { return s.kitchenStep(r, o, a) }
	if reject {
		_ = act(ActReject)
		return
	}
	if err := act(ActAccept); err != nil {
		return // cancelled meanwhile (FAILED_PRECONDITION), or failing: the order's SLA timer ends it
	}
	select {
	case <-time.After(prep):
	case <-o.done:
		return
	case <-s.ctx.Done():
		return
	}
	if err := act(ActReady); err != nil {
		return
	}
	o.mu.Lock()
	o.ready = true
	o.mu.Unlock()
	s.maybePickUp(r, o)
}

// kitchenStep is one of the restaurant's steps on an order (retried); a refusal because the customer cancelled
// meanwhile is also counted as SIM_STEP_AFTER_CANCEL, so that the report tells it from a real fault.
func (s *Sim) kitchenStep(r *restaurant, o *order, a RestaurantAction) error {
	err := s.retry(func(key string) error { return s.client.Restaurant(s.ctx, r.base, r.tok, r.id, o.id, a, key) })
	if hasCode(err, "FAILED_PRECONDITION") {
		o.mu.Lock()
		cancelled := o.cancelled
		o.mu.Unlock()
		if cancelled {
			s.stats.Count("SIM_STEP_AFTER_CANCEL")
		}
	}
	return err
}

// maybePickUp hands the food over once it is ready and a dasher is assigned (the dasher is at the counter: the
// simulator tells the dasher's goroutine in process, as the two people would meet).
func (s *Sim) maybePickUp(r *restaurant, o *order) {
	o.mu.Lock()
	if !o.ready || !o.assigned || o.pickingUp {
		o.mu.Unlock()
		return
	}
	o.pickingUp = true
	o.mu.Unlock()
	s.goRun(func() {
		if err := s.kitchenStep(r, o, ActPickedUp); err == nil {
			close(o.pickedUp)
		}
	})
}

func (s *Sim) dasherFeedLoop(d *dasher) {
	s.follow(d.base, d.tok, DasherFeed, "dasher/"+d.id, &d.cursor, func() bool { return false }, func(e FeedEntry) {
		switch e.Type {
		case "DELIVERY_OFFERED":
			d.mu.Lock()
			decline := d.rng.Float64() < s.cfg.DeclineShare || d.load >= s.cfg.DasherCapacity
			if !decline {
				d.load++
			}
			d.mu.Unlock()
			s.goRun(func() { s.offer(d, s.order(e.OrderID), decline) })
		case "DASHER_OFFLINE":
			s.goRun(func() {
				d.mu.Lock()
				p := d.pos
				d.mu.Unlock()
				_ = s.retry(func(string) error { return s.client.DasherOnline(s.ctx, d.base, d.tok, true, p) })
			})
		}
	})
}

// offer is a dasher's answer to one offer, and the delivery when it gets the order.
func (s *Sim) offer(d *dasher, o *order, decline bool) {
	act := func(a DasherAction) error {
		return s.retry(func(key string) error { return s.client.Dasher(s.ctx, d.base, d.tok, o.id, a, key) })
	}
	if decline {
		_ = act(ActDeclineOffer)
		return
	}
	defer func() {
		d.mu.Lock()
		d.load--
		d.mu.Unlock()
	}()
	if err := act(ActAcceptOffer); err != nil {
		return // OFFER_TAKEN, OFFER_EXPIRED: another dasher has it, or it ended
	}
	s.check.Assigned(o.id, d.id)
	select {
	case <-o.pickedUp:
	case <-o.done:
		return
	case <-s.ctx.Done():
		return
	}
	d.mu.Lock()
	travel := jitter(d.rng, s.cfg.TravelTime)
	d.mu.Unlock()
	select {
	case <-time.After(travel):
	case <-s.ctx.Done():
		return
	}
	if err := act(ActDelivered); err == nil {
		o.mu.Lock()
		c := o.cust
		o.mu.Unlock()
		if c != nil { // the dasher is now at the customer's door
			d.mu.Lock()
			d.pos, d.cell = c.pos, h3.LatLngToCell(h3.NewLatLng(c.pos.Lat, c.pos.Lng), cellResolution)
			if !s.world.inWorld[d.cell] {
				d.cell = s.world.randomCell(d.rng)
			}
			d.mu.Unlock()
		}
	}
}

// dasherMoveLoop moves an idle dasher to a neighbouring cell every MoveEvery (jittered).
func (s *Sim) dasherMoveLoop(d *dasher) {
	rng := s.rng()
	for {
		select {
		case <-time.After(jitter(rng, s.cfg.MoveEvery)):
		case <-s.ctx.Done():
			return
		}
		d.mu.Lock()
		if d.load > 0 {
			d.mu.Unlock()
			continue
		}
		d.cell = s.world.neighbour(rng, d.cell)
		d.pos = pointIn(rng, d.cell)
		p := d.pos
		d.mu.Unlock()
		_ = s.client.DasherMove(s.ctx, d.base, d.tok, p)
	}
}

// customerFeedLoop follows a customer's feed while the customer has orders in flight.
func (s *Sim) customerFeedLoop(c *customer) {
	stop := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.open == 0 {
			c.polling = false
			return true
		}
		return false
	}
	s.follow(c.base, c.tok, CustomerFeed, "customer/"+c.id, &c.cursor, stop, func(e FeedEntry) { s.customerEntry(c, e) })
	if s.ctx.Err() != nil {
		c.mu.Lock()
		c.polling = false
		c.mu.Unlock()
	}
}

func (s *Sim) customerEntry(c *customer, e FeedEntry) {
	s.check.CustomerEntry(e)
	status, ok := endings[e.Type]
	if !ok {
		return
	}
	o := s.order(e.OrderID)
	o.mu.Lock()
	already := o.ended
	o.ended = true
	scheduled := o.scheduled
	o.mu.Unlock()
	if already {
		return
	}
	o.end()
	switch status {
	case "DELIVERED":
		s.delivered.Add(1)
		if !scheduled.IsZero() {
			s.stats.Observe("lifecycle.delivered", time.Since(scheduled))
		}
	case "CANCELLED":
		s.cancelled.Add(1)
	case "REJECTED":
		s.rejected.Add(1)
	}
	if time.Now().UnixNano() <= s.windowEnd.Load() {
		s.endedInWindow.Add(1)
	}
	c.mu.Lock()
	c.open--
	c.mu.Unlock()
}

// ---- The end ----

// drain waits until every placed order ended, or Config.Drain passed.
func (s *Sim) drain(ctx context.Context) {
	deadline := time.Now().Add(s.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s.placed.Load() == s.delivered.Load()+s.cancelled.Load()+s.rejected.Load() && s.arrivalsSettled() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arrivalsSettled reports whether every arrival has placed its order or failed.
func (s *Sim) arrivalsSettled() bool { return s.arrivals.Load() == s.placed.Load()+s.failed.Load() }

// finalSweep reads the status of every placed order that did not end in its customer's feed; for those that did
// end, it reads the customer feed once more (the entry may have been on its way when the pollers stopped).
func (s *Sim) finalSweep(ctx context.Context) {
	s.mu.Lock()
	var open []*order
	for _, o := range s.orders {
		o.mu.Lock()
		if o.cust != nil && !o.ended {
			open = append(open, o)
		}
		o.mu.Unlock()
	}
	s.mu.Unlock()
	catchUp := map[*customer]bool{}
	for _, o := range open {
		status, err := s.client.OrderStatus(ctx, o.cust.base, o.cust.tok, o.id)
		s.check.Final(o.id, status, err == nil)
		if err == nil && IsEndingStatus(status) {
			catchUp[o.cust] = true
		}
	}
	for c := range catchUp {
		page, err := s.client.Poll(ctx, c.base, c.tok, CustomerFeed, c.cursor, 0)
		if err != nil {
			continue
		}
		s.check.Page("customer/"+c.id, page)
		for _, e := range page.Entries {
			s.check.CustomerEntry(e)
		}
		c.cursor = max(c.cursor, page.NextCursor)
	}
}

// progress prints one line per period until stop closes.
func (s *Sim) progress(stop <-chan struct{}) {
	if s.cfg.Progress == nil {
		<-stop
		return
	}
	t := time.NewTicker(s.cfg.ProgressEvery)
	defer t.Stop()
	var lastEnded int64
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ended := s.delivered.Load() + s.cancelled.Load() + s.rejected.Load()
			rate := float64(ended-lastEnded) / now.Sub(last).Seconds()
			lastEnded, last = ended, now
			byCode, _ := s.stats.Errors()
			var errs, unexpected int64
			for code, n := range byCode {
				errs += n
				if _, ok := expected[code]; !ok {
					unexpected += n
				}
			}
			p := s.stats.Step("arrival.to_placed")
			fmt.Fprintf(s.cfg.Progress, "sim %5.1fs  arrivals %d  placed %d  ended %d (%.1f/s: delivered %d, cancelled %d, rejected %d)  in flight %d  errors %d (unexpected %d)  placement p99 %.1f ms\n",
				now.Sub(s.started).Seconds(), s.arrivals.Load(), s.placed.Load(), ended, rate, s.delivered.Load(), s.cancelled.Load(),
				s.rejected.Load(), s.placed.Load()-ended, errs, unexpected, p.P99)
		}
	}
}

// report assembles the Report.
func (s *Sim) report(setup, window, total time.Duration) *Report {
	byCode, byStep := s.stats.Errors()
	outcome := s.check.Check()
	r := &Report{
		Targets: s.cfg.Targets, Restaurants: len(s.restaurants), Dashers: len(s.dashers), Customers: len(s.customers),
		TargetRate: s.cfg.Rate, Duration: round3(window.Seconds()), Elapsed: round3(total.Seconds()), Setup: round3(setup.Seconds()),
		Arrivals: s.arrivals.Load(), Placed: s.placed.Load(), FailedArrivals: s.failed.Load(),
		Delivered: s.delivered.Load(), Cancelled: s.cancelled.Load(), Rejected: s.rejected.Load(),
		Steps: s.stats.Steps(), Errors: byCode, ErrorsByStep: byStep, Invariants: outcome,
	}
	if window > 0 {
		r.ArrivalRate = round3(float64(r.Arrivals) / window.Seconds())
		r.LifecyclesPerSec = round3(float64(s.endedInWindow.Load()) / window.Seconds())
	}
	if total > 0 {
		r.LifecyclesPerSecAll = round3(float64(r.Delivered+r.Cancelled+r.Rejected) / total.Seconds())
	}
	return r
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
