package main

// Cluster-mode system tests (issue "Cluster mode"): three platter processes on 127.0.0.1, .2 and .3 sharing one
// private PostgreSQL journal (pgtest), a steady flow of orders through the HTTP API (workload_test.go), and one
// fault each: kill -9 of the node hosting the most orders, a graceful drain, a fourth node joining, one node cut off
// from the others for 30 s and healed. Each test proves its fault fired, and ends with workload.finish: every
// acknowledged order present and delivered (or ended by policy), at most one dasher per order, transitions only
// from the table and the other invariants over the PostgreSQL journal, no feed entry missing for any cursor.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/platterhq/platter/cluster"
)

// adminView is GET /v1/admin/cluster.
type adminView struct {
	Ready   bool   `json:"ready"`
	State   string `json:"state"`
	Members []struct {
		ID            string            `json:"id"`
		Status        string            `json:"status"`
		Draining      bool              `json:"draining"`
		Self          bool              `json:"self"`
		RemoteAddress string            `json:"remote_address"`
		Attributes    map[string]string `json:"attributes"`
	} `json:"members"`
	Activations map[string]int `json:"activations"`
}

// admin reads n's /v1/admin/cluster directly (not through the balancer); ok is false when n does not answer.
func admin(n *sysNode, operator string) (adminView, bool) {
	var v adminView
	req, _ := nethttp.NewRequest("GET", n.url()+"/v1/admin/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	hc := &nethttp.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	res, err := hc.Do(req)
	if err != nil {
		return v, false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return v, res.StatusCode == 200 && json.Unmarshal(b, &v) == nil
}

// faultCluster is three nodes on one shared PostgreSQL journal, behind a balancing client, with an operator token.
type faultCluster struct {
	nodes    []*sysNode
	lb       *lbClient
	operator string
	dsn      string
}

func startFaultCluster(t *testing.T, prepare ...func([]*sysNode)) *faultCluster {
	t.Helper()
	nodes := startCluster(t, prepare...)
	for _, n := range nodes {
		waitStarted(t, n)
	}
	lb := newLBClient(t, nodes...)
	fc := &faultCluster{nodes: nodes, lb: lb, operator: operatorToken(t, lb, nodes), dsn: clusterJournal(t)}
	// Every node announces the same journal.
	for _, n := range nodes {
		v, ok := admin(n, fc.operator)
		if !ok {
			t.Fatalf("%s: no cluster view", n.name)
		}
		for _, m := range v.Members {
			if j := m.Attributes[journalAttribute]; !strings.HasPrefix(j, journalPostgres+":") {
				t.Fatalf("%s lists member %s with journal %q, want the shared PostgreSQL one", n.name, m.ID, j)
			}
		}
	}
	return fc
}

// waitStarted waits until n's Run has finished (its "node started" line): /readyz answers 200 as soon as the
// node serves actors, a little before Run has also readied the authorization server.
func waitStarted(t *testing.T, n *sysNode) {
	t.Helper()
	waitFor(t, 60*time.Second, 20*time.Millisecond, n.name+" to finish starting", func() bool {
		select {
		case <-n.proc.done:
			t.Fatalf("%s exited while starting: %q", n.name, n.proc.stderrLines())
		default:
		}
		return logHas(n, "node started")
	})
}

// logHas reports whether n's log (stdout, JSON lines) has a line with message msg.
func logHas(n *sysNode, msg string) bool {
	return strings.Contains(n.proc.output(), `"msg":"`+msg+`"`)
}

// TestSystemFailoverKill: kill -9 of the node hosting the most orders while orders flow. Its identities activate
// on the survivors from the journal: every acknowledged order it hosted answers 200 through a survivor. Requests
// caught by the kill got 503 problem+json with Retry-After (or no answer from the dead edge) and succeeded when
// retried through another edge (the balancer flags any other 5xx; workload.finish fails on a request that never
// succeeded); at least one was caught. Nothing acknowledged is lost.
func TestSystemFailoverKill(t *testing.T) {
	fc := startFaultCluster(t)
	w := newWorkload(t, fc.lb, fc.operator, 3, 6, 8)
	w.start()
	w.waitDelivered(t, 10, 90*time.Second, "before the kill")

	var victim *sysNode
	most := -1
	for _, n := range fc.nodes {
		v, ok := admin(n, fc.operator)
		if !ok {
			t.Fatalf("%s: no cluster view", n.name)
		}
		if v.Activations["Order"] > most {
			victim, most = n, v.Activations["Order"]
		}
	}
	if most == 0 {
		t.Fatal("no node hosts an order before the kill: the kill would touch none")
	}
	survivors := slices.DeleteFunc(slices.Clone(fc.nodes), func(n *sysNode) bool { return n == victim })
	// The acknowledged orders the victim hosts: activations follow ownership (TestSystemScaleOut).
	remotes := make([]string, len(fc.nodes))
	for i, n := range fc.nodes {
		remotes[i] = n.remo
	}
	var hosted []*wOrder
	w.mu.Lock()
	for id, o := range w.acked {
		if cluster.OwnerAmong(id, remotes) == victim.remo {
			hosted = append(hosted, o)
		}
	}
	w.mu.Unlock()
	if len(hosted) == 0 {
		t.Fatalf("%s hosts %d orders but owns none of the acknowledged ones", victim.name, most)
	}
	pid := victim.proc.cmd.Process.Pid
	killedAt := time.Now()
	victim.proc.kill() // SIGKILL, waits for the exit
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d of %s still exists after kill -9 (kill 0: %v)", pid, victim.name, err)
	}
	took := waitMembers(t, survivors, 2, 30*time.Second)
	t.Logf("killed %s (pid %d, %d active orders); survivors listed 2 members after %v", victim.name, pid, most, took)

	// Every order the victim hosted answers again, through a survivor's edge, once a survivor has activated it.
	// The client waits longer than the edge's request timeout (5 s), so a slow cluster shows as the edge's 503.
	hc := &nethttp.Client{Timeout: 15 * time.Second}
	defer hc.CloseIdleConnections()
	for i, o := range hosted {
		n := survivors[i%len(survivors)]
		waitFor(t, 60*time.Second, 50*time.Millisecond, "order "+o.id+" of the killed node to answer through "+n.name, func() bool {
			ok, err := orderAnswers(hc, n, o.id, w.customerToken(o.customer))
			if err != nil {
				t.Fatalf("after the kill: %v", err)
			}
			return ok
		})
	}
	took = time.Since(killedAt)
	w.waitDelivered(t, 15, 2*time.Minute, "after the kill")
	moved := 0
	for _, n := range survivors {
		v, _ := admin(n, fc.operator)
		moved += v.Activations["Order"]
	}
	// Requests caught by the kill: no answer from the dead edge, or 503 (the balancer checked each 503 for
	// problem+json, Retry-After and code UNAVAILABLE or NOT_READY). Each was retried until it succeeded.
	var dead, unavailable int
	for _, a := range fc.lb.retriesSince(killedAt) {
		switch {
		case a.status == 0 && a.edge == victim.name:
			dead++
		case a.status == 503:
			unavailable++
		}
	}
	t.Logf("after the kill: the %d orders %s hosted answered through the survivors within %v; %d attempts got no answer from the dead edge and %d a 503, all retried; %d orders active on the survivors",
		len(hosted), victim.name, took.Round(time.Millisecond), dead, unavailable, moved)
	if dead+unavailable == 0 {
		t.Fatal("no request was caught by the kill: nothing shows requests in flight get 503 or succeed on retry")
	}
	w.finish(t, fc.dsn)
}

// orderAnswers reports whether GET /v1/orders/{id}/status answers 200 through n's edge. The 503 the edge gives
// while the cluster cannot reach the order (problem+json, Retry-After, code UNAVAILABLE or NOT_READY: the only 503
// codes of http/errors.go) means "not yet" and is polled through; an order whose placement is still waiting
// answers its customer 200 from the orders index. Every other answer, or none, is an error: the caller fails. An
// order that never comes back is caught by the caller's deadline.
func orderAnswers(hc *nethttp.Client, n *sysNode, id, token string) (bool, error) {
	req, err := nethttp.NewRequest("GET", n.url()+"/v1/orders/"+id+"/status", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET status of %s via %s: %w", id, n.name, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return false, fmt.Errorf("GET status of %s via %s: read the answer: %w", id, n.name, err)
	}
	if res.StatusCode == 200 {
		return true, nil
	}
	var p struct {
		Code string `json:"code"`
	}
	problem := strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") && json.Unmarshal(b, &p) == nil
	retryAfter, raErr := strconv.Atoi(res.Header.Get("Retry-After"))
	if res.StatusCode == 503 && problem && raErr == nil && retryAfter > 0 && (p.Code == "UNAVAILABLE" || p.Code == "NOT_READY") {
		return false, nil
	}
	return false, fmt.Errorf("GET status of %s via %s: %d (Content-Type %q, Retry-After %q): %s", id, n.name,
		res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"), truncateBytes(b, 200))
}

// TestOrderAnswers: orderAnswers polls through the 503 the edge gives while an order is unreachable and reports
// every other answer but 200 (or none) as an error.
func TestOrderAnswers(t *testing.T) {
	problem := func(status int, code, retryAfter string) nethttp.HandlerFunc {
		return func(w nethttp.ResponseWriter, _ *nethttp.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"type":"about:blank","status":%d,"code":%q}`, status, code)
		}
	}
	for _, tc := range []struct {
		name    string
		answer  nethttp.HandlerFunc
		ok, bad bool
	}{
		{"200", func(w nethttp.ResponseWriter, _ *nethttp.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"o_1","status":"PENDING_ACCEPTANCE"}`)
		}, true, false},
		{"503 UNAVAILABLE", problem(503, "UNAVAILABLE", "1"), false, false},
		{"503 NOT_READY", problem(503, "NOT_READY", "1"), false, false},
		{"404 NOT_FOUND", problem(404, "NOT_FOUND", ""), false, true},
		{"503 without Retry-After", problem(503, "UNAVAILABLE", ""), false, true},
		{"503 with a date as Retry-After", problem(503, "UNAVAILABLE", "Wed, 25 Nov 2026 21:00:00 GMT"), false, true},
		{"503 INTERNAL", problem(503, "INTERNAL", "1"), false, true},
		{"503 not problem+json", func(w nethttp.ResponseWriter, _ *nethttp.Request) {
			w.Header().Set("Retry-After", "1")
			nethttp.Error(w, "unavailable", nethttp.StatusServiceUnavailable)
		}, false, true},
		{"500 INTERNAL", problem(500, "INTERNAL", ""), false, true},
		{"502", problem(502, "UNAVAILABLE", "1"), false, true},
		{"401 UNAUTHENTICATED", problem(401, "UNAUTHENTICATED", ""), false, true},
		{"403 PERMISSION_DENIED", problem(403, "PERMISSION_DENIED", ""), false, true},
		{"404 not problem+json", func(w nethttp.ResponseWriter, _ *nethttp.Request) { nethttp.NotFound(w, nil) }, false, true},
		{"no answer", nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.answer)
			if tc.answer == nil {
				srv.Close() // connection refused
			} else {
				defer srv.Close()
			}
			n := &sysNode{name: "n1", httpAddr: strings.TrimPrefix(srv.URL, "http://")}
			hc := &nethttp.Client{Timeout: 5 * time.Second}
			ok, err := orderAnswers(hc, n, "o_1", "token")
			if ok != tc.ok || (err != nil) != tc.bad {
				t.Fatalf("orderAnswers = %v, %v; want ok %v, error %v", ok, err, tc.ok, tc.bad)
			}
		})
	}
}

