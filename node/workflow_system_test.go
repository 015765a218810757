package main

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/actors/journal"
)

// TestSystemWorkflowKill: the real binary, one node on bbolt with short workflow timings given as flags. Orders
// wait at every step of the workflow (placed with its acceptance timer pending, accepted with an open offer,
// assigned, ready, picked up, delivered) when the process is killed with SIGKILL; restarted on the same data dir,
// every order completes through the HTTP API, the acceptance timer fires after the restart and cancels its order
// with a full refund, the feed followers (long-polling through the kill) read dense cursors with nothing
// duplicated, and the invariants hold over the journal.
func TestSystemWorkflowKill(t *testing.T) {
	const acceptSLA = 10 * time.Second
	n := newBoltSysNode(t, "n1", "127.0.0.1")
	n.extra = []string{"--accept-sla", acceptSLA.String(), "--dispatch-sla", "10m", "--offer-ttl", "5m",
		"--reminder-scan-interval", "200ms", "--outbox-retry-max", "1s", "--payment-retry-max", "1s"}
	n.start(t)
	lb := newLBClient(t, n)
	operator := operatorToken(t, lb, []*sysNode{n})
	w := newWorkload(t, lb, operator, 1, 0, 6)
	r := w.restaurants[0]
	must := func(ok bool) {
		t.Helper()
		if !ok {
			t.Fatalf("workflow: %v", w.failuresNow())
		}
	}

	// One dasher, driven by the test (no accepting loop): capacity for every order in flight.
	const dasherEmail, dasherPassword = "dasher-kill@example.com", "long enough password"
	var d struct{ ID string }
	must(w.expect(apiReq{method: "POST", path: "/v1/dashers", token: operator, key: "dasher-kill", json: map[string]any{
		"name": "Dee", "email": dasherEmail, "password": dasherPassword, "vehicle": "bike", "capacity": 4}}, 201, &d))
	dasherToken, err := lb.signIn(len(w.customers)+1, dasherEmail, dasherPassword)
	if err != nil {
		t.Fatal(err)
	}
	must(w.expect(apiReq{method: "PUT", path: "/v1/dashers/me/status", token: dasherToken, key: "dasher-kill-online",
		json: map[string]any{"online": true, "position": map[string]float64{"lat": 37.7751, "lng": -122.4190}}}, 200, nil))
	dasherFeed := &wFeed{name: "dasher " + d.ID, path: "/v1/dashers/me/feed", token: dasherToken}
	w.feeds = append(w.feeds, dasherFeed)
	w.followers.Add(1)
	go w.follow(dasherFeed)

	// The steps, through the API; each request carries its Idempotency-Key, so the client's retries across the
	// kill are safe.
	base := func(id string) string { return "/v1/restaurants/" + r.id + "/orders/" + id }
	place := func(c *wCustomer) string {
		t.Helper()
		must(w.expect(apiReq{method: "POST", path: "/v1/cart/items", token: c.token, key: c.id + "-cart",
			json: map[string]any{"restaurant_id": r.id, "menu_item_id": "dish", "quantity": 1}}, 200, nil))
		var o struct{ ID string }
		must(w.expect(apiReq{method: "POST", path: "/v1/orders", token: c.token, key: c.id + "-order", json: map[string]any{}}, 201, &o))
		w.mu.Lock()
		w.acked[o.ID] = &wOrder{id: o.ID, customer: c.id, restaurant: r.id}
		w.mu.Unlock()
		if !w.seen(r.feed, "ORDER_PLACED", o.ID, time.Minute) {
			t.Fatalf("order %s: no ORDER_PLACED in the restaurant's feed", o.ID)
		}
		return o.ID
	}
	accept := func(id string) {
		t.Helper()
		must(w.expect(apiReq{method: "POST", path: base(id) + "/accept", token: r.token, key: id + "-accept",
			json: map[string]any{"prep_minutes": 10}}, 200, nil))
		if !w.seen(dasherFeed, "DELIVERY_OFFERED", id, time.Minute) {
			t.Fatalf("order %s: no DELIVERY_OFFERED in the dasher's feed", id)
		}
	}
	assign := func(id string) {
		t.Helper()
		must(w.expect(apiReq{method: "POST", path: "/v1/dashers/me/offers/" + id + "/accept", token: dasherToken,
			key: id + "-assign"}, 200, nil))
	}
	restaurantStep := func(id, step string) {
		t.Helper()
		must(w.expect(apiReq{method: "POST", path: base(id) + "/" + step, token: r.token, key: id + "-" + step}, 200, nil))
	}
	deliver := func(id string) {
		t.Helper()
		must(w.expect(apiReq{method: "POST", path: "/v1/dashers/me/orders/" + id + "/delivered", token: dasherToken,
			key: id + "-delivered"}, 200, nil))
	}
	type view struct {
		Status      string `json:"status"`
		DasherID    string `json:"dasher_id"`
		CancelledBy string `json:"cancelled_by"`
		RefundCents int64  `json:"refund_cents"`
		TotalCents  int64  `json:"total_cents"`
	}
	get := func(c *wCustomer, id string) view {
		t.Helper()
		var v view
		must(w.expect(apiReq{method: "GET", path: "/v1/orders/" + id, token: c.token}, 200, &v))
		return v
	}

	// Orders at every step.
	c := w.customers
	delivered := place(c[5])
	accept(delivered)
	assign(delivered)
	restaurantStep(delivered, "ready")
	restaurantStep(delivered, "picked-up")
	deliver(delivered)
	pickedUp := place(c[4])
	accept(pickedUp)
	assign(pickedUp)
	restaurantStep(pickedUp, "ready")
	restaurantStep(pickedUp, "picked-up")
	ready := place(c[3])
	accept(ready)
	assign(ready)
	restaurantStep(ready, "ready")
	assigned := place(c[2])
	accept(assigned)
	assign(assigned)
	offered := place(c[1])
	accept(offered) // the offer stays open in the dasher's feed
	pending := place(c[0])
	placedAt := time.Now()

	orders := []struct {
		c      *wCustomer
		id     string
		status string
	}{
		{c[0], pending, "PENDING_ACCEPTANCE"}, {c[1], offered, "ACCEPTED"}, {c[2], assigned, "DASHER_ASSIGNED"},
		{c[3], ready, "READY_FOR_PICKUP"}, {c[4], pickedUp, "PICKED_UP"}, {c[5], delivered, "DELIVERED"},
	}
	for _, o := range orders {
		if v := get(o.c, o.id); v.Status != o.status {
			t.Fatalf("order %s before the kill: %s, want %s", o.id, v.Status, o.status)
		}
	}
	if since := time.Since(placedAt); since >= acceptSLA {
		t.Fatalf("the acceptance SLA of %s passed (%v) before the kill; the test cannot show it fire after the restart", pending, since)
	}

	n.proc.kill() // SIGKILL: no drain, no journal close
	n.start(t)
	restarted := time.Now()

	// The remaining steps, through the restarted node.
	assign(offered)
	for _, id := range []string{offered, assigned} {
		restaurantStep(id, "ready")
	}
	for _, id := range []string{offered, assigned, ready} {
		restaurantStep(id, "picked-up")
	}
	for _, id := range []string{offered, assigned, ready, pickedUp} {
		deliver(id)
	}
	// The acceptance timer set before the kill fires after the restart: the system cancels with a full refund.
	var last view
	waitFor(t, acceptSLA+time.Minute, 100*time.Millisecond, "the acceptance timer of "+pending+" to cancel it", func() bool {
		last = get(c[0], pending)
		return last.Status != "PENDING_ACCEPTANCE"
	})
	if last.Status != "CANCELLED" || last.CancelledBy != "CANCELLED_BY_SYSTEM" || last.RefundCents != last.TotalCents {
		t.Fatalf("order %s after its acceptance SLA: %+v, want CANCELLED by the system with a full refund", pending, last)
	}
	t.Logf("acceptance timer fired %v after the restart", time.Since(restarted).Round(time.Millisecond))
	for _, o := range orders[1:] {
		if v := get(o.c, o.id); v.Status != "DELIVERED" || v.DasherID != d.ID {
			t.Errorf("order %s at the end: %+v, want DELIVERED by %s", o.id, v, d.ID)
		}
	}

	// Every feed: what the follower read across the kill is the stored feed, dense from cursor 1, and no
	// workflow message reached a feed twice.
	for _, f := range w.feeds {
		stored := w.readFeed(t, f)
		waitFor(t, 30*time.Second, 50*time.Millisecond, "the follower of "+f.name+" to catch up", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.entries) >= len(stored)
		})
		seen := map[wFeedEntry]bool{}
		f.mu.Lock()
		for i, e := range stored {
			if e.Cursor != uint64(i+1) || f.entries[i] != e {
				t.Errorf("feed %s: cursor %d holds %+v, the follower read %+v", f.name, i+1, e, f.entries[i])
			}
			key := wFeedEntry{Type: e.Type, OrderID: e.OrderID}
			if seen[key] {
				t.Errorf("feed %s: %s of %s twice", f.name, e.Type, e.OrderID)
			}
			seen[key] = true
		}
		if len(f.gaps) > 0 {
			t.Errorf("feed %s: the follower saw gaps: %v", f.name, f.gaps)
		}
		f.mu.Unlock()
	}
	close(w.stopFeeds)
	w.followers.Wait()
	if failures := w.failuresNow(); len(failures) > 0 {
		t.Fatalf("workflow failures: %v", failures)
	}

	// At rest (payments settled, outboxes drained), the invariants over the node's journal, read after a clean stop.
	acked := []string{pending, offered, assigned, ready, pickedUp, delivered}
	waitFor(t, time.Minute, 200*time.Millisecond, "every payment to settle", func() bool {
		for _, o := range orders {
			var p struct {
				Payment struct {
					Status string `json:"status"`
				} `json:"payment"`
			}
			if !w.expect(apiReq{method: "GET", path: "/v1/orders/" + o.id, token: o.c.token}, 200, &p) {
				return false
			}
			if want := map[bool]string{true: "VOIDED", false: "CAPTURED"}[o.id == pending]; p.Payment.Status != want {
				return false
			}
		}
		return true
	})
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := n.proc.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	j, err := journal.OpenBolt(filepath.Join(n.dataDir, "journal.db"), journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	violations, err := actors.CheckInvariants(context.Background(), j, actors.InvariantOptions{Acknowledged: acked, Quiescent: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Errorf("invariant: %s", v)
	}
	if bad := lb.violations(); len(bad) > 0 {
		t.Errorf("answers that break the API contract: %v", bad)
	}
	t.Logf("%d orders, %d feeds checked; %d attempts retried across the kill", len(acked), len(w.feeds), len(lb.retriesSince(time.Time{})))
}
