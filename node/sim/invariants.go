package sim

import (
	"fmt"
	"sort"
	"sync"
)

// Checker checks the invariants over what the simulator observed through the API:
//
//   - feed-order: the entries of every feed arrive in cursor order with no gaps (1, 2, 3, ...);
//   - one-dasher: at most one dasher's offer acceptance succeeds per order;
//   - one-ending: an order's customer feed names at most one ending (delivered, cancelled, rejected), and nothing
//     after it;
//   - accounted: every placed order reached an ending, or its status was read at the end (it is in flight);
//   - ending-in-feed: an order whose status at the end is an ending has that ending in its customer's feed.
//
// It is safe for concurrent use.
type Checker struct {
	mu         sync.Mutex
	feeds      map[string]uint64 // feed → last cursor seen
	orders     map[string]*observed
	entries    int64
	violations []Violation
}

// Violation is a broken invariant.
type Violation struct {
	Rule    string `json:"rule"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

func (v Violation) String() string { return v.Rule + " " + v.Subject + ": " + v.Detail }

type observed struct {
	placed    bool
	ending    string          // the ending entry of the customer feed
	dashers   map[string]bool // dashers whose acceptance succeeded
	final     string          // status read at the end
	finalRead bool
}

// Order endings: feed entry types and the statuses they lead to.
var endings = map[string]string{"ORDER_DELIVERED": "DELIVERED", "ORDER_CANCELLED": "CANCELLED", "ORDER_REJECTED": "REJECTED"}

// IsEndingStatus reports whether an order status is final.
func IsEndingStatus(s string) bool { return s == "DELIVERED" || s == "CANCELLED" || s == "REJECTED" }

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{feeds: map[string]uint64{}, orders: map[string]*observed{}}
}

func (c *Checker) order(id string) *observed {
	o, ok := c.orders[id]
	if !ok {
		o = &observed{}
		c.orders[id] = o
	}
	return o
}

func (c *Checker) violate(rule, subject, format string, args ...any) {
	c.violations = append(c.violations, Violation{Rule: rule, Subject: subject, Detail: fmt.Sprintf(format, args...)})
}

// Page checks the entries of one page of a feed: each cursor is the last one seen plus one. A feed is named by
// whose it is ("customer/c_1").
func (c *Checker) Page(feed string, page FeedPage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.feeds[feed]
	for _, e := range page.Entries {
		c.entries++
		if e.Cursor != last+1 {
			c.violate("feed-order", feed, "entry %d (%s of %s) arrived after entry %d", e.Cursor, e.Type, e.OrderID, last)
		}
		if e.Cursor > last {
			last = e.Cursor
		}
	}
	c.feeds[feed] = last
}

// CustomerEntry checks one entry of a customer's feed about an order.
func (c *Checker) CustomerEntry(e FeedEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.order(e.OrderID)
	if o.ending != "" {
		c.violate("one-ending", e.OrderID, "%s after %s", e.Type, o.ending)
		return
	}
	if _, ok := endings[e.Type]; ok {
		o.ending = e.Type
	}
}

// Placed records an order the API answered 201 for.
func (c *Checker) Placed(orderID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order(orderID).placed = true
}

// Assigned records a dasher's successful acceptance of an order's offer.
func (c *Checker) Assigned(orderID, dasherID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.order(orderID)
	if o.dashers == nil {
		o.dashers = map[string]bool{}
	}
	o.dashers[dasherID] = true
	if len(o.dashers) == 2 { // reported once
		ids := make([]string, 0, len(o.dashers))
		for d := range o.dashers {
			ids = append(ids, d)
		}
		sort.Strings(ids)
		c.violate("one-dasher", orderID, "dashers %v were both assigned", ids)
	}
}

// Final records the status of an order read at the end (ok false: the read failed).
func (c *Checker) Final(orderID, status string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.order(orderID)
	o.final, o.finalRead = status, ok
}

// Ended reports whether the customer feed showed an ending of the order.
func (c *Checker) Ended(orderID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[orderID]
	return ok && o.ending != ""
}

// Outcome is the checker's summary.
type Outcome struct {
	Placed     int64            `json:"placed"`
	Ended      map[string]int64 `json:"ended"`     // by status
	InFlight   map[string]int64 `json:"in_flight"` // placed, not ended, by the status read at the end
	Entries    int64            `json:"feed_entries"`
	Feeds      int              `json:"feeds"`
	Violations []Violation      `json:"violations"`
}

// OK reports whether no invariant was broken.
func (o Outcome) OK() bool { return len(o.Violations) == 0 }

// Check returns the summary, with the end-of-run rules (accounted, ending-in-feed) applied.
func (c *Checker) Check() Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Outcome{Ended: map[string]int64{}, InFlight: map[string]int64{}, Entries: c.entries, Feeds: len(c.feeds)}
	vs := append([]Violation(nil), c.violations...)
	ids := make([]string, 0, len(c.orders))
	for id := range c.orders {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		o := c.orders[id]
		if !o.placed {
			continue // seen in a feed only (an order whose 201 was lost); the node's own checker covers it
		}
		out.Placed++
		switch {
		case o.ending != "":
			out.Ended[endings[o.ending]]++
		case o.finalRead && IsEndingStatus(o.final):
			vs = append(vs, Violation{Rule: "ending-in-feed", Subject: id, Detail: fmt.Sprintf("status %s, but the customer feed has no ending", o.final)})
		case o.finalRead:
			out.InFlight[o.final]++
		default:
			vs = append(vs, Violation{Rule: "accounted", Subject: id, Detail: "placed, no ending in the customer feed and no status at the end"})
		}
	}
	out.Violations = vs
	return out
}
