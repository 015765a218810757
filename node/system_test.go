package main

// System tests: the built platter binary, several processes on 127.0.0.1-3, driven over their real interfaces
// (HTTP, signals, exit codes, stderr), like tailscale's integration tests.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/platterhq/platter/actors/journal/pgtest"
	"github.com/platterhq/platter/cluster"
)

// binDir holds the platter binary built for this test run (see TestMain and platterBinary).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "platter-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := pgtest.Main(m) // runs the tests, then stops the shared PostgreSQL of the cluster tests
	os.RemoveAll(dir)
	os.Exit(code)
}

// builds holds the two binaries a test run may need, each built once, on first use (tests that need no binary
// do not pay for it): the production build, and the fault-injection build for the fault tests.
var builds = struct {
	production, faults build
}{
	production: build{name: "platter"},
	faults:     build{name: "platter-faults", tags: "platterfaults"},
}

type build struct {
	name, tags string
	once       sync.Once
	err        error
}

func (b *build) path(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("system test: builds and runs the platter binary")
	}
	bin := filepath.Join(binDir, b.name)
	b.once.Do(func() {
		args := []string{"build", "-o", bin}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return bin
}

// platterBinary is the production build of platter (no build tags): what the system tests run.
func platterBinary(t *testing.T) string { return builds.production.path(t) }

// faultsBinary is platter built with -tags platterfaults: the fault-injection hooks of faults_on.go (SIGUSR1
// partitions a node, SIGUSR2 heals it). Only the fault tests run it (sysNode.faults).
func faultsBinary(t *testing.T) string { return builds.faults.path(t) }

// proc is one platter process. Its stdout and stderr go to files under the test's temp dir, printed if the
// test fails.
type proc struct {
	t       *testing.T
	name    string
	args    []string
	cmd     *exec.Cmd
	stdout  string
	stderr  string
	done    chan struct{}
	waitErr error
}

// processEnv is the environment of a child: the test's, without PLATTER_* variables that would change its flags.
func processEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// startProc starts `platter run args...` with the production binary. Every process is killed at cleanup if it
// is still running.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startBinary(t, platterBinary(t), name, args...)
}

// startBinary starts `bin run args...` (see startProc).
func startBinary(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	logDir := t.TempDir()
	p := &proc{t: t, name: name, args: args, done: make(chan struct{})}
	p.stdout, p.stderr = filepath.Join(logDir, name+".stdout"), filepath.Join(logDir, name+".stderr")
	outF, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"run"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr, p.cmd.Env = outF, errF, processEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		outF.Close()
		errF.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

func (p *proc) dump() {
	for _, f := range []string{p.stdout, p.stderr} {
		b, _ := os.ReadFile(f)
		p.t.Logf("==== %s (%s) %s:\n%s", p.name, strings.Join(p.args, " "), filepath.Base(f), b)
	}
}

// kill sends SIGKILL (like kill -9) and waits for the process to end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // the Go runtime prints every goroutine to stderr
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		p.t.Fatalf("%s did not exit within %v (goroutine dump in its stderr)", p.name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		p.t.Fatalf("%s: %v", p.name, p.waitErr)
	}
	return 0
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.stdout)
	return string(b)
}

func (p *proc) stderrLines() []string {
	b, _ := os.ReadFile(p.stderr)
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// sysNode is a node's fixed addresses, so that a restart uses the same ones.
type sysNode struct {
	name                        string
	ip                          string
	httpAddr, clusterAddr, remo string
	dataDir                     string
	join                        string
	proc                        *proc
	extra                       []string // more flags (--certs-dir, ...)
	joinTimeout                 string   // --join-timeout; default 30s
	journal                     string   // --journal; newSysNode sets the test's shared PostgreSQL database
	faults                      bool     // run the fault-injection build (faultsBinary), not the production one
	remoteAdvertise             string   // --remote-advertise-addr (a proxy in front of remo); empty: none
}

func newSysNode(t *testing.T, name, ip, join string) *sysNode {
	t.Helper()
	n := newBoltSysNode(t, name, ip)
	n.join, n.journal = join, clusterJournal(t)
	return n
}

// newBoltSysNode is a node on free ports of ip with the default journal, the bbolt file in its data dir: a node
// alone, which needs no PostgreSQL.
func newBoltSysNode(t *testing.T, name, ip string) *sysNode {
	t.Helper()
	hp := func() string { return net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip))) }
	return &sysNode{name: name, ip: ip, httpAddr: hp(), clusterAddr: hp(), remo: hp(), dataDir: t.TempDir()}
}

// journals holds each test's shared journal database (by *testing.T: a test run again with -count gets a new one).
var journals sync.Map

