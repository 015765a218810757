package actors

// Feeds: the notification service (docs/workflow.md, "Feeds and long polls").
//
// Customer, Restaurant and Dasher each own a durable feed: the journal feed named by the actor's stream
// ("customer/c_1"). A decision adds an entry by returning notify(...) among its events; the entity writes it with
// journal.WithFeed in the same append as the events (and, for a delivered message, its InboxAdvanced), so an entry
// is never lost nor doubled. Cursors are assigned by the journal: 1, 2, 3, ... per feed, never reused.
//
// PollFeed reads after a cursor. With entries it answers at once; with none and wait_ms > 0 the activation parks
// the request (keeps the caller's PID and a deadline, mailbox free) and answers when its next append adds an entry
// or when the wait ends (an empty page). The wait is capped by WorkflowConfig.FeedMaxWait; the caller's request
// timeout must exceed the wait (PollFeedTimeout). An activation that stops answers its parked polls with an empty
// page; the client polls again from the same cursor.

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/messages"
)

// Feed entry types, as the API names them (FeedItem.type); the dasher's own ones are in dasher.go.
const (
	FeedOrderPlaced   = "ORDER_PLACED"
	FeedOrderAccepted = "ORDER_ACCEPTED"
	FeedOrderPickedUp = "ORDER_PICKED_UP"
	FeedOrderRejected = "ORDER_REJECTED"
)

// feedTypes names the feed entry of each workflow message.
var feedTypes = map[string]string{
	"platter.OrderPlaced":     "ORDER_PLACED",
	"platter.OrderAccepted":   "ORDER_ACCEPTED",
	"platter.DeliveryOffered": "DELIVERY_OFFERED",
	"platter.DasherAssigned":  "DASHER_ASSIGNED",
	"platter.FoodReady":       "FOOD_READY",
	"platter.OrderPickedUp":   "ORDER_PICKED_UP",
	"platter.OrderDelivered":  "ORDER_DELIVERED",
	"platter.OrderCancelled":  "ORDER_CANCELLED",
	"platter.OrderRejected":   "ORDER_REJECTED",
	"platter.OfferExpired":    "OFFER_EXPIRED",
	"platter.OfferWithdrawn":  "OFFER_WITHDRAWN",
	"platter.DasherReleased":  "DASHER_RELEASED",
}

// FeedTypeOf returns the feed entry type of a workflow message (e.g. ORDER_PLACED for *messages.OrderPlaced), or
// "" for another message.
func FeedTypeOf(m proto.Message) string {
	return feedTypes[payloadName(m)]
}

// notify returns the feed item a decision emits (among its events) to add msg to the deciding actor's feed: its
// type is the message's (FeedTypeOf), its order id the message's order_id field, at the decision's time.
func notify(msg proto.Message, now time.Time) (*messages.FeedItem, error) {
	typ := FeedTypeOf(msg)
	if typ == "" {
		return nil, fmt.Errorf("notify: %s is not a workflow message", payloadName(msg))
	}
	data, err := anypb.New(msg)
	if err != nil {
		return nil, fmt.Errorf("notify: pack %s: %w", payloadName(msg), err)
	}
	var orderID string
	if fd := msg.ProtoReflect().Descriptor().Fields().ByName("order_id"); fd != nil {
		orderID = msg.ProtoReflect().Get(fd).String()
	}
	return &messages.FeedItem{Type: typ, OrderId: orderID, At: timestamppb.New(now), Data: data}, nil
}

// feedEntry encodes a feed item as a journal entry (the cursor is the journal's).
func feedEntry(item *messages.FeedItem) (journal.FeedEntry, error) {
	data, err := proto.Marshal(item)
	if err != nil {
		return journal.FeedEntry{}, fmt.Errorf("encode feed item %s: %w", item.GetType(), err)
	}
	return journal.FeedEntry{Type: item.GetType(), Data: data}, nil
}

// feedItem decodes a journal feed entry, with its cursor.
func feedItem(e journal.FeedEntry) (*messages.FeedItem, error) {
	item := &messages.FeedItem{}
	if err := proto.Unmarshal(e.Data, item); err != nil {
		return nil, fmt.Errorf("decode feed entry %d: %w", e.Cursor, err)
	}
	item.Cursor = e.Cursor
	return item, nil
}

