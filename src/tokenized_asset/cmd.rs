use chrono::{DateTime, Utc};

use super::{Network, TokenSymbol, UnderlyingSymbol, Vault};
use crate::operator::OperatorReason;

/// Commands carry already-validated values: parsing happens at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizedAssetCommand {
    /// Lists the asset, or repoints its vault when already listed.
    Add {
        underlying: UnderlyingSymbol,
        token: TokenSymbol,
        network: Network,
        vault: Vault,
    },
    Enable,
    Disable,
    /// Suspends new mints and held redemptions, now or in the window
    /// `[from, until)`; replaces any earlier freeze.
    Freeze {
        reason: OperatorReason,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
    /// Lifts the freeze, active or scheduled.
    Unfreeze {
        reason: OperatorReason,
    },
}