// clusterJournal returns the PostgreSQL database that the nodes of test t share (a cluster needs a shared
// journal), created on first use on the test binary's private server (pgtest).
func clusterJournal(t *testing.T) string {
	t.Helper()
	if dsn, ok := journals.Load(t); ok {
		return dsn.(string)
	}
	dsn := pgtest.NewDatabase(t)
	journals.Store(t, dsn)
	t.Cleanup(func() { journals.Delete(t) })
	return dsn
}

func (n *sysNode) url() string { return "http://" + n.httpAddr }

func (n *sysNode) start(t *testing.T) {
	t.Helper()
	jt := n.joinTimeout
	if jt == "" {
		jt = "30s"
	}
	args := append([]string{"--data-dir", n.dataDir, "--http-addr", n.httpAddr, "--cluster-addr", n.clusterAddr,
		"--remote-addr", n.remo, "--cluster-profile", "local", "--join-timeout", jt, "--log-format", "json", "--insecure"}, n.extra...)
	if n.join != "" {
		args = append(args, "--join", n.join)
	}
	if n.journal != "" {
		args = append(args, "--journal", n.journal)
	}
	if n.remoteAdvertise != "" {
		args = append(args, "--remote-advertise-addr", n.remoteAdvertise)
	}
	bin := platterBinary(t)
	if n.faults {
		bin = faultsBinary(t)
	}
	n.proc = startBinary(t, bin, n.name, args...)
}

// view fetches the node's /v1/admin/cluster; ok is false when the node does not answer.
func (n *sysNode) view() (clusterView, bool) {
	var v clusterView
	status, b, err := tryCall("GET", n.url()+"/v1/admin/cluster", "")
	if err != nil || status != 200 {
		return v, false
	}
	return v, json.Unmarshal(b, &v) == nil
}

// startCluster starts three nodes on 127.0.0.1, .2 and .3; the second and third join the first. prepare, if
// given, sees the nodes before they start (to add flags).
func startCluster(t *testing.T, prepare ...func([]*sysNode)) []*sysNode {
	t.Helper()
	n1 := newSysNode(t, "n1", "127.0.0.1", "")
	nodes := []*sysNode{n1, newSysNode(t, "n2", "127.0.0.2", n1.clusterAddr), newSysNode(t, "n3", "127.0.0.3", n1.clusterAddr)}
	for _, f := range prepare {
		f(nodes)
	}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		waitFor(t, 60*time.Second, 50*time.Millisecond, n.name+" ready", func() bool {
			status, _, err := tryCall("GET", n.url()+"/readyz", "")
			return err == nil && status == 200
		})
	}
	operatorForCluster(t, nodes)
	waitMembers(t, nodes, 3, 60*time.Second)
	return nodes
}

// operatorForCluster gets an operator token that every node accepts (see operatorForNodes).
func operatorForCluster(t *testing.T, nodes []*sysNode) {
	t.Helper()
	var urls, dirs []string
	for _, n := range nodes {
		urls, dirs = append(urls, n.url()), append(dirs, n.dataDir)
	}
	operatorForNodes(t, urls, dirs)
}

