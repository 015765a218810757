package actors

// Area: one actor per H3 cell (identity = the cell, see AreaOf; stream "area/<cell>"). It knows the online dashers
// of its cell and of the neighbouring cells (they register with all of them, see Dasher), dispatches the orders
// accepted by the restaurants of its cell, and holds the search index of the restaurants in its cell and the
// neighbours (they list themselves the same way).
//
// Dispatch of one order. "Radius" is the cell alone (wave 1) or the cell and its neighbours (later waves). An
// eligible dasher is online within the radius, has free capacity above its open offers in this area, holds no
// open offer of this order and was not excluded from it; candidates rank by fewer earlier offers of this order,
// then distance to the pickup, then id.
//
//	dispatch  input                    decision                                               events (→ sends)
//	--------  -----------------------  -----------------------------------------------------  --------------------------------------------
//	none      OrderAccepted            start; wave 1 = the OpeningWaveSize nearest eligible   DispatchStarted, OffersMade
//	                                   in the cell, none there → wave 2 at once; auto-assign  (→ DeliveryOffered to each), TimerSet
//	                                   mode: one dasher, auto_assigned
//	open      offer expired (Wake)     close it and tell the dasher; no open offer left →     OfferClosed EXPIRED (→ OfferExpired),
//	                                   next wave of WaveSize, widened to the neighbours       OffersMade (→ DeliveryOffered), TimerSet
//	open      OfferDeclined (open)     close it, exclude the dasher, offer the next eligible  OfferClosed DECLINED, OffersMade (→ …)
//	                                   dasher of the radius; none and no offer left → widen
//	open      OfferDeclined (open,     the same without excluding the dasher (it may get the   OfferClosed RETURNED, OffersMade (→ …)
//	          unavailable)             order in a later wave)
//	open      DasherAssigned           end; the dasher's offer is accepted, the others        OfferClosed ACCEPTED|WITHDRAWN
//	                                   withdrawn                                              (→ OfferWithdrawn), DispatchEnded
//	open      OrderCancelled/Rejected  end; every open offer withdrawn                        OfferClosed WITHDRAWN (→ OfferWithdrawn),
//	                                                                                          DispatchEnded cancelled
//	ended     OrderCancelled/Rejected  remember it (a later release does not reopen)          DispatchEnded cancelled
//	ended     DasherReleased of the    reopen without that dasher; offer again                DispatchReopened, OffersMade (→ …)
//	          assigned dasher, not
//	          cancelled
//	any       DasherStatusChanged      record or forget the dasher; every open dispatch       DasherStatusChanged, OffersMade (→ …)
//	                                   without an open offer is offered to the eligible
//	ended     any other order input    ignore (late)                                          -
//	none      any other order input    ignore (unknown order)                                 -
//	open      OrderAccepted            ignore (duplicate)                                     -
//
// Other inputs: RestaurantListed → stored in the search index; SetAutoAssign → AutoAssignSet (nothing when
// unchanged); Get and Search read. An area exists as soon as something is delivered to it; reads never write.
// The one timer, "offers", is due at the earliest open offer's expiry (TimerSet), or cleared when no offer is open.
//
// Wave sizes (WorkflowConfig): the first wave that makes offers (a dispatch that never offered anyone, also when
// it waited for a dasher) offers OpeningWaveSize dashers, the nearest few: WaveSize (3) by default. An operator may
// set it to 1: then only one dasher races per order at first (a wave of several makes all but one of those who
// accept lose the race, a Dasher → Order call and journal writes each), and a decline moves on to the next dasher
// at once. Every later wave — the offers expired, or a release reopened the dispatch — offers WaveSize, so an
// order nobody answers reaches more dashers at once.

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// Kind name of the Area grain.
const KindArea = "Area"

// areaOffersTimer is the Area's timer: due at the earliest expiry of an open offer.
const areaOffersTimer = "offers"

// MaxEndedDispatches is how many ended dispatches an area keeps (AreaState.ended, oldest first). They are kept
// because messages about a dispatch still arrive after its end: a DasherReleased reopens it without that dasher,
// an OrderCancelled after the assignment must stop a later reopening, and a redelivered OrderAccepted or a late
// OfferDeclined / DasherAssigned must be recognised as late rather than start a new dispatch. The bound keeps the
// state (and every snapshot) small; the oldest are forgotten. Decisions never copy the list (see areaDecision).
const MaxEndedDispatches = 256

// Area is the Area grain.
type Area struct {
	grain[*messages.AreaState]
	index *areaIndex // derived from the state, kept in step by apply (see areaIndex); nil until the first decision
}

var _ messages.Area = (*Area)(nil)

// areaActor is what the Area kind spawns: the generated dispatcher plus the node's Deps (see hosted).
type areaActor struct {
	messages.AreaActor
	hosted
}

func (a *areaActor) Receive(ctx actor.Context) { a.receive(ctx, a.AreaActor.Receive) }

