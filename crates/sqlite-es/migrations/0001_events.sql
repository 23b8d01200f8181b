-- Append-only event log. The primary key is the optimistic-concurrency
-- guard: two writers that loaded the same version both try to insert the
-- same (aggregate_type, aggregate_id, sequence) and only one succeeds.
-- Rows are never updated or deleted, so rowid order is commit order.
CREATE TABLE IF NOT EXISTS events (
    aggregate_type TEXT NOT NULL CHECK (aggregate_type <> ''),
    aggregate_id   TEXT NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    event_type     TEXT NOT NULL,
    event_version  TEXT NOT NULL,
    payload        TEXT NOT NULL CHECK (json_valid(payload)),
    metadata       TEXT NOT NULL CHECK (json_valid(metadata)),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

-- Every index implicitly ends with rowid, so this index yields one
-- aggregate type's events in commit (rowid) order without a sort step,
-- which lets stream_all_events stream straight off the b-tree.
CREATE INDEX IF NOT EXISTS events_by_type_in_commit_order
    ON events (aggregate_type);