// TestSystemDrain: a node is drained while orders flow, by POST /v1/admin/drain and by SIGTERM (both end in
// Main.Close). The node hands its identities over, stops its edge, leaves and exits 0, and no client request
// fails meanwhile: the balancer stops sending to it when its /readyz turns 503, and what was in flight finishes.
func TestSystemDrain(t *testing.T) {
	tests := []struct {
		name  string
		drain func(t *testing.T, fc *faultCluster, n *sysNode)
	}{
		{"POST /v1/admin/drain", func(t *testing.T, fc *faultCluster, n *sysNode) {
			req, _ := nethttp.NewRequest("POST", n.url()+"/v1/admin/drain", nil)
			req.Header.Set("Authorization", "Bearer "+fc.operator)
			res, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 202 {
				t.Fatalf("POST /v1/admin/drain: %d", res.StatusCode)
			}
		}},
		{"SIGTERM", func(t *testing.T, _ *faultCluster, n *sysNode) {
			if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testDrain(t, tt.name, tt.drain) })
	}
}

func testDrain(t *testing.T, how string, drain func(t *testing.T, fc *faultCluster, n *sysNode)) {
	fc := startFaultCluster(t)
	w := newWorkload(t, fc.lb, fc.operator, 3, 6, 8)
	w.start()
	w.waitDelivered(t, 10, 90*time.Second, "before the drain")

	victim := fc.nodes[1]
	v, ok := admin(victim, fc.operator)
	if !ok || v.State != "serving" {
		t.Fatalf("%s before the drain: %+v", victim.name, v)
	}
	hosted := 0
	for _, n := range v.Activations {
		hosted += n
	}
	if hosted == 0 {
		t.Fatalf("%s hosts no actor before the drain", victim.name)
	}
	drainAt := time.Now()
	drain(t, fc, victim)
	if code := victim.proc.wait(60 * time.Second); code != 0 {
		t.Fatalf("%s exited %d after the drain, want 0", victim.name, code)
	}
	exited := time.Since(drainAt)
	for _, msg := range []string{"draining", "drained", "http edge stopped", "left the cluster"} {
		if !logHas(victim, msg) {
			t.Fatalf("%s's log has no %q line", victim.name, msg)
		}
	}
	if lines := victim.proc.stderrLines(); len(lines) != 0 {
		t.Fatalf("%s's stderr after the drain: %q", victim.name, lines)
	}
	survivors := []*sysNode{fc.nodes[0], fc.nodes[2]}
	waitMembers(t, survivors, 2, 10*time.Second)
	t.Logf("%s hosted %d actors, drained and exited %v after %s", victim.name, hosted, exited, how)

	w.waitDelivered(t, 10, 90*time.Second, "after the drain")
	var failed []string
	for _, a := range fc.lb.retriesSince(drainAt) {
		if a.status != 429 { // the order rate limit answers 429 whatever the drain does
			failed = append(failed, a.String())
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d requests failed during the drain (and were retried): %v", len(failed), failed)
	}
	w.finish(t, fc.dsn)
}

// TestSystemScaleOut: a fourth node joins (127.0.0.4) while orders flow. It takes a share of the identities, and
// the activations the other nodes no longer own are passivated there: once every identity has been touched
// again, each node hosts exactly the identities it owns in the four-node view, and no identity is active twice.
func TestSystemScaleOut(t *testing.T) {
	fc := startFaultCluster(t)
	w := newWorkload(t, fc.lb, fc.operator, 3, 6, 8)
	w.start()
	w.waitDelivered(t, 10, 90*time.Second, "before the join")

	before := 0
	for _, n := range fc.nodes {
		v, _ := admin(n, fc.operator)
		before += v.Activations["Order"]
	}
	n4 := newSysNode(t, "n4", "127.0.0.4", fc.nodes[0].clusterAddr)
	n4.start(t)
	waitStarted(t, n4)
	useToken(t, n4.url(), fc.operator) // for waitMembers
	all := append(slices.Clone(fc.nodes), n4)
	waitMembers(t, all, 4, 60*time.Second)
	if !logHas(n4, "joined cluster") {
		t.Fatal("n4's log has no \"joined cluster\" line")
	}
	fc.lb.add(n4)
	fc.lb.waitReady(t, 4)
	w.waitDelivered(t, 10, 90*time.Second, "after the join")
	w.finish(t, fc.dsn)

	// Touch every known identity of the four counted kinds again, then compare each node's activations with the
	// identities it owns in the four-node view (cluster.OwnerAmong computes owners the way every member does).
	remotes := make([]string, len(all))
	for i, n := range all {
		remotes[i] = n.remo
	}
	want := map[string]map[string]int{} // node → kind → identities it owns
	for _, n := range all {
		want[n.name] = map[string]int{}
	}
	own := func(kind, id string) {
		owner := cluster.OwnerAmong(id, remotes)
		for _, n := range all {
			if n.remo == owner {
				want[n.name][kind]++
			}
		}
	}
	touch := func(path, token string) {
		t.Helper()
		res, err := fc.lb.do(apiReq{method: "GET", path: path, token: token})
		if err != nil || res.status != 200 {
			t.Fatalf("GET %s: %v %v", path, res, err)
		}
	}
	for id, o := range w.acked {
		touch("/v1/orders/"+id+"/status", w.customerToken(o.customer))
		own("Order", id)
	}
	for _, c := range w.customers {
		touch("/v1/customers/me", c.token)
		own("Customer", c.id)
	}
	for _, d := range w.dashers {
		touch("/v1/dashers/me", d.token)
		own("Dasher", d.id)
	}
	for _, r := range w.restaurants {
		touch("/v1/restaurants/"+r.id, r.token)
		own("Restaurant", r.id)
	}
	var got map[string]map[string]int
	matches := func() bool {
		got = map[string]map[string]int{}
		for _, n := range all {
			v, ok := admin(n, fc.operator)
			if !ok {
				return false
			}
			got[n.name] = map[string]int{}
			for _, kind := range []string{"Order", "Customer", "Dasher", "Restaurant"} {
				got[n.name][kind] = v.Activations[kind]
				if v.Activations[kind] != want[n.name][kind] {
					return false
				}
			}
		}
		return true
	}
	if err := pollUntil(10*time.Second, matches); err != nil {
		t.Fatalf("activations per node %v, want the identities each owns %v", got, want)
	}
	if sum(want["n4"]) == 0 {
		t.Fatalf("n4 owns none of the identities: %v", want)
	}
	t.Logf("%d orders were active before the join; activations now match ownership: %v", before, got)
}

func sum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// pollUntil polls cond every 50 ms until it holds or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// TestSystemPartition: one node is cut off from the other two for 30 s while orders flow, then healed. The cut
// is the one the issue allows: a fault-injecting memberlist transport (SIGUSR1 in a -tags platterfaults build
// drops the node's gossip both ways) plus a TCP proxy in front of every node's remote port (each node advertises
// its proxy with --remote-advertise-addr): the cut-off node's proxy refuses new connections and severs the
// established ones, and the other nodes' proxies do the same to the connections the cut-off node dialed. Both
// counts must be > 0: the cut fired on the remote port, both ways. The edges and the journal stay reachable.
// Hearing nobody, the cut-off node suspends its activations (its lease lapses) before the majority declares it
// dead and serves its identities; it then finds itself isolated and fences itself; after the heal it rejoins
// under a fresh member id and serves again.
func TestSystemPartition(t *testing.T) {
	proxies := map[*sysNode]*remoteProxy{}
	fc := startFaultCluster(t, func(nodes []*sysNode) {
		for _, n := range nodes {
			n.faults = true // SIGUSR1/SIGUSR2 below
			proxies[n] = startRemoteProxy(t, n.ip, n.remo)
			n.remoteAdvertise = proxies[n].addr()
		}
	})
	// Every node dials the others through their proxies: each lists every member at its proxy's address.
	advertised := map[string]bool{}
	for _, p := range proxies {
		advertised[p.addr()] = true
	}
	for _, n := range fc.nodes {
		v, _ := admin(n, fc.operator)
		for _, m := range v.Members {
			if !advertised[m.RemoteAddress] {
				t.Fatalf("%s lists member %s at remote address %q, not at a proxy", n.name, m.ID, m.RemoteAddress)
			}
		}
	}
	w := newWorkload(t, fc.lb, fc.operator, 3, 6, 8)
	w.start()
	w.waitDelivered(t, 10, 90*time.Second, "before the partition")

	victim := fc.nodes[2]
	majority := fc.nodes[:2]
	before, _ := admin(victim, fc.operator)
	var oldID string
	for _, m := range before.Members {
		if m.Self {
			oldID = m.ID
		}
	}
	pids := make([]int, len(fc.nodes))
	for i, n := range fc.nodes {
		pids[i] = n.proc.cmd.Process.Pid
	}
	vpid := victim.proc.cmd.Process.Pid
	cutAt := time.Now()
	proxies[victim].setCut(pids, func(int) bool { return true })
	for _, n := range majority {
		proxies[n].setCut(pids, func(dialer int) bool { return dialer == vpid })
	}
	if err := victim.proc.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, 20*time.Millisecond, "the fault to be injected", func() bool { return logHas(victim, "fault injected") })
	// Hearing nobody, the cut-off node stops its activations (its lease lapses) before the majority takes over.
	waitFor(t, 10*time.Second, 20*time.Millisecond, victim.name+"'s lease to lapse", func() bool {
		return logHas(victim, "lease lapsed: no other member heard; activations suspended")
	})
	took := waitMembers(t, majority, 2, 30*time.Second)
	waitFor(t, 30*time.Second, 50*time.Millisecond, victim.name+" to fence itself", func() bool {
		return logHas(victim, "fencing: this member was declared dead")
	})
	if out := victim.proc.output(); !strings.Contains(out, "isolated") && !strings.Contains(out, "declared dead by a majority") {
		t.Fatalf("%s fenced itself without saying it lost its peers", victim.name)
	}
	t.Logf("cut %s off; the majority dropped it after %v and it fenced itself (lost its peers)", victim.name, took)
	w.waitDelivered(t, 10, 90*time.Second, "during the partition")
	if v, ok := admin(victim, fc.operator); !ok || v.Ready {
		t.Fatalf("the cut-off node reports ready during the partition: %+v", v)
	}

	select {
	case <-time.After(time.Until(cutAt.Add(30 * time.Second))): // the partition lasts 30 s
	case <-victim.proc.done:
		t.Fatalf("%s exited during the partition", victim.name)
	}
	// The proof that the remote port was cut both ways: connections of the majority to the cut-off node, and of
	// the cut-off node to the majority, were refused or severed by the proxies.
	inbound, outbound := 0, 0
	for _, n := range majority {
		inbound += proxies[victim].cutFrom(n.proc.cmd.Process.Pid)
		outbound += proxies[n].cutFrom(vpid)
	}
	t.Logf("remote connections refused or severed by the proxies during the cut: %d to %s, %d from it", inbound, victim.name, outbound)
	if inbound == 0 || outbound == 0 {
		t.Fatalf("the partition did not cut the remote port both ways: %d connections to %s and %d from it refused or severed",
			inbound, victim.name, outbound)
	}
	for _, p := range proxies {
		p.setCut(nil, nil)
	}
	if err := victim.proc.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	waitFor(t, 5*time.Second, 20*time.Millisecond, "the fault to be healed", func() bool { return logHas(victim, "fault healed") })
	waitFor(t, 60*time.Second, 50*time.Millisecond, victim.name+" to rejoin", func() bool { return logHas(victim, "rejoined after fence") })
	waitMembers(t, fc.nodes, 3, 60*time.Second)
	after, _ := admin(victim, fc.operator)
	for _, m := range after.Members {
		if m.Self && m.ID == oldID {
			t.Fatalf("%s rejoined under its old member id %s", victim.name, oldID)
		}
	}
	fc.lb.waitReady(t, 3)
	t.Logf("healed after %v; %s rejoined in %v", healedAt.Sub(cutAt).Round(time.Second), victim.name, time.Since(healedAt))
	w.waitDelivered(t, 10, 90*time.Second, "after the heal")
	if v, _ := admin(victim, fc.operator); sum(v.Activations) == 0 {
		t.Fatalf("%s hosts no actor after it rejoined", victim.name)
	}
	lost := 0
	for _, n := range fc.nodes {
		lost += strings.Count(n.proc.output(), `"msg":"activation lost the write race"`)
	}
	t.Logf("activations that lost a fenced write to another activation of the same identity: %d", lost)
	w.finish(t, fc.dsn)
}

