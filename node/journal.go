package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/platterhq/platter/actors/journal"
	"github.com/platterhq/platter/cluster"
)

// The journal a node keeps its actors' state in (--journal):
//
//   - bbolt (the default): one file in the data dir. Only this node can read it, so a node with a bbolt journal
//     is a cluster of its own: it refuses --join at start, and it refuses (and is refused by) every member that
//     announces another journal, so a node joining it fails at once and says why.
//   - postgres://...: a PostgreSQL (or CockroachDB) database shared by every node of the cluster, so an identity can
//     be activated on any node, after failover too.
//
// Every node announces its journal's identity in its cluster metadata (attribute "journal"): the kind and a random
// id stored in the journal itself (stream journalIDStream, written once by the first node). Nodes admit only
// members with the same identity: two PostgreSQL clusters on different databases never merge either.

// journalAttribute is the member attribute that carries the journal's identity.
const journalAttribute = "journal"

// journalIDStream holds the journal's identity: one google.protobuf.StringValue event holding a random UUID (a
// well-known type, so every journal reader, such as the invariant checker, decodes it). Its name matches no actor
// kind, so no actor or reminder scanner reads it.
const journalIDStream = "platter/journal-id"

// Journal kinds, the prefix of a journal identity.
const (
	journalBolt     = "bbolt"
	journalPostgres = "postgres"
)

// isPostgresDSN reports whether --journal names a PostgreSQL database.
func isPostgresDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// checkJournalFlag validates --journal without connecting.
func checkJournalFlag(s string) error {
	switch {
	case s == "" || s == journalBolt:
		return nil
	case isPostgresDSN(s):
		if _, err := url.Parse(s); err != nil {
			return fmt.Errorf("invalid --journal: not a URL: %v", redactDSNError(err))
		}
		return nil
	default:
		return errors.New(`invalid --journal: want "bbolt" or a postgres://user@host:port/database URL`)
	}
}

// redactDSNError drops the URL (and with it a password) that url.Parse repeats in its errors.
func redactDSNError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactDSN returns dsn without its password, for logs.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparseable)"
	}
	return u.Redacted()
}

// openJournal opens the journal --journal names, within timeout.
func (m *Main) openJournal(ctx context.Context, log *slog.Logger) (journal.Journal, string, error) {
	cfg := m.Config
	if !isPostgresDSN(cfg.Journal) {
		j, err := journal.OpenBolt(filepath.Join(cfg.DataDir, "journal.db"), journal.BoltOptions{})
		if err != nil {
			if errors.Is(err, journal.ErrLocked) {
				return nil, "", fmt.Errorf("data dir %s is in use by another platter process", cfg.DataDir)
			}
			return nil, "", fmt.Errorf("open journal in data dir %s: %w", cfg.DataDir, err)
		}
		return j, journalBolt, nil
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	opts := journal.DefaultPostgresOptions()
	opts.Logger = log
	j, err := journal.OpenPostgres(ctx, cfg.Journal, opts)
	if err != nil {
		// pgx errors may repeat the connection string; the redacted one says which database.
		return nil, "", fmt.Errorf("open the PostgreSQL journal %s: %s", redactDSN(cfg.Journal), oneLine(err))
	}
	return j, journalPostgres, nil
}

// oneLine flattens an error message to one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// journalIdentity returns "<kind>:<id>": the id is read from the journal, or written by the first node to ask.
func journalIdentity(ctx context.Context, j journal.Journal, kind string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 3 {
		_, events, err := j.Load(ctx, journalIDStream)
		if err != nil {
			return "", fmt.Errorf("read the journal's identity: %w", err)
		}
		if len(events) > 0 {
			var id wrapperspb.StringValue
			if err := proto.Unmarshal(events[0].Data, &id); err != nil || id.GetValue() == "" {
				return "", fmt.Errorf("read the journal's identity: %s holds %q", journalIDStream, events[0].Type)
			}
			return kind + ":" + id.GetValue(), nil
		}
		data, err := proto.Marshal(wrapperspb.String(uuid.NewString()))
		if err != nil {
			return "", err
		}
		idType := string(proto.MessageName(&wrapperspb.StringValue{}))
		_, err = j.Append(ctx, journalIDStream, 0, []journal.Event{{Type: idType, Data: data}})
		if err != nil && !errors.Is(err, journal.ErrConflict) {
			return "", fmt.Errorf("write the journal's identity: %w", err)
		}
		// Written now, or by another node at the same moment: read it back.
	}
	return "", errors.New("read the journal's identity: it keeps changing")
}

// admitJournal admits only members that announce the journal identity own.
func admitJournal(own string) func(cluster.Member) error {
	return func(peer cluster.Member) error {
		theirs := peer.Attributes[journalAttribute]
		switch {
		case theirs == own:
			return nil
		case strings.HasPrefix(own, journalBolt+":"):
			return errors.New("this node keeps its actors' state in a node-local bbolt journal; every node of a " +
				"multi-node cluster needs the same shared journal (--journal postgres://...)")
		case strings.HasPrefix(theirs, journalBolt+":"):
			return errors.New("that member keeps its actors' state in a node-local bbolt journal; every node of a " +
				"multi-node cluster needs the same shared journal (--journal postgres://...)")
		case theirs == "":
			return errors.New("that member announces no journal (an older build?); every node of a cluster needs the same shared journal")
		default:
			return fmt.Errorf("that member uses another journal (%s) than this node (%s): every node of a cluster "+
				"needs the same shared journal", theirs, own)
		}
	}
}

// journalName describes the journal for the start-up line: the bbolt file, or the database without password.
func (m *Main) journalName() string {
	if isPostgresDSN(m.Config.Journal) {
		return redactDSN(m.Config.Journal)
	}
	return filepath.Join(m.Config.DataDir, "journal.db")
}
