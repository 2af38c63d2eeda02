//! The test OpenID provider itself, proven over HTTP(S): what it serves is
//! a discovery document and a JWKS that jsonwebtoken accepts, and the
//! tokens it mints verify against exactly the keys it publishes.

use chartgate::federation::fetch::{Fetcher, DISCOVERY_MAX_BYTES, JWKS_MAX_BYTES};
use chartgate::server::devcert;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::oidc_provider::{self, OidcProvider, TestKey, DISCOVERY_PATH, JWKS_PATH};

const AUD: &str = "https://charts.example.test";

/// The JWKS `idp` serves, fetched through its own discovery document.
async fn served_jwks(idp: &OidcProvider, fetcher: &Fetcher) -> JwkSet {
    let url = format!("{}{DISCOVERY_PATH}", idp.issuer());
    let discovery = fetcher.fetch(&url, DISCOVERY_MAX_BYTES).await.unwrap().json;
    assert_eq!(discovery["issuer"], idp.issuer());
    assert_eq!(discovery["jwks_uri"], idp.jwks_uri());
    let jwks = fetcher
        .fetch(&idp.jwks_uri(), JWKS_MAX_BYTES)
        .await
        .unwrap();
    serde_json::from_value(jwks.json).unwrap()
}

/// `token`'s claims if it verifies with one of `jwks`' keys, chosen by its
/// `kid` and used with the algorithm the JWK names, for `issuer` and AUD: a
/// plain jsonwebtoken verifier, no chartgate code.
fn verify(token: &str, jwks: &JwkSet, issuer: &str) -> Option<Value> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let jwk = jwks.find(&kid)?;
    let alg: Algorithm = jwk.common.key_algorithm?.to_string().parse().ok()?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[issuer]);
    let key = DecodingKey::from_jwk(jwk).ok()?;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .ok()
        .map(|t| t.claims)
}

#[tokio::test]
async fn minted_tokens_verify_against_the_served_keys_only() {
    let idp = OidcProvider::start().await;
    let jwks = served_jwks(&idp, &Fetcher::new(None).unwrap()).await;
    assert_eq!(jwks.keys.len(), 3);
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
    for key in idp.keys() {
        let github = verify(
            &key.sign(&idp.github_claims(AUD, None)),
            &jwks,
            idp.issuer(),
        );
        let github = github.unwrap_or_else(|| panic!("{:?} GitHub token", key.algorithm));
        assert_eq!(github["sub"], "repo:acme/billing:ref:refs/heads/main");
        assert_eq!(
            github["ref_protected"], "true",
            "GitHub's claims are strings"
        );
        let gitlab = verify(
            &key.sign(&idp.gitlab_claims(AUD, None)),
            &jwks,
            idp.issuer(),
        );
        let gitlab = gitlab.unwrap_or_else(|| panic!("{:?} GitLab token", key.algorithm));
        assert_eq!(
            gitlab["sub"],
            "project_path:acme/billing:ref_type:branch:ref:main"
        );
        assert!(
            gitlab["runner_id"].is_u64(),
            "GitLab's runner_id is a number"
        );
    }
    let deploy = idp.mint(&idp.github_claims(AUD, Some("production")));
    let deploy = verify(&deploy, &jwks, idp.issuer()).unwrap();
    assert_eq!(deploy["sub"], "repo:acme/billing:environment:production");
    assert_eq!(deploy["environment"], "production");
}

#[tokio::test]
async fn foreign_keys_and_bogus_entries_do_not_verify() {
    let idp = OidcProvider::start().await;
    idp.add_oct_entry("hs", b"a shared secret");
    let none = idp.add_none_entry("none");
    let jwks = served_jwks(&idp, &Fetcher::new(None).unwrap()).await;
    assert_eq!(jwks.keys.len(), 5);
    let claims = idp.github_claims(AUD, None);
    // Another key, under a published kid or its own.
    let stranger = TestKey::generate(Algorithm::RS256, "stranger");
    assert!(verify(&stranger.sign_as("rs256-1", &claims), &jwks, idp.issuer()).is_none());
    assert!(verify(&stranger.sign(&claims), &jwks, idp.issuer()).is_none());
    // A second provider's keys share kids but not key material.
    let other = OidcProvider::start().await;
    assert!(verify(&other.mint(&claims), &jwks, idp.issuer()).is_none());
    // The bogus entries: an `alg: none` JWK, an unsigned token.
    assert!(verify(&none.sign(&claims), &jwks, idp.issuer()).is_none());
    assert!(verify(
        &oidc_provider::unsigned("none", &claims),
        &jwks,
        idp.issuer()
    )
    .is_none());
    // The `oct` entry is a working trap: a verifier that lets a JWK choose
    // its algorithm accepts this HS256 token.
    let hs = oidc_provider::sign_hs256(b"a shared secret", "hs", &claims);
    assert!(verify(&hs, &jwks, idp.issuer()).is_some());
    // Rotation: a removed key's tokens stop verifying, a new one's start.
    let new = idp.rotate(Algorithm::ES256);
    idp.remove_key("rs256-1");
    let jwks = served_jwks(&idp, &Fetcher::new(None).unwrap()).await;
    assert!(verify(&new.sign(&claims), &jwks, idp.issuer()).is_some());
    assert!(verify(&idp.mint(&claims), &jwks, idp.issuer()).is_some());
    assert!(jwks.find("rs256-1").is_none());
    assert_eq!(idp.hits(JWKS_PATH), 2);
}

#[tokio::test]
async fn over_tls_it_is_trusted_through_a_ca_file_only() {
    let pki = devcert::generate(&["localhost"], "unused").unwrap();
    let idp = OidcProvider::start_tls(&pki.server_cert, &pki.server_key).await;
    assert!(idp.issuer().starts_with("https://localhost:"));
    let dir = std::env::temp_dir().join(format!("chartgate-idp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_cert).unwrap();
    let trusting = Fetcher::new(Some(&ca)).unwrap();
    let jwks = served_jwks(&idp, &trusting).await;
    assert!(verify(
        &idp.mint(&idp.gitlab_claims(AUD, None)),
        &jwks,
        idp.issuer()
    )
    .is_some());
    let system_roots = Fetcher::new(None).unwrap();
    let url = format!("{}{DISCOVERY_PATH}", idp.issuer());
    assert!(system_roots.fetch(&url, DISCOVERY_MAX_BYTES).await.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