// waitMembers waits until every node in nodes lists exactly want members, all alive, and returns how long it took.
func waitMembers(t *testing.T, nodes []*sysNode, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, timeout, 50*time.Millisecond, fmt.Sprintf("%d nodes to list %d alive members", len(nodes), want), func() bool {
		for _, n := range nodes {
			v, ok := n.view()
			if !ok || len(v.Members) != want || v.alive() != want {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// killDetectionBound is how long after kill -9 of one of n members the others may still list it, with the local
// profile the system tests run: the next probe of the dead member reaches it within n-1 probe intervals (round
// robin over the others) and fails after one more (indirect probes); the suspicion then times out after at most
// SuspicionMaxTimeoutMult × SuspicionMult × ProbeInterval (log10(n) < 1 here); the topology loop takes it out at
// its next refresh. The slack covers a loaded 2-core machine under -race (memberlist's awareness multiplier
// stretches probe timeouts when the node itself is slow) and the test's polling over HTTP.
func killDetectionBound(n int) time.Duration {
	c := cluster.DefaultLocalConfig()
	probe := time.Duration(n) * c.ProbeInterval
	suspicion := time.Duration(c.SuspicionMaxTimeoutMult*c.SuspicionMult) * c.ProbeInterval
	const slack = 4 * time.Second
	return probe + suspicion + c.TopologyRefreshInterval + slack
}

// TestSystemKillAndRestart: three processes form a cluster; after kill -9 of one the others list two members
// within failure detection (killDetectionBound); restarted on the same addresses it is listed again and hosts
// actors.
func TestSystemKillAndRestart(t *testing.T) {
	nodes := startCluster(t)
	n3 := nodes[2]

	n3.proc.kill()
	bound := killDetectionBound(len(nodes))
	took := waitMembers(t, nodes[:2], 2, bound)
	t.Logf("survivors listed 2 members %v after kill -9 (bound %v)", took, bound)

	n3.start(t)
	waitMembers(t, nodes, 3, 30*time.Second)
	waitFor(t, 10*time.Second, 50*time.Millisecond, "n3 ready", func() bool {
		status, _, err := tryCall("GET", n3.url()+"/readyz", "")
		return err == nil && status == 200
	})

	// Many identities through the restarted node's edge: every call succeeds, and it hosts a share of them.
	const restaurants = 60
	ids := make([]string, 0, restaurants)
	for i := range restaurants {
		var v restaurantView
		body := fmt.Sprintf(`{"name":"R%d","position":{"lat":1,"lng":2},"cuisine":"x"}`, i)
		if status := call(t, "POST", n3.url()+"/v1/restaurants", body, &v); status != 201 {
			t.Fatalf("create %d through the restarted node: %d", i, status)
		}
		ids = append(ids, v.ID)
	}
	for _, id := range ids {
		var v restaurantView
		if status := call(t, "GET", n3.url()+"/v1/restaurants/"+id, "", &v); status != 200 || v.ID != id {
			t.Fatalf("read %s through the restarted node: %d", id, status)
		}
	}
	hosted := map[string]int{}
	for _, n := range nodes {
		v, ok := n.view()
		if !ok {
			t.Fatalf("%s does not answer", n.name)
		}
		hosted[n.name] = v.Activations["Restaurant"]
	}
	t.Logf("Restaurant activations per node: %v", hosted)
	if hosted["n3"] == 0 {
		t.Fatalf("the restarted node hosts none of %d restaurants: %v", restaurants, hosted)
	}
	if total := hosted["n1"] + hosted["n2"] + hosted["n3"]; total != restaurants {
		t.Fatalf("%d activations for %d restaurants: %v", total, restaurants, hosted)
	}
}

// TestSystemGracefulStop: SIGTERM makes a node drain, leave and exit 0; the others drop it at once (a leave, not
// failure detection).
func TestSystemGracefulStop(t *testing.T) {
	nodes := startCluster(t)
	n3 := nodes[2]
	if err := n3.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := n3.proc.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	exited := time.Now()
	if out := n3.proc.output(); !strings.Contains(out, `"msg":"left the cluster"`) {
		t.Fatalf("the stopped node did not log that it left the cluster")
	}
	if out := n3.proc.output(); !strings.Contains(out, `"msg":"drained"`) {
		t.Fatalf("the stopped node did not drain (hand its actors over) before it left")
	}
	if lines := n3.proc.stderrLines(); len(lines) != 0 {
		t.Fatalf("stderr after a graceful stop: %q", lines)
	}
	// By the time the process has exited its leave has been broadcast, so the others drop it within a few gossip
	// rounds. Failure detection would take at least a probe plus the suspicion timeout (about 2 s with the local
	// profile).
	waitMembers(t, nodes[:2], 2, time.Second)
	t.Logf("survivors listed 2 members %v after the process exited", time.Since(exited))
}

// TestSystemSecondSignal: a second signal during a graceful stop exits at once with status 1. A half-sent request
// keeps the HTTP drain busy, so the stop cannot finish before the second signal.
func TestSystemSecondSignal(t *testing.T) {
	n := newSysNode(t, "n1", "127.0.0.1", "")
	n.start(t)
	waitFor(t, 30*time.Second, 50*time.Millisecond, "the node to be ready", func() bool {
		status, _, err := tryCall("GET", n.url()+"/readyz", "")
		return err == nil && status == 200
	})
	conn, err := net.Dial("tcp", n.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /v1/restaurants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, 20*time.Millisecond, "the node to start stopping", func() bool {
		return strings.Contains(n.proc.output(), `"msg":"stopping node"`)
	})
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := n.proc.wait(3 * time.Second); code != 1 {
		t.Fatalf("exit code %d after a second signal, want 1", code)
	}
	if lines := n.proc.stderrLines(); len(lines) != 1 || !strings.Contains(lines[0], "exiting at once") {
		t.Fatalf("stderr %q, want one line saying it exits at once", lines)
	}
}

// TestSystemBadConfiguration: each configuration that cannot work exits non-zero with one stderr line saying what
// is wrong.
func TestSystemBadConfiguration(t *testing.T) {
	busyTCP := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	busyUDP := func(t *testing.T) string {
		port := freePort(t, "127.0.0.1")
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().String()
	}
	fileAsParent := func(t *testing.T) string {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(f, "data")
	}
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{"unparseable http address", func(*testing.T) []string { return []string{"--http-addr", "127.0.0.1"} },
			`invalid --http-addr "127.0.0.1": want host:port`},
		{"unparseable cluster address", func(*testing.T) []string { return []string{"--cluster-addr", "127.0.0.1:port"} },
			`invalid --cluster-addr "127.0.0.1:port": bad port "port"`},
		{"unparseable remote advertise address", func(*testing.T) []string { return []string{"--remote-advertise-addr", "127.0.0.1"} },
			`invalid --remote-advertise-addr "127.0.0.1": want host:port`},
		{"remote advertise address without a port", func(*testing.T) []string { return []string{"--remote-advertise-addr", "127.0.0.1:0"} },
			`invalid --remote-advertise-addr "127.0.0.1:0": port 0`},
		{"unparseable seed", func(*testing.T) []string { return []string{"--join", "seed.example"} },
			`invalid --join seed "seed.example": want host:port`},
		{"unreachable seeds", func(t *testing.T) []string {
			return []string{"--join", fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1")), "--join-timeout", "2s",
				"--journal", clusterJournal(t)}
		}, "could not join the cluster: no --join seed of"},
		{"join with the node-local journal", func(t *testing.T) []string {
			return []string{"--join", fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))}
		}, "--join needs a shared journal"},
		{"journal unreachable", func(t *testing.T) []string {
			return []string{"--journal", fmt.Sprintf("postgres://platter:secret@127.0.0.1:%d/platter", freePort(t, "127.0.0.1")),
				"--join-timeout", "2s"}
		}, "open the PostgreSQL journal postgres://platter:xxxxx@127.0.0.1:"},
		{"data dir not creatable", func(t *testing.T) []string { return []string{"--data-dir", fileAsParent(t)} },
			"cannot be created: not a directory"},
		{"data dir not writable", func(t *testing.T) []string { return []string{"--data-dir", readOnlyDir(t)} },
			"is not writable"},
		{"http port in use", func(t *testing.T) []string { return []string{"--http-addr", busyTCP(t)} },
			"is already in use by another process"},
		{"cluster port in use (tcp)", func(t *testing.T) []string { return []string{"--cluster-addr", busyTCP(t)} },
			"--cluster-addr 127.0.0.1:"},
		{"cluster port in use (udp)", func(t *testing.T) []string { return []string{"--cluster-addr", busyUDP(t)} },
			"--cluster-addr 127.0.0.1:"},
		{"remote port in use", func(t *testing.T) []string { return []string{"--remote-addr", busyTCP(t)} },
			"--remote-addr 127.0.0.1:"},
		// The rows run with --insecure; --insecure=false takes it back.
		{"cluster links off loopback without security", func(*testing.T) []string {
			return []string{"--insecure=false", "--cluster-addr", "0.0.0.0:0"}
		}, "--cluster-addr 0.0.0.0:0 is off loopback and the cluster links would be unauthenticated and unencrypted: give --certs-dir"},
		{"debug listener off loopback", func(*testing.T) []string { return []string{"--insecure=false", "--debug-addr", "0.0.0.0:0"} },
			"--debug-addr 0.0.0.0:0 is off loopback: the profiles have no authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
				"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local", "--insecure"}
			p := startProc(t, "bad", append(args, tt.args(t)...)...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatal("exit code 0, want non-zero")
			}
			lines := p.stderrLines()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "platter: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q, want one line containing %q", lines, tt.want)
			}
			if strings.Contains(tt.name, "in use") && !strings.Contains(lines[0], "in use") {
				t.Fatalf("stderr %q does not say the port is in use", lines[0])
			}
		})
	}
}

