-- An operator can now send an unattributed transfer back
-- ({"ReturnRequested"|"Returning"|"Returned": {...}}): the state column
-- learns the new states. A generated column cannot be altered, so it is
-- dropped (with its index) and added again.
DROP INDEX IF EXISTS redemption_view_by_state;
ALTER TABLE redemption_view DROP COLUMN state;
ALTER TABLE redemption_view ADD COLUMN state TEXT GENERATED ALWAYS AS (
    CASE
        WHEN json_type(payload, '$.Detected') IS NOT NULL THEN 'detected'
        WHEN json_type(payload, '$.AlpacaCalled') IS NOT NULL THEN 'alpaca_called'
        WHEN json_type(payload, '$.JournalCompleted') IS NOT NULL THEN 'journal_completed'
        WHEN json_type(payload, '$.Burning') IS NOT NULL THEN 'burning'
        WHEN json_type(payload, '$.Completed') IS NOT NULL THEN 'completed'
        WHEN json_type(payload, '$.Failed') IS NOT NULL THEN 'failed'
        WHEN json_type(payload, '$.Closed') IS NOT NULL THEN 'closed'
        WHEN json_type(payload, '$.ReturnRequested') IS NOT NULL THEN 'return_requested'
        WHEN json_type(payload, '$.Returning') IS NOT NULL THEN 'returning'
        WHEN json_type(payload, '$.Returned') IS NOT NULL THEN 'returned'
        ELSE 'not_detected'
    END
) VIRTUAL;
CREATE INDEX IF NOT EXISTS redemption_view_by_state ON redemption_view (state);
