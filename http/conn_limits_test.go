//go:build linux

package http_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/platterhq/platter/http"
)

// Raw-socket tests of what fasthttp answers before a request reaches the router (Server.handleParseError), and of
// the connection timeouts that keep slow clients from holding a connection and its buffers (Config.ReadTimeout,
// WriteTimeout, IdleTimeout). Every cut is shown from the client's side: the server closes the connection well
// before the client's own deadline (clientDeadline), and not before the configured timeout.

const clientDeadline = 5 * time.Second // under the default timeouts (10 s), so that a timeout left at its default fails

// readRaw reads one response from r and returns it with its body.
func readRaw(t *testing.T, conn net.Conn, r *bufio.Reader) response {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(clientDeadline)); err != nil {
		t.Fatal(err)
	}
	res, err := nethttp.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// closedByServer reads r to its end and fails when the connection is still open at the client's deadline. It
// returns the bytes read.
func closedByServer(t *testing.T, what string, conn net.Conn, r io.Reader) int64 {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(clientDeadline)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server did not close the connection within %v", what, clientDeadline)
	}
	return n
}

// TestParseErrorsAreProblems: requests fasthttp refuses before routing are answered problem+json with a stable code
// (not fasthttp's text/plain), then the connection is closed.
func TestParseErrorsAreProblems(t *testing.T) {
	h := newHarness(t, withConfig(func(c *http.Config) { c.ReadTimeout = 300 * time.Millisecond }))
	big := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n"
	tests := []struct {
		name   string
		send   string
		status int
		code   string
	}{
		{"malformed request line", "GET\r\n\r\n", 400, http.CodeInvalidArgument},
		{"malformed header", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, http.CodeInvalidArgument},
		{"headers over MaxHeaderSize", big, 431, http.CodeHeadersTooLarge},
		{"body over MaxBodySize", "POST /v1/restaurants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 65537\r\n\r\n{", 413, http.CodePayloadTooLarge},
		{"request not complete within ReadTimeout", "GET /healthz HTTP/1.1\r\nHost: x\r\n", 408, http.CodeRequestTimeout},
		{"body not complete within ReadTimeout", "POST /v1/restaurants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{", 408, http.CodeRequestTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tt.send); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(conn)
			wantProblem(t, readRaw(t, conn, r), tt.status, tt.code)
			closedByServer(t, tt.name, conn, r)
		})
	}
	if h.actors.count.Load() != 0 {
		t.Fatal("the backend was called")
	}

	// MaxHeaderSize is the bound: with a larger one, the same request is served.
	h = newHarness(t, withConfig(func(c *http.Config) { c.MaxHeaderSize = 8 << 10 }))
	conn, err := net.Dial("tcp", h.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, big); err != nil {
		t.Fatal(err)
	}
	if res := readRaw(t, conn, bufio.NewReader(conn)); res.status != 200 {
		t.Fatalf("headers under MaxHeaderSize 8 KiB: %d %s", res.status, res.body)
	}
}

// TestSlowClientCutAtReadTimeout: a plain-HTTP client that trickles its request (headers, or body), a byte every
// 10 ms and so never idle, is answered 408 REQUEST_TIMEOUT and cut off at ReadTimeout, which bounds the whole
// request rather than each read.
func TestSlowClientCutAtReadTimeout(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	h := newHarness(t, withConfig(func(c *http.Config) { c.ReadTimeout = readTimeout }))
	tests := []struct {
		name          string
		head, trickle string
	}{
		{"headers", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", strings.Repeat("a", 1000)},
		{"body", "POST /v1/restaurants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
			strings.Repeat(" ", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			conn, err := net.Dial("tcp", h.srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tt.head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			trickled := make(chan int, 1)
			go func() { // 1000 bytes at one per 10 ms outlast the client's deadline
				n := 0
				defer func() { trickled <- n }()
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for ; n < len(tt.trickle); n++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(conn, tt.trickle[n:n+1]); err != nil {
						return
					}
				}
			}()
			r := bufio.NewReader(conn)
			res := readRaw(t, conn, r)
			cut := time.Since(start)
			close(stop)
			wantProblem(t, res, 408, http.CodeRequestTimeout)
			closedByServer(t, "a trickling client", conn, r)
			if n := <-trickled; n == len(tt.trickle) {
				t.Fatal("the whole request was sent before the cut")
			}
			if cut < readTimeout {
				t.Fatalf("cut after %v, before ReadTimeout %v", cut, readTimeout)
			}
			t.Logf("trickling %s cut after %v (ReadTimeout %v)", tt.name, cut, readTimeout)
		})
	}
}

// TestSlowReaderCutAtWriteTimeout: a client that sends requests for large responses (GET /openapi.json, 90 KB,
// pipelined) and then reads nothing fills its receive window and the server's send buffer; the server's blocked
// write fails at WriteTimeout and the connection is closed, so the client gets a fraction of what it asked for.
func TestSlowReaderCutAtWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	h := newHarness(t, withConfig(func(c *http.Config) { c.WriteTimeout = writeTimeout }))
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error { // a small window before the handshake
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", h.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 200 responses (18 MB) are far more than the loopback socket buffers hold (tcp_wmem's maximum is 4 MB).
	const requests = 200
	start := time.Now()
	if _, err := io.WriteString(conn, strings.Repeat("GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n", requests)); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing until the server has given up: its socket is no longer established (the server's
	// FIN or RST has arrived).
	waitFor(t, clientDeadline, 10*time.Millisecond, "the server to close the connection", func() bool {
		return tcpState(t, conn) != tcpEstablished
	})
	if cut := time.Since(start); cut < writeTimeout {
		t.Fatalf("cut after %v, before WriteTimeout %v", cut, writeTimeout)
	}
	n := closedByServer(t, "a client that stops reading", conn, conn)
	if want := int64(requests * len(http.OpenAPIDocument)); n >= want {
		t.Fatalf("the client read %d bytes, all %d it asked for: nothing was cut", n, want)
	}
	t.Logf("the client got %d of %d bytes", n, requests*len(http.OpenAPIDocument))
}

const tcpEstablished = 1 // TCP_ESTABLISHED in Linux's tcp_states.h

// tcpState returns the kernel's TCP state of the client's end of conn, without reading from it.
func tcpState(t *testing.T, conn net.Conn) uint8 {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := raw.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return info.State
}

// TestIdleKeepAliveClosed: a keep-alive connection that sends no next request is closed at IdleTimeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	const idle = 200 * time.Millisecond
	h := newHarness(t, withConfig(func(c *http.Config) { c.IdleTimeout = idle }))
	start := time.Now()
	conn, err := net.Dial("tcp", h.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if res := readRaw(t, conn, r); res.status != 200 || res.header.Get("Connection") == "close" {
		t.Fatalf("keep-alive request: %d %v", res.status, res.header)
	}
	if n := closedByServer(t, "an idle keep-alive connection", conn, r); n != 0 {
		t.Fatalf("%d bytes after the response", n)
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %v, before IdleTimeout %v", d, idle)
	}
}
