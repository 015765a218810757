package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestParseMemberlistLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		level  slog.Level
		detail string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking x as failed", slog.LevelInfo, "Marking x as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: a)", slog.LevelWarn, "Refuting a suspect message (from: a)"},
		{"[ERR] memberlist: Failed fallback TCP ping", slog.LevelError, "Failed fallback TCP ping"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	} {
		level, detail := parseMemberlistLine(tc.line)
		if level != tc.level || detail != tc.detail {
			t.Errorf("parse(%q) = %v %q, want %v %q", tc.line, level, detail, tc.level, tc.detail)
		}
	}
}

func TestMemberlistLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ml := newMemberlistLogger(logger)
	ml.Printf("[DEBUG] memberlist: hidden")
	ml.Printf("[WARN] memberlist: shown %d", 1)
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, `level=WARN msg=memberlist lib=memberlist detail="shown 1"`) {
		t.Fatalf("memberlist log output:\n%s", out)
	}
}

func TestProtoactorLevels(t *testing.T) {
	var buf bytes.Buffer
	h := levelMap{next: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), mapf: protoactorLevel}
	logger := slog.New(h).With(slog.String("lib", "protoactor"))
	logger.Info("chatty")
	logger.Error("EndpointWriter lost connection")
	out := buf.String()
	if strings.Contains(out, "chatty") {
		t.Fatalf("Info was not demoted to Debug:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="EndpointWriter lost connection" lib=protoactor`) {
		t.Fatalf("Error was not mapped to Warn:\n%s", out)
	}
	if !h.Enabled(context.Background(), slog.LevelError) || h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("Enabled does not apply the mapping")
	}
}