// TestSystemJournalRefusal: a node with the default bbolt journal keeps its state to itself. It refuses --join
// (one line, exit 1), and a node on PostgreSQL that tries to join it is refused at once, with one line saying why;
// the bbolt node logs the refusal and goes on alone.
func TestSystemJournalRefusal(t *testing.T) {
	solo := newSysNode(t, "bbolt", "127.0.0.1", "")
	solo.journal = ""
	solo.start(t)
	waitFor(t, 30*time.Second, 50*time.Millisecond, "the bbolt node ready", func() bool {
		status, _, err := tryCall("GET", solo.url()+"/readyz", "")
		return err == nil && status == 200
	})

	joiner := newSysNode(t, "pg", "127.0.0.2", solo.clusterAddr)
	joiner.start(t)
	if code := joiner.proc.wait(30 * time.Second); code == 0 {
		t.Fatal("a PostgreSQL node joined a bbolt node")
	}
	lines := joiner.proc.stderrLines()
	want := "platter: refusing to join the cluster: the member at " + solo.clusterAddr + ": that member keeps its actors' state in a node-local bbolt journal"
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Fatalf("stderr %q, want one line starting %q", lines, want)
	}
	waitFor(t, 5*time.Second, 20*time.Millisecond, "the bbolt node to log the refusal", func() bool { return logHas(solo, "member refused") })
	if status, _, err := tryCall("GET", solo.url()+"/readyz", ""); err != nil || status != 200 {
		t.Fatalf("the bbolt node after the refused join: %d %v", status, err)
	}
}

