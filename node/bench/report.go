package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// write writes BENCHMARKS.md: the machine, every result with its ratio to its ceiling, the simulator reports,
// the edge and node profiles, the hand-written analysis (node/bench/analysis.md) and the failover measurements
// (node/bench/failover.md, from a system test the bench does not run).
func (r *results) write() error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`go run ./node/bench`) on %s; the run took %s. Numbers are from one run on the\n",
		time.Now().UTC().Format("2006-01-02"), time.Since(r.started).Round(time.Second))
	p("machine below; the simulator runs on the same machine as the node it drives, so they share the cores.\n\n")
	if r.opts.quick {
		p("**This is a --quick run: tiny scales and short runs that check the suite, not measurements.**\n\n")
	}
	p("| machine | |\n|---|---|\n")
	for _, kv := range r.info {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("| load average (1, 5, 15 min) before / after | %s / %s |\n\n", r.loadBefore, r.loadAfter)

	p("## Results\n\nEach result next to its ceiling, measured in the same run.\n\n")
	p("| group | measure | value | unit | ceiling | ratio | note |\n|---|---|---:|---|---|---:|---|\n")
	for _, x := range r.list {
		ratio, ceiling := "", ""
		if c, ok := r.find(x.ceiling); ok && c.value > 0 {
			ratio = fmt.Sprintf("%.1f%%", 100*x.value/c.value)
			ceiling = fmt.Sprintf("%s (%s %s)", x.ceiling, human(c.value), c.unit)
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", x.group, x.name, human(x.value), x.unit, ceiling, ratio, x.note)
	}
	if len(r.failures) > 0 {
		p("\nSteps that failed in this run:\n\n")
		for _, f := range r.failures {
			p("- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	if len(r.sims) > 0 {
		p("\n## Simulator scenarios\n\n`platter sim`'s engine in the bench process against `platter run` node processes (TLS; bbolt unless named).\n")
		for _, s := range r.sims {
			p("\n### %s\n\n`%s`; node resident memory at the end %.0f MiB. CPU during the %.0f s arrival window: "+
				"node %.0f s (%.2f cores), simulator %.0f s (%.2f cores).\n\n```\n", s.name, s.args, float64(s.rss)/(1<<20), s.wall.Seconds(),
				s.nodeCPU.Seconds(), s.nodeCPU.Seconds()/s.wall.Seconds(), s.simCPU.Seconds(), s.simCPU.Seconds()/s.wall.Seconds())
			var t strings.Builder
			s.report.WriteText(&t)
			p("%s```\n", t.String())
		}
	}
	if r.profile != "" {
		p("\n## Profile of the edge (BenchmarkEdgeStatus, -cpuprofile, top by cumulative time)\n\n```\n%s```\n", r.profile)
	}
	if r.nodeProf != "" {
		p("\n## Profile of the node under the simulator (--debug-addr, CPU, top by cumulative then flat time)\n\n```\n%s```\n", r.nodeProf)
	}
	for _, f := range []string{r.opts.analysis, r.opts.failover} {
		if a, err := os.ReadFile(f); err == nil {
			p("\n%s", a)
		}
	}
	return os.WriteFile(r.opts.out, []byte(b.String()), 0o644)
}
