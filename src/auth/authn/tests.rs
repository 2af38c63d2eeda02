//! Authenticator tests: each credential form, the remembered password
//! checks, anonymous pull, and ambiguity.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::{HeaderValue, AUTHORIZATION};
use jsonwebtoken::Algorithm;

use super::*;
use crate::auth::access::{AccessEntry, RESOURCE_TYPE};
use crate::auth::account::{hash_password, SecretHash};
use crate::auth::key::{tests::test_rsa_pem, SigningKey};
use crate::auth::keyset::KeySet;
use crate::auth::token::VerifyPolicy;
use crate::issuer::mint::Minter;

const KEY: &str = "cgk_test-api-key-0123456789";

use crate::auth::acl::acl as rules;

struct Fixture {
    authn: Authenticator,
    minter: Minter,
}

fn fixture() -> Fixture {
    let signing = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
    let policy = VerifyPolicy {
        issuer: "cg".into(),
        audience: "svc".into(),
        leeway: 0,
        cache_capacity: 10,
    };
    let keys = KeySet::new(
        [signing.public.clone()],
        vec![],
        Duration::from_secs(60),
        policy.validation(),
    )
    .unwrap();
    let accounts = Accounts::new(vec![
        Account {
            id: "ci".into(),
            secret: Some(SecretHash::of_api_key(KEY)),
            client_cn: Some("ci-bot".into()),
            expires: None,
            acl: rules(&[("org1/*", &["pull", "push"])]),
        },
        Account {
            id: "alice".into(),
            secret: Some(SecretHash::parse(&hash_password("correct horse").unwrap()).unwrap()),
            client_cn: None,
            expires: None,
            acl: rules(&[("org2/repo2", &["pull"])]),
        },
    ])
    .unwrap();
    let authn = Authenticator::new(
        Verifier::new(keys, policy),
        Arc::new(accounts),
        rules(&[("public/*", &["pull"])]),
        AuthnOptions {
            token_header: Some(HeaderName::from_static("x-chart-token")),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 100,
        },
    );
    let minter = Minter::new(signing, "cg".into(), "svc".into(), Duration::from_secs(300));
    Fixture { authn, minter }
}

