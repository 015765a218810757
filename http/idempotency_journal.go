package http

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/actors/journal"
)

// JournalIdempotency is the IdempotencyStore on the actors' journal: each key is a stream
// "idempotency/<sha256>" whose events are the key's claims, releases and stored responses. The journal's fenced
// append decides between racing requests, also across nodes sharing the journal: a claim is appended at the
// sequence its writer expects (0 for a key it assumes new, else the last one it read), so of two racers one wins
// and the other, refused with a conflict, reads the winner's claim.
//
// Retention: records older than the retention are ignored (a key may then be used afresh), and deleted by an
// IdempotencySweeper (idempotency_sweeper.go). Every claim adds an expiry mark to its stream (WithExpiry) at
// claim time + lease + retention, when its record has passed its retention if the request completed within its
// lease; the sweeper lists the marks that have passed and re-reads each record before a fenced delete.
type JournalIdempotency struct {
	j         journal.Journal
	retention time.Duration
	// claimed remembers (by hash, one slot per hash, newer overwriting older) keys this store claimed lately: a
	// retry that comes back to the node reads the key's record first instead of attempting a claim that would
	// conflict. Only a hint: a key it forgot or never saw takes the claim attempt, which is fenced.
	seed    maphash.Seed
	claimed [claimedSlots]atomic.Uint64
}

// claimedSlots is the size of JournalIdempotency.claimed (32 KiB).
const claimedSlots = 4096

// DefaultIdempotencyRetention is how long a stored response is replayed (API.md: 24 h).
const DefaultIdempotencyRetention = 24 * time.Hour

// NewJournalIdempotency returns a store on j keeping responses for retention (24 h in production).
func NewJournalIdempotency(j journal.Journal, retention time.Duration) *JournalIdempotency {
	return &JournalIdempotency{j: j, retention: retention, seed: maphash.MakeSeed()}
}

// IdempotencyStreamPrefix starts the journal streams of idempotency records (no actor kind uses it: actor
// streams are "<kind>/<id>" with a lower-case kind).
const IdempotencyStreamPrefix = "idempotency/"

// Record kinds.
const (
	recClaimed    = "claimed"
	recReleased   = "released"
	recCompleted  = "completed"
	recBackfilled = "backfilled" // the one event of idempotencyBackfillStream (idempotency_sweeper.go)
)

// recordEventType is the journal type of every idempotency event: the record is JSON in a
// google.protobuf.BytesValue, a type every reader of the journal can decode (the invariant checker reads every
// stream), without a message of this package in messages/.
const recordEventType = "google.protobuf.BytesValue"

// idemRecord is an event of an idempotency stream.
type idemRecord struct {
	Kind        string          `json:"kind"`
	Fingerprint string          `json:"fingerprint"`
	At          time.Time       `json:"at"`
	Until       time.Time       `json:"until,omitempty"` // a claim's lease
	Response    *StoredResponse `json:"response,omitempty"`
}

// journalToken is the Claim.Token of this store: the stream and the sequence of the claim.
type journalToken struct {
	stream string
	seq    uint64
}

func (s *JournalIdempotency) Begin(ctx context.Context, key, fp string, now time.Time, lease time.Duration) (Claim, error) {
	stream := IdempotencyStreamPrefix + key
	claim, err := encodeRecord(idemRecord{Kind: recClaimed, Fingerprint: fp, At: now, Until: now.Add(lease)})
	if err != nil {
		return Claim{}, err
	}
	// The mark is added with the claim, not by Complete (one index write per key, not two): a record completed
	// after its lease is kept by the sweeper, which marks it again when it finds the record younger.
	expiry := journal.WithExpiry(now.Add(lease + s.retention))
	// Most keys are new: claim at sequence 0 without reading the stream first. The append is fenced, so a key
	// with any record makes it fail with a conflict, and the loop below reads what is there. A key this node
	// claimed lately is read first (a retry: answered from its record without waiting for a failed append).
	h := maphash.String(s.seed, key) | 1 // never 0, the empty slot
	slot := &s.claimed[h%claimedSlots]
	if slot.Load() != h {
		seq, err := s.j.Append(ctx, stream, 0, []journal.Event{claim}, expiry)
		if err == nil {
			slot.Store(h)
			return Claim{State: ClaimNew, Fingerprint: fp, Token: journalToken{stream: stream, seq: seq}}, nil
		}
		if !errors.Is(err, journal.ErrConflict) {
			return Claim{}, fmt.Errorf("claim idempotency key: %w", err)
		}
	}
	for range 3 {
		snap, events, err := s.j.Load(ctx, stream)
		if err != nil {
			return Claim{}, fmt.Errorf("load idempotency key: %w", err)
		}
		last := journal.LastSeq(snap, events)
		if len(events) > 0 {
			rec, err := decodeRecord(events[len(events)-1])
			if err != nil {
				return Claim{}, err
			}
			switch {
			case rec.Kind == recCompleted && rec.Response != nil && now.Sub(rec.At) < s.retention:
				return Claim{State: ClaimDone, Fingerprint: rec.Fingerprint, Response: *rec.Response}, nil
			case rec.Kind == recClaimed && now.Before(rec.Until):
				return Claim{State: ClaimInFlight, Fingerprint: rec.Fingerprint}, nil
			}
		}
		seq, err := s.j.Append(ctx, stream, last, []journal.Event{claim}, expiry)
		if errors.Is(err, journal.ErrConflict) {
			continue // another request claimed or completed it: look again
		}
		if err != nil {
			return Claim{}, fmt.Errorf("claim idempotency key: %w", err)
		}
		slot.Store(h)
		return Claim{State: ClaimNew, Fingerprint: fp, Token: journalToken{stream: stream, seq: seq}}, nil
	}
	return Claim{}, errors.New("claim idempotency key: the key's record keeps changing")
}