// readOnlyDir returns an existing directory this process cannot write to: mode 0500 for a normal user; for root
// (who ignores modes) the immutable attribute. The test is skipped when neither works here.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot make a directory read-only as root here: chattr: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
	} else if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	}
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		f.Close()
		os.Remove(f.Name())
		t.Skip("the directory is still writable here")
	}
	return dir
}

// TestSystemStopWhileJoining: SIGTERM while the node still waits for its seeds stops it cleanly (exit 0, nothing
// on stderr) instead of waiting out --join-timeout.
func TestSystemStopWhileJoining(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	p := startProc(t, "joining", "--data-dir", t.TempDir(), "--http-addr", httpAddr, "--cluster-addr", "127.0.0.1:0",
		"--remote-addr", "127.0.0.1:0", "--cluster-profile", "local", "--log-format", "json", "--insecure",
		"--join", fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1")), "--join-timeout", "60s", "--journal", clusterJournal(t))
	waitFor(t, 30*time.Second, 20*time.Millisecond, "the joining node's /healthz", func() bool {
		status, _, err := tryCall("GET", "http://"+httpAddr+"/healthz", "")
		return err == nil && status == 200
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if lines := p.stderrLines(); len(lines) != 0 {
		t.Fatalf("stderr %q, want none", lines)
	}
}