fn jwt(f: &Fixture, name: &str, actions: &[&str]) -> String {
    let access = vec![AccessEntry {
        kind: RESOURCE_TYPE.into(),
        name: name.into(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
        charts: None,
    }];
    f.minter
        .mint("tok", access, unix_now(), None)
        .unwrap()
        .token
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn scope(ns: &str, action: Action) -> Scope {
    Scope::repository(ns, action)
}

#[tokio::test]
async fn every_credential_form_reaches_the_same_rules() {
    let f = fixture();
    let token = jwt(&f, "org1/repo1", &["pull"]);
    let forms = [
        headers(&[("authorization", format!("Bearer {token}"))]),
        headers(&[("x-chart-token", token.clone())]),
        headers(&[("authorization", basic("anything", &token))]),
    ];
    for h in &forms {
        let p = f.authn.authenticate(h, None).await.unwrap();
        assert!(matches!(p, Principal::Token(_)));
        assert!(f.authn.allows(&p, &scope("org1/repo1", Action::Pull)));
        assert!(!f.authn.allows(&p, &scope("org1/repo1", Action::Push)));
    }
    let by_key = [
        headers(&[("authorization", format!("Bearer {KEY}"))]),
        headers(&[("x-chart-token", KEY.to_owned())]),
        headers(&[("authorization", basic("ci", KEY))]),
    ];
    for h in &by_key {
        let p = f.authn.authenticate(h, None).await.unwrap();
        assert_eq!(p.subject(), "ci");
        assert!(f.authn.allows(&p, &scope("org1/anything", Action::Push)));
        assert!(!f.authn.allows(&p, &scope("org2/repo2", Action::Pull)));
    }
    let p = f
        .authn
        .authenticate(
            &headers(&[("authorization", basic("alice", "correct horse"))]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p.subject(), "alice");
    assert!(f.authn.allows(&p, &scope("org2/repo2", Action::Pull)));
    assert!(!f.authn.allows(&p, &scope("org2/repo2", Action::Push)));
}

#[tokio::test]
async fn successful_password_checks_are_remembered_and_failures_are_not() {
    let f = fixture();
    let good = headers(&[("authorization", basic("alice", "correct horse"))]);
    f.authn.authenticate(&good, None).await.unwrap();
    f.authn.remembered.run_pending_tasks().await;
    assert_eq!(f.authn.remembered.entry_count(), 1);
    f.authn.authenticate(&good, None).await.unwrap();
    f.authn.remembered.run_pending_tasks().await;
    assert_eq!(f.authn.remembered.entry_count(), 1);

    for bad in [
        basic("alice", "wrong"),
        basic("nobody", "correct horse"),
        basic("alice", ""),
    ] {
        let r = f
            .authn
            .authenticate(&headers(&[("authorization", bad)]), None)
            .await;
        assert!(matches!(r, Err(AuthnError::Password(_))));
    }
    f.authn.remembered.run_pending_tasks().await;
    assert_eq!(
        f.authn.remembered.entry_count(),
        1,
        "a failure was remembered"
    );
}

#[test]
fn remembered_keys_separate_id_and_secret() {
    assert_ne!(remember_key("a:b", "c"), remember_key("a", "b:c"));
    assert_ne!(remember_key("ab", "c"), remember_key("a", "bc"));
}

#[tokio::test]
async fn anonymous_pull_only_where_allowed_and_never_for_bad_credentials() {
    let f = fixture();
    let p = f.authn.authenticate(&HeaderMap::new(), None).await.unwrap();
    assert!(matches!(p, Principal::Anonymous));
    assert!(f.authn.allows(&p, &scope("public/charts", Action::Pull)));
    assert!(!f.authn.allows(&p, &scope("public/charts", Action::Push)));
    assert!(!f.authn.allows(&p, &scope("org1/repo1", Action::Pull)));
    // Any authenticated principal keeps anonymous rights.
    let p = f
        .authn
        .authenticate(
            &headers(&[("authorization", format!("Bearer {KEY}"))]),
            None,
        )
        .await
        .unwrap();
    assert!(f.authn.allows(&p, &scope("public/charts", Action::Pull)));
    // Wrong credentials are an error, not anonymous.
    for h in [
        headers(&[("authorization", "Bearer cgk_nope-nope-nope-nope".to_owned())]),
        headers(&[("authorization", "Bearer a.b.c".to_owned())]),
        headers(&[("x-chart-token", "a.b.c".to_owned())]),
        headers(&[("authorization", basic("alice", "nope"))]),
    ] {
        assert!(f.authn.authenticate(&h, None).await.is_err());
    }
}

#[tokio::test]
async fn two_credentials_are_ambiguous() {
    let f = fixture();
    let both = headers(&[
        ("authorization", format!("Bearer {KEY}")),
        ("x-chart-token", KEY.to_owned()),
    ]);
    assert!(matches!(
        f.authn.authenticate(&both, None).await,
        Err(AuthnError::Credential(CredentialError::Duplicate))
    ));
    let twice = headers(&[
        ("x-chart-token", KEY.to_owned()),
        ("x-chart-token", KEY.to_owned()),
    ]);
    assert!(matches!(
        f.authn.authenticate(&twice, None).await,
        Err(AuthnError::Credential(CredentialError::Duplicate))
    ));
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    assert!(f.authn.authenticate(&h, None).await.is_err());
}

#[tokio::test]
async fn the_client_check_accepts_keys_and_passwords() {
    let f = fixture();
    let a = f
        .authn
        .client(&Credential::Bearer(KEY.into()))
        .await
        .unwrap();
    assert_eq!(a.id, "ci");
    let a = f
        .authn
        .client(&Credential::Basic {
            user: "alice".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap();
    assert_eq!(a.id, "alice");
    assert!(f
        .authn
        .client(&Credential::Bearer("cgk_unknown-key-123456".into()))
        .await
        .is_err());
}

#[tokio::test]
async fn a_verified_client_certificate_is_a_credential_of_last_resort() {
    let f = fixture();
    let p = f
        .authn
        .authenticate(&HeaderMap::new(), Some("ci-bot"))
        .await
        .unwrap();
    assert_eq!(p.subject(), "ci");
    assert!(f.authn.allows(&p, &scope("org1/repo1", Action::Push)));
    // An unmapped certificate is just anonymous.
    let p = f
        .authn
        .authenticate(&HeaderMap::new(), Some("stranger"))
        .await
        .unwrap();
    assert!(matches!(p, Principal::Anonymous));
    // Explicit credentials win over the certificate.
    let h = headers(&[("authorization", basic("alice", "correct horse"))]);
    let p = f.authn.authenticate(&h, Some("ci-bot")).await.unwrap();
    assert_eq!(p.subject(), "alice");
}

#[tokio::test(start_paused = true)]
async fn password_checks_wait_for_a_slot_then_give_up_as_busy() {
    let f = fixture();
    // Every argon2 slot is taken by checks already running.
    let slots = f.authn.slow_checks.available_permits() as u32;
    let _held = f
        .authn
        .slow_checks
        .clone()
        .acquire_many_owned(slots)
        .await
        .unwrap();
    let r = f
        .authn
        .authenticate(
            &headers(&[("authorization", basic("alice", "correct horse"))]),
            None,
        )
        .await;
    assert!(matches!(r, Err(AuthnError::Busy)), "{r:?}");
    // A remembered success needs no slot, and neither does an API key.
    let p = f
        .authn
        .authenticate(
            &headers(&[("authorization", format!("Bearer {KEY}"))]),
            None,
        )
        .await;
    assert!(p.is_ok());
}

#[test]
fn every_failure_pays_the_same_argon2_cost() {
    // Timing follows the path taken: a wrong API key and an unknown id must
    // both run the argon2 decoy (a wrong password runs the real hash).
    use std::sync::atomic::Ordering::SeqCst;
    let f = fixture();
    let runs = || f.authn.accounts.decoy_runs.load(SeqCst);
    assert!(f.authn.accounts.verify("ci", "wrong", 0).is_none());
    assert_eq!(runs(), 1);
    assert!(f.authn.accounts.verify("nobody", "wrong", 0).is_none());
    assert_eq!(runs(), 2);
    assert_eq!(f.authn.accounts.verify("ci", KEY, 0).unwrap().id, "ci");
    assert!(f.authn.accounts.verify("alice", "wrong", 0).is_none());
    assert_eq!(runs(), 2, "a real password hash ran instead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_checks_of_one_credential_share_one_verification() {
    let f = Arc::new(fixture());
    let good = headers(&[("authorization", basic("alice", "correct horse"))]);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (f, good) = (f.clone(), good.clone());
            tokio::spawn(async move {
                f.authn
                    .authenticate(&good, None)
                    .await
                    .map(|p| p.subject().to_owned())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "alice");
    }
    assert_eq!(
        f.authn
            .accounts
            .verify_runs
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
