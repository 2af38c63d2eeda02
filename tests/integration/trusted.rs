//! Trusted publishing against an in-process OpenID provider: the RFC 8693
//! exchange and the Basic `oidc:` door with the claim sets GitHub Actions
//! and GitLab CI document, and every refusal the issue lists: wrong
//! issuer, audience, repository, ref or environment, expired, a `kid` not
//! in the JWKS, HS256 and `none` entries, another provider's key, a
//! replayed `jti`, and the provider down with a warm and a cold cache.

use bytes::Bytes;
use hyper::Request;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::common::*;
use crate::oidc_provider::{self, Down, OidcProvider, TestKey};

pub(crate) const AUD: &str = "https://charts.example.test";

/// The accounts config plus a GitHub policy for `acme/billing` on `main`
/// (any environment but `staging`-free: only `production` when given), a
/// single-use GitLab policy, and a generic one, all on `idp`'s issuer.
pub(crate) fn trust_config(idp: &OidcProvider) -> String {
    let issuer = idp.issuer();
    accounts_config()
        + &format!(
            r#"
[[trust]]
name = "github"
issuer = "{issuer}"
audience = "{AUD}"
provider = "github"
max_ttl = "2m"
claims = {{ repository = "acme/billing", ref = ["refs/heads/main", "refs/tags/v*"] }}
rules = [{{ repos = "org1/repo1", actions = ["pull", "push"] }}, {{ repos = "org2/*", actions = ["pull"] }}]

[[trust]]
name = "deploy"
issuer = "{issuer}"
audience = "{AUD}"
provider = "github"
claims = {{ repository_owner = "acme", environment = "production" }}
rules = [{{ repos = "org3/repo3", actions = ["pull", "push"] }}]

[[trust]]
name = "gitlab"
issuer = "{issuer}"
audience = "{AUD}"
provider = "gitlab"
single_use = true
claims = {{ project_path = "acme/billing", ref_protected = true }}
rules = [{{ repos = "org1/repo1", actions = ["pull", "push"] }}]
"#
        )
}

async fn setup(idp: &OidcProvider) -> (Upstream, Gw) {
    let upstream = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&trust_config(idp), upstream.addr)).await;
    (upstream, gw)
}

fn refused_as(reply: &Reply, status: u16, class: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains(class)),
        "wanted {class:?}: {body}"
    );
}

