//! [`Provider`]: one trusted external issuer's signing keys, found and kept
//! fresh for the token exchange's signature check.
//!
//! Keys come only from the configured issuer: its OIDC discovery document
//! (which must name that same issuer) points at its JWKS, or a configured
//! `jwks_uri` is fetched directly. Nothing in a token says where its key
//! lives: `jku`, `x5u` and `jwk` headers are ignored by design, and `kid`
//! only selects among keys already fetched.
//!
//! An issuer outage must not make every request wait. Keys past their
//! freshness are served while one background task refreshes them; a failed
//! fetch is not retried for `retry_interval`; keys are dropped only once
//! `max_stale` old. An unknown `kid` refetches at most once per
//! `refetch_interval`, however many requests carry it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use moka::future::Cache;
use serde::Deserialize;
use tracing::{info, warn, Instrument};

use super::fetch::{
    check_url, FetchError, Fetcher, DISCOVERY_MAX_BYTES, FETCH_TIMEOUT, JWKS_MAX_BYTES,
};
use super::jwk::{usable_keys, KeyMap};
use crate::auth::key::VerifyKey;

#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/support/oidc_provider.rs"]
pub(crate) mod test_idp;

#[cfg(test)]
mod tests;

/// How long fetched keys are trusted and how often they may be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The least freshness a JWKS response's `max-age` can grant.
    pub min_fresh: Duration,
    /// The most freshness a JWKS response's `max-age` can grant.
    pub max_fresh: Duration,
    /// The freshness of a JWKS response without `max-age`.
    pub default_fresh: Duration,
    /// Keys this long past their fetch are dropped, even if the issuer is down.
    pub max_stale: Duration,
    /// The least time between two refetches for an unknown `kid`.
    pub refetch_interval: Duration,
    /// The least time between a failed fetch and the next attempt.
    pub retry_interval: Duration,
}

impl Default for ProviderSettings {
    fn default() -> ProviderSettings {
        ProviderSettings {
            min_fresh: Duration::from_secs(60),
            max_fresh: Duration::from_secs(24 * 3600),
            default_fresh: Duration::from_secs(15 * 60),
            max_stale: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(30),
        }
    }
}

/// Why no key could be had for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The issuer's current keys have no usable key with this `kid`.
    #[error("the issuer has no usable key with this kid")]
    UnknownKid,
    /// The issuer's keys could not be fetched; the reason is for logs.
    #[error("the issuer's keys are unavailable: {0}")]
    Unavailable(String),
}

/// One configured issuer and its cached signing keys.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    jwks_uri: Option<String>,
    fetcher: Arc<Fetcher>,
    settings: ProviderSettings,
    /// One slot, the issuer's current keys; moka drops them `max_stale`
    /// after they were fetched and coalesces concurrent cold loads.
    cache: Cache<(), Arc<Keys>>,
    /// Held while a refresh or refetch runs, so one runs at a time. Holds
    /// when an unknown `kid` last caused a refetch.
    refresh: Arc<tokio::sync::Mutex<Option<Instant>>>,
    outage: Mutex<Outage>,
}

/// A fetched key set and until when it is fresh.
struct Keys {
    by_kid: KeyMap,
    fresh_until: Instant,
}

impl Keys {
    fn find(&self, kid: &str) -> Result<Arc<VerifyKey>, KeyError> {
        self.by_kid.get(kid).cloned().ok_or(KeyError::UnknownKid)
    }
}

/// The last failed fetch, while the issuer has not answered since.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    last_failure: Option<Instant>,
    error: String,
}

