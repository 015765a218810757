package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/http/pprof"
	"time"
)

// debugServer serves Go's runtime profiles (net/http/pprof) on --debug-addr, so that an operator, or `make bench`,
// can profile a node under load: `go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=30`. It has no
// authentication and no TLS, and /debug/pprof/cmdline shows the command line (a --gossip-key given there): a host
// off loopback is refused unless --insecure (Config.validate), which logs a warning here.
type debugServer struct {
	srv *nethttp.Server
	ln  net.Listener
}

func startDebugServer(addr string, log *slog.Logger) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, addrError("--debug-addr", addr, err)
	}
	mux := nethttp.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{srv: &nethttp.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
			log.Error("debug listener stopped", slog.Any("error", err))
		}
	}()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("the debug listener is not on loopback: anyone who reaches it can read profiles", slog.String("addr", ln.Addr().String()))
	}
	log.Info("debug listener serving profiles", slog.String("url", "http://"+ln.Addr().String()+"/debug/pprof/"))
	return d, nil
}

// URL is the listener's base URL.
func (d *debugServer) URL() string { return "http://" + d.ln.Addr().String() }

func (d *debugServer) close(ctx context.Context) error {
	return d.srv.Shutdown(ctx)
}
