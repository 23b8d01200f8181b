//! `[redemption]`: the redemption feature's settings.

use std::num::NonZeroU64;

use serde::Deserialize;

/// `[redemption]`: cadence of the monitor, the Alpaca polling and the
/// receipt reconciliation. Every field is optional; zero is rejected (a
/// zero interval would spin the monitor without pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedemptionConfig {
    /// Give up polling Alpaca this long after the redeem call (measured
    /// from the persisted `called_at`, so it survives restarts).
    pub poll_timeout_secs: NonZeroU64,
    /// A transfer-monitor pass at least this often.
    pub monitor_interval_ms: NonZeroU64,
    /// How often the monitor polls the chain head (`eth_blockNumber`); a
    /// new head starts a pass at once.
    pub monitor_head_poll_ms: NonZeroU64,
    /// How often receipt balances are compared with the chain.
    pub reconcile_interval_secs: NonZeroU64,
}

impl Default for RedemptionConfig {
    fn default() -> Self {
        Self {
            poll_timeout_secs: nonzero(3600),
            monitor_interval_ms: nonzero(5000),
            monitor_head_poll_ms: nonzero(250),
            reconcile_interval_secs: nonzero(300),
        }
    }
}

/// A compile-time default that is known to be non-zero (`MIN` is 1).
const fn nonzero(value: u64) -> NonZeroU64 {
    NonZeroU64::MIN.saturating_add(value.saturating_sub(1))
}