/// The fields of an OIDC discovery document chartgate reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.issuer)
            .field("jwks_uri", &self.inner.jwks_uri)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The issuer `issuer`, whose keys are found through its discovery
    /// document, or at `jwks_uri` when given. Fetches nothing yet.
    pub fn new(
        issuer: String,
        jwks_uri: Option<String>,
        fetcher: Arc<Fetcher>,
        settings: ProviderSettings,
    ) -> Provider {
        let cache = Cache::builder()
            .max_capacity(1)
            .time_to_live(settings.max_stale)
            .build();
        Provider {
            inner: Arc::new(Inner {
                issuer,
                jwks_uri,
                fetcher,
                settings,
                cache,
                refresh: Arc::default(),
                outage: Mutex::default(),
            }),
        }
    }

    /// The issuer's URL, exactly as configured.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The key with this `kid`, fetching/refreshing as needed.
    ///
    /// # Errors
    /// [`KeyError::UnknownKid`] when the issuer's keys, refetched at most
    /// once per `refetch_interval`, have none with this `kid`;
    /// [`KeyError::Unavailable`] when no keys could be fetched.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyKey>, KeyError> {
        let keys = self.current().await?;
        match keys.find(kid) {
            Err(KeyError::UnknownKid) => self.refetch(kid, keys).await,
            found => found,
        }
    }

    /// The cached keys, stale ones too (then refreshed in the background),
    /// or freshly fetched ones when there are none.
    async fn current(&self) -> Result<Arc<Keys>, KeyError> {
        let inner = &self.inner;
        if let Some(keys) = inner.cache.get(&()).await {
            if Instant::now() >= keys.fresh_until {
                self.revalidate();
            }
            return Ok(keys);
        }
        if let Some(error) = inner.failed_recently() {
            return Err(KeyError::Unavailable(error));
        }
        let loader = inner.clone();
        inner
            .cache
            .try_get_with((), async move { loader.load().await })
            .await
            .map_err(|e| KeyError::Unavailable(format!("{e:#}")))
    }

    /// Refreshes stale keys in a background task, unless one is running
    /// or the last fetch failed within `retry_interval`.
    fn revalidate(&self) {
        if self.inner.failed_recently().is_some() {
            return;
        }
        let Ok(guard) = self.inner.refresh.clone().try_lock_owned() else {
            return;
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            // Another refresh may have finished between our look and the lock.
            let current = inner.cache.get(&()).await;
            if current.is_none_or(|keys| Instant::now() >= keys.fresh_until) {
                if let Ok(keys) = inner.load().await {
                    inner.cache.insert((), keys).await;
                }
            }
            drop(guard);
        });
    }

    /// Refetches once for an unknown `kid`, unless a refetch ran within
    /// `refetch_interval` or the issuer failed within `retry_interval`.
    /// Concurrent callers queue on the refresh lock and then look in what
    /// the first one fetched; only they wait, never a lookup of a known kid.
    async fn refetch(&self, kid: &str, seen: Arc<Keys>) -> Result<Arc<VerifyKey>, KeyError> {
        let inner = &self.inner;
        let mut last = inner.refresh.lock().await;
        if let Some(current) = inner.cache.get(&()).await {
            if !Arc::ptr_eq(&current, &seen) {
                return current.find(kid);
            }
        }
        let interval = inner.settings.refetch_interval;
        if last.is_some_and(|at| at.elapsed() < interval) || inner.failed_recently().is_some() {
            return Err(KeyError::UnknownKid);
        }
        *last = Some(Instant::now());
        let keys = inner
            .load()
            .await
            .map_err(|e| KeyError::Unavailable(format!("{e:#}")))?;
        inner.cache.insert((), keys.clone()).await;
        keys.find(kid)
    }
}

impl Inner {
    /// Fetches the keys and records the outcome for the outage bookkeeping.
    async fn load(&self) -> anyhow::Result<Arc<Keys>> {
        let span = tracing::info_span!("issuer_keys", issuer = %self.issuer);
        // Discovery and JWKS together get one fetch's time, so a cold
        // lookup waits at most that long whichever step stalls.
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.fetch().instrument(span))
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout(FETCH_TIMEOUT).into()));
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
                if outage.since.take().is_some() {
                    info!(issuer = %self.issuer, "issuer keys fetched again");
                }
                outage.last_failure = None;
            }
            Err(e) => {
                // Once per outage, not per attempt: the next attempts would
                // only repeat it.
                if outage.since.is_none() {
                    warn!(issuer = %self.issuer, error = %format!("{e:#}"),
                        "cannot fetch the issuer's keys; cached keys stay in use until max_stale");
                    outage.since = Some(Instant::now());
                }
                outage.last_failure = Some(Instant::now());
                outage.error = format!("{e:#}");
            }
        }
        result
    }

    /// The last fetch error, if it happened within `retry_interval`.
    fn failed_recently(&self) -> Option<String> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let at = outage.last_failure?;
        (at.elapsed() < self.settings.retry_interval).then(|| outage.error.clone())
    }

    /// The issuer's usable keys, fresh for what the JWKS response allows.
    async fn fetch(&self) -> anyhow::Result<Arc<Keys>> {
        let url = self.jwks_url().await?;
        let jwks = self
            .fetcher
            .fetch(&url, JWKS_MAX_BYTES)
            .await
            .with_context(|| format!("fetching the JWKS {url}"))?;
        let by_kid = usable_keys(&jwks.json).with_context(|| format!("the JWKS {url}"))?;
        let s = &self.settings;
        let fresh = jwks
            .max_age
            .map_or(s.default_fresh, |age| age.max(s.min_fresh).min(s.max_fresh));
        Ok(Arc::new(Keys {
            by_kid,
            fresh_until: Instant::now() + fresh,
        }))
    }

    /// The configured `jwks_uri`, or the one the issuer's discovery
    /// document names, provided the document names this very issuer.
    async fn jwks_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.jwks_uri {
            return Ok(url.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let document = self
            .fetcher
            .fetch(&url, DISCOVERY_MAX_BYTES)
            .await
            .with_context(|| format!("fetching the discovery document {url}"))?;
        let discovery: Discovery = serde_json::from_value(document.json)
            .with_context(|| format!("the discovery document {url}"))?;
        ensure!(
            discovery.issuer == self.issuer,
            "the discovery document {url} names issuer {:?}, not {:?}",
            discovery.issuer,
            self.issuer
        );
        check_url(&discovery.jwks_uri).context("the discovery document's jwks_uri")?;
        Ok(discovery.jwks_uri)
    }
}
