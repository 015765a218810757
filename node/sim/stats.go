package sim

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are kept in HDR histograms in microseconds, from 1 µs to 10 min, with 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
)

// Stats collects the outcome of every call and every simulated step. It is safe for concurrent use.
type Stats struct {
	mu     sync.Mutex
	steps  map[string]*stepStats
	errors map[string]int64 // by code
	byStep map[string]int64 // by "step code"

	calls  atomic.Int64
	failed atomic.Int64
}

type stepStats struct {
	hist   *hdrhistogram.Histogram
	errors int64
}

// NewStats returns empty statistics.
func NewStats() *Stats {
	return &Stats{steps: map[string]*stepStats{}, errors: map[string]int64{}, byStep: map[string]int64{}}
}

// untimed are the steps whose duration says nothing about the system (a long poll lasts as long as it waits);
// only their outcomes count.
var untimed = map[string]bool{"feed.poll": true}

// Record implements Recorder: a call's duration (successful calls only) and its error code.
func (s *Stats) Record(step string, d time.Duration, err error) {
	s.calls.Add(1)
	if err != nil {
		s.failed.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.step(step)
	if err != nil {
		st.errors++
		code := ErrorCode(err)
		s.errors[code]++
		s.byStep[step+" "+code]++
		return
	}
	if !untimed[step] {
		_ = st.hist.RecordValue(max(int64(d/time.Microsecond), histMin))
	}
}

// Observe records a duration that is not one call (from a scheduled arrival to its placed order, a feed entry's
// journey to its poller, a whole lifecycle).
func (s *Stats) Observe(step string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.step(step).hist.RecordValue(min(max(int64(d/time.Microsecond), histMin), histMax))
}

// Count adds an outcome that is not a call's error (e.g. an arrival that found no idle customer).
func (s *Stats) Count(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors[code]++
}

func (s *Stats) step(name string) *stepStats {
	st, ok := s.steps[name]
	if !ok {
		st = &stepStats{hist: hdrhistogram.New(histMin, histMax, histDigits)}
		s.steps[name] = st
	}
	return st
}

// Calls returns how many calls were made and how many failed.
func (s *Stats) Calls() (total, failed int64) { return s.calls.Load(), s.failed.Load() }

// StepReport is the latency summary of one step, in milliseconds.
type StepReport struct {
	Step   string  `json:"step"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// Steps summarises every step, sorted by name.
func (s *Stats) Steps() []StepReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]StepReport, 0, len(s.steps))
	for name, st := range s.steps {
		out = append(out, summarize(name, st.hist, st.errors))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

// Step summarises one step (zero when it never happened).
func (s *Stats) Step(name string) StepReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.steps[name]
	if !ok {
		return StepReport{Step: name}
	}
	return summarize(name, st.hist, st.errors)
}

func summarize(name string, h *hdrhistogram.Histogram, errs int64) StepReport {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	r := StepReport{Step: name, Count: h.TotalCount(), Errors: errs}
	if r.Count > 0 {
		r.P50, r.P90, r.P99, r.Max = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90)), ms(h.ValueAtQuantile(99)), ms(h.Max())
	}
	return r
}

// Errors returns the counts by code, and by "step code".
func (s *Stats) Errors() (byCode, byStep map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byCode, byStep = make(map[string]int64, len(s.errors)), make(map[string]int64, len(s.byStep))
	for k, v := range s.errors {
		byCode[k] = v
	}
	for k, v := range s.byStep {
		byStep[k] = v
	}
	return byCode, byStep
}
