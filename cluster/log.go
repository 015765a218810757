package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// levelMap rewrites the level of every record before handing it on. protoactor logs routine events (actor
// started, endpoint connected, topology updated) at Info and expected failover noise at Error; we want the
// former at Debug and the latter at Warn so that a node's Info log stays readable.
type levelMap struct {
	next slog.Handler
	mapf func(slog.Level) slog.Level
}

func (h levelMap) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, h.mapf(l))
}

func (h levelMap) Handle(ctx context.Context, r slog.Record) error {
	r.Level = h.mapf(r.Level)
	return h.next.Handle(ctx, r)
}

func (h levelMap) WithAttrs(as []slog.Attr) slog.Handler {
	return levelMap{next: h.next.WithAttrs(as), mapf: h.mapf}
}

func (h levelMap) WithGroup(name string) slog.Handler {
	return levelMap{next: h.next.WithGroup(name), mapf: h.mapf}
}

// protoactorLevel demotes protoactor's levels one step (Info → Debug, Error → Warn): its Errors are mostly
// connection losses that memberlist reports on its own, and requests we retry.
func protoactorLevel(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelError:
		return slog.LevelWarn
	case l >= slog.LevelWarn:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// protoactorLoggerFactory routes an actor system's logs into logger with lib=protoactor.
func protoactorLoggerFactory(logger *slog.Logger) func(*actor.ActorSystem) *slog.Logger {
	return func(system *actor.ActorSystem) *slog.Logger {
		return slog.New(levelMap{next: logger.Handler(), mapf: protoactorLevel}).
			With(slog.String("lib", "protoactor"), slog.String("member", system.ID))
	}
}

// memberlistWriter is the io.Writer behind memberlist's *log.Logger: each line carries a "[LEVEL] " prefix
// ("[DEBUG] memberlist: ...") that becomes the slog level; the rest is the detail attribute.
type memberlistWriter struct {
	logger *slog.Logger
}

// newMemberlistLogger returns a *log.Logger for memberlist.Config.Logger.
func newMemberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(memberlistWriter{logger: logger.With(slog.String("lib", "memberlist"))}, "", 0)
}

func (w memberlistWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, detail := parseMemberlistLine(string(line))
		w.logger.Log(context.Background(), level, "memberlist", slog.String("detail", detail))
	}
	return len(p), nil
}

// parseMemberlistLine splits "[WARN] memberlist: text" into (Warn, "text"). Lines without a known prefix are Info.
func parseMemberlistLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	prefixes := []struct {
		p string
		l slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	}
	for _, p := range prefixes {
		if strings.HasPrefix(line, p.p) {
			level = p.l
			line = strings.TrimSpace(line[len(p.p):])
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
