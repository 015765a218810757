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
//	none      OrderAccepted            start; wave 1 = the WaveSize nearest eligible in the   DispatchStarted, OffersMade
//	                                   cell, none there → wave 2 at once; auto-assign mode:   (→ DeliveryOffered to each), TimerSet
//	                                   one dasher, auto_assigned
//	open      offer expired (Wake)     close it and tell the dasher; no open offer left →     OfferClosed EXPIRED (→ OfferExpired),
//	                                   next wave, widened to the neighbours                   OffersMade (→ DeliveryOffered), TimerSet
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

import (
	"fmt"
	"math"
	"sort"
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

// MaxEndedDispatches is how many ended dispatches an area keeps, so that late messages about them are recognised
// (and a released dasher can be replaced). Older ones are forgotten.
const MaxEndedDispatches = 256

// Area is the Area grain.
type Area struct {
	grain[*messages.AreaState]
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
	a.activate(ctx, KindArea, &messages.AreaState{}, applyArea,
		withDeliver(func(s *messages.AreaState, _ string, payload proto.Message, now time.Time) ([]proto.Message, error) {
			return decideDeliverArea(self, s, payload, a.deps.Workflow, now)
		}),
		withTimers(func(s *messages.AreaState, name string, now time.Time) ([]proto.Message, error) {
			return decideAreaTimer(self, s, name, a.deps.Workflow, now)
		}))
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
	if !validArea(ctx.Identity()) {
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

// ---- Decisions: pure functions of state, input and time ----

// decideDeliverArea decides on a message another actor sent to the area self.
func decideDeliverArea(self string, s *messages.AreaState, payload proto.Message, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if p, ok := payload.(*messages.RestaurantListed); ok {
		return decideRestaurantListed(s, p)
	}
	d := newAreaDecision(self, s, cfg, now)
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
// open.
func decideAreaTimer(self string, s *messages.AreaState, name string, cfg WorkflowConfig, now time.Time) ([]proto.Message, error) {
	if name != areaOffersTimer {
		return nil, refuse(messages.ErrorReason_INVALID_ARGUMENT, "an area has no timer %q", name)
	}
	d := newAreaDecision(self, s, cfg, now)
	d.timer = nil
	for _, id := range d.openDispatches() {
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

// areaDecision accumulates the events of one decision and applies them to a scratch copy of the state as it goes,
// so that each step sees the effect of the previous ones (an offer made here makes the dasher busy for the next
// dispatch). The scratch copy shares what the dispatch decisions never change (the search index).
type areaDecision struct {
	self   string
	cfg    WorkflowConfig
	now    time.Time
	s      *messages.AreaState
	owned  map[string]bool // dispatches already copied into s
	events []proto.Message
	timer  *timestamppb.Timestamp // the offers timer before the decision
	skip   string                 // a dasher that just returned an offer: not offered again by this decision
}

func newAreaDecision(self string, s *messages.AreaState, cfg WorkflowConfig, now time.Time) *areaDecision {
	scratch := &messages.AreaState{
		AutoAssign:  s.GetAutoAssign(),
		Dashers:     make(map[string]*messages.AreaDasher, len(s.GetDashers())),
		Dispatches:  make(map[string]*messages.Dispatch, len(s.GetDispatches())),
		Restaurants: s.GetRestaurants(),
		Ended:       append([]string(nil), s.GetEnded()...),
	}
	for k, v := range s.GetDashers() {
		scratch.Dashers[k] = v // replaced, never changed in place, by applyArea
	}
	for k, v := range s.GetDispatches() {
		scratch.Dispatches[k] = v // copied before the first change (own)
	}
	return &areaDecision{self: self, cfg: cfg, now: now, s: scratch, owned: map[string]bool{}, timer: earliestExpiry(s)}
}

// own makes the dispatch of order id private to the scratch state before it is changed.
func (d *areaDecision) own(id string) {
	if disp, ok := d.s.Dispatches[id]; ok && !d.owned[id] {
		d.s.Dispatches[id] = proto.Clone(disp).(*messages.Dispatch)
	}
	d.owned[id] = true
}

// emit records an event and applies it to the scratch state.
func (d *areaDecision) emit(ev proto.Message) error {
	if id := areaEventOrder(ev); id != "" {
		d.own(id)
	}
	if err := applyArea(d.s, ev); err != nil {
		return err
	}
	d.events = append(d.events, ev)
	return nil
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
	after := earliestExpiry(d.s)
	switch {
	case after == nil && d.timer != nil:
		d.events = append(d.events, &messages.TimerCleared{Name: areaOffersTimer})
	case after != nil && (d.timer == nil || !after.AsTime().Equal(d.timer.AsTime())):
		d.events = append(d.events, &messages.TimerSet{Name: areaOffersTimer, Due: after})
	}
	return d.events, nil
}

func (d *areaDecision) start(p *messages.OrderAccepted) error {
	if p.GetOrderId() == "" {
		return refuse(messages.ErrorReason_INVALID_ARGUMENT, "order_id is required")
	}
	if err := checkPosition(p.GetPickup()); err != nil {
		return err
	}
	if _, ok := d.s.Dispatches[p.GetOrderId()]; ok {
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
	disp := d.s.Dispatches[id]
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

func (d *areaDecision) waveSize(disp *messages.Dispatch) int {
	if disp.GetAutoAssign() {
		return 1
	}
	return d.cfg.WaveSize
}

// offer makes up to n offers of order id in wave, within the cell (wide: and its neighbours), and returns how many.
func (d *areaDecision) offer(id string, wave int32, wide bool, n int) (int, error) {
	disp := d.s.Dispatches[id]
	cands := d.candidates(disp, wide)
	if len(cands) > n {
		cands = cands[:n]
	}
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

// candidates lists the eligible dashers for disp, best first (see the table at the top).
func (d *areaDecision) candidates(disp *messages.Dispatch, wide bool) []candidate {
	busy := make(map[string]int32)
	for _, other := range d.s.Dispatches {
		if other.GetEnded() {
			continue
		}
		for _, o := range other.GetOpen() {
			busy[o.GetDasherId()]++
		}
	}
	excluded := make(map[string]bool, len(disp.GetExcluded())+len(disp.GetOpen()))
	for _, id := range disp.GetExcluded() {
		excluded[id] = true
	}
	for _, o := range disp.GetOpen() {
		excluded[o.GetDasherId()] = true
	}
	var out []candidate
	for id, ad := range d.s.Dashers {
		if excluded[id] || id == d.skip || ad.GetFreeCapacity() <= busy[id] || (!wide && ad.GetCell() != d.self) {
			continue
		}
		out = append(out, candidate{id: id, distance: roundMetres(distanceM(ad.GetPosition(), disp.GetPickup())), prior: disp.GetOffered()[id]})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.prior != b.prior {
			return a.prior < b.prior
		}
		if a.distance != b.distance {
			return a.distance < b.distance
		}
		return a.id < b.id
	})
	return out
}

// openDispatches returns the ids of the open dispatches, oldest first.
func (d *areaDecision) openDispatches() []string {
	var ids []string
	for id, disp := range d.s.Dispatches {
		if !disp.GetEnded() {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := d.s.Dispatches[ids[i]], d.s.Dispatches[ids[j]]
		if !a.GetStartedAt().AsTime().Equal(b.GetStartedAt().AsTime()) {
			return a.GetStartedAt().AsTime().Before(b.GetStartedAt().AsTime())
		}
		return ids[i] < ids[j]
	})
	return ids
}

// expire closes the offers of order id that are due, tells their dashers, and sends the next wave when none is
// left open.
func (d *areaDecision) expire(id string) error {
	disp := d.s.Dispatches[id]
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
	disp := d.s.Dispatches[id]
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
	disp = d.s.Dispatches[id]
	made, err := d.offer(id, disp.GetWave(), disp.GetWave() >= 2, 1)
	if err != nil || made > 0 {
		return err
	}
	return d.nextWave(id)
}

func (d *areaDecision) assigned(p *messages.DasherAssigned) error {
	id := p.GetOrderId()
	disp := d.s.Dispatches[id]
	if disp == nil || disp.GetEnded() {
		return nil
	}
	if err := d.closeAll(id, p.GetDasherId(), "assigned to another dasher"); err != nil {
		return err
	}
	return d.emit(&messages.DispatchEnded{OrderId: id, DasherId: p.GetDasherId()})
}

func (d *areaDecision) cancelled(id string) error {
	disp := d.s.Dispatches[id]
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
	for _, o := range d.s.Dispatches[id].GetOpen() {
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
	disp := d.s.Dispatches[id]
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
		if !validArea(p.GetCell()) {
			return refuse(messages.ErrorReason_INVALID_ARGUMENT, "cell %q is not an area", p.GetCell())
		}
	} else if _, known := d.s.Dashers[p.GetDasherId()]; !known {
		return nil
	}
	if err := d.emit(proto.Clone(p)); err != nil {
		return err
	}
	if !p.GetOnline() || p.GetFreeCapacity() <= 0 {
		return nil
	}
	for _, id := range d.openDispatches() {
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

// earliestExpiry is the due time of the offers timer: the earliest expiry of an open offer, or nil.
func earliestExpiry(s *messages.AreaState) *timestamppb.Timestamp {
	var min *timestamppb.Timestamp
	for _, disp := range s.GetDispatches() {
		if disp.GetEnded() {
			continue
		}
		for _, o := range disp.GetOpen() {
			if min == nil || o.GetExpiresAt().AsTime().Before(min.AsTime()) {
				min = o.GetExpiresAt()
			}
		}
	}
	return min
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
		if _, started := event.(*messages.DispatchStarted); !started && s.Dispatches[id] == nil {
			return fmt.Errorf("area: %s for unknown dispatch %q", event.ProtoReflect().Descriptor().FullName(), id)
		}
	}
	switch e := event.(type) {
	case *messages.AutoAssignSet:
		s.AutoAssign = e.GetEnabled()
	case *messages.DasherStatusChanged:
		if !e.GetOnline() {
			delete(s.Dashers, e.GetDasherId())
			break
		}
		s.Dashers[e.GetDasherId()] = &messages.AreaDasher{
			DasherId: e.GetDasherId(), Position: e.GetPosition(), Cell: e.GetCell(), FreeCapacity: e.GetFreeCapacity(), UpdatedAt: e.GetAt(),
		}
	case *messages.RestaurantListed:
		s.Restaurants[e.GetRestaurantId()] = e
	case *messages.DispatchStarted:
		s.Dispatches[e.GetOrderId()] = &messages.Dispatch{
			OrderId: e.GetOrderId(), RestaurantId: e.GetRestaurantId(), Pickup: e.GetPickup(), Dropoff: e.GetDropoff(),
			StartedAt: e.GetStartedAt(), AutoAssign: e.GetAutoAssign(),
		}
	case *messages.OffersMade:
		disp := s.Dispatches[e.GetOrderId()]
		disp.Wave = e.GetWave()
		if disp.Offered == nil {
			disp.Offered = make(map[string]int32)
		}
		for _, o := range e.GetOffers() {
			disp.Open = append(disp.Open, o)
			disp.Offered[o.GetDasherId()]++
		}
	case *messages.OfferClosed:
		disp := s.Dispatches[e.GetOrderId()]
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
		disp := s.Dispatches[e.GetOrderId()]
		disp.Open = nil
		disp.Cancelled = disp.GetCancelled() || e.GetCancelled()
		if !disp.GetEnded() {
			disp.Ended = true
			disp.AssignedDasherId = e.GetDasherId()
			s.Ended = append(s.Ended, e.GetOrderId())
			for len(s.Ended) > MaxEndedDispatches {
				delete(s.Dispatches, s.Ended[0])
				s.Ended = s.Ended[1:]
			}
		}
	case *messages.DispatchReopened:
		disp := s.Dispatches[e.GetOrderId()]
		disp.Ended = false
		disp.AssignedDasherId = ""
		disp.Excluded = append(disp.Excluded, e.GetReleasedDasherId())
		for i, id := range s.Ended {
			if id == e.GetOrderId() {
				s.Ended = append(s.Ended[:i:i], s.Ended[i+1:]...)
				break
			}
		}
	default:
		return fmt.Errorf("area: unexpected event %s", event.ProtoReflect().Descriptor().FullName())
	}
	return nil
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