// Init loads the area's stream and installs its decisions on delivered messages and on its timer.
func (a *Area) Init(ctx pcluster.GrainContext) {
	self := ctx.Identity()
	a.activate(ctx, KindArea, &messages.AreaState{}, a.apply,
		withDeliver(func(s *messages.AreaState, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
			return decideDeliverArea(self, s, a.indexOf(s), payload, a.deps.Workflow, now)
		}),
		withTimers(func(s *messages.AreaState, name string, now time.Time) ([]proto.Message, error) {
			return decideAreaTimer(self, s, a.indexOf(s), name, a.deps.Workflow, now)
		}))
}

// apply folds an event into the state and keeps the index in step with it.
func (a *Area) apply(s *messages.AreaState, event proto.Message) error {
	if err := applyArea(s, event); err != nil {
		a.index = nil // the state may be half changed: rebuild the index from it if it is used again
		return err
	}
	if a.index != nil {
		a.index.applied(s, event)
	}
	return nil
}

// indexOf returns the index of s, built from s the first time (the activation loaded s without it: a snapshot is
// restored without the fold).
func (a *Area) indexOf(s *messages.AreaState) *areaIndex {
	if a.index == nil || a.index.state != s {
		a.index = newAreaIndex(s)
	}
	return a.index
}

// SetAutoAssign turns auto-assign mode on or off for the dispatches that start afterwards.
func (a *Area) SetAutoAssign(req *messages.SetAutoAssign, ctx pcluster.GrainContext) (*messages.AreaView, error) {
	if err := a.known(ctx); err != nil {
		return nil, err
	}
	err := a.command(ctx, req.GetCommandId(), req, func(s *messages.AreaState, _ time.Time) ([]proto.Message, error) {
		return decideSetAutoAssign(s, req)
	})
	if err != nil {
		return nil, err
	}
	return areaView(ctx.Identity(), a.state()), nil
}

// Get answers the view (empty for an area that never heard of anything).
func (a *Area) Get(_ *messages.GetArea, ctx pcluster.GrainContext) (*messages.AreaView, error) {
	if err := a.known(ctx); err != nil {
		return nil, err
	}
	defer a.stopIfEmpty(ctx)
	return areaView(ctx.Identity(), a.state()), nil
}

// Search finds restaurants for a customer at req.position, which must lie in this area.
func (a *Area) Search(req *messages.SearchRestaurants, ctx pcluster.GrainContext) (*messages.SearchResults, error) {
	if err := a.known(ctx); err != nil {
		return nil, err
	}
	if err := validateSearch(req); err != nil {
		return nil, grainError(err)
	}
	if AreaOf(req.GetPosition()) != ctx.Identity() {
		return nil, grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "the position is not in area %s (ask AreaOf(position))", ctx.Identity()))
	}
	defer a.stopIfEmpty(ctx)
	return search(a.state().GetRestaurants(), req), nil
}

// known refuses requests to an identity that is not an area, and requests the activation cannot serve.
func (a *Area) known(ctx pcluster.GrainContext) error {
	if err := a.query(); err != nil {
		return err
	}
	if !ValidArea(ctx.Identity()) {
		a.stop(ctx)
		return grainError(refuse(messages.ErrorReason_NOT_FOUND, "%q is not an area", ctx.Identity()))
	}
	return nil
}

// stopIfEmpty stops an activation whose stream holds nothing (reads of quiet areas leave nothing behind).
func (a *Area) stopIfEmpty(ctx pcluster.GrainContext) {
	if a.entity.seq == 0 {
		a.stop(ctx)
	}
}

// ---- Decisions: pure functions of state (and its index), input and time ----

// decideDeliverArea decides on a message another actor sent to the area self. x is the index of s (nil: built
// here).
func decideDeliverArea(self string, s *messages.AreaState, x *areaIndex, payload proto.Message, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if p, ok := payload.(*messages.RestaurantListed); ok {
		return decideRestaurantListed(s, p)
	}
	d := newAreaDecision(self, s, x, cfg, now)
	var err error
	switch p := payload.(type) {
	case *messages.OrderAccepted:
		err = d.start(p)
	case *messages.OfferDeclined:
		err = d.declined(p)
	case *messages.DasherAssigned:
		err = d.assigned(p)
	case *messages.OrderCancelled:
		err = d.cancelled(p.GetOrderId())
	case *messages.OrderRejected:
		err = d.cancelled(p.GetOrderId())
	case *messages.DasherReleased:
		err = d.released(p)
	case *messages.DasherStatusChanged:
		err = d.dasherStatus(p)
	default:
		return nil, unexpectedPayload(KindArea, payload)
	}
	if err != nil {
		return nil, err
	}
	return d.finish()
}

