//! Which receipts a burn draws from.

use alloy::primitives::U256;

use super::{ReceiptBurn, ReceiptHolding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "receipts cover {available} shares, {requested} requested (shortfall \
     {shortfall})"
)]
pub struct InsufficientReceipts {
    pub requested: U256,
    pub available: U256,
    pub shortfall: U256,
}

/// Greedy by descending available balance (ties: lower receipt id first),
/// so a burn touches as few receipts as possible; the last one is partial.
/// The burns sum to exactly `amount` and none exceeds its receipt's
/// available shares. Zero `amount` selects nothing.
pub fn select_burns(
    holdings: &[ReceiptHolding],
    amount: U256,
) -> Result<Vec<ReceiptBurn>, InsufficientReceipts> {
    let mut candidates: Vec<(U256, U256)> = holdings
        .iter()
        .map(|holding| (holding.receipt_id, holding.available()))
        .filter(|(_, available)| !available.is_zero())
        .collect();
    candidates.sort_by(|(id_a, avail_a), (id_b, avail_b)| {
        avail_b.cmp(avail_a).then(id_a.cmp(id_b))
    });
    let mut remaining = amount;
    let mut burns = Vec::new();
    let mut total = U256::ZERO;
    for (receipt_id, available) in candidates {
        if remaining.is_zero() {
            break;
        }
        let shares = available.min(remaining);
        remaining -= shares;
        total = total.saturating_add(available);
        burns.push(ReceiptBurn { receipt_id, shares });
    }
    if remaining.is_zero() {
        Ok(burns)
    } else {
        Err(InsufficientReceipts {
            requested: amount,
            available: total,
            shortfall: remaining,
        })
    }
}