// TestFailoverBenchmark measures failover (not a timed assertion; run it with PLATTER_FAILOVER_BENCH=1): three
// nodes, orders on all of them; repeatedly kill -9 a node, and time from the kill to the first successful request
// (GET /v1/orders/{id}/status, through a surviving edge) for an order the killed node hosted; restart the node,
// let it rejoin, next. Reports p50 and p99 over PLATTER_FAILOVER_KILLS kills (default 12, at least 10).
// PLATTER_FAILOVER_PROFILE picks the cluster profile (local, the default: tuned memberlist timings; or lan).
func TestFailoverBenchmark(t *testing.T) {
	if os.Getenv("PLATTER_FAILOVER_BENCH") == "" {
		t.Skip("benchmark: set PLATTER_FAILOVER_BENCH=1")
	}
	kills := 12
	if s := os.Getenv("PLATTER_FAILOVER_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("PLATTER_FAILOVER_KILLS=%q: want a number of at least 10", s)
		}
		kills = n
	}
	profile := os.Getenv("PLATTER_FAILOVER_PROFILE")
	if profile == "" {
		profile = "local"
	}
	n1 := newSysNode(t, "n1", "127.0.0.1", "")
	nodes := []*sysNode{n1, newSysNode(t, "n2", "127.0.0.2", n1.clusterAddr), newSysNode(t, "n3", "127.0.0.3", n1.clusterAddr)}
	for _, n := range nodes {
		n.extra = append(n.extra, "--cluster-profile", profile, "--drain-grace", "0")
		n.start(t)
	}
	for _, n := range nodes {
		waitStarted(t, n)
	}
	lb := newLBClient(t, nodes...)
	operator := operatorToken(t, lb, nodes)
	for _, n := range nodes {
		useToken(t, n.url(), operator) // for waitMembers
	}
	waitMembers(t, nodes, 3, 60*time.Second)
	w := newWorkload(t, lb, operator, 1, 0, 4)
	remotes := []string{nodes[0].remo, nodes[1].remo, nodes[2].remo}
	type placed struct{ id, token string }
	var orders []placed
	for _, c := range w.customers {
		for k := range 6 {
			key := fmt.Sprintf("%s-bench-%d", c.id, k)
			if !w.expect(apiReq{method: "POST", path: "/v1/cart/items", token: c.token, key: key + "-cart",
				json: map[string]any{"restaurant_id": w.restaurants[0].id, "menu_item_id": "dish", "quantity": 1}}, 200, nil) {
				t.Fatal(w.failuresNow())
			}
			var o struct{ ID string }
			if !w.expect(apiReq{method: "POST", path: "/v1/orders", token: c.token, key: key + "-order", json: map[string]any{}}, 201, &o) {
				t.Fatal(w.failuresNow())
			}
			orders = append(orders, placed{o.ID, c.token})
		}
	}
	hc := &nethttp.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	status := func(n *sysNode, o placed) bool {
		ok, err := orderAnswers(hc, n, o.id, o.token)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	var samples []time.Duration
	for k := range kills {
		victim := nodes[k%3]
		var affected []placed
		for _, o := range orders {
			if cluster.OwnerAmong(o.id, remotes) == victim.remo {
				affected = append(affected, o)
			}
		}
		if len(affected) == 0 {
			t.Fatalf("no order is owned by %s", victim.name)
		}
		o := affected[k%len(affected)]
		var survivors []*sysNode
		for _, n := range nodes {
			if n != victim {
				survivors = append(survivors, n)
			}
		}
		// The order is active on the victim before the kill.
		waitFor(t, 30*time.Second, 20*time.Millisecond, "the order to answer before the kill", func() bool { return status(survivors[0], o) })
		killedAt := time.Now()
		victim.proc.kill()
		for i := 0; !status(survivors[i%2], o); i++ {
			if time.Since(killedAt) > 2*time.Minute {
				t.Fatalf("kill %d: order %s did not answer within 2 min", k, o.id)
			}
		}
		d := time.Since(killedAt)
		samples = append(samples, d)
		t.Logf("kill %d of %s: order %s answered again after %v", k+1, victim.name, o.id, d.Round(time.Millisecond))
		victim.start(t)
		waitStarted(t, victim) // the next kill must not catch a node still starting
		waitMembers(t, nodes, 3, 60*time.Second)
		lb.waitReady(t, 3)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(p float64) time.Duration { // nearest rank
		i := int(p*float64(len(samples)) + 0.999999)
		return samples[min(max(i, 1), len(samples))-1]
	}
	t.Logf("failover (%s profile) over %d kills: p50 %v, p99 %v, min %v, max %v", profile, len(samples),
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), samples[0].Round(time.Millisecond),
		samples[len(samples)-1].Round(time.Millisecond))
}