// decideAreaTimer fires the area's timer (areaOffersTimer): it expires the open offers due at now and sends the
// next waves. The entity removed the timer before (TimerFired), so the decision sets it again while offers stay
// open. x is the index of s (nil: built here).
func decideAreaTimer(self string, s *messages.AreaState, x *areaIndex, name string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if name != areaOffersTimer {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "an area has no timer %q", name)
	}
	d := newAreaDecision(self, s, x, cfg, now)
	d.timer = nil
	for _, id := range d.dueDispatches() {
		if err := d.expire(id); err != nil {
			return nil, err
		}
	}
	return d.finish()
}

// decideSetAutoAssign turns auto-assign mode on or off.
func decideSetAutoAssign(s *messages.AreaState, c *messages.SetAutoAssign) ([]proto.Message, error) {
	if s.GetAutoAssign() == c.GetEnabled() {
		return nil, nil
	}
	return []proto.Message{&messages.AutoAssignSet{Enabled: c.GetEnabled()}}, nil
}

func decideRestaurantListed(s *messages.AreaState, p *messages.RestaurantListed) ([]proto.Message, error) {
	if p.GetRestaurantId() == "" {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "restaurant_id is required")
	}
	if err := checkPosition(p.GetPosition()); err != nil {
		return nil, err
	}
	if old, ok := s.GetRestaurants()[p.GetRestaurantId()]; ok && proto.Equal(old, p) {
		return nil, nil
	}
	return []proto.Message{proto.Clone(p)}, nil
}

// areaDecision accumulates the events of one decision and folds them as it goes, so that each step sees the
// effect of the previous ones (an offer made here makes the dasher busy for the next dispatch). It never changes
// the state it was given nor its index: it reads them through an overlay of what it changed (copy on write per
// entry), so a decision costs what it touches, not the size of the area. It does not replay the ended list: a
// decision never looks at a dispatch again after ending it, so the forgetting of old ended dispatches (applyArea)
// cannot change what it decides.
type areaDecision struct {
	self string
	cfg  WorkflowConfig
	now  time.Time
	s    *messages.AreaState // the state before the decision (read only)
	x    *areaIndex          // its index (read only)

	dashers    map[string]*messages.AreaDasher // dashers this decision recorded (nil: went offline)
	dispatches map[string]*messages.Dispatch   // private copies of the dispatches this decision changed
	busy       map[string]int32                // change of each dasher's open offers in this area

	events []proto.Message
	timer  *timestamppb.Timestamp // the offers timer before the decision
	skip   string                 // a dasher that just returned an offer: not offered again by this decision
}

func newAreaDecision(self string, s *messages.AreaState, x *areaIndex, cfg WorkflowConfig, now time.Time) *areaDecision {
	if x == nil {
		x = newAreaIndex(s)
	}
	return &areaDecision{self: self, cfg: cfg, now: now, s: s, x: x, timer: x.earliest()}
}

// dispatch returns the dispatch of order id as the decision left it so far (nil: unknown).
func (d *areaDecision) dispatch(id string) *messages.Dispatch {
	if disp, ok := d.dispatches[id]; ok {
		return disp
	}
	return d.s.GetDispatches()[id]
}

// knownDasher reports whether the dasher is online in the area as the decision left it so far.
func (d *areaDecision) knownDasher(id string) bool {
	if ad, ok := d.dashers[id]; ok {
		return ad != nil
	}
	_, ok := d.s.GetDashers()[id]
	return ok
}

// load is the number of open offers of this area the dasher holds, as the decision left them so far.
func (d *areaDecision) load(dasher string) int32 { return d.x.busy[dasher] + d.busy[dasher] }

// emit records an event and folds it into the decision's overlay.
func (d *areaDecision) emit(ev proto.Message) error {
	if e, ok := ev.(*messages.DasherStatusChanged); ok {
		if d.dashers == nil {
			d.dashers = make(map[string]*messages.AreaDasher)
		}
		d.dashers[e.GetDasherId()] = areaDasherOf(e) // nil when offline
		d.events = append(d.events, ev)
		return nil
	}
	id := areaEventOrder(ev)
	if id == "" {
		return fmt.Errorf("area: a dispatch decision emitted %s", ev.ProtoReflect().Descriptor().FullName())
	}
	disp, owned := d.dispatches[id]
	if !owned {
		if disp = d.s.GetDispatches()[id]; disp != nil {
			disp = proto.Clone(disp).(*messages.Dispatch)
		}
	}
	if _, started := ev.(*messages.DispatchStarted); !started && disp == nil {
		return fmt.Errorf("area: %s for unknown dispatch %q", ev.ProtoReflect().Descriptor().FullName(), id)
	}
	if d.dispatches == nil {
		d.dispatches = make(map[string]*messages.Dispatch)
		d.busy = make(map[string]int32)
	}
	d.count(disp, -1)
	disp = foldDispatch(disp, ev)
	d.count(disp, 1)
	d.dispatches[id] = disp
	d.events = append(d.events, ev)
	return nil
}

