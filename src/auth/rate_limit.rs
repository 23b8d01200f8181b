//! Per-IP budget for failed authentication attempts. Only failures are
//! counted: a caller with valid credentials is never limited here.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Above this many tracked addresses, idle entries are dropped so that a
/// spray of source addresses cannot grow the table without bound.
const PRUNE_THRESHOLD: usize = 10_000;

#[derive(Debug)]
pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// The failure budget of an address is exhausted; it refills after
/// `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub retry_after: Duration,
}

impl FailureLimiter {
    pub fn per_minute(failures: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(failures)),
        }
    }

    /// Records one failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), OverBudget> {
        if self.limiter.len() > PRUNE_THRESHOLD {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| OverBudget {
            retry_after: not_until
                .wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_budget_then_refuses() {
        let limiter = FailureLimiter::per_minute(NonZeroU32::new(3).unwrap());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.record_failure(ip).is_ok());
        }
        let over = limiter.record_failure(ip).unwrap_err();
        assert!(over.retry_after > Duration::ZERO);
        assert!(over.retry_after <= Duration::from_secs(20));
        // Another address has its own budget.
        assert!(limiter.record_failure("192.0.2.2".parse().unwrap()).is_ok());
    }
}
