-- At most one snapshot per aggregate instance. Writes are guarded so that
-- last_sequence only ever increases: a stale writer loses silently.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   TEXT NOT NULL,
    aggregate_id     TEXT NOT NULL,
    last_sequence    INTEGER NOT NULL CHECK (last_sequence >= 1),
    snapshot_version INTEGER NOT NULL CHECK (snapshot_version >= 1),
    payload          TEXT NOT NULL CHECK (json_valid(payload)),
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT;