// count adds sign to the load of every dasher holding an open offer of disp.
func (d *areaDecision) count(disp *messages.Dispatch, sign int32) {
	if disp == nil || disp.GetEnded() {
		return
	}
	for _, o := range disp.GetOpen() {
		d.busy[o.GetDasherId()] += sign
	}
}

// send puts payload in the outbox for the actor (kind, id).
func (d *areaDecision) send(kind, id string, payload proto.Message) error {
	ev, err := sendTo(kind, id, payload)
	if err != nil {
		return err
	}
	d.events = append(d.events, ev)
	return nil
}

// finish adds the timer change the decision implies and returns the events.
func (d *areaDecision) finish() ([]proto.Message, error) {
	after := d.earliest()
	switch {
	case after == nil && d.timer != nil:
		d.events = append(d.events, &messages.TimerCleared{Name: areaOffersTimer})
	case after != nil && (d.timer == nil || !after.AsTime().Equal(d.timer.AsTime())):
		d.events = append(d.events, &messages.TimerSet{Name: areaOffersTimer, Due: after})
	}
	return d.events, nil
}

// earliest is the due time of the offers timer after the decision: the earliest expiry of an open offer, or nil.
// The index gives the earliest offer of the dispatches the decision did not touch (it skips at most the open
// offers of those it touched); the touched ones are looked at directly.
func (d *areaDecision) earliest() *timestamppb.Timestamp {
	var first *timestamppb.Timestamp
	var firstAt time.Time
	for _, o := range d.x.dues {
		if _, touched := d.dispatches[o.order]; !touched {
			first, firstAt = o.at, o.due
			break
		}
	}
	for _, disp := range d.dispatches {
		if disp.GetEnded() {
			continue
		}
		for _, o := range disp.GetOpen() {
			if at := o.GetExpiresAt().AsTime(); first == nil || at.Before(firstAt) {
				first, firstAt = o.GetExpiresAt(), at
			}
		}
	}
	return first
}

func (d *areaDecision) start(p *messages.OrderAccepted) error {
	if p.GetOrderId() == "" {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "order_id is required")
	}
	if err := checkPosition(p.GetPickup()); err != nil {
		return err
	}
	if d.dispatch(p.GetOrderId()) != nil {
		return nil // open or ended: this order was dispatched already
	}
	if err := d.emit(&messages.DispatchStarted{
		OrderId:      p.GetOrderId(),
		RestaurantId: p.GetRestaurantId(),
		Pickup:       p.GetPickup(),
		Dropoff:      p.GetDropoff(),
		StartedAt:    timestamppb.New(d.now),
		AutoAssign:   d.s.GetAutoAssign(),
	}); err != nil {
		return err
	}
	return d.nextWave(p.GetOrderId())
}

// nextWave offers an open dispatch without open offers to a new wave: the cell first if it never had a wave, else
// (or if nobody in the cell is eligible) the cell and its neighbours. Nobody eligible: the dispatch waits for a
// dasher to become eligible (dasherStatus), or for the Order's dispatch SLA.
func (d *areaDecision) nextWave(id string) error {
	disp := d.dispatch(id)
	if disp == nil || disp.GetEnded() || len(disp.GetOpen()) > 0 {
		return nil
	}
	wave := disp.GetWave() + 1
	if wave == 1 {
		made, err := d.offer(id, 1, false, d.waveSize(disp))
		if err != nil || made > 0 {
			return err
		}
		wave = 2
	}
	_, err := d.offer(id, wave, true, d.waveSize(disp))
	return err
}

// waveSize is how many dashers the next wave of disp offers it to: one in auto-assign mode, OpeningWaveSize for
// the first wave that makes offers (the dispatch never offered anyone), WaveSize after.
func (d *areaDecision) waveSize(disp *messages.Dispatch) int {
	switch {
	case disp.GetAutoAssign():
		return 1
	case len(disp.GetOffered()) == 0:
		return d.cfg.OpeningWaveSize
	}
	return d.cfg.WaveSize
}

// offer makes up to n offers of order id in wave, within the cell (wide: and its neighbours), and returns how many.
func (d *areaDecision) offer(id string, wave int32, wide bool, n int) (int, error) {
	disp := d.dispatch(id)
	cands := d.candidates(disp, wide, n)
	if len(cands) == 0 {
		return 0, nil
	}
	expires := timestamppb.New(d.now.Add(d.cfg.OfferTTL))
	made := &messages.OffersMade{OrderId: id, Wave: wave}
	for _, c := range cands {
		made.Offers = append(made.Offers, &messages.Offer{
			DasherId: c.id, Wave: wave, DistanceM: c.distance, ExpiresAt: expires, AutoAssigned: disp.GetAutoAssign(),
		})
	}
	if err := d.emit(made); err != nil {
		return 0, err
	}
	for _, o := range made.GetOffers() {
		if err := d.send(KindDasher, o.GetDasherId(), &messages.DeliveryOffered{
			OrderId:      id,
			Area:         d.self,
			DasherId:     o.GetDasherId(),
			Pickup:       disp.GetPickup(),
			Dropoff:      disp.GetDropoff(),
			Wave:         wave,
			DistanceM:    o.GetDistanceM(),
			ExpiresAt:    expires,
			AutoAssigned: o.GetAutoAssigned(),
		}); err != nil {
			return 0, err
		}
	}
	return len(cands), nil
}

