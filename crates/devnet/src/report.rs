//! The step log a person reads while the devnet runs: one line per step,
//! tagged with the part of the system it concerns, printed as it happens.

use std::fmt;
use std::time::Instant;

use alloy::primitives::U256;
use issuance_bot::quantity::Quantity;

/// Which part of the system a log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Devnet,
    Chain,
    Sim,
    Service,
    Setup,
    Mint,
    Redemption,
}

impl Tag {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Devnet => "devnet",
            Self::Chain => "chain",
            Self::Sim => "sim",
            Self::Service => "service",
            Self::Setup => "setup",
            Self::Mint => "mint",
            Self::Redemption => "redemption",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prints step lines with the time since the devnet started.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    started: Instant,
}

impl StepLog {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    pub fn step(&self, tag: Tag, message: impl fmt::Display) {
        println!("{}", self.line(tag, &message));
    }

    fn line(&self, tag: Tag, message: &dyn fmt::Display) -> String {
        let elapsed = self.started.elapsed();
        format!(
            "{:>4}.{:03}s [{tag}] {message}",
            elapsed.as_secs(),
            elapsed.subsec_millis()
        )
    }
}

/// 18-decimal share units as a token amount (`10.5`), exact; amounts a
/// `Quantity` cannot hold are shown in raw units rather than rounded.
pub fn tokens(shares: U256) -> String {
    if shares.is_zero() {
        return "0".to_owned();
    }
    Quantity::from_shares(shares).map_or_else(
        |_| format!("{shares} share units"),
        |quantity| quantity.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_exact_decimals_without_trailing_zeros() {
        let ten_and_a_half = U256::from(10_500_000_000_000_000_000_u128);
        assert_eq!(tokens(ten_and_a_half), "10.5");
        assert_eq!(tokens(U256::from(1u8)), "0.000000000000000001");
        assert_eq!(tokens(U256::ZERO), "0");
    }

    #[test]
    fn tokens_too_large_for_a_quantity_are_shown_raw_not_rounded() {
        let huge = U256::MAX;
        assert_eq!(tokens(huge), format!("{huge} share units"));
    }

    #[test]
    fn a_line_carries_the_elapsed_time_and_the_tag() {
        let log = StepLog::new();
        let line = log.line(Tag::Mint, &"completed");
        assert!(line.ends_with("s [mint] completed"), "{line}");
        assert!(line.trim_start().starts_with("0."), "{line}");
    }
}
