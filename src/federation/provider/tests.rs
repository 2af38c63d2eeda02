//! `Provider` against the in-process test provider: discovery, caching,
//! refetches, outages and refused key sets, asserted on results and on
//! how often each document was fetched.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;

use super::test_idp::{Down, OidcProvider};
use super::*;

fn fetcher() -> Arc<Fetcher> {
    Arc::new(Fetcher::new(None).unwrap())
}

fn provider(idp: &OidcProvider, settings: ProviderSettings) -> Provider {
    Provider::new(idp.issuer().to_owned(), None, fetcher(), settings)
}

/// Keys stale as soon as fetched, so every lookup revalidates.
fn always_stale() -> ProviderSettings {
    ProviderSettings {
        min_fresh: Duration::ZERO,
        default_fresh: Duration::ZERO,
        ..ProviderSettings::default()
    }
}

/// Waits, bounded, until `done` holds: for background work only.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Bounds `work` so a regression fails instead of hanging the suite.
async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .expect("did not finish within 5 s")
}

/// `n` lookups of `kid` at once, each in its own task.
async fn concurrently(
    n: usize,
    provider: &Provider,
    kid: &str,
) -> Vec<Result<Arc<VerifyKey>, KeyError>> {
    let mut lookups = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (provider, kid) = (provider.clone(), kid.to_owned());
        lookups.spawn(async move { provider.key(&kid).await });
    }
    bounded(lookups.join_all()).await
}

fn unavailable(result: Result<Arc<VerifyKey>, KeyError>) -> String {
    match result {
        Err(KeyError::Unavailable(why)) => why,
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(key) => panic!("expected Unavailable, got key {}", key.kid),
    }
}