type candidate struct {
	id       string
	distance float64
	prior    int32 // earlier offers of this order
}

// before ranks candidates (see the table at the top): fewer earlier offers, then nearer, then by id.
func (c candidate) before(o candidate) bool {
	if c.prior != o.prior {
		return c.prior < o.prior
	}
	if c.distance != o.distance {
		return c.distance < o.distance
	}
	return c.id < o.id
}

// candidates returns the best n eligible dashers for disp, best first (see the table at the top). It keeps only
// the best n while it scans, instead of sorting every eligible dasher.
func (d *areaDecision) candidates(disp *messages.Dispatch, wide bool, n int) []candidate {
	if n <= 0 {
		return nil
	}
	best := make([]candidate, 0, n+1)
	consider := func(id string, ad *messages.AreaDasher) {
		if id == d.skip || (!wide && ad.GetCell() != d.self) || ad.GetFreeCapacity() <= d.load(id) || barred(disp, id) {
			return
		}
		prior := disp.GetOffered()[id]
		if len(best) == n {
			// Full: skip at once a dasher that cannot rank before the last; the exact distance (a cgo call) is
			// computed only for those that may.
			last := best[n-1]
			if prior > last.prior || (prior == last.prior && farBeyond(ad.GetPosition(), disp.GetPickup(), last.distance)) {
				return
			}
		}
		c := candidate{id: id, distance: roundMetres(distanceM(ad.GetPosition(), disp.GetPickup())), prior: prior}
		i := len(best)
		for i > 0 && c.before(best[i-1]) {
			i--
		}
		if i < n {
			best = slices.Insert(best, i, c)
			best = best[:min(len(best), n)]
		}
	}
	for id, ad := range d.s.GetDashers() {
		if _, changed := d.dashers[id]; !changed {
			consider(id, ad)
		}
	}
	for id, ad := range d.dashers {
		if ad != nil {
			consider(id, ad)
		}
	}
	return best
}

// farBeyond reports whether the distance between a and b is surely more than m metres plus the 0.1 m rounding:
// an equirectangular estimate, within 0.1 % of the great-circle distance at a city's scale, is taken with a 1 %
// and 1 m margin, so a dasher it rules out could not have ranked before one at m.
func farBeyond(a, b *messages.Position, m float64) bool {
	const rad = math.Pi / 180
	const earthRadiusM = 6_371_007.180918475 // H3's
	lat1, lat2 := a.GetLat()*rad, b.GetLat()*rad
	dLng := math.Remainder((b.GetLng()-a.GetLng())*rad, 2*math.Pi)
	estimate := earthRadiusM * math.Hypot(dLng*math.Cos((lat1+lat2)/2), lat2-lat1)
	return estimate*0.99-1 > m
}

// barred reports whether dasher may not be offered disp now: it declined it, or holds an open offer of it.
func barred(disp *messages.Dispatch, dasher string) bool {
	return slices.Contains(disp.GetExcluded(), dasher) || hasOpenOffer(disp, dasher)
}

// dueDispatches returns the open dispatches holding an offer due at now, oldest first. It reads the index alone:
// the timer's decision asks before it changes anything.
func (d *areaDecision) dueDispatches() []string {
	var ids []string
	for _, o := range d.x.dues {
		if o.due.After(d.now) {
			break
		}
		ids = append(ids, o.order)
	}
	d.oldestFirst(ids)
	return slices.Compact(ids) // a dispatch with several offers due appears once
}

// waitingDispatches returns the open dispatches without an open offer, oldest first.
func (d *areaDecision) waitingDispatches() []string {
	var ids []string
	for id := range d.x.waiting {
		if _, touched := d.dispatches[id]; !touched {
			ids = append(ids, id)
		}
	}
	for id, disp := range d.dispatches {
		if !disp.GetEnded() && len(disp.GetOpen()) == 0 {
			ids = append(ids, id)
		}
	}
	d.oldestFirst(ids)
	return ids
}

