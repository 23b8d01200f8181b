-- The redemption's lifecycle state as a column, derived from the view's
-- JSON (the serialized aggregate: {"<State>": {...}}), and indexed: the
-- engine lists open redemptions on every pass, and must not parse every
-- redemption ever recorded to find them. VIRTUAL: computed on read (and
-- for the index on write), so the projection code is unchanged.
ALTER TABLE redemption_view ADD COLUMN state TEXT GENERATED ALWAYS AS (
    CASE
        WHEN json_type(payload, '$.Detected') IS NOT NULL THEN 'detected'
        WHEN json_type(payload, '$.AlpacaCalled') IS NOT NULL THEN 'alpaca_called'
        WHEN json_type(payload, '$.JournalCompleted') IS NOT NULL THEN 'journal_completed'
        WHEN json_type(payload, '$.Burning') IS NOT NULL THEN 'burning'
        WHEN json_type(payload, '$.Completed') IS NOT NULL THEN 'completed'
        WHEN json_type(payload, '$.Failed') IS NOT NULL THEN 'failed'
        ELSE 'not_detected'
    END
) VIRTUAL;

CREATE INDEX IF NOT EXISTS redemption_view_by_state ON redemption_view (state);