// remoteProxy is a TCP proxy in front of one node's actor remote (gRPC) port. The node advertises the proxy
// (--remote-advertise-addr), so every other node's actor traffic to it passes here. cut makes it refuse (accept
// and reset at once) new connections and sever established ones, each chosen by the process that dialed it, and
// count them per dialer: the proof that a partition cut the remote port.
type remoteProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[*proxyConn]struct{}
	drop  func(dialer int) bool // nil: pass everything
	pids  []int                 // the processes drop chooses among (the nodes)
	cut   map[int]int           // dialer pid (0: none of pids) → connections refused or severed
}

// proxyConn is a connection through the proxy: from the dialer, and to the node.
type proxyConn struct{ down, up net.Conn }

func (c *proxyConn) reset() {
	if tc, ok := c.down.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, as a cut link would look to the dialer
	}
	_ = c.down.Close()
	_ = c.up.Close()
}

// startRemoteProxy listens on ip (a free port) and forwards to target until the test ends.
func startRemoteProxy(t *testing.T, ip, target string) *remoteProxy {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &remoteProxy{ln: ln, target: target, conns: map[*proxyConn]struct{}{}, cut: map[int]int{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.serve(&wg)
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.reset()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *remoteProxy) addr() string { return p.ln.Addr().String() }

func (p *remoteProxy) serve(wg *sync.WaitGroup) {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.drop != nil {
			if from := dialerPID(down, p.pids); p.drop(from) {
				p.cut[from]++
				p.mu.Unlock()
				_ = down.(*net.TCPConn).SetLinger(0)
				_ = down.Close()
				continue
			}
		}
		// Still under the lock, so that a cut cannot miss a connection being set up.
		up, err := net.Dial("tcp", p.target)
		if err != nil { // the node is down: so is the link
			p.mu.Unlock()
			down.Close()
			continue
		}
		c := &proxyConn{down: down, up: up}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			_, _ = io.Copy(dst, src)
			c.reset()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}
		go pipe(up, down)
		go pipe(down, up)
	}
}