func (s *JournalIdempotency) Complete(ctx context.Context, claim Claim, res StoredResponse) error {
	return s.end(ctx, claim, recCompleted, &res)
}

func (s *JournalIdempotency) Release(ctx context.Context, claim Claim) error {
	return s.end(ctx, claim, recReleased, nil)
}

// end appends the outcome right after the claim. A conflict means the claim lapsed and another request took the
// key over: this outcome is then dropped, the newer claim decides.
func (s *JournalIdempotency) end(ctx context.Context, claim Claim, kind string, res *StoredResponse) error {
	tok, ok := claim.Token.(journalToken)
	if !ok {
		return errors.New("idempotency: claim was not made by this store")
	}
	at := time.Now()
	if res != nil {
		at = res.At
	}
	ev, err := encodeRecord(idemRecord{Kind: kind, Fingerprint: claim.Fingerprint, At: at, Response: res})
	if err != nil {
		return err
	}
	if _, err := s.j.Append(ctx, tok.stream, tok.seq, []journal.Event{ev}); err != nil {
		return fmt.Errorf("store idempotency record: %w", err)
	}
	return nil
}

// encodeRecord writes rec as encoding/json would (decodeRecord reads it with encoding/json) in a BytesValue, without
// reflection: every mutating request with an Idempotency-Key writes two records.
func encodeRecord(rec idemRecord) (journal.Event, error) {
	size := 160 + len(rec.Fingerprint)
	if r := rec.Response; r != nil {
		size += 96 + len(r.ContentType) + len(r.Location) + base64.StdEncoding.EncodedLen(len(r.Body))
	}
	raw := make([]byte, 0, size)
	var err error
	raw = append(raw, `{"kind":`...)
	raw = appendJSONString(raw, rec.Kind)
	raw = append(raw, `,"fingerprint":`...)
	raw = appendJSONString(raw, rec.Fingerprint)
	raw = append(raw, `,"at":`...)
	if raw, err = appendJSONTime(raw, rec.At); err != nil {
		return journal.Event{}, err
	}
	raw = append(raw, `,"until":`...) // omitempty does not omit a time.Time
	if raw, err = appendJSONTime(raw, rec.Until); err != nil {
		return journal.Event{}, err
	}
	if r := rec.Response; r != nil {
		raw = append(raw, `,"response":{"status":`...)
		raw = strconv.AppendInt(raw, int64(r.Status), 10)
		if r.ContentType != "" {
			raw = append(raw, `,"content_type":`...)
			raw = appendJSONString(raw, r.ContentType)
		}
		if r.Location != "" {
			raw = append(raw, `,"location":`...)
			raw = appendJSONString(raw, r.Location)
		}
		if len(r.Body) > 0 {
			raw = append(raw, `,"body":"`...)
			raw = base64.StdEncoding.AppendEncode(raw, r.Body)
			raw = append(raw, '"')
		}
		raw = append(raw, `,"at":`...)
		if raw, err = appendJSONTime(raw, r.At); err != nil {
			return journal.Event{}, err
		}
		raw = append(raw, '}')
	}
	raw = append(raw, '}')
	// The wire form of a google.protobuf.BytesValue: field 1, length-delimited (raw is never empty).
	data := make([]byte, 0, len(raw)+1+protowire.SizeVarint(uint64(len(raw))))
	data = protowire.AppendTag(data, 1, protowire.BytesType)
	data = protowire.AppendBytes(data, raw)
	return journal.Event{Type: recordEventType, Data: data}, nil
}

// appendJSONTime writes t as time.Time's MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("encode idempotency record: %w", err)
	}
	return append(b, '"'), nil
}

func decodeRecord(ev journal.Event) (idemRecord, error) {
	var rec idemRecord
	if ev.Type != recordEventType {
		return rec, fmt.Errorf("decode idempotency record: event type %q", ev.Type)
	}
	var b wrapperspb.BytesValue
	if err := proto.Unmarshal(ev.Data, &b); err != nil {
		return rec, fmt.Errorf("decode idempotency record: %w", err)
	}
	if err := json.Unmarshal(b.GetValue(), &rec); err != nil {
		return rec, fmt.Errorf("decode idempotency record: %w", err)
	}
	return rec, nil
}
