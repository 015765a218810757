// Command platter runs a Platter node. See doc.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(0)
		}
		fatal(err, 2)
	}
	if m.Command != "run" {
		os.Exit(0) // version and help were printed by ParseFlags
	}

	ctx, cancel := signalContext()
	defer cancel()
	if err := m.Run(ctx); err != nil {
		closeErr := m.Close()
		if errors.Is(err, errInterrupted) && closeErr == nil {
			os.Exit(0) // a stop asked for while joining
		}
		fatal(err, 1)
	}
	select {
	case <-ctx.Done():
	case <-m.Stopping(): // POST /v1/admin/drain
	}
	if err := m.Close(); err != nil {
		fatal(err, 1)
	}
}

// fatal prints err as the one line a user reads on stderr and exits.
func fatal(err error, code int) {
	fmt.Fprintf(os.Stderr, "platter: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(code)
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts a graceful stop; a second one exits at
// once with status 1.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		sig := <-ch
		fmt.Fprintf(os.Stderr, "platter: second %v: exiting at once\n", sig)
		os.Exit(1)
	}()
	return ctx, cancel
}
