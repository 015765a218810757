package http

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/actors/journal"
)

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