// oldestFirst sorts order ids by the start of their dispatch, then by id.
func (d *areaDecision) oldestFirst(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		if c := d.dispatch(a).GetStartedAt().AsTime().Compare(d.dispatch(b).GetStartedAt().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

// expire closes the offers of order id that are due, tells their dashers, and sends the next wave when none is
// left open.
func (d *areaDecision) expire(id string) error {
	disp := d.dispatch(id)
	var due []string
	for _, o := range disp.GetOpen() {
		if !o.GetExpiresAt().AsTime().After(d.now) {
			due = append(due, o.GetDasherId())
		}
	}
	if len(due) == 0 {
		return nil
	}
	for _, dasher := range due {
		if err := d.emit(&messages.OfferClosed{OrderId: id, DasherId: dasher, Outcome: messages.OfferOutcome_OFFER_OUTCOME_EXPIRED}); err != nil {
			return err
		}
		if err := d.send(KindDasher, dasher, &messages.OfferExpired{OrderId: id, DasherId: dasher, ExpiredAt: timestamppb.New(d.now)}); err != nil {
			return err
		}
	}
	return d.nextWave(id)
}

func (d *areaDecision) declined(p *messages.OfferDeclined) error {
	id := p.GetOrderId()
	disp := d.dispatch(id)
	if disp == nil || disp.GetEnded() || !hasOpenOffer(disp, p.GetDasherId()) {
		return nil // late: the offer expired, or the order found its dasher
	}
	outcome := messages.OfferOutcome_OFFER_OUTCOME_DECLINED
	if p.GetUnavailable() {
		outcome = messages.OfferOutcome_OFFER_OUTCOME_RETURNED
		d.skip = p.GetDasherId()
	}
	if err := d.emit(&messages.OfferClosed{OrderId: id, DasherId: p.GetDasherId(), Outcome: outcome}); err != nil {
		return err
	}
	disp = d.dispatch(id)
	made, err := d.offer(id, disp.GetWave(), disp.GetWave() >= 2, 1)
	if err != nil || made > 0 {
		return err
	}
	return d.nextWave(id)
}

func (d *areaDecision) assigned(p *messages.DasherAssigned) error {
	id := p.GetOrderId()
	disp := d.dispatch(id)
	if disp == nil || disp.GetEnded() {
		return nil
	}
	if err := d.closeAll(id, p.GetDasherId(), "assigned to another dasher"); err != nil {
		return err
	}
	return d.emit(&messages.DispatchEnded{OrderId: id, DasherId: p.GetDasherId()})
}

func (d *areaDecision) cancelled(id string) error {
	disp := d.dispatch(id)
	if disp == nil || disp.GetCancelled() {
		return nil
	}
	if err := d.closeAll(id, "", "the order was cancelled"); err != nil {
		return err
	}
	return d.emit(&messages.DispatchEnded{OrderId: id, DasherId: disp.GetAssignedDasherId(), Cancelled: true})
}

// closeAll closes every open offer of order id: accepted for the dasher `accepted`, withdrawn (and told) for the
// others.
func (d *areaDecision) closeAll(id, accepted, reason string) error {
	for _, o := range d.dispatch(id).GetOpen() {
		dasher := o.GetDasherId()
		if dasher == accepted {
			if err := d.emit(&messages.OfferClosed{OrderId: id, DasherId: dasher, Outcome: messages.OfferOutcome_OFFER_OUTCOME_ACCEPTED}); err != nil {
				return err
			}
			continue
		}
		if err := d.emit(&messages.OfferClosed{OrderId: id, DasherId: dasher, Outcome: messages.OfferOutcome_OFFER_OUTCOME_WITHDRAWN}); err != nil {
			return err
		}
		if err := d.send(KindDasher, dasher, &messages.OfferWithdrawn{OrderId: id, DasherId: dasher, Reason: reason}); err != nil {
			return err
		}
	}
	return nil
}

func (d *areaDecision) released(p *messages.DasherReleased) error {
	id := p.GetOrderId()
	disp := d.dispatch(id)
	if disp == nil || !disp.GetEnded() || disp.GetCancelled() || disp.GetAssignedDasherId() != p.GetDasherId() {
		return nil
	}
	if err := d.emit(&messages.DispatchReopened{OrderId: id, ReleasedDasherId: p.GetDasherId()}); err != nil {
		return err
	}
	return d.nextWave(id)
}

func (d *areaDecision) dasherStatus(p *messages.DasherStatusChanged) error {
	if p.GetDasherId() == "" {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "dasher_id is required")
	}
	if p.GetOnline() {
		if err := checkPosition(p.GetPosition()); err != nil {
			return err
		}
		if !ValidArea(p.GetCell()) {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "cell %q is not an area", p.GetCell())
		}
	} else if !d.knownDasher(p.GetDasherId()) {
		return nil
	}
	if err := d.emit(proto.Clone(p)); err != nil {
		return err
	}
	if !p.GetOnline() || p.GetFreeCapacity() <= 0 {
		return nil
	}
	// Only the dispatches waiting for a dasher may change: the others hold open offers, which nextWave leaves be.
	for _, id := range d.waitingDispatches() {
		if err := d.nextWave(id); err != nil {
			return err
		}
	}
	return nil
}

func hasOpenOffer(disp *messages.Dispatch, dasher string) bool {
	for _, o := range disp.GetOpen() {
		if o.GetDasherId() == dasher {
			return true
		}
	}
	return false
}

