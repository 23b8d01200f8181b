-- Why a driver is still waiting on an item of one of its flows (RPC down or
-- hung, fee above the ceiling, Alpaca refusing a call, a landing that no
-- node shows yet, ...). One table for every flow; mutable, so a plain table
-- and not events; the row is deleted when the item makes progress.
CREATE TABLE IF NOT EXISTS flow_status (
    flow          TEXT    NOT NULL, -- 'mint', 'redemption'
    id            TEXT    NOT NULL, -- the flow's aggregate id
    failures      INTEGER NOT NULL CHECK (failures >= 0),
    last_error    TEXT    NOT NULL,
    last_error_at TEXT    NOT NULL,
    PRIMARY KEY (flow, id)
) STRICT;

INSERT OR IGNORE INTO flow_status (flow, id, failures, last_error, last_error_at)
    SELECT 'mint', tokenization_request_id, failures, last_error, last_error_at
    FROM mint_driver_status;

DROP TABLE IF EXISTS mint_driver_status;