#[tokio::test]
async fn discovery_finds_every_published_key_and_fetches_once() {
    let idp = OidcProvider::start().await;
    let provider = provider(&idp, ProviderSettings::default());
    assert_eq!(provider.issuer(), idp.issuer());
    for test in idp.keys() {
        let key = provider.key(&test.kid).await.unwrap();
        assert_eq!(key.algorithm, test.algorithm);
        let token = test.sign(&idp.github_claims("chartgate", None));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(key.verifies(input.as_bytes(), &signature));
    }
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn a_sub_path_issuer_with_a_trailing_slash_is_discovered() {
    let idp = OidcProvider::start_at("/tenant").await;
    let issuer = format!("{}/", idp.issuer());
    idp.set_discovery_issuer(Some(&issuer));
    let provider = Provider::new(issuer, None, fetcher(), ProviderSettings::default());
    assert!(provider.key("rs256-1").await.is_ok());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn a_configured_jwks_uri_skips_discovery() {
    let idp = OidcProvider::start().await;
    let provider = Provider::new(
        idp.issuer().to_owned(),
        Some(idp.jwks_uri()),
        fetcher(),
        ProviderSettings::default(),
    );
    assert!(provider.key("es256-1").await.is_ok());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (0, 1));
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let idp = OidcProvider::start().await;
    idp.set_discovery_issuer(Some("https://token.actions.githubusercontent.com"));
    let why = unavailable(
        provider(&idp, ProviderSettings::default())
            .key("rs256-1")
            .await,
    );
    assert!(why.contains("names issuer"), "{why}");
    assert_eq!(idp.jwks_hits(), 0);
}

#[tokio::test]
async fn a_plain_http_jwks_uri_off_loopback_is_refused() {
    let idp = OidcProvider::start().await;
    idp.set_jwks_uri(Some("http://keys.example.com/jwks"));
    let why = unavailable(
        provider(&idp, ProviderSettings::default())
            .key("rs256-1")
            .await,
    );
    assert!(why.contains("jwks_uri"), "{why}");
    assert_eq!(idp.jwks_hits(), 0);
}

#[tokio::test]
async fn cache_control_max_age_sets_freshness() {
    let idp = OidcProvider::start().await;
    idp.set_cache_control(Some("public, max-age=2"));
    let settings = ProviderSettings {
        min_fresh: Duration::ZERO,
        ..ProviderSettings::default()
    };
    let provider = provider(&idp, settings);
    provider.key("rs256-1").await.unwrap();
    provider.key("es256-1").await.unwrap();
    assert_eq!(idp.jwks_hits(), 1, "fresh keys are not refetched");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Stale: served at once, refreshed behind.
    provider.key("rs256-1").await.unwrap();
    eventually("a background refresh", || idp.jwks_hits() == 2).await;
}

#[tokio::test]
async fn no_store_is_held_to_min_fresh() {
    let idp = OidcProvider::start().await;
    idp.set_cache_control(Some("no-store"));
    let provider = provider(&idp, ProviderSettings::default());
    for _ in 0..5 {
        provider.key("rs256-1").await.unwrap();
    }
    tokio::task::yield_now().await;
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_per_interval_however_many_ask() {
    let idp = OidcProvider::start().await;
    let provider = provider(&idp, ProviderSettings::default());
    provider.key("rs256-1").await.unwrap();
    for result in concurrently(20, &provider, "no-such-kid").await {
        assert_eq!(result.err(), Some(KeyError::UnknownKid));
    }
    assert_eq!(idp.jwks_hits(), 2, "one refetch for twenty lookups");
    assert_eq!(
        provider.key("another").await.err(),
        Some(KeyError::UnknownKid)
    );
    assert_eq!(idp.jwks_hits(), 2, "no refetch within refetch_interval");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_its_unknown_kid() {
    let idp = OidcProvider::start().await;
    let provider = provider(&idp, ProviderSettings::default());
    provider.key("rs256-1").await.unwrap();
    let new = idp.rotate(Algorithm::RS256);
    idp.remove_key("rs256-1");
    for result in concurrently(20, &provider, &new.kid).await {
        assert_eq!(result.unwrap().algorithm, Algorithm::RS256);
    }
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn a_warm_cache_outlives_an_outage_without_waiting_on_it() {
    for how in [Down::Unavailable, Down::Reset, Down::Hang] {
        let idp = OidcProvider::start().await;
        let provider = provider(&idp, always_stale());
        provider.key("rs256-1").await.unwrap();
        idp.go_down(how);
        // Stale keys are served at once while one refresh fails (or
        // hangs) behind; lookups never wait for it.
        bounded(provider.key("rs256-1")).await.unwrap();
        eventually("a refresh attempt", || idp.discovery_hits() == 2).await;
        for _ in 0..10 {
            bounded(provider.key("es256-1")).await.unwrap();
        }
        tokio::task::yield_now().await;
        assert_eq!(
            idp.discovery_hits(),
            2,
            "{how:?}: one attempt per retry_interval"
        );
    }
}

#[tokio::test]
async fn a_cold_cache_with_the_provider_down_is_unavailable_and_not_retried_at_once() {
    for how in [Down::Unavailable, Down::Reset] {
        let idp = OidcProvider::start().await;
        idp.go_down(how);
        let provider = provider(&idp, ProviderSettings::default());
        unavailable(bounded(provider.key("rs256-1")).await);
        assert_eq!(idp.discovery_hits(), 1);
        unavailable(bounded(provider.key("rs256-1")).await);
        assert_eq!(
            idp.discovery_hits(),
            1,
            "{how:?}: not retried within retry_interval"
        );
    }
}

#[tokio::test]
async fn keys_past_max_stale_are_dropped() {
    let idp = OidcProvider::start().await;
    let settings = ProviderSettings {
        max_stale: Duration::from_secs(1),
        ..always_stale()
    };
    let provider = provider(&idp, settings);
    provider.key("rs256-1").await.unwrap();
    idp.go_down(Down::Unavailable);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unavailable(provider.key("rs256-1").await);
}

#[tokio::test]
async fn symmetric_and_alg_none_entries_are_never_usable() {
    let idp = OidcProvider::start().await;
    idp.add_oct_entry("hs", b"a shared secret");
    idp.add_none_entry("none");
    let provider = provider(&idp, ProviderSettings::default());
    for kid in ["hs", "none"] {
        assert_eq!(provider.key(kid).await.err(), Some(KeyError::UnknownKid));
    }
    assert!(provider.key("rs256-1").await.is_ok());
    // With only such entries the JWKS is a failed fetch.
    let idp = OidcProvider::start().await;
    for key in idp.keys() {
        idp.remove_key(&key.kid);
    }
    idp.add_oct_entry("hs", b"a shared secret");
    idp.add_none_entry("none");
    let only_bogus = self::provider(&idp, ProviderSettings::default());
    let why = unavailable(only_bogus.key("hs").await);
    assert!(why.contains("no usable key"), "{why}");
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let idp = OidcProvider::start().await;
    idp.set_jwks_padding(JWKS_MAX_BYTES);
    let why = unavailable(
        provider(&idp, ProviderSettings::default())
            .key("rs256-1")
            .await,
    );
    assert!(why.contains("over"), "{why}");
    assert_eq!(idp.jwks_hits(), 1);
}