// setCut starts refusing and severing the connections whose dialer (one of pids, else 0) drop chooses; nil drop
// heals.
func (p *remoteProxy) setCut(pids []int, drop func(dialer int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pids, p.drop = pids, drop
	if drop == nil {
		return
	}
	for c := range p.conns {
		if from := dialerPID(c.down, pids); drop(from) {
			p.cut[from]++
			delete(p.conns, c)
			c.reset()
		}
	}
}

// cutFrom returns how many connections dialed by pid were refused or severed.
func (p *remoteProxy) cutFrom(pid int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut[pid]
}

// dialerPID returns which of pids holds the other end of c (a loopback TCP connection accepted here), or 0: it
// finds the dialer's socket in /proc/net/tcp (local address c's remote one, remote address c's local one) and
// looks for its inode among each process's open files.
func dialerPID(c net.Conn, pids []int) int {
	hexAddr := func(a net.Addr) string {
		ta, ok := a.(*net.TCPAddr)
		if !ok || ta.IP.To4() == nil {
			return ""
		}
		// The kernel prints the address as the 32-bit word in host byte order, the port as a number.
		return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ta.IP.To4()), ta.Port)
	}
	local, remote := hexAddr(c.RemoteAddr()), hexAddr(c.LocalAddr())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil || local == "" || remote == "" {
		return 0
	}
	var inode string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[2] == remote {
			inode = f[9]
			break
		}
	}
	if inode == "" || inode == "0" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if link, _ := os.Readlink(dir + "/" + fd.Name()); link == want {
				return pid
			}
		}
	}
	return 0
}
