-- Expiry marks (Append's WithExpiry): a stream may have several, one per time set; at_ns is Unix time in
-- nanoseconds. The primary key is the only index and is what Expired scans: the marks that have passed, oldest
-- first, without reading any other stream. Marks are only inserted (ON CONFLICT DO NOTHING) and deleted one by
-- one (DeleteExpiry), so an Append's mark costs one index entry.
CREATE TABLE IF NOT EXISTS journal_expiries (
    at_ns  BIGINT NOT NULL,
    stream {{name}} NOT NULL,
    PRIMARY KEY (at_ns, stream)
);
