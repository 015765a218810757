package http

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/actors/journal"
)

// TestJournalIdempotencyStoresShareAJournal: two stores on one journal (two nodes, or a node before and after a
// restart) see each other's claims and responses, whether a store claims a key it never saw (its claim attempt
// conflicts, then it reads the record) or reads a key it claimed itself first.
func TestJournalIdempotencyStoresShareAJournal(t *testing.T) {
	j, err := journal.OpenBolt(filepath.Join(t.TempDir(), "journal.db"), journal.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	a, b := NewJournalIdempotency(j, time.Hour), NewJournalIdempotency(j, time.Hour)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	begin := func(s *JournalIdempotency, key, fp string, want ClaimState) Claim {
		t.Helper()
		c, err := s.Begin(ctx, key, fp, now, time.Minute)
		if err != nil || c.State != want {
			t.Fatalf("Begin(%s, %s): state %v, %v; want %v", key, fp, c.State, err, want)
		}
		return c
	}
	c := begin(a, "k1", "fp1", ClaimNew)
	begin(a, "k1", "fp1", ClaimInFlight) // read first: a claimed it
	if got := begin(b, "k1", "fp2", ClaimInFlight); got.Fingerprint != "fp1" {
		t.Fatalf("b sees fingerprint %q, want fp1", got.Fingerprint)
	}
	if err := a.Complete(ctx, c, StoredResponse{Status: 201, Body: []byte(`{}`), At: now}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*JournalIdempotency{a, b} {
		if got := begin(s, "k1", "fp1", ClaimDone); got.Response.Status != 201 || string(got.Response.Body) != `{}` {
			t.Fatalf("replay %+v", got.Response)
		}
	}
	// A released key is claimed again, by the store that did not claim it first.
	c2 := begin(a, "k2", "fp", ClaimNew)
	if err := a.Release(ctx, c2); err != nil {
		t.Fatal(err)
	}
	c3 := begin(b, "k2", "fp", ClaimNew)
	if tok := c3.Token.(journalToken); tok.seq != 3 {
		t.Fatalf("the new claim is at %d, want 3 (after claim and release)", tok.seq)
	}
}

// The idempotency records' encoding (idempotency_journal.go) against encoding/json, which wrote them before and
// still reads them, and its benchmark.

// referenceRecord is the former encodeRecord: encoding/json in a google.protobuf.BytesValue.
func referenceRecord(rec idemRecord) (journal.Event, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return journal.Event{}, err
	}
	data, err := proto.Marshal(wrapperspb.Bytes(raw))
	if err != nil {
		return journal.Event{}, err
	}
	return journal.Event{Type: recordEventType, Data: data}, nil
}

func randomRecord(r *rand.Rand) idemRecord {
	at := time.Unix(r.Int64N(4e9), r.Int64N(1e9)*int64(r.IntN(2))).In(time.FixedZone("", 3600*(r.IntN(5)-2)))
	rec := idemRecord{Kind: []string{recClaimed, recReleased, recCompleted}[r.IntN(3)], Fingerprint: strings.Repeat("ab", r.IntN(40)), At: at}
	if r.IntN(2) == 0 {
		rec.Until = at.Add(time.Duration(r.Int64N(1e12)))
	}
	if r.IntN(2) == 0 {
		body := make([]byte, r.IntN(300))
		for i := range body {
			body[i] = byte(r.IntN(256))
		}
		if r.IntN(4) == 0 {
			body = nil
		}
		rec.Response = &StoredResponse{Status: 200 + r.IntN(300), Body: body, At: at.UTC()}
		if r.IntN(2) == 0 {
			rec.Response.ContentType, rec.Response.Location = "application/json", "/v1/orders/o_1?a=<b>&c=\"d\"\u2028"
		}
	}
	return rec
}

func TestEncodeRecordMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 5000 {
		rec := randomRecord(r)
		if i == 0 {
			rec = idemRecord{}
		}
		want, werr := referenceRecord(rec)
		got, gerr := encodeRecord(rec)
		if werr != nil || gerr != nil {
			t.Fatalf("record %+v: error %v, reference error %v", rec, gerr, werr)
		}
		if got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("record %+v:\n got %q\nwant %q", rec, got.Data, want.Data)
		}
		back, err := decodeRecord(got)
		if err != nil {
			t.Fatal(err)
		}
		if back.Kind != rec.Kind || !back.At.Equal(rec.At) || (back.Response == nil) != (rec.Response == nil) {
			t.Fatalf("decoded %+v, want %+v", back, rec)
		}
	}
}

func BenchmarkEncodeRecord(b *testing.B) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	rec := idemRecord{Kind: recCompleted, Fingerprint: strings.Repeat("0f", 32), At: at, Response: &StoredResponse{
		Status: 201, ContentType: "application/json", Location: "/v1/orders/o_0193b4a2-7c1e-7d2a-9f00-5a4b3c2d1e0f",
		Body: bytes.Repeat([]byte(`{"id":"o_0193b4a2","status":"PENDING_ACCEPTANCE"}`), 6), At: at,
	}}
	for _, tc := range []struct {
		name string
		f    func(idemRecord) (journal.Event, error)
	}{{"Reference", referenceRecord}, {"Direct", encodeRecord}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.f(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
