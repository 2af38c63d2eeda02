//! Brute-force protection: failed credential checks are counted per client
//! address and per claimed account in fixed windows. Once either count
//! reaches its limit, further attempts are refused with `429` before any
//! secret is checked, until the window ends. A success clears both counts.
//!
//! Only failures count: a request without credentials (a client's first
//! try, before it learns it needs some) and every successful check are
//! free, so parallel CI pulls with good credentials are never locked out.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Most addresses and accounts tracked at once; beyond that the least
/// recently failing are forgotten, which bounds memory under a spray.
const TRACKED: u64 = 100_000;

/// Limits on failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOptions {
    /// How long failures are remembered, counted from the first one.
    pub window: Duration,
    /// Failures allowed per claimed account id within a window.
    pub per_account: u32,
    /// Failures allowed per client address within a window.
    pub per_address: u32,
}

/// Counts failures and says when to stop listening.
pub struct FailureLimiter {
    options: LimitOptions,
    by_address: Cache<IpAddr, Arc<AtomicU32>>,
    by_account: Cache<String, Arc<AtomicU32>>,
    /// Milliseconds since `epoch` until which a count may still be live:
    /// the last failure plus the window (0 before any). Every count lives
    /// `window` from its first failure, which came no later than the last,
    /// so once this has passed every count has expired, and checks and
    /// successes skip both caches: two lookups on every request otherwise
    /// (about 1,000 instructions, 2% of a proxied request, callgrind).
    live_until_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn counter<K>(window: Duration) -> Cache<K, Arc<AtomicU32>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(TRACKED)
        .time_to_live(window)
        .build()
}

impl FailureLimiter {
    /// A limiter with `options`.
    pub fn new(options: LimitOptions) -> FailureLimiter {
        FailureLimiter {
            options,
            by_address: counter(options.window),
            by_account: counter(options.window),
            live_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether no failure was recorded within the last window, so that no
    /// count can be live.
    fn quiet(&self) -> bool {
        self.now_ms() >= self.live_until_ms.load(Ordering::Acquire)
    }

    /// `Err(retry_after)` when `address` or `account` has used up its
    /// failures; checked before any secret is.
    ///
    /// # Errors
    /// The wait to suggest in `Retry-After`.
    pub fn check(&self, address: IpAddr, account: Option<&str>) -> Result<(), Duration> {
        if self.quiet() {
            return Ok(());
        }
        let over = |count: Option<Arc<AtomicU32>>, limit: u32| {
            count.is_some_and(|c| c.load(Ordering::Relaxed) >= limit)
        };
        if over(self.by_address.get(&address), self.options.per_address)
            || account.is_some_and(|a| over(self.by_account.get(a), self.options.per_account))
        {
            return Err(self.options.window);
        }
        Ok(())
    }

    /// Records a failed attempt.
    pub fn failed(&self, address: IpAddr, account: Option<&str>) {
        self.by_address
            .get_with(address, Arc::default)
            .fetch_add(1, Ordering::Relaxed);
        if let Some(account) = account {
            self.by_account
                .get_with(account.to_owned(), Arc::default)
                .fetch_add(1, Ordering::Relaxed);
        }
        // After the counts, so a check that sees the mark sees them; one
        // millisecond over, for the truncation of both clocks.
        let window = u64::try_from(self.options.window.as_millis()).unwrap_or(u64::MAX);
        let until = self.now_ms().saturating_add(window).saturating_add(1);
        self.live_until_ms.fetch_max(until, Ordering::Release);
    }

    /// Records a success: both counts start over.
    pub fn succeeded(&self, address: IpAddr, account: Option<&str>) {
        if self.quiet() {
            return;
        }
        // A read first: nearly every success has nothing to clear, and an
        // invalidation is a cache write even for an absent key.
        if self.by_address.contains_key(&address) {
            self.by_address.invalidate(&address);
        }
        if let Some(account) = account.filter(|a| self.by_account.contains_key(*a)) {
            self.by_account.invalidate(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(LimitOptions {
            window: Duration::from_secs(60),
            per_account: 3,
            per_address: 5,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_account_is_limited_from_every_address() {
        let l = limiter();
        for _ in 0..3 {
            assert!(l.check(A, Some("alice")).is_ok());
            l.failed(A, Some("alice"));
        }
        assert_eq!(l.check(A, Some("alice")), Err(Duration::from_secs(60)));
        assert!(
            l.check(B, Some("alice")).is_err(),
            "another address guessing alice"
        );
        assert!(l.check(B, Some("bob")).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let l = limiter();
        for i in 0..5 {
            l.failed(A, Some(&format!("user{i}")));
        }
        assert!(l.check(A, Some("fresh")).is_err());
        assert!(l.check(A, None).is_err());
        assert!(l.check(B, Some("fresh")).is_ok());
    }

    #[test]
    fn counts_are_skipped_only_when_none_can_be_live() {
        let l = FailureLimiter::new(LimitOptions {
            window: Duration::from_millis(200),
            per_account: 1,
            per_address: 1,
        });
        assert!(l.quiet(), "no failure yet");
        assert!(l.check(A, Some("alice")).is_ok());
        l.failed(A, Some("alice"));
        assert!(!l.quiet());
        assert!(l.check(A, None).is_err());
        assert!(l.check(B, Some("alice")).is_err());
        // A success clears the counts but not the mark: other counts may
        // still be live.
        l.failed(B, Some("bob"));
        l.succeeded(A, Some("alice"));
        assert!(l.check(A, Some("alice")).is_ok());
        assert!(l.check(B, None).is_err(), "bob's address still counts");
        std::thread::sleep(Duration::from_millis(400));
        assert!(l.quiet(), "a window after the last failure");
        assert!(l.by_address.get(&B).is_none(), "and the count expired too");
        assert!(l.check(B, Some("bob")).is_ok());
    }

    #[test]
    fn success_starts_over() {
        let l = limiter();
        for _ in 0..2 {
            l.failed(A, Some("alice"));
        }
        l.succeeded(A, Some("alice"));
        for _ in 0..2 {
            l.failed(A, Some("alice"));
        }
        assert!(l.check(A, Some("alice")).is_ok());
    }
}
