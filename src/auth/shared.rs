//! Failure counts shared by every replica, in Redis, so that N gateways
//! behind one Service give an attacker the guesses of one, not N times as
//! many. Each replica keeps its own [`super::limit::FailureLimiter`] too;
//! this adds the fleet's counts on top.
//!
//! Keys are `<prefix>:fail:addr:<ip>` and `<prefix>:fail:acct:<sha256 of the
//! claimed id>`, incremented on each failure and expiring one window after
//! the first; a success deletes them. When Redis is unreachable, slow or
//! failing, the gateway **fails open to per-replica limits**: the local
//! limiter still holds, the fall-back is logged once per outage and counted
//! in `chartgate_shared_limit_fallbacks_total`, and Redis is not asked again
//! for [`RETRY_AFTER`], so an outage costs at most one timeout per interval.
//!
//! The same Redis holds the spent ids of single-use OIDC id tokens
//! (`<prefix>:spent:<sha256 of issuer and jti>`, `SET NX` expiring with the
//! token), so a token exchanged at one replica is refused at every other;
//! during an outage each replica falls back to its own memory of them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::digest;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::{info, warn};

use super::limit::LimitOptions;
use crate::telemetry::metrics::Metrics;

/// How long one Redis command (or connecting) may take before the request
/// goes on with per-replica limits.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long after a failure Redis is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The fleet's failure counts.
pub struct SharedCounts {
    client: redis::Client,
    prefix: String,
    options: LimitOptions,
    connection: ArcSwapOption<ConnectionManager>,
    connecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `epoch` before which Redis is not asked.
    down_until_ms: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounts")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What a check saw, so a success clears only what is there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    nonzero: bool,
}

impl SharedCounts {
    /// Counts in the Redis at `client`, under `prefix`, with the same
    /// limits as the local limiter. Connects on first use.
    pub fn new(
        client: redis::Client,
        prefix: String,
        options: LimitOptions,
        metrics: Arc<Metrics>,
    ) -> SharedCounts {
        SharedCounts {
            client,
            prefix,
            options,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn keys(&self, address: IpAddr, account: Option<&str>) -> (String, Option<String>) {
        let addr = format!("{}:fail:addr:{address}", self.prefix);
        let acct = account.map(|a| {
            let d = digest::digest(&digest::SHA256, a.as_bytes());
            let hex: String = d.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{}:fail:acct:{hex}", self.prefix)
        });
        (addr, acct)
    }

    /// A connection, unless Redis failed within [`RETRY_AFTER`].
    async fn connection(&self) -> Option<ConnectionManager> {
        // While down, not even an established connection is tried: its
        // manager reconnects in the background, and one timeout per
        // interval is all an outage may cost.
        if self.now_ms() < self.down_until_ms.load(Ordering::Acquire) {
            return None;
        }
        if let Some(c) = self.connection.load_full() {
            return Some((*c).clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.connection.load_full() {
            return Some((*c).clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connected = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        match connected {
            Ok(Ok(c)) => {
                info!("shared failure limits: connected to Redis");
                self.connection.store(Some(Arc::new(c.clone())));
                Some(c)
            }
            Ok(Err(e)) => self.fell_back(&e.to_string()),
            Err(_) => self.fell_back("connecting timed out"),
        }
    }

    /// Notes a Redis failure: per-replica limits until [`RETRY_AFTER`].
    fn fell_back<T>(&self, why: &str) -> Option<T> {
        self.metrics.shared_limit_fallback();
        let until = self.now_ms() + u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(0);
        let before = self.down_until_ms.swap(until, Ordering::AcqRel);
        if before <= self.now_ms() {
            warn!(reason = %why, retry_in = ?RETRY_AFTER, "shared failure limits unavailable; using per-replica limits");
        }
        None
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Pipeline) -> Option<T> {
        let mut c = self.connection().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, command.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => self.fell_back(&e.to_string()),
            Err(_) => self.fell_back("command timed out"),
        }
    }

    /// `Err(retry_after)` when the fleet's counts for `address` or
    /// `account` reached their limits. Unreachable Redis answers `Ok`.
    ///
    /// # Errors
    /// The wait to suggest in `Retry-After`.
    pub async fn check(&self, address: IpAddr, account: Option<&str>) -> Result<Seen, Duration> {
        let (addr, acct) = self.keys(address, account);
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(&addr)
            .arg(acct.as_deref().unwrap_or(&addr));
        let Some((counts,)) = self.run::<(Vec<Option<u32>>,)>(&pipe).await else {
            return Ok(Seen::default());
        };
        let by_addr = counts.first().copied().flatten().unwrap_or(0);
        let by_acct = if acct.is_some() {
            counts.get(1).copied().flatten().unwrap_or(0)
        } else {
            0
        };
        if by_addr >= self.options.per_address || by_acct >= self.options.per_account {
            return Err(self.options.window);
        }
        Ok(Seen {
            nonzero: by_addr > 0 || by_acct > 0,
        })
    }

    /// Counts a failure for `address` and `account` in the fleet.
    pub async fn failed(&self, address: IpAddr, account: Option<&str>) {
        let (addr, acct) = self.keys(address, account);
        let window = u64::try_from(self.options.window.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for key in std::iter::once(&addr).chain(acct.as_ref()) {
            pipe.cmd("INCR").arg(key).ignore();
            pipe.cmd("PEXPIRE").arg(key).arg(window).arg("NX").ignore();
        }
        let _: Option<()> = self.run(&pipe).await;
    }

    /// Spends `id` fleet-wide until `until` (unix seconds): `Some(true)`
    /// the first time any replica spends it, `Some(false)` after; `None`
    /// when Redis cannot answer (the caller falls back to its own memory).
    pub async fn first_use(&self, id: &str, until: u64) -> Option<bool> {
        let d = digest::digest(&digest::SHA256, id.as_bytes());
        let hex: String = d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{}:spent:{hex}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(until);
        let (set,) = self.run::<(Option<String>,)>(&pipe).await?;
        Some(set.is_some())
    }

    /// A success: the fleet's counts start over, if the check saw any.
    pub async fn succeeded(&self, address: IpAddr, account: Option<&str>, seen: Seen) {
        if !seen.nonzero {
            return;
        }
        let (addr, acct) = self.keys(address, account);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&addr).ignore();
        if let Some(acct) = &acct {
            pipe.cmd("DEL").arg(acct).ignore();
        }
        let _: Option<()> = self.run(&pipe).await;
    }
}
