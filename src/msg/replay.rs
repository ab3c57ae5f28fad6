//! The replay cache: which `(sender, nonce)` pairs were accepted inside the time window.
//!
//! Bounded in time and in memory:
//! * **time**: an entry is kept only while a message with its timestamp could still pass the
//!   freshness check (`timestamp + window >= now`); older entries are pruned. The cache remembers
//!   the highest `now` it has seen, and a message older than what it may already have forgotten
//!   (`timestamp < max_now - window`) is refused as [`ReplayError::Stale`], so a clock that steps
//!   backwards cannot reopen the door to a replay.
//! * **memory**: at most `max_entries` entries. When full of entries that are all still inside
//!   the window, it refuses new messages ([`ReplayError::Full`]) rather than forget one, because
//!   forgetting would let that message be replayed.
//!
//! Pure: the caller passes `now` (unix milliseconds).

use std::collections::{BTreeSet, HashSet};

use crate::pki::PartyId;

/// Default maximum number of remembered nonces.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 16;

/// Replay cache refusals.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ReplayError {
    /// This `(sender, nonce)` was already accepted inside the window.
    #[error("replayed message")]
    Replay,
    /// The timestamp is older than what the cache still remembers.
    #[error("message timestamp outside the replay window")]
    Stale,
    /// The cache is full of in-window entries; refusing rather than forgetting.
    #[error("replay cache full")]
    Full,
}

/// Remembers accepted `(sender, nonce)` pairs for the length of the freshness window.
#[derive(Debug)]
pub struct ReplayCache {
    window_ms: i64,
    max_entries: usize,
    seen: HashSet<(PartyId, [u8; NONCE_LEN])>,
    by_time: BTreeSet<(i64, PartyId, [u8; NONCE_LEN])>,
    max_now: i64,
}

impl ReplayCache {
    /// A cache for a freshness window of `window_ms` (the allowed skew either side of `now`)
    /// holding at most `max_entries` nonces.
    pub fn new(window_ms: i64, max_entries: usize) -> Self {
        Self {
            window_ms: window_ms.max(0),
            max_entries,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
            max_now: i64::MIN,
        }
    }

    /// Number of remembered nonces.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The oldest timestamp the cache can still vouch for, given what it has pruned.
    fn horizon(&self) -> i64 {
        self.max_now.saturating_sub(self.window_ms)
    }

    /// Forgets entries that no message can reuse any more (`timestamp < now - window`).
    pub fn prune(&mut self, now_ms: i64) {
        self.max_now = self.max_now.max(now_ms);
        let horizon = self.horizon();
        while let Some(first) = self.by_time.first().copied() {
            if first.0 >= horizon {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&(first.1, first.2));
        }
    }

    /// Checks, without recording, that `(sender, nonce)` at `timestamp_ms` may be accepted.
    pub fn check(
        &self,
        sender: &PartyId,
        nonce: &[u8; NONCE_LEN],
        timestamp_ms: i64,
    ) -> Result<(), ReplayError> {
        if timestamp_ms < self.horizon() {
            return Err(ReplayError::Stale);
        }
        if self.seen.contains(&(*sender, *nonce)) {
            return Err(ReplayError::Replay);
        }
        Ok(())
    }

    /// Checks and records `(sender, nonce)` at `timestamp_ms`, pruning with `now_ms` first.
    pub fn record(
        &mut self,
        sender: &PartyId,
        nonce: &[u8; NONCE_LEN],
        timestamp_ms: i64,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        self.prune(now_ms);
        self.check(sender, nonce, timestamp_ms)?;
        if self.seen.len() >= self.max_entries {
            return Err(ReplayError::Full);
        }
        self.seen.insert((*sender, *nonce));
        self.by_time.insert((timestamp_ms, *sender, *nonce));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(b: u8) -> PartyId {
        PartyId([b; 32])
    }

    #[test]
    fn replay_detected_and_other_sender_independent() {
        let mut c = ReplayCache::new(1000, 10);
        c.record(&pid(1), &[7; 16], 5000, 5000).expect("first");
        assert_eq!(
            c.record(&pid(1), &[7; 16], 5000, 5001),
            Err(ReplayError::Replay)
        );
        // Same nonce, different sender: independent.
        c.record(&pid(2), &[7; 16], 5000, 5001)
            .expect("other sender");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn pruned_after_window_and_old_refused_as_stale() {
        let mut c = ReplayCache::new(1000, 10);
        c.record(&pid(1), &[1; 16], 5000, 5000).expect("first");
        c.prune(6000);
        assert_eq!(c.len(), 1, "still inside the window at its edge");
        c.prune(6001);
        assert!(c.is_empty());
        // The forgotten message cannot come back: it is below the horizon.
        assert_eq!(
            c.record(&pid(1), &[1; 16], 5000, 6001),
            Err(ReplayError::Stale)
        );
        // Even if the clock steps back, the horizon stays.
        assert_eq!(
            c.record(&pid(1), &[1; 16], 5000, 5500),
            Err(ReplayError::Stale)
        );
    }

    #[test]
    fn full_refuses_rather_than_forgets_then_recovers() {
        let mut c = ReplayCache::new(1000, 2);
        c.record(&pid(1), &[1; 16], 5000, 5000).expect("1");
        c.record(&pid(1), &[2; 16], 5100, 5100).expect("2");
        assert_eq!(
            c.record(&pid(1), &[3; 16], 5100, 5100),
            Err(ReplayError::Full)
        );
        // Nothing was forgotten.
        assert_eq!(
            c.record(&pid(1), &[1; 16], 5000, 5100),
            Err(ReplayError::Replay)
        );
        // Once the first entry leaves the window there is room again.
        c.record(&pid(1), &[3; 16], 6050, 6050)
            .expect("room after prune");
        assert_eq!(c.len(), 2);
    }
}
