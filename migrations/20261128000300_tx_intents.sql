-- Signed transactions the service has committed to (one row per nonce).
--
-- A row is inserted in the SAME database transaction as the owning
-- aggregate's intent event (e.g. MintTxIntended), before the transaction is
-- broadcast. Two consequences:
--   * the primary key makes a second intent for an already used
--     (chain, wallet, nonce) fail the whole commit, so two aggregates can
--     never both believe they own one nonce;
--   * after a crash, the nonce manager skips every nonce recorded here, so
--     an intent that was persisted but never broadcast is not overwritten
--     by a different transaction with the same nonce.
-- `resolved` is set by the projection that records the outcome (mined,
-- reverted, proven dead and replaced).
CREATE TABLE IF NOT EXISTS tx_intents (
    chain_id    INTEGER NOT NULL,
    wallet      TEXT    NOT NULL, -- lowercase 0x hex
    nonce       INTEGER NOT NULL,
    tx_hash     TEXT    NOT NULL, -- lowercase 0x hex
    owner_type  TEXT    NOT NULL,
    owner_id    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    resolved    INTEGER NOT NULL DEFAULT 0 CHECK (resolved IN (0, 1)),
    PRIMARY KEY (chain_id, wallet, nonce)
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS tx_intents_by_hash ON tx_intents (tx_hash);

CREATE INDEX IF NOT EXISTS tx_intents_unresolved
    ON tx_intents (owner_type, owner_id) WHERE resolved = 0;
