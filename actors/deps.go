package actors

import (
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// Deps is what the actors of one node share: its journal, logger, clock and tuning. A zero field means its
// default, except Journal, which is required.
type Deps struct {
	// Journal stores every actor's events. Required.
	Journal journal.Journal

	// Logger receives actor logs (attributes: kind, stream, command_id, ...). Default: discard.
	Logger *slog.Logger

	// Now is the clock decisions read. Default time.Now.
	Now func() time.Time

	// SnapshotEvery is how many events an actor appends between snapshots. Default 100.
	SnapshotEvery int

	// PassivateAfter is how long an activation may stay idle before it stops (its state is in the journal; the
	// next request re-activates it). Default 10 min; negative means never.
	PassivateAfter time.Duration

	// RememberCommands is how many applied command ids each actor keeps to answer retried commands without a
	// second effect (trap 4). Default 256.
	RememberCommands int

	// StoreTimeout bounds each journal call an actor makes. Default 10 s.
	StoreTimeout time.Duration

	// Payments is the card processor (tokenize, authorise at order, capture at delivery, void on cancel). The
	// Order calls it off its message loop, on goroutines (authorize.go, payment_settle.go), under idempotency keys
	// derived from the order id, so that a call repeated after a crash moves no money twice.
	// Default: a PaymentSim with its default config and this Deps' clock.
	Payments PaymentGateway

	// Workflow holds the timings and policies of the order workflow (docs/workflow.md). Zero fields mean their
	// defaults.
	Workflow WorkflowConfig

	// Accounts tunes the Account kind (sign-in throttling; account.go). Zero fields mean their defaults.
	Accounts AccountConfig
}

// WorkflowConfig is the tuning of the order workflow: messaging between actors, timers, feeds, and the business
// timings and policies. Every field has a default (see withDefaults); tests shorten them. Each kind adds the fields
// it reads here, with a comment and a default.
type WorkflowConfig struct {
	// OutboxRetryMin is the first delay before an unacknowledged outbox entry is sent again; the delay doubles per
	// attempt up to OutboxRetryMax. Default 200 ms.
	OutboxRetryMin time.Duration
	// OutboxRetryMax caps the retry delay of an outbox entry. Default 30 s.
	OutboxRetryMax time.Duration
	// DeliverTimeout bounds one Deliver request to a receiving actor (including its activation). Default 5 s.
	DeliverTimeout time.Duration

	// ReminderScanInterval is how often each node scans the journal for due reminders and wakes their actors.
	// Default 1 s.
	ReminderScanInterval time.Duration
	// ReminderScanBatch is how many due reminders the scanner reads per journal query; each scan pages through
	// all of them. Default 1000.
	ReminderScanBatch int
	// WakeTimeout bounds one Wake request the scanner sends. Default 5 s.
	WakeTimeout time.Duration

	// FeedMaxWait caps how long a PollFeed may stay parked. Default 60 s.
	FeedMaxWait time.Duration
	// FeedPageLimit is the most entries one PollFeed answers (and the default when it asks for none). Default 100.
	FeedPageLimit int
	// FeedMaxParked is the most PollFeed requests one actor keeps parked; one more ends the oldest with an empty
	// page (its client polls again). Default 256.
	FeedMaxParked int

	// InboxRetention is how long a receiver remembers the highest message applied from a sender after the last
	// one arrived (duplicates older than this are not expected: senders retry every OutboxRetryMax at most).
	// Default 7 days.
	InboxRetention time.Duration

	// OfferTTL is how long a dasher has to answer a delivery offer; when it passes with no acceptance the area
	// offers the order to the next wave. Default 45 s.
	OfferTTL time.Duration
	// OpeningWaveSize is how many dashers the first wave that offers an order offers it to: the nearest few
	// eligible (DESIGN: "wave 1 to the nearest few"). Later waves — the order's offers all expired or were declined
	// with nobody left in the radius, or a release reopened the dispatch — offer WaveSize. Default: WaveSize (3).
	// A smaller opening wave (1) trades speed for fewer lost races: with 3, `platter sim` at 80 orders/s on one
	// node saw 3529 acceptances lose the race for 2400 orders (each a Dasher → Order call and journal writes for
	// nothing), with 1 a dozen; the price of 1 is an OfferTTL wait whenever that one dasher ignores the offer.
	OpeningWaveSize int
	// WaveSize is how many dashers a dispatch wave after the opening one offers an order to at once. Default 3.
	WaveSize int
	// MaxConsecutiveExpiries is how many offers in a row a dasher may let expire before it is set offline.
	// Default 3.
	MaxConsecutiveExpiries int
	// DasherReportDistanceM is how far (metres) a dasher moves within its cell before its areas hear the new
	// position (a change of cell is always reported). Default 100.
	DasherReportDistanceM float64
	// OrderCallTimeout bounds the Dasher's synchronous calls to the Order (AssignDasher when a dasher accepts,
	// ReleaseDasher when it gives an assignment back). Default 5 s.
	OrderCallTimeout time.Duration

	// AcceptSLA is how long a restaurant has to accept a placed order; then the order is cancelled by the system
	// with a full refund. Default 5 min.
	AcceptSLA time.Duration
	// DispatchSLA is how long an accepted order may wait for a dasher (from acceptance, or from the release of its
	// dasher); then it is cancelled by the system with a full refund. Default 15 min.
	DispatchSLA time.Duration
	// CancelRefundShare is the share of the total refunded when the customer cancels after the restaurant accepted
	// and before a dasher is assigned (the cancellation matrix in order.go). Default 0.5; a negative value means
	// nothing is refunded, a value above 1 means everything.
	CancelRefundShare float64
	// PaymentRetryMin is the first delay before a capture or void that failed transiently is tried again (by the
	// order's durable payment timer); it doubles per attempt up to PaymentRetryMax. An authorisation is tried once
	// per PlaceOrder request; the customer's outbox retries it (OutboxRetryMin..OutboxRetryMax). Default 100 ms.
	PaymentRetryMin time.Duration
	// PaymentRetryMax caps the delay between payment attempts. Default 5 min.
	PaymentRetryMax time.Duration
	// PaymentTimeout bounds one payment gateway call. Default 10 s. The authorisation runs off the order's
	// message loop, so it may exceed DeliverTimeout: a redelivery that arrives meanwhile waits for the same call.
	// A settlement call runs off the loop too, under a lease of PaymentTimeout + PaymentRetryMin on the payment
	// timer: an activation that dies with the call in flight has the next one retry it once the lease is over.
	PaymentTimeout time.Duration
}

// Defaults of WorkflowConfig fields.
const (
	DefaultOutboxRetryMin       = 200 * time.Millisecond
	DefaultOutboxRetryMax       = 30 * time.Second
	DefaultDeliverTimeout       = 5 * time.Second
	DefaultReminderScanInterval = time.Second
	DefaultReminderScanBatch    = 1000
	DefaultWakeTimeout          = 5 * time.Second
	DefaultFeedMaxWait          = 60 * time.Second
	DefaultFeedPageLimit        = 100
	DefaultFeedMaxParked        = 256
	DefaultInboxRetention       = 7 * 24 * time.Hour

	DefaultOfferTTL               = 45 * time.Second
	DefaultWaveSize               = 3
	DefaultMaxConsecutiveExpiries = 3
	DefaultDasherReportDistanceM  = 100
	DefaultOrderCallTimeout       = 5 * time.Second

	DefaultAcceptSLA         = 5 * time.Minute
	DefaultDispatchSLA       = 15 * time.Minute
	DefaultCancelRefundShare = 0.5
	DefaultPaymentRetryMin   = 100 * time.Millisecond
	DefaultPaymentRetryMax   = 5 * time.Minute
	DefaultPaymentTimeout    = 10 * time.Second
)

func (w WorkflowConfig) withDefaults() WorkflowConfig {
	if w.OutboxRetryMin <= 0 {
		w.OutboxRetryMin = DefaultOutboxRetryMin
	}
	if w.OutboxRetryMax <= 0 {
		w.OutboxRetryMax = DefaultOutboxRetryMax
	}
	if w.OutboxRetryMax < w.OutboxRetryMin {
		w.OutboxRetryMax = w.OutboxRetryMin
	}
	if w.DeliverTimeout <= 0 {
		w.DeliverTimeout = DefaultDeliverTimeout
	}
	if w.ReminderScanInterval <= 0 {
		w.ReminderScanInterval = DefaultReminderScanInterval
	}
	if w.ReminderScanBatch <= 0 {
		w.ReminderScanBatch = DefaultReminderScanBatch
	}
	if w.WakeTimeout <= 0 {
		w.WakeTimeout = DefaultWakeTimeout
	}
	if w.FeedMaxWait <= 0 {
		w.FeedMaxWait = DefaultFeedMaxWait
	}
	if w.FeedPageLimit <= 0 {
		w.FeedPageLimit = DefaultFeedPageLimit
	}
	if w.FeedMaxParked <= 0 {
		w.FeedMaxParked = DefaultFeedMaxParked
	}
	if w.InboxRetention <= 0 {
		w.InboxRetention = DefaultInboxRetention
	}
	if w.OfferTTL <= 0 {
		w.OfferTTL = DefaultOfferTTL
	}
	if w.WaveSize <= 0 {
		w.WaveSize = DefaultWaveSize
	}
	if w.OpeningWaveSize <= 0 {
		w.OpeningWaveSize = w.WaveSize
	}
	if w.MaxConsecutiveExpiries <= 0 {
		w.MaxConsecutiveExpiries = DefaultMaxConsecutiveExpiries
	}
	if w.DasherReportDistanceM <= 0 {
		w.DasherReportDistanceM = DefaultDasherReportDistanceM
	}
	if w.OrderCallTimeout <= 0 {
		w.OrderCallTimeout = DefaultOrderCallTimeout
	}
	if w.AcceptSLA <= 0 {
		w.AcceptSLA = DefaultAcceptSLA
	}
	if w.DispatchSLA <= 0 {
		w.DispatchSLA = DefaultDispatchSLA
	}
	switch {
	case w.CancelRefundShare == 0:
		w.CancelRefundShare = DefaultCancelRefundShare
	case w.CancelRefundShare < 0:
		w.CancelRefundShare = 0
	case w.CancelRefundShare > 1:
		w.CancelRefundShare = 1
	}
	if w.PaymentRetryMin <= 0 {
		w.PaymentRetryMin = DefaultPaymentRetryMin
	}
	if w.PaymentRetryMax <= 0 {
		w.PaymentRetryMax = DefaultPaymentRetryMax
	}
	if w.PaymentRetryMax < w.PaymentRetryMin {
		w.PaymentRetryMax = w.PaymentRetryMin
	}
	if w.PaymentTimeout <= 0 {
		w.PaymentTimeout = DefaultPaymentTimeout
	}
	return w
}

// Defaults of Deps fields.
const (
	DefaultSnapshotEvery    = 100
	DefaultPassivateAfter   = 10 * time.Minute
	DefaultRememberCommands = 256
	DefaultStoreTimeout     = 10 * time.Second
)

func (d Deps) withDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SnapshotEvery <= 0 {
		d.SnapshotEvery = DefaultSnapshotEvery
	}
	switch {
	case d.PassivateAfter == 0:
		d.PassivateAfter = DefaultPassivateAfter
	case d.PassivateAfter < 0:
		d.PassivateAfter = 0 // the generated grain actor sets no receive timeout for 0
	}
	if d.RememberCommands <= 0 {
		d.RememberCommands = DefaultRememberCommands
	}
	if d.StoreTimeout <= 0 {
		d.StoreTimeout = DefaultStoreTimeout
	}
	d.Workflow = d.Workflow.withDefaults()
	d.Accounts = d.Accounts.withDefaults()
	if d.Payments == nil {
		d.Payments = NewPaymentSim(PaymentSimConfig{Now: d.Now})
	}
	return d
}

