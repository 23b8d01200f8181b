-- The receipts that still hold shares. Burn selection and reconciliation
-- read a vault's receipts through this index, so their cost follows the
-- receipts held, not every receipt ever deposited (an emptied receipt is
-- never refilled: the vault issues a new id per deposit). Balances are
-- decimal text; zero is written as '0'.
CREATE INDEX IF NOT EXISTS receipt_inventory_held
    ON receipt_inventory (vault, receipt_id) WHERE balance <> '0';
