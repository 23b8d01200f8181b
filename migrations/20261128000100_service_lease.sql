-- Single-writer lease: at most one running instance per database (and so
-- per wallet and nonce sequence). A holder refreshes heartbeat_at; another
-- instance may take over only once the heartbeat is stale.
CREATE TABLE service_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    -- RFC 3339, UTC, fixed width (microseconds, `Z`), so text order is
    -- time order.
    heartbeat_at TEXT NOT NULL
) STRICT;
