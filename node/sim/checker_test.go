package sim

import (
	"testing"
	"time"
)

func page(cursors ...uint64) FeedPage {
	p := FeedPage{}
	for _, c := range cursors {
		p.Entries = append(p.Entries, FeedEntry{Cursor: c, Type: "ORDER_ACCEPTED", OrderID: "o1"})
		p.NextCursor = c
	}
	return p
}

// TestChecker: each rule, on a scripted observation, flags exactly what it should.
func TestChecker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		given func(c *Checker)
		rules []string
	}{
		{"in order over pages", func(c *Checker) { c.Page("f", page(1, 2)); c.Page("f", page(3)); c.Page("g", page(1)) }, nil},
		{"gap", func(c *Checker) { c.Page("f", page(1, 3)) }, []string{"feed-order"}},
		{"gap between pages", func(c *Checker) { c.Page("f", page(1)); c.Page("f", page(3)) }, []string{"feed-order"}},
		{"repeat", func(c *Checker) { c.Page("f", page(1, 2)); c.Page("f", page(2)) }, []string{"feed-order"}},
		{"not from 1", func(c *Checker) { c.Page("f", page(2)) }, []string{"feed-order"}},
		{"one dasher twice", func(c *Checker) { c.Placed("o1"); c.Assigned("o1", "d1"); c.Assigned("o1", "d1"); end(c, "o1") }, nil},
		{"two dashers", func(c *Checker) { c.Placed("o1"); c.Assigned("o1", "d1"); c.Assigned("o1", "d2"); end(c, "o1") }, []string{"one-dasher"}},
		{"two endings", func(c *Checker) {
			c.Placed("o1")
			c.CustomerEntry(FeedEntry{OrderID: "o1", Type: "ORDER_DELIVERED"})
			c.CustomerEntry(FeedEntry{OrderID: "o1", Type: "ORDER_CANCELLED"})
		}, []string{"one-ending"}},
		{"in flight, read", func(c *Checker) { c.Placed("o1"); c.Final("o1", "ACCEPTED", true) }, nil},
		{"in flight, unread", func(c *Checker) { c.Placed("o1"); c.Final("o1", "", false) }, []string{"accounted"}},
		{"never looked at", func(c *Checker) { c.Placed("o1") }, []string{"accounted"}},
		{"ended, feed silent", func(c *Checker) { c.Placed("o1"); c.Final("o1", "DELIVERED", true) }, []string{"ending-in-feed"}},
		{"only seen in a feed", func(c *Checker) { c.CustomerEntry(FeedEntry{OrderID: "o9", Type: "ORDER_PLACED"}) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChecker()
			tc.given(c)
			out := c.Check()
			var got []string
			for _, v := range out.Violations {
				got = append(got, v.Rule)
			}
			if len(got) != len(tc.rules) {
				t.Fatalf("violations %v, want rules %v", out.Violations, tc.rules)
			}
			for i := range got {
				if got[i] != tc.rules[i] {
					t.Fatalf("violations %v, want rules %v", out.Violations, tc.rules)
				}
			}
		})
	}
}

func end(c *Checker, id string) { c.CustomerEntry(FeedEntry{OrderID: id, Type: "ORDER_DELIVERED"}) }

// TestStatsPercentiles: the report's percentiles come from the HDR histogram of the recorded values.
func TestStatsPercentiles(t *testing.T) {
	s := NewStats()
	for i := 1; i <= 1000; i++ {
		s.Record("step", time.Duration(i)*time.Millisecond/10, nil) // 0.1 ms … 100 ms
	}
	s.Record("step", time.Second, &APIError{Code: "UNAVAILABLE", Status: 503})
	s.Record("feed.poll", 25*time.Second, nil)
	r := s.Step("step")
	near := func(got, want float64) bool { return got > want*0.99 && got < want*1.01 }
	if r.Count != 1000 || r.Errors != 1 || !near(r.P50, 50) || !near(r.P90, 90) || !near(r.P99, 99) || !near(r.Max, 100) {
		t.Fatalf("summary %+v", r)
	}
	if p := s.Step("feed.poll"); p.Count != 0 {
		t.Fatalf("a long poll's wait was recorded as latency: %+v", p)
	}
	byCode, byStep := s.Errors()
	if byCode["UNAVAILABLE"] != 1 || byStep["step UNAVAILABLE"] != 1 {
		t.Fatalf("errors %v %v", byCode, byStep)
	}
	if total, failed := s.Calls(); total != 1002 || failed != 1 {
		t.Fatalf("calls %d failed %d", total, failed)
	}
}