// areaEventOrder names the dispatch an area event changes ("" for events about no dispatch).
func areaEventOrder(ev proto.Message) string {
	switch e := ev.(type) {
	case *messages.DispatchStarted:
		return e.GetOrderId()
	case *messages.OffersMade:
		return e.GetOrderId()
	case *messages.OfferClosed:
		return e.GetOrderId()
	case *messages.DispatchEnded:
		return e.GetOrderId()
	case *messages.DispatchReopened:
		return e.GetOrderId()
	}
	return ""
}

// ---- Index ----

// areaIndex is derived from an AreaState and kept beside it by the Area activation (never stored: an activation
// builds it from the loaded state at its first decision, then Area.apply keeps it in step with every event). It
// answers what decisions would otherwise scan the whole area for: the open dispatches and those among them
// waiting for a dasher (no open offer), every open offer by expiry (the offers timer is the first), and the open
// offers each dasher holds. Decisions only read it. Ended dispatches are not in it.
type areaIndex struct {
	state   *messages.AreaState   // the state it describes
	open    map[string][]offerDue // open dispatches by order id → their open offers
	waiting map[string]struct{}   // open dispatches without an open offer
	dues    []offerDue            // every open offer, earliest expiry first (then order, then dasher)
	busy    map[string]int32      // open offers per dasher
}

// offerDue is one open offer in the index. (order, dasher) is unique: a dispatch never offers twice to a dasher
// holding its open offer.
type offerDue struct {
	due    time.Time
	at     *timestamppb.Timestamp // the offer's expires_at (never changed in place)
	order  string
	dasher string
}

func (o offerDue) compare(p offerDue) int {
	if c := o.due.Compare(p.due); c != 0 {
		return c
	}
	if c := strings.Compare(o.order, p.order); c != 0 {
		return c
	}
	return strings.Compare(o.dasher, p.dasher)
}

func newAreaIndex(s *messages.AreaState) *areaIndex {
	x := &areaIndex{state: s, open: make(map[string][]offerDue), waiting: make(map[string]struct{}), busy: make(map[string]int32)}
	for id, disp := range s.GetDispatches() {
		if disp.GetEnded() {
			continue
		}
		offers := offersDue(id, disp)
		x.add(id, offers)
		x.dues = append(x.dues, offers...)
	}
	slices.SortFunc(x.dues, offerDue.compare)
	return x
}

func offersDue(id string, disp *messages.Dispatch) []offerDue {
	offers := make([]offerDue, 0, len(disp.GetOpen()))
	for _, o := range disp.GetOpen() {
		offers = append(offers, offerDue{due: o.GetExpiresAt().AsTime(), at: o.GetExpiresAt(), order: id, dasher: o.GetDasherId()})
	}
	return offers
}

// add records an open dispatch and its offers (but not in dues).
func (x *areaIndex) add(id string, offers []offerDue) {
	x.open[id] = offers
	if len(offers) == 0 {
		x.waiting[id] = struct{}{}
	}
	for _, o := range offers {
		x.busy[o.dasher]++
	}
}

// applied brings the index in step with s after applyArea folded event into it.
func (x *areaIndex) applied(s *messages.AreaState, event proto.Message) {
	id := areaEventOrder(event)
	if id == "" {
		return // dashers, restaurants and the auto-assign flag are not indexed
	}
	for _, o := range x.open[id] {
		if i, found := slices.BinarySearchFunc(x.dues, o, offerDue.compare); found {
			x.dues = slices.Delete(x.dues, i, i+1)
		}
		if x.busy[o.dasher]--; x.busy[o.dasher] <= 0 {
			delete(x.busy, o.dasher)
		}
	}
	delete(x.open, id)
	delete(x.waiting, id)
	disp := s.GetDispatches()[id]
	if disp == nil || disp.GetEnded() {
		return // forgotten (ended dispatches leave s only after they left the index) or ended
	}
	offers := offersDue(id, disp)
	x.add(id, offers)
	for _, o := range offers {
		i, _ := slices.BinarySearchFunc(x.dues, o, offerDue.compare)
		x.dues = slices.Insert(x.dues, i, o)
	}
}

// earliest is the due time of the offers timer: the earliest expiry of an open offer, or nil.
func (x *areaIndex) earliest() *timestamppb.Timestamp {
	if len(x.dues) == 0 {
		return nil
	}
	return x.dues[0].at
}

// ---- Fold ----

