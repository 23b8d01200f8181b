-- Account and tokenized-asset read models. Every table here is derived from
-- the event log and written in the same transaction as the events it
-- reflects, so the claim tables double as uniqueness guards that hold
-- under concurrent requests.

-- account_view: client_id -> AccountView JSON.
CREATE TABLE IF NOT EXISTS account_view (
    view_id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;

-- One account per normalised email; the insert that loses a race fails
-- the whole Registered commit.
CREATE TABLE IF NOT EXISTS account_emails (
    email     TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL
) STRICT;

-- A wallet belongs to at most one account (lowercase 0x hex).
CREATE TABLE IF NOT EXISTS account_wallets (
    wallet    TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS account_wallets_by_client
    ON account_wallets (client_id);

-- tokenized_asset_view: "{UNDERLYING}:{network}" -> AssetView JSON.
CREATE TABLE IF NOT EXISTS tokenized_asset_view (
    view_id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;

-- A vault backs at most one listing, so a transfer seen on a vault maps
-- to exactly one asset (lowercase 0x hex).
CREATE TABLE IF NOT EXISTS tokenized_asset_vaults (
    vault     TEXT PRIMARY KEY NOT NULL,
    asset_key TEXT NOT NULL
) STRICT;
