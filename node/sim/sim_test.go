package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConfig is a small, fast simulation against f.
func fakeConfig(f *fakeAPI) Config {
	return Config{
		Targets: []string{f.srv.URL}, OperatorID: "op", OperatorSecret: "op-secret",
		Restaurants: 4, Dashers: 6, Customers: 30, DasherCapacity: 2,
		Rate: 25, Duration: 2 * time.Second, PrepTime: 20 * time.Millisecond, TravelTime: 20 * time.Millisecond,
		MoveEvery: 200 * time.Millisecond, CustomerGap: 100 * time.Millisecond, PollWait: 2 * time.Second, Drain: 10 * time.Second,
		RejectShare: 0.1, CancelShare: 0.2, DeclineShare: 0.2, Seed: 7,
	}
}

func runSim(t *testing.T, cfg Config) *Report {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func reportText(r *Report) string {
	var b bytes.Buffer
	r.WriteText(&b)
	return b.String()
}

// TestRunAgainstFake drives the whole workflow through the fake API: every arrival is scheduled, every placed order
// ends, the invariants hold, and the report has the steps and the JSON form.
func TestRunAgainstFake(t *testing.T) {
	f := newFakeAPI(t, fakeFaults{})
	var progress bytes.Buffer
	cfg := fakeConfig(f)
	cfg.Progress, cfg.ProgressEvery = &syncWriter{w: &progress}, 200*time.Millisecond
	r := runSim(t, cfg)
	text := reportText(r)
	if r.Arrivals != 50 {
		t.Errorf("arrivals %d, want 50 (25/s for 2 s, evenly)", r.Arrivals)
	}
	if r.Placed+r.FailedArrivals != r.Arrivals || r.Placed < 45 {
		t.Errorf("placed %d + failed %d of %d arrivals", r.Placed, r.FailedArrivals, r.Arrivals)
	}
	if ended := r.Delivered + r.Cancelled + r.Rejected; ended != r.Placed {
		t.Errorf("ended %d of %d placed\n%s", ended, r.Placed, text)
	}
	if r.Delivered == 0 || r.Cancelled == 0 {
		t.Errorf("no delivery or no cancellation\n%s", text)
	}
	if !r.Invariants.OK() {
		t.Errorf("invariants broken:\n%s", text)
	}
	// The fake refuses a kitchen step only for an order its customer cancelled.
	if r.Errors["FAILED_PRECONDITION"] != r.Errors["SIM_STEP_AFTER_CANCEL"] {
		t.Errorf("FAILED_PRECONDITION not explained by cancellations:\n%s", text)
	}
	for _, step := range []string{"order.place", "search", "cart.add", "restaurant.accept", "restaurant.ready", "restaurant.picked_up",
		"dasher.accept_offer", "dasher.delivered", "arrival.to_placed", "feed.delivery", "lifecycle.delivered", "oauth.refresh"} {
		if s := r.Step(step); s.Count == 0 {
			t.Errorf("no %s in the report\n%s", step, text)
		}
	}
	if st := f.statuses(); st["DELIVERED"]+st["CANCELLED"]+st["REJECTED"] != int(r.Placed) {
		t.Errorf("the fake's orders %v, placed %d", st, r.Placed)
	}
	if !strings.Contains(progress.String(), "placed") {
		t.Errorf("no progress lines: %q", progress.String())
	}
	var back Report
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || back.Placed != r.Placed {
		t.Errorf("JSON report does not round-trip: %v\n%s", err, js.String())
	}
}

// TestOpenLoopMeasuresFromSchedule: with too few customers for the rate, arrivals are still scheduled by the clock,
// they wait for a customer, and arrival.to_placed includes that wait (the back-pressure is visible, not hidden).
func TestOpenLoopMeasuresFromSchedule(t *testing.T) {
	f := newFakeAPI(t, fakeFaults{})
	cfg := fakeConfig(f)
	cfg.Customers, cfg.CustomerGap, cfg.Rate, cfg.Duration = 2, 250*time.Millisecond, 20, time.Second
	cfg.CancelShare, cfg.RejectShare = -1, -1
	r := runSim(t, cfg)
	if r.Arrivals != 20 {
		t.Fatalf("arrivals %d, want 20 whatever the server's pace", r.Arrivals)
	}
	if r.Errors["SIM_NO_IDLE_CUSTOMER"] == 0 {
		t.Fatalf("no arrival waited for a customer:\n%s", reportText(r))
	}
	// 2 customers, one visit each per 250 ms: the 20th arrival (scheduled at 950 ms) is served around 2.5 s, so
	// the p99 from the schedule is over a second, while one placement takes milliseconds.
	placed, call := r.Step("arrival.to_placed"), r.Step("order.place")
	if placed.P99 < 1000 || call.P99 > 500 {
		t.Fatalf("arrival.to_placed p99 %.1f ms, order.place p99 %.1f ms:\n%s", placed.P99, call.P99, reportText(r))
	}
}

// TestPoissonArrivals: the Poisson schedule makes about rate × duration arrivals.
func TestPoissonArrivals(t *testing.T) {
	f := newFakeAPI(t, fakeFaults{})
	cfg := fakeConfig(f)
	cfg.Poisson, cfg.Rate, cfg.Duration, cfg.Customers = true, 100, time.Second, 120
	r := runSim(t, cfg)
	if r.Arrivals < 70 || r.Arrivals > 130 {
		t.Fatalf("arrivals %d, want about 100", r.Arrivals)
	}
}

// TestCheckerCatchesViolations: the fake skips a feed cursor, or lets two dashers take one order; the report says so.
func TestCheckerCatchesViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults fakeFaults
		rule   string
	}{
		{"gap in a customer feed", fakeFaults{gapInCustomerFeed: true}, "feed-order"},
		{"two dashers on one order", fakeFaults{doubleAssign: true}, "one-dasher"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t, tc.faults)
			cfg := fakeConfig(f)
			cfg.DeclineShare, cfg.CancelShare, cfg.RejectShare, cfg.Duration = -1, -1, -1, time.Second
			r := runSim(t, cfg)
			found := false
			for _, v := range r.Invariants.Violations {
				found = found || v.Rule == tc.rule
			}
			if !found {
				t.Fatalf("no %s violation:\n%s", tc.rule, reportText(r))
			}
			if !strings.Contains(reportText(r), "VIOLATIONS") {
				t.Fatal("the text report does not show the violations")
			}
		})
	}
}

// TestFailedPlacementsAreCounted: a 503 on placing an order is an error by code and a failed arrival, and the
// customer's cart is emptied before its next order.
func TestFailedPlacementsAreCounted(t *testing.T) {
	f := newFakeAPI(t, fakeFaults{failPlace: 4})
	cfg := fakeConfig(f)
	cfg.Customers, cfg.CancelShare, cfg.RejectShare = 5, -1, -1
	r := runSim(t, cfg)
	if r.Errors["UNAVAILABLE"] == 0 || r.FailedArrivals == 0 || r.ErrorsByStep["order.place UNAVAILABLE"] == 0 {
		t.Fatalf("503s not counted:\n%s", reportText(r))
	}
	if r.Errors["CART_CONFLICT"] != 0 || r.Step("cart.get").Count == 0 {
		t.Fatalf("the cart of a failed arrival was not cleared:\n%s", reportText(r))
	}
	if !r.Invariants.OK() {
		t.Fatalf("invariants:\n%s", reportText(r))
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
