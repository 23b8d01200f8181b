-- Mint read models. mint_view and mint_ids are derived from the event log
-- and written in the same transaction as the events they reflect.

-- mint_view: tokenization_request_id -> MintView JSON.
CREATE TABLE IF NOT EXISTS mint_view (
    view_id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;

-- The driver lists unfinished mints every tick; without this index that
-- would parse every mint ever made. Queries must use this exact
-- expression to be served by it.
CREATE INDEX IF NOT EXISTS mint_view_by_status
    ON mint_view (json_extract(payload, '$.status'));

-- Our id -> Alpaca's id. Both unique: a mint has one of each, and the
-- event store already makes tokenization_request_id a single stream.
CREATE TABLE IF NOT EXISTS mint_ids (
    issuer_request_id       TEXT PRIMARY KEY NOT NULL,
    tokenization_request_id TEXT NOT NULL UNIQUE
) STRICT;

-- Why the mint driver is still waiting on a mint (RPC down, fee above the
-- ceiling, Alpaca refusing the callback, ...). Mutable, so a plain table
-- and not events; the row is deleted when the mint makes progress.
CREATE TABLE IF NOT EXISTS mint_driver_status (
    tokenization_request_id TEXT PRIMARY KEY NOT NULL,
    failures                INTEGER NOT NULL CHECK (failures >= 0),
    last_error              TEXT NOT NULL,
    last_error_at           TEXT NOT NULL
) STRICT;
