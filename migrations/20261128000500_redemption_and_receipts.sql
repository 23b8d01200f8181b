-- Redemption flow and receipt inventory.

-- redemption_view: issuer_request_id -> RedemptionView JSON, written in the
-- commit that appends the redemption's events.
CREATE TABLE IF NOT EXISTS redemption_view (
    view_id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;

-- Every ERC-1155 receipt the issuer wallet holds, per vault. Amounts are
-- U256 decimal strings (SQLite integers stop at 2^63). A vault backs one
-- listing (tokenized_asset_vaults), so (vault, receipt_id) is unique.
CREATE TABLE IF NOT EXISTS receipt_inventory (
    vault                    TEXT NOT NULL, -- lowercase 0x hex
    receipt_id               TEXT NOT NULL, -- decimal
    balance                  TEXT NOT NULL, -- decimal shares
    source_issuer_request_id TEXT,          -- the mint that deposited it
    recorded_at              TEXT NOT NULL,
    updated_at               TEXT NOT NULL,
    PRIMARY KEY (vault, receipt_id)
) STRICT;

-- Shares of a receipt promised to an in-flight burn. available = balance
-- minus the sum of these. Written with the redemption's BurnIntended,
-- removed by its Completed (settle) or Failed (release).
CREATE TABLE IF NOT EXISTS receipt_reservations (
    vault         TEXT NOT NULL,
    receipt_id    TEXT NOT NULL,
    redemption_id TEXT NOT NULL,
    shares        TEXT NOT NULL, -- decimal
    reserved_at   TEXT NOT NULL,
    PRIMARY KEY (vault, receipt_id, redemption_id)
) STRICT;

CREATE INDEX IF NOT EXISTS receipt_reservations_by_redemption
    ON receipt_reservations (redemption_id);

-- Transfer monitor cursor per (network, vault): every block up to and
-- including last_block has been scanned and its findings committed.
-- Mutable cursors live here, never in the event store (lessons §3.7).
CREATE TABLE IF NOT EXISTS monitor_checkpoints (
    network    TEXT NOT NULL,
    vault      TEXT NOT NULL, -- lowercase 0x hex
    last_block INTEGER NOT NULL CHECK (last_block >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (network, vault)
) STRICT;

-- Transfers to the issuer wallet from wallets no account owns. Never
-- dropped: listed for operators by GET /redemptions/unattributed.
CREATE TABLE IF NOT EXISTS unattributed_transfers (
    network     TEXT NOT NULL,
    vault       TEXT NOT NULL,
    tx_hash     TEXT NOT NULL, -- lowercase 0x hex
    log_index   INTEGER NOT NULL CHECK (log_index >= 0),
    from_wallet TEXT NOT NULL,
    amount      TEXT NOT NULL, -- decimal shares
    block       INTEGER NOT NULL CHECK (block >= 0),
    detected_at TEXT NOT NULL,
    PRIMARY KEY (network, tx_hash, log_index)
) STRICT;