// Kind names, as the generated grain clients use them.
const (
	KindRestaurant = "Restaurant"
	KindCustomer   = "Customer"
	KindOrder      = "Order"
)

// registerFactories installs the grain factories once per process. protoc-gen-go-grain keeps a kind's factory in
// a package variable of messages; ours are stateless (they build an empty grain), so one registration serves every
// node in the process, and no node's Deps ever sits in a global.
var registerFactories = sync.Once{}

// Kinds returns the actor kinds this node hosts, bound to deps. It may be called any number of times (the cluster
// builds a new actor system after a self-fence and calls it again), for any number of nodes in one process.
//
// How an activation finds its node's Deps: each kind's props produce the generated grain actor wrapped in a small
// struct that also carries deps (see hosted); the grain's Init reads them back through ctx.Actor(). Deps thus
// travel with the kinds a node registered, so there is nothing to register per actor system and nothing to clean
// up when a system stops. Kinds panics when deps.Journal is nil (a wiring bug).
func Kinds(deps Deps) []*pcluster.Kind {
	if deps.Journal == nil {
		panic("actors.Kinds: Deps.Journal is nil")
	}
	d := deps.withDefaults()
	registerFactories.Do(func() {
		messages.RestaurantFactory(func() messages.Restaurant { return &Restaurant{} })
		messages.CustomerFactory(func() messages.Customer { return &Customer{} })
		messages.AreaFactory(func() messages.Area { return &Area{} })
		messages.DasherFactory(func() messages.Dasher { return &Dasher{} })
		messages.OrderFactory(func() messages.Order { return &Order{} })
		messages.AccountFactory(func() messages.Account { return &Account{} })
	})
	restaurant := actor.PropsFromProducer(func() actor.Actor {
		return &restaurantActor{
			RestaurantActor: messages.RestaurantActor{Timeout: d.PassivateAfter},
			hosted:          newHosted(&d, KindRestaurant),
		}
	})
	customer := actor.PropsFromProducer(func() actor.Actor {
		return &customerActor{CustomerActor: messages.CustomerActor{Timeout: d.PassivateAfter}, hosted: newHosted(&d, KindCustomer)}
	})
	area := actor.PropsFromProducer(func() actor.Actor {
		return &areaActor{AreaActor: messages.AreaActor{Timeout: d.PassivateAfter}, hosted: newHosted(&d, KindArea)}
	})
	dasher := actor.PropsFromProducer(func() actor.Actor {
		return &dasherActor{DasherActor: messages.DasherActor{Timeout: d.PassivateAfter}, hosted: newHosted(&d, KindDasher)}
	})
	order := actor.PropsFromProducer(func() actor.Actor {
		return &orderActor{OrderActor: messages.OrderActor{Timeout: d.PassivateAfter}, hosted: newHosted(&d, KindOrder)}
	})
	account := actor.PropsFromProducer(func() actor.Actor {
		return &accountActor{AccountActor: messages.AccountActor{Timeout: d.PassivateAfter}, hosted: newHosted(&d, KindAccount)}
	})
	return []*pcluster.Kind{
		pcluster.NewKind(KindAccount, account),
		pcluster.NewKind(KindRestaurant, restaurant),
		pcluster.NewKind(KindOrder, order),
		pcluster.NewKind(KindCustomer, customer),
		pcluster.NewKind(KindArea, area),
		pcluster.NewKind(KindDasher, dasher),
	}
}
