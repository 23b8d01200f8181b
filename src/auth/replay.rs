//! The nonces of accepted signatures, kept until their signature could
//! no longer pass the `created` window anyway. Bounded: at capacity the
//! cache refuses new nonces (until the oldest expire) rather than
//! forgetting live ones, which would reopen a replay window.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

/// Longest nonce accepted; Alpaca's are 32 hex digits. Keeps each
/// entry's memory bounded.
pub const MAX_NONCE_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Seen before, and still inside its window.
    Replayed,
    /// `capacity` live nonces; the oldest expires in `retry_after_secs`.
    Full { retry_after_secs: u64 },
}

#[derive(Debug, Default)]
struct Entries {
    /// Nonce → Unix second after which it may be forgotten.
    expiry: HashMap<Arc<str>, i64>,
    /// The same entries, soonest expiry first.
    queue: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

impl Entries {
    fn forget_expired(&mut self, now: i64) {
        while let Some(Reverse((at, _))) = self.queue.peek()
            && *at < now
        {
            if let Some(Reverse((_, nonce))) = self.queue.pop() {
                self.expiry.remove(&nonce);
            }
        }
    }
}

#[derive(Debug)]
pub struct NonceCache {
    capacity: NonZeroUsize,
    entries: Mutex<Entries>,
}

impl NonceCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Records `nonce` as used until `keep_until` (Unix seconds,
    /// inclusive), or refuses it.
    pub fn remember(
        &self,
        nonce: &str,
        keep_until: i64,
        now: i64,
    ) -> Result<(), Refused> {
        // A poisoned lock only means another request panicked mid-update;
        // both maps are still consistent enough to answer from.
        let mut entries =
            self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.forget_expired(now);
        if entries.expiry.contains_key(nonce) {
            return Err(Refused::Replayed);
        }
        if entries.expiry.len() >= self.capacity.get() {
            let oldest =
                entries.queue.peek().map_or(now, |Reverse((at, _))| *at);
            return Err(Refused::Full {
                retry_after_secs: u64::try_from(oldest - now + 1).unwrap_or(1),
            });
        }
        let nonce: Arc<str> = Arc::from(nonce);
        entries.expiry.insert(Arc::clone(&nonce), keep_until);
        entries.queue.push(Reverse((keep_until, nonce)));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expiry
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> NonceCache {
        NonceCache::new(NonZeroUsize::new(capacity).unwrap())
    }

    #[test]
    fn a_nonce_is_accepted_once_while_live() {
        let cache = cache(10);
        assert_eq!(cache.remember("a", 100, 0), Ok(()));
        assert_eq!(cache.remember("a", 100, 50), Err(Refused::Replayed));
        assert_eq!(cache.remember("a", 100, 100), Err(Refused::Replayed));
        assert_eq!(cache.remember("b", 100, 50), Ok(()));
        // Past its window it is forgotten (the `created` check refuses
        // such a signature before it gets here).
        assert_eq!(cache.remember("a", 200, 101), Ok(()));
    }

    #[test]
    fn at_capacity_new_nonces_wait_for_the_oldest_to_expire() {
        let cache = cache(2);
        assert_eq!(cache.remember("a", 10, 0), Ok(()));
        assert_eq!(cache.remember("b", 20, 0), Ok(()));
        assert_eq!(
            cache.remember("c", 30, 5),
            Err(Refused::Full {
                retry_after_secs: 6
            })
        );
        // Replays are still recognised when full.
        assert_eq!(cache.remember("b", 20, 5), Err(Refused::Replayed));
        assert_eq!(cache.remember("c", 30, 11), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_by_capacity() {
        let cache = cache(100);
        for second in 0..10_000_i64 {
            let _ = cache.remember(&second.to_string(), second + 50, second);
            assert!(cache.len() <= 100);
        }
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.queue.len(), entries.expiry.len());
    }
}
