//! Single use of id tokens: a policy with `single_use = true` lets each
//! token's `jti` be exchanged once within the token's lifetime. Spent ids
//! are remembered (moka) until the token they came from expires, so the
//! memory held is bounded by what is still valid; beyond the capacity the
//! oldest are evicted and the exchange refuses instead of forgetting (a
//! full set means more live single-use tokens than configured for).
//! With `[auth.shared_limits]`, Redis decides for the whole fleet first
//! ([`SharedCounts::first_use`]); this memory answers while it cannot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::auth::shared::SharedCounts;
use crate::auth::token::unix_now;

/// Spent ids, each until its token expires (unix seconds).
pub struct Replay {
    spent: Cache<String, u64>,
    capacity: u64,
    /// The fleet's spent ids, when replicas share them.
    shared: Option<Arc<SharedCounts>>,
}

struct UntilTokenExpiry;

impl Expiry<String, u64> for UntilTokenExpiry {
    fn expire_after_create(&self, _key: &String, until: &u64, _at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(until.saturating_sub(unix_now()) + 1))
    }
}

impl Replay {
    /// Remembers at most `capacity` spent ids, asking `shared` first.
    pub fn new(capacity: u64, shared: Option<Arc<SharedCounts>>) -> Replay {
        Replay {
            spent: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTokenExpiry)
                .build(),
            capacity,
            shared,
        }
    }

    /// Spends `id`, valid until `until`: true the first time, false for a
    /// replay, or when the set is full (refusing is the safe side).
    pub async fn first_use(&self, id: &str, until: u64) -> bool {
        let fleet = match &self.shared {
            Some(shared) => shared.first_use(id, until).await,
            None => None,
        };
        let here = self.spend_here(id, until);
        // Redis, when it answered, decides; this replica remembers either
        // way, for the next outage.
        fleet.unwrap_or(here)
    }

    /// Spends `id` in this replica's memory.
    fn spend_here(&self, id: &str, until: u64) -> bool {
        // moka counts lazily: settle its count first (an exchange is rare
        // enough for the extra work).
        self.spent.run_pending_tasks();
        if self.spent.entry_count() >= self.capacity {
            return false;
        }
        self.spent
            .entry(id.to_owned())
            .or_insert_with(|| until)
            .is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_id_is_spent_once() {
        let r = Replay::new(10, None);
        let until = unix_now() + 60;
        assert!(r.first_use("a", until).await);
        assert!(!r.first_use("a", until).await);
        assert!(r.first_use("b", until).await);
    }

    #[tokio::test]
    async fn a_full_set_refuses_rather_than_forgets() {
        let r = Replay::new(2, None);
        let until = unix_now() + 60;
        assert!(r.first_use("a", until).await);
        assert!(r.first_use("b", until).await);
        assert!(!r.first_use("c", until).await);
        assert!(!r.first_use("a", until).await);
    }
}
