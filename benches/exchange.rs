//! What trusted publishing's token exchange costs per issued token, next to
//! the client-credentials issuance it joins: the id token's verification
//! with the issuer's keys cached (warm) and with a cold cache that first
//! fetches discovery and the JWKS from a provider on loopback, each with
//! and without the mint that follows. Run: `cargo bench --bench exchange`.

#[allow(dead_code)]
#[path = "../tests/support/oidc_provider.rs"]
mod oidc_provider;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chartgate::auth::access::{AccessEntry, RESOURCE_TYPE};
use chartgate::auth::key::{generate_rsa_pem, SigningKey};
use chartgate::auth::token::unix_now;
use chartgate::config::{trust, RawTrust, TrustConfig};
use chartgate::federation::fetch::Fetcher;
use chartgate::federation::provider::{Provider, ProviderSettings};
use chartgate::federation::replay::Replay;
use chartgate::federation::verifier::Federation;
use chartgate::issuer::mint::Minter;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use oidc_provider::OidcProvider;
use serde::Deserialize;

const AUD: &str = "https://charts.example.test";

/// One GitHub policy for `acme/billing` on `main`, on `issuer`.
fn policies(issuer: &str) -> TrustConfig {
    #[derive(Deserialize)]
    struct File {
        trust: Vec<RawTrust>,
    }
    let text = format!(
        r#"
[[trust]]
name = "github"
issuer = "{issuer}"
audience = "{AUD}"
provider = "github"
claims = {{ repository = "acme/billing", ref = "refs/heads/main" }}
rules = [{{ repos = "org1/repo1", actions = ["pull", "push"] }}]
"#
    );
    let file: File = toml::from_str(&text).unwrap();
    trust::validate(file.trust, Path::new(".")).unwrap()
}

/// A federation over `policies` whose key cache starts cold, sharing
/// `fetcher` (its roots are loaded once, at config time, in the gateway).
fn federation(policies: &TrustConfig, fetcher: &Arc<Fetcher>) -> Federation {
    let providers = policies
        .issuers
        .iter()
        .map(|s| {
            let provider = Provider::new(
                s.issuer.clone(),
                None,
                fetcher.clone(),
                ProviderSettings::default(),
            );
            (s.issuer.clone(), Arc::new(provider))
        })
        .collect();
    Federation::new(
        policies.policies.clone(),
        providers,
        Duration::from_secs(30),
        Replay::new(1000, None),
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = rt.block_on(OidcProvider::start());
    let policies = policies(idp.issuer());
    let fetcher = Arc::new(Fetcher::new(None).unwrap());
    let warm = federation(&policies, &fetcher);
    let id_token = idp.mint(&idp.github_claims(AUD, None));
    rt.block_on(warm.exchange(&id_token)).unwrap();

    let (private, _) = generate_rsa_pem().unwrap();
    let key = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
    let minter = Minter::new(
        key,
        "chartgate".into(),
        "svc".into(),
        Duration::from_secs(300),
    );
    let access = || {
        vec![AccessEntry {
            kind: RESOURCE_TYPE.into(),
            name: "org1/repo1".into(),
            actions: vec!["pull".into(), "push".into()],
            charts: None,
        }]
    };
    let mint = |subject: &str| {
        minter
            .mint(subject, access(), unix_now(), None)
            .unwrap()
            .token
    };

    c.bench_function("issue: client_credentials (mint RS256)", |b| {
        b.iter(|| mint(black_box("ci")))
    });
    c.bench_function("exchange, warm keys: verify RS256 id token + policy", |b| {
        b.iter(|| rt.block_on(warm.exchange(black_box(&id_token))).unwrap())
    });
    c.bench_function("issue: exchange, warm keys (verify + mint RS256)", |b| {
        b.iter(|| {
            let identity = rt.block_on(warm.exchange(black_box(&id_token))).unwrap();
            mint(&identity.account.id)
        })
    });
    let mut group = c.benchmark_group("cold");
    group.sample_size(30);
    group.bench_function(
        "exchange, cold keys: discovery + JWKS on loopback, verify",
        |b| {
            b.iter(|| {
                let cold = federation(&policies, &fetcher);
                rt.block_on(cold.exchange(black_box(&id_token))).unwrap()
            })
        },
    );
    group.finish();
}

criterion_group!(exchange, benches);
criterion_main!(exchange);