// ReadFeed reads up to limit entries of the feed of (kind, identity) after cursor `after`, straight from the
// journal (tools, tests and invariant checks; clients use the PollFeed rpc). limit <= 0 means no limit.
func ReadFeed(ctx context.Context, j journal.Journal, kind, identity string, after uint64, limit int) ([]*messages.FeedItem, error) {
	entries, err := j.ReadFeed(ctx, streamOf(kind, identity), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read feed of %s/%s: %w", kind, identity, err)
	}
	items := make([]*messages.FeedItem, len(entries))
	for i, e := range entries {
		if items[i], err = feedItem(e); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// PollFeedMargin is added to a poll's wait to make the caller's request timeout (PollFeedTimeout).
const PollFeedMargin = 5 * time.Second

// PollFeedTimeout is the request timeout a caller of PollFeed should use (pcluster.WithTimeout): the wait plus
// PollFeedMargin, so the actor's answer at the end of the wait arrives before the caller gives up.
func PollFeedTimeout(req *messages.PollFeed) time.Duration {
	return time.Duration(max(req.GetWaitMs(), 0))*time.Millisecond + PollFeedMargin
}

// parkedPoll is a PollFeed waiting for an entry.
type parkedPoll struct {
	sender *actor.PID
	after  uint64
	limit  int
	timer  *time.Timer
}

// pollExpired says a parked poll's wait has ended.
type pollExpired struct{ id uint64 }

// pollFeed answers a PollFeed request (intercepted before the generated dispatcher, which would answer at once):
// entries after the cursor now, or later (see the file comment).
func (g *grain[S]) pollFeed(ctx actor.Context, raw *pcluster.GrainRequest) {
	req := &messages.PollFeed{}
	if err := proto.Unmarshal(raw.GetMessageData(), req); err != nil {
		ctx.Respond(grainError(refuse(messages.ErrorReason_INVALID_ARGUMENT, "malformed PollFeed")))
		return
	}
	if err := g.query(); err != nil {
		ctx.Respond(err)
		return
	}
	cfg := g.deps.Workflow
	limit := int(req.GetLimit())
	if limit <= 0 || limit > cfg.FeedPageLimit {
		limit = cfg.FeedPageLimit
	}
	page, err := g.readPage(req.GetAfter(), limit)
	if err != nil {
		ctx.Respond(grainError(errUnavailable))
		return
	}
	if len(page.GetEntries()) > 0 || req.GetWaitMs() <= 0 || ctx.Sender() == nil || g.stopping {
		ctx.Respond(page)
		return
	}
	wait := min(time.Duration(req.GetWaitMs())*time.Millisecond, cfg.FeedMaxWait)
	if len(g.polls) >= cfg.FeedMaxParked {
		g.endOldestPoll()
	}
	g.pollSeq++
	id := g.pollSeq
	system, self := g.system, g.self
	g.polls[id] = &parkedPoll{
		sender: ctx.Sender(),
		after:  req.GetAfter(),
		limit:  limit,
		timer:  time.AfterFunc(wait, func() { system.Root.Send(self, pollExpired{id: id}) }),
	}
	g.log.Debug("poll parked", slog.Uint64("after", req.GetAfter()), slog.Duration("wait", wait))
}

// endOldestPoll answers the oldest parked poll with an empty page (WorkflowConfig.FeedMaxParked: callers that
// gave up early, such as a request attempt that timed out and was retried, leave their poll parked until its
// deadline; the bound caps that waste).
func (g *grain[S]) endOldestPoll() {
	var oldest uint64
	for id := range g.polls {
		if oldest == 0 || id < oldest {
			oldest = id
		}
	}
	if p, ok := g.polls[oldest]; ok {
		p.timer.Stop()
		g.pollEnded(pollExpired{id: oldest})
	}
}

// readPage reads a page of the activation's feed.
func (g *grain[S]) readPage(after uint64, limit int) (*messages.FeedPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.StoreTimeout)
	defer cancel()
	entries, err := g.deps.Journal.ReadFeed(ctx, g.entity.stream, after, limit)
	if err != nil {
		g.log.Error("reading the feed failed", slog.Any("error", err))
		return nil, err
	}
	page := &messages.FeedPage{NextCursor: after}
	for _, e := range entries {
		item, err := feedItem(e)
		if err != nil {
			g.log.Error("reading the feed failed", slog.Any("error", err))
			return nil, err
		}
		page.Entries = append(page.Entries, item)
		page.NextCursor = e.Cursor
	}
	return page, nil
}

// wakePolls answers the parked polls that now have entries (called after an append that added some).
func (g *grain[S]) wakePolls() {
	for id, p := range g.polls {
		page, err := g.readPage(p.after, p.limit)
		if err != nil || len(page.GetEntries()) == 0 {
			continue // a failed read leaves the poll to its deadline
		}
		p.timer.Stop()
		delete(g.polls, id)
		g.system.Root.Send(p.sender, page)
	}
}

// pollEnded answers a parked poll whose wait ended with an empty page.
func (g *grain[S]) pollEnded(m pollExpired) {
	p, ok := g.polls[m.id]
	if !ok {
		return
	}
	delete(g.polls, m.id)
	g.system.Root.Send(p.sender, &messages.FeedPage{NextCursor: p.after})
}

// releasePolls answers every parked poll with an empty page (the activation stops).
func (g *grain[S]) releasePolls() {
	for id, p := range g.polls {
		p.timer.Stop()
		delete(g.polls, id)
		g.system.Root.Send(p.sender, &messages.FeedPage{NextCursor: p.after})
	}
}
