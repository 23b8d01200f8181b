//! Time and id sources injected into aggregates and background tasks, so
//! events and tests stay deterministic.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The source of "now" for everything that records time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The source of fresh identifiers.
pub trait IdGenerator: Send + Sync + 'static {
    fn uuid(&self) -> Uuid;
}

/// Random (v4) identifiers for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn uuid(&self) -> Uuid {
        Uuid::new_v4()
    }
}

#[cfg(any(test, feature = "test-support"))]
pub use test_support::{FixedClock, SequentialIds};

#[cfg(any(test, feature = "test-support"))]
mod test_support {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, PoisonError};

    use chrono::{DateTime, TimeDelta, Utc};
    use uuid::Uuid;

    use super::{Clock, IdGenerator};

    /// A clock that only moves when told to.
    #[derive(Debug)]
    pub struct FixedClock {
        now: Mutex<DateTime<Utc>>,
    }

    impl FixedClock {
        pub fn new(now: DateTime<Utc>) -> Self {
            Self {
                now: Mutex::new(now),
            }
        }

        pub fn set(&self, now: DateTime<Utc>) {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
        }

        /// Moves the clock forward (or back, for a negative delta) and
        /// returns the new time; `None` leaves it unchanged on overflow.
        pub fn advance(&self, by: TimeDelta) -> Option<DateTime<Utc>> {
            let mut now =
                self.now.lock().unwrap_or_else(PoisonError::into_inner);
            let next = now.checked_add_signed(by)?;
            *now = next;
            Some(next)
        }
    }

    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Deterministic ids: the n-th call (from 1) returns
    /// [`SequentialIds::nth`]`(n)`.
    #[derive(Debug, Default)]
    pub struct SequentialIds {
        issued: AtomicU64,
    }

    impl SequentialIds {
        pub fn new() -> Self {
            Self::default()
        }

        /// The id the n-th call to `uuid` returns.
        pub fn nth(n: u64) -> Uuid {
            Uuid::from_u64_pair(0, n)
        }
    }

    impl IdGenerator for SequentialIds {
        fn uuid(&self) -> Uuid {
            // Wrapping after 2^64 ids cannot happen in a test.
            let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
            Self::nth(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let clock = FixedClock::new(start);
        assert_eq!(clock.now(), start);
        let later = clock.advance(TimeDelta::seconds(30)).unwrap();
        assert_eq!(later, start + TimeDelta::seconds(30));
        assert_eq!(clock.now(), later);
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn sequential_ids_are_predictable_and_distinct() {
        let ids = SequentialIds::new();
        assert_eq!(ids.uuid(), SequentialIds::nth(1));
        assert_eq!(ids.uuid(), SequentialIds::nth(2));
        assert_ne!(SequentialIds::nth(1), SequentialIds::nth(2));
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(RandomIds.uuid(), RandomIds.uuid());
    }
}
