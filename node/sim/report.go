package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Report is the outcome of a run. Durations are in seconds, latencies in milliseconds.
type Report struct {
	Targets     []string `json:"targets"`
	Restaurants int      `json:"restaurants"`
	Dashers     int      `json:"dashers"`
	Customers   int      `json:"customers"`
	TargetRate  float64  `json:"target_rate"`
	Setup       float64  `json:"setup_s"`
	Duration    float64  `json:"duration_s"` // the arrival window
	Elapsed     float64  `json:"elapsed_s"`  // arrival window plus drain

	Arrivals       int64   `json:"arrivals"`
	ArrivalRate    float64 `json:"arrival_rate"`
	Placed         int64   `json:"placed"`
	FailedArrivals int64   `json:"failed_arrivals"`
	Delivered      int64   `json:"delivered"`
	Cancelled      int64   `json:"cancelled"`
	Rejected       int64   `json:"rejected"`
	// LifecyclesPerSec counts the orders that ended (delivered, cancelled, rejected) during the arrival window,
	// per second of it: the sustained rate. LifecyclesPerSecAll counts every ending over window plus drain.
	LifecyclesPerSec    float64 `json:"lifecycles_per_s"`
	LifecyclesPerSecAll float64 `json:"lifecycles_per_s_incl_drain"`

	Steps        []StepReport     `json:"steps"`
	Errors       map[string]int64 `json:"errors"`
	ErrorsByStep map[string]int64 `json:"errors_by_step"`
	Invariants   Outcome          `json:"invariants"`
}

// Step returns the summary of one step (zero when absent).
func (r *Report) Step(name string) StepReport {
	for _, s := range r.Steps {
		if s.Step == name {
			return s
		}
	}
	return StepReport{Step: name}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// expected are the codes that are outcomes of the simulated behaviour, not faults: dashers racing for an offer,
// a customer cancelling after pickup, an arrival with no idle customer.
var expected = map[string]string{
	"OFFER_TAKEN":             "another dasher accepted first",
	"OFFER_EXPIRED":           "the offer ended before the answer",
	"ORDER_NOT_CANCELLABLE":   "the customer cancelled after pickup",
	"SIM_CANCEL_TOO_LATE":     "(the same, counted once per cancellation)",
	"SIM_STEP_AFTER_CANCEL":   "a kitchen step refused FAILED_PRECONDITION: the customer had cancelled",
	"SIM_NO_IDLE_CUSTOMER":    "an arrival waited for a customer (raise --customers)",
	"SIM_NO_RESTAURANT_FOUND": "a search near the customer found nothing to order",
}

// WriteText writes the human report.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("Platter simulation against %s\n", strings.Join(r.Targets, ", "))
	p("  population   %d restaurants, %d dashers, %d customers (setup %.1f s)\n", r.Restaurants, r.Dashers, r.Customers, r.Setup)
	p("  arrivals     %d in %.1f s (%.1f/s, target %.1f/s, open loop); placed %d, failed %d\n",
		r.Arrivals, r.Duration, r.ArrivalRate, r.TargetRate, r.Placed, r.FailedArrivals)
	p("  lifecycles   %.1f/s sustained (%.1f/s including the %.1f s drain): delivered %d, cancelled %d, rejected %d, in flight %d\n",
		r.LifecyclesPerSec, r.LifecyclesPerSecAll, r.Elapsed-r.Duration, r.Delivered, r.Cancelled, r.Rejected, sum(r.Invariants.InFlight))
	p("\n  %-28s %9s %7s %9s %9s %9s %9s\n", "latency (ms)", "count", "errors", "p50", "p90", "p99", "max")
	for _, s := range r.Steps {
		p("  %-28s %9d %7d %9.2f %9.2f %9.2f %9.2f\n", s.Step, s.Count, s.Errors, s.P50, s.P90, s.P99, s.Max)
	}
	p("  (arrival.* are measured from each arrival's scheduled time; feed.delivery from an entry's time to its poller)\n")
	if len(r.Errors) > 0 {
		p("\n  errors by code\n")
		for _, code := range sortedKeys(r.Errors) {
			note := expected[code]
			if note != "" {
				note = "  expected: " + note
			}
			p("    %-30s %8d%s\n", code, r.Errors[code], note)
		}
		p("  by step\n")
		for _, k := range sortedKeys(r.ErrorsByStep) {
			p("    %-50s %8d\n", k, r.ErrorsByStep[k])
		}
	}
	inv := r.Invariants
	p("\n  invariants   %d placed orders, %d feed entries in %d feeds\n", inv.Placed, inv.Entries, inv.Feeds)
	p("    ended %v; in flight at the end (status read) %v\n", inv.Ended, inv.InFlight)
	if inv.OK() {
		p("    OK: feeds in cursor order without gaps, at most one dasher per order, one ending per order, every placed order accounted for\n")
		return
	}
	p("    %d VIOLATIONS\n", len(inv.Violations))
	for i, v := range inv.Violations {
		if i == 20 {
			p("    … %d more\n", len(inv.Violations)-20)
			break
		}
		p("    %s\n", v)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