#[tokio::test]
async fn a_github_job_exchanges_its_id_token_for_what_its_policy_allows() {
    let idp = OidcProvider::start().await;
    let (upstream, gw) = setup(&idp).await;
    let claims = idp.github_claims(AUD, None);
    let id_token = idp.mint(&claims);
    let r = exchange(
        &gw,
        &id_token,
        "artifact-repository:org1/repo1:pull,push artifact-repository:org2/repo2:pull,push artifact-repository:org3/repo3:push",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    // The intersection: org2 only for pull, org3 not at all.
    assert_eq!(
        body["scope"],
        "artifact-repository:org1/repo1:pull,push artifact-repository:org2/repo2:pull"
    );
    let token = body["access_token"].as_str().unwrap();
    let (_, minted) = decode_parts(token);
    assert_eq!(minted["sub"], "github:acme/billing@refs/heads/main");
    // No longer than the id token nor the policy's 2 minutes.
    let exp = minted["exp"].as_u64().unwrap();
    let iat = minted["iat"].as_u64().unwrap();
    assert!(exp <= claims["exp"].as_u64().unwrap(), "{minted}");
    assert!(exp - iat <= 120, "{minted}");

    // The minted token pushes to org1/repo1 through the proxy ...
    let push = Request::post(gw.url("/api/org1/repo1/charts"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/octet-stream")
        .body(full(Bytes::from_static(b"chart")))
        .unwrap();
    let pushed = send(push).await;
    assert_eq!(pushed.status, 201, "{}", pushed.text());
    assert_eq!(upstream.last().uri, "/api/org1/repo1/charts");
    // ... and nowhere its policy does not reach.
    let denied = get(
        &gw.url("/org3/repo3/index.yaml"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(denied.status, 401);
}

#[tokio::test]
async fn policies_are_tried_in_order_and_subjects_name_the_one_that_matched() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    // A deployment job of another acme repository: only `deploy` matches.
    let claims = oidc_provider::with(
        idp.github_claims(AUD, Some("production")),
        json!({"repository": "acme/web", "ref": "refs/heads/main"}),
    );
    let r = exchange(
        &gw,
        &idp.mint(&claims),
        "artifact-repository:org3/repo3:push",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, minted) = decode_parts(r.json()["token"].as_str().unwrap());
    assert_eq!(minted["sub"], "deploy:acme/web@refs/heads/main");
    assert_eq!(r.json()["scope"], "artifact-repository:org3/repo3:push");
}

#[tokio::test]
async fn wrong_issuer_audience_identity_and_expiry_are_refused() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let scope = "artifact-repository:org1/repo1:pull";
    let base = idp.github_claims(AUD, None);
    let cases: [(&str, Value, &str); 8] = [
        (
            "another issuer",
            json!({"iss": "https://token.actions.githubusercontent.com"}),
            "no trust policy",
        ),
        (
            "another audience",
            json!({"aud": "https://elsewhere"}),
            "invalid",
        ),
        (
            "another repository",
            json!({"repository": "acme/other"}),
            "no trust policy",
        ),
        (
            "a fork's repository",
            json!({"repository": "evil/billing"}),
            "no trust policy",
        ),
        (
            "another ref",
            json!({"ref": "refs/heads/dev"}),
            "no trust policy",
        ),
        (
            "expired",
            json!({"exp": 1_000_000_000u64, "iat": 999_999_000u64, "nbf": 999_999_000u64}),
            "invalid or expired",
        ),
        ("no iat", json!({"iat": null}), "invalid or expired"),
        ("no aud", json!({"aud": null}), "invalid"),
    ];
    for (what, change, class) in cases {
        let token = idp.mint(&oidc_provider::with(base.clone(), change));
        let r = exchange(&gw, &token, scope).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        refused_as(&r, 400, class);
    }
    // The environment matcher: production only.
    let staging = oidc_provider::with(
        idp.github_claims(AUD, Some("staging")),
        json!({"repository": "acme/web"}),
    );
    let r = exchange(
        &gw,
        &idp.mint(&staging),
        "artifact-repository:org3/repo3:push",
    )
    .await;
    refused_as(&r, 400, "no trust policy");
}

#[tokio::test]
async fn keys_outside_the_issuers_jwks_never_verify() {
    let idp = OidcProvider::start().await;
    let other = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let claims = idp.github_claims(AUD, None);
    let scope = "artifact-repository:org1/repo1:pull";

    // A kid the JWKS does not have.
    let stray = TestKey::generate(Algorithm::RS256, "stray");
    refused_as(
        &exchange(&gw, &stray.sign(&claims), scope).await,
        400,
        "invalid",
    );
    // Another provider's key, under the configured issuer's name and a
    // kid of its own JWKS ("rs256-1" is every provider's first kid).
    let forged = other
        .key(Algorithm::RS256)
        .sign_as(&idp.key(Algorithm::RS256).kid, &claims);
    refused_as(&exchange(&gw, &forged, scope).await, 400, "invalid");
    // HS256 and `none` entries served in the JWKS are never usable.
    idp.add_oct_entry("hs", b"0123456789abcdef0123456789abcdef");
    idp.add_none_entry("nothing");
    let hs = oidc_provider::sign_hs256(b"0123456789abcdef0123456789abcdef", "hs", &claims);
    refused_as(&exchange(&gw, &hs, scope).await, 400, "invalid");
    let none = oidc_provider::unsigned("nothing", &claims);
    refused_as(&exchange(&gw, &none, scope).await, 400, "invalid");
    // Every published algorithm works, each with its own key only.
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let r = exchange(&gw, &idp.key(alg).sign(&claims), scope).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
    }
    // A published RSA key used under another algorithm's name.
    let rs = idp.key(Algorithm::RS256);
    let es_named_rs = idp.key(Algorithm::ES256).sign_as(&rs.kid, &claims);
    refused_as(&exchange(&gw, &es_named_rs, scope).await, 400, "invalid");
}

#[tokio::test]
async fn a_single_use_token_is_exchanged_once_and_never_at_the_basic_door() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let token = idp.mint(&idp.gitlab_claims(AUD, None));
    let scope = "artifact-repository:org1/repo1:pull";
    let first = exchange(&gw, &token, scope).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let (_, minted) = decode_parts(first.json()["token"].as_str().unwrap());
    assert_eq!(minted["sub"], "gitlab:acme/billing@main");
    refused_as(
        &exchange(&gw, &token, scope).await,
        400,
        "already exchanged",
    );
    // A fresh token (new jti) of the same job works again.
    let again = idp.mint(&idp.gitlab_claims(AUD, None));
    assert_eq!(exchange(&gw, &again, scope).await.status, 200);
    // The Basic door would resend it with every request.
    let fresh = idp.mint(&idp.gitlab_claims(AUD, None));
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&basic("oidc", &fresh)),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn helm_style_basic_oidc_reaches_the_repository_without_an_exchange() {
    let idp = OidcProvider::start().await;
    let (upstream, gw) = setup(&idp).await;
    let token = idp.mint(&idp.github_claims(AUD, None));
    let auth = basic("oidc", &token);
    for _ in 0..3 {
        let r = get(&gw.url("/org1/repo1/index.yaml"), Some(&auth)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(upstream.hits(), 3);
    // Verified once: the keys were fetched once and remembered after.
    assert_eq!(idp.jwks_hits(), 1);
    // Outside its rules, the usual challenge.
    let r = get(&gw.url("/org3/repo3/index.yaml"), Some(&auth)).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").contains("org3/repo3:pull"));
    // The Docker token GET with the same Basic credential.
    let req =
        Request::get(gw.url(
            "/oauth/token?service=localhost:8080&scope=artifact-repository:org1/repo1:pull,push",
        ))
        .header("authorization", auth.clone())
        .body(full(Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["scope"],
        "artifact-repository:org1/repo1:pull,push"
    );
    // A bad id token under `oidc` is refused, and never tried as a password.
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&basic("oidc", "x.y.z")),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn failures_lock_out_an_address_but_never_the_shared_oidc_user() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let forged = TestKey::generate(Algorithm::RS256, &idp.key(Algorithm::RS256).kid);
    let bad = forged.sign(&idp.github_claims(AUD, None));
    let index = gw.url("/org1/repo1/index.yaml");
    // More failures under the `oidc` user than one account may have (10
    // by default): were `oidc` counted as an account, every CI identity
    // would now be locked out.
    for _ in 0..15 {
        assert_eq!(get(&index, Some(&basic("oidc", &bad))).await.status, 401);
    }
    let good = idp.mint(&idp.github_claims(AUD, None));
    assert_eq!(get(&index, Some(&basic("oidc", &good))).await.status, 200);
    // The address still counts them (100 by default): exchanges of bad
    // tokens from it end locked out, good ones included.
    let mut locked = false;
    for _ in 0..120 {
        let r = exchange(&gw, &bad, "artifact-repository:org1/repo1:pull").await;
        if r.status == 429 {
            locked = true;
            break;
        }
        assert_eq!(r.status, 400);
    }
    assert!(locked, "the address was never locked out");
    let fresh = idp.mint(&idp.github_claims(AUD, None));
    let r = exchange(&gw, &fresh, "artifact-repository:org1/repo1:pull").await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn the_provider_down_keeps_warm_keys_and_fails_cold_ones_fast() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let scope = "artifact-repository:org1/repo1:pull";
    // Warm the cache, then take the provider down.
    let r = exchange(&gw, &idp.mint(&idp.github_claims(AUD, None)), scope).await;
    assert_eq!(r.status, 200);
    idp.go_down(Down::Unavailable);
    let hits = idp.jwks_hits();
    let r = exchange(&gw, &idp.mint(&idp.github_claims(AUD, None)), scope).await;
    assert_eq!(r.status, 200, "warm keys: {}", r.text());
    assert_eq!(idp.jwks_hits(), hits, "a fresh cache asked the provider");

    // A cold cache (a new gateway) while the provider is down: 503 with
    // Retry-After, and the retry waits for the interval.
    let (_upstream2, cold) = setup(&idp).await;
    let token = idp.mint(&idp.github_claims(AUD, None));
    let r = exchange(&cold, &token, scope).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(!r.header("retry-after").is_empty());
    let asked = idp.discovery_hits();
    let r = exchange(&cold, &token, scope).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        idp.discovery_hits(),
        asked,
        "a failed fetch was retried at once"
    );
    // The proxy path of a Basic id token says the same, and requests that
    // need no id token are untouched.
    let r = get(
        &cold.url("/org1/repo1/index.yaml"),
        Some(&basic("oidc", &token)),
    )
    .await;
    assert_eq!(r.status, 503);
    let r = get(
        &cold.url("/org1/repo1/index.yaml"),
        Some(&basic("alice", ALICE_PASSWORD)),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_its_kid() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let scope = "artifact-repository:org1/repo1:pull";
    let claims = idp.github_claims(AUD, None);
    assert_eq!(exchange(&gw, &idp.mint(&claims), scope).await.status, 200);
    let new = idp.rotate(Algorithm::RS256);
    let r = exchange(&gw, &new.sign(&claims), scope).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_exchange_with_an_authorization_header_or_in_the_query_is_refused() {
    let idp = OidcProvider::start().await;
    let (_upstream, gw) = setup(&idp).await;
    let token = idp.mint(&idp.github_claims(AUD, None));
    let form = format!("grant_type={EXCHANGE}&subject_token={token}&subject_token_type={ID_TOKEN}");
    let req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic("alice", ALICE_PASSWORD))
        .body(full(Bytes::from(form.clone())))
        .unwrap();
    refused_as(&send(req).await, 400, "Authorization");
    let req = Request::post(gw.url(&format!("/oauth/token?{form}")))
        .body(full(Bytes::new()))
        .unwrap();
    refused_as(&send(req).await, 400, "query string");
}
