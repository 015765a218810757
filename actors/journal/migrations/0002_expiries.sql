-- One expiry per stream (Append's WithExpiry); at_ns is Unix time in nanoseconds. The index is what Expired
-- scans: the streams whose expiry has passed, oldest first, without reading any other stream.
CREATE TABLE IF NOT EXISTS journal_expiries (
    stream {{name}} NOT NULL PRIMARY KEY,
    at_ns  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_expiries_at ON journal_expiries (at_ns, stream);