// applyArea folds one event into the state. It fails for an event it does not know, or one about a dispatch the
// state does not hold (a bug of the decisions).
func applyArea(s *messages.AreaState, event proto.Message) error {
	if s.Dashers == nil {
		s.Dashers = make(map[string]*messages.AreaDasher)
	}
	if s.Dispatches == nil {
		s.Dispatches = make(map[string]*messages.Dispatch)
	}
	if s.Restaurants == nil {
		s.Restaurants = make(map[string]*messages.RestaurantListed)
	}
	if id := areaEventOrder(event); id != "" {
		disp := s.Dispatches[id]
		if _, started := event.(*messages.DispatchStarted); !started && disp == nil {
			return fmt.Errorf("area: %s for unknown dispatch %q", event.ProtoReflect().Descriptor().FullName(), id)
		}
		wasEnded := disp.GetEnded()
		disp = foldDispatch(disp, event)
		s.Dispatches[id] = disp
		switch event.(type) {
		case *messages.DispatchEnded:
			if !wasEnded {
				s.Ended = append(s.Ended, id)
				for len(s.Ended) > MaxEndedDispatches {
					delete(s.Dispatches, s.Ended[0])
					s.Ended = s.Ended[1:]
				}
			}
		case *messages.DispatchReopened:
			if i := slices.Index(s.Ended, id); i >= 0 {
				s.Ended = append(s.Ended[:i:i], s.Ended[i+1:]...)
			}
		}
		return nil
	}
	switch e := event.(type) {
	case *messages.AutoAssignSet:
		s.AutoAssign = e.GetEnabled()
	case *messages.DasherStatusChanged:
		if ad := areaDasherOf(e); ad != nil {
			s.Dashers[e.GetDasherId()] = ad
		} else {
			delete(s.Dashers, e.GetDasherId())
		}
	case *messages.RestaurantListed:
		s.Restaurants[e.GetRestaurantId()] = e
	default:
		return fmt.Errorf("area: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

// areaDasherOf is the dasher a status change records (nil: it went offline). A recorded dasher is replaced by the
// next change, never changed in place, so decisions share it.
func areaDasherOf(e *messages.DasherStatusChanged) *messages.AreaDasher {
	if !e.GetOnline() {
		return nil
	}
	return &messages.AreaDasher{
		DasherId: e.GetDasherId(), Position: e.GetPosition(), Cell: e.GetCell(), FreeCapacity: e.GetFreeCapacity(), UpdatedAt: e.GetAt(),
	}
}

// foldDispatch folds a dispatch event (see areaEventOrder) into disp, the dispatch it names (nil before
// DispatchStarted), and returns the dispatch: disp changed in place, or a new one for DispatchStarted. The ended
// list is the caller's (applyArea).
func foldDispatch(disp *messages.Dispatch, event proto.Message) *messages.Dispatch {
	switch e := event.(type) {
	case *messages.DispatchStarted:
		return &messages.Dispatch{
			OrderId: e.GetOrderId(), RestaurantId: e.GetRestaurantId(), Pickup: e.GetPickup(), Dropoff: e.GetDropoff(),
			StartedAt: e.GetStartedAt(), AutoAssign: e.GetAutoAssign(),
		}
	case *messages.OffersMade:
		disp.Wave = e.GetWave()
		if disp.Offered == nil {
			disp.Offered = make(map[string]int32)
		}
		for _, o := range e.GetOffers() {
			disp.Open = append(disp.Open, o)
			disp.Offered[o.GetDasherId()]++
		}
	case *messages.OfferClosed:
		for i, o := range disp.GetOpen() {
			if o.GetDasherId() == e.GetDasherId() {
				disp.Open = append(disp.Open[:i:i], disp.Open[i+1:]...)
				break
			}
		}
		if e.GetOutcome() == messages.OfferOutcome_OFFER_OUTCOME_DECLINED {
			disp.Excluded = append(disp.Excluded, e.GetDasherId())
		}
	case *messages.DispatchEnded:
		disp.Open = nil
		disp.Cancelled = disp.GetCancelled() || e.GetCancelled()
		if !disp.GetEnded() {
			disp.Ended = true
			disp.AssignedDasherId = e.GetDasherId()
		}
	case *messages.DispatchReopened:
		disp.Ended = false
		disp.AssignedDasherId = ""
		disp.Excluded = append(disp.Excluded, e.GetReleasedDasherId())
	}
	return disp
}

// areaView answers a copy of the state's public part.
func areaView(cell string, s *messages.AreaState) *messages.AreaView {
	v := &messages.AreaView{Cell: cell, AutoAssign: s.GetAutoAssign(), Restaurants: int32(len(s.GetRestaurants()))}
	for _, ad := range s.GetDashers() {
		v.Dashers = append(v.Dashers, proto.Clone(ad).(*messages.AreaDasher))
	}
	sort.Slice(v.Dashers, func(i, j int) bool { return v.Dashers[i].GetDasherId() < v.Dashers[j].GetDasherId() })
	for _, disp := range s.GetDispatches() {
		if !disp.GetEnded() {
			v.Dispatches = append(v.Dispatches, proto.Clone(disp).(*messages.Dispatch))
		}
	}
	sort.Slice(v.Dispatches, func(i, j int) bool { return v.Dispatches[i].GetOrderId() < v.Dispatches[j].GetOrderId() })
	return v
}

// roundMetres keeps distances readable in views and offers.
func roundMetres(m float64) float64 { return math.Round(m*10) / 10 }
