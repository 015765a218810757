-- The journal's tables. {{name}} is the type of stream and recipient names: TEXT COLLATE "C" on PostgreSQL and
-- STRING on CockroachDB, so that names sort byte by byte on both (Streams lists them in byte order).

-- One row per stream: its last sequence number. Append is a compare-and-set on this row, which serialises the
-- writers of one stream; the primary key of journal_events backs the fence up.
CREATE TABLE IF NOT EXISTS journal_streams (
    stream   {{name}} NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL CHECK (last_seq > 0)
);

CREATE TABLE IF NOT EXISTS journal_events (
    stream {{name}} NOT NULL,
    seq    BIGINT NOT NULL,
    type   TEXT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (stream, seq)
);

-- The newest snapshot of each stream.
CREATE TABLE IF NOT EXISTS journal_snapshots (
    stream {{name}} NOT NULL PRIMARY KEY,
    seq    BIGINT NOT NULL,
    type   TEXT NOT NULL,
    data   BYTEA NOT NULL
);

-- One reminder per stream; due_ns is Unix time in nanoseconds.
CREATE TABLE IF NOT EXISTS journal_reminders (
    stream {{name}} NOT NULL PRIMARY KEY,
    due_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_reminders_due ON journal_reminders (due_ns, stream);

-- One row per feed: its last cursor. Incremented in the transaction that adds entries, so cursors are dense.
CREATE TABLE IF NOT EXISTS journal_feeds (
    recipient   {{name}} NOT NULL PRIMARY KEY,
    last_cursor BIGINT NOT NULL CHECK (last_cursor > 0)
);

-- Feed entries; pos is the entry's cursor.
CREATE TABLE IF NOT EXISTS journal_feed_entries (
    recipient {{name}} NOT NULL,
    pos       BIGINT NOT NULL,
    type      TEXT NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (recipient, pos)
);
