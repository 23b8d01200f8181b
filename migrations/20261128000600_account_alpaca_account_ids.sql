-- Affiliated flow: an AP's Alpaca account UUID (`client_account_id` on
-- Alpaca's mint requests) belongs to at most one account. Written in the
-- commit of `AlpacaAccountIdRecorded`, so the losing one of two concurrent
-- claims fails as a whole. Keys are lowercase hyphenated UUIDs.
CREATE TABLE IF NOT EXISTS account_alpaca_ids (
    alpaca_account_id TEXT PRIMARY KEY NOT NULL,
    client_id         TEXT NOT NULL UNIQUE
) STRICT;
