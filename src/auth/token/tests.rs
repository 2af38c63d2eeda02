//! Verifier tests: good tokens, every claim rule, key and algorithm binding,
//! and the cache never outliving a token.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::auth::access::{allows, Action, Scope, RESOURCE_TYPE};
use crate::auth::key::tests::test_rsa_pem;
use crate::auth::key::SigningKey;
use crate::auth::keyset::KeySet;
use crate::issuer::mint::Minter;

const ISS: &str = "chartgate";
const AUD: &str = "localhost:8080";

fn signing_key() -> SigningKey {
    SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap()
}

fn verifier(leeway: u64) -> Verifier {
    let policy = VerifyPolicy {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway,
        cache_capacity: 100,
    };
    let keys = KeySet::new(
        [signing_key().public],
        vec![],
        Duration::from_secs(60),
        policy.validation(),
    )
    .unwrap();
    Verifier::new(keys, policy)
}

fn minter(ttl: u64) -> Minter {
    Minter::new(
        signing_key(),
        ISS.into(),
        AUD.into(),
        Duration::from_secs(ttl),
    )
}

fn pull(name: &str) -> Vec<AccessEntry> {
    vec![AccessEntry {
        kind: RESOURCE_TYPE.into(),
        name: name.into(),
        actions: vec!["pull".into()],
        charts: None,
    }]
}

/// Signs arbitrary claims with the trusted key and a chosen header.
fn sign_raw(header: &Header, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(test_rsa_pem().0.as_bytes()).unwrap();
    jsonwebtoken::encode(header, claims, &key).unwrap()
}

fn good_header() -> Header {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(signing_key().kid);
    h
}

fn good_claims(now: u64) -> serde_json::Value {
    json!({"iss": ISS, "sub": "ci", "aud": AUD, "exp": now + 300, "iat": now, "nbf": now,
           "access": [{"type": RESOURCE_TYPE, "name": "org1/repo1", "actions": ["pull"]}]})
}

#[test]
fn accepts_a_minted_token_and_its_grants() {
    let now = unix_now();
    let minted = minter(300)
        .mint("ci", pull("org1/repo1"), now, None)
        .unwrap();
    let claims = verifier(0).verify(&minted.token).unwrap();
    assert_eq!(*claims, minted.claims);
    let scope = Scope::repository("org1/repo1", Action::Pull);
    assert!(allows(&claims.access, &scope));
}

#[test]
fn a_cached_verdict_never_outlives_exp() {
    let now = unix_now();
    let v = verifier(5);
    let minted = minter(60)
        .mint("ci", pull("org1/repo1"), now, None)
        .unwrap();
    assert!(v.verify_at(&minted.token, now).is_ok());
    // Still cached, inside exp + leeway.
    assert!(v.verify_at(&minted.token, now + 64).is_ok());
    // At exp + leeway (ChartMuseum: valid while now < exp) the cached
    // verdict is refused, then forgotten.
    assert!(matches!(
        v.verify_at(&minted.token, now + 65),
        Err(TokenError::Expired)
    ));
    assert!(
        v.verify_at(&minted.token, now).is_ok(),
        "re-verified from scratch"
    );
}

#[test]
fn claims_rules() {
    let now = unix_now();
    let v = verifier(0);
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("expired", json!({"exp": now - 1})),
        ("missing exp", json!({"exp": null})),
        ("string exp", json!({"exp": (now + 300).to_string()})),
        ("not yet valid", json!({"nbf": now + 60})),
        ("issued in the future", json!({"iat": now + 60})),
        ("wrong iss", json!({"iss": "someone-else"})),
        ("missing iss", json!({"iss": null})),
        ("wrong aud", json!({"aud": "other:8080"})),
        ("missing aud", json!({"aud": null})),
        ("access of the wrong type", json!({"access": "org1/repo1"})),
    ];
    for (what, patch) in cases {
        let mut claims = good_claims(now);
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = val.clone();
            }
        }
        let token = sign_raw(&good_header(), &claims);
        assert!(v.verify(&token).is_err(), "{what} was accepted");
    }
    assert!(v
        .verify(&sign_raw(&good_header(), &good_claims(now)))
        .is_ok());
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let now = unix_now();
    let v = verifier(30);
    let mut claims = good_claims(now);
    claims["exp"] = json!(now - 10);
    claims["nbf"] = json!(now + 10);
    claims["iat"] = json!(now + 10);
    assert!(v.verify(&sign_raw(&good_header(), &claims)).is_ok());
    claims["exp"] = json!(now - 40);
    assert!(v.verify(&sign_raw(&good_header(), &claims)).is_err());
}

#[test]
fn key_and_algorithm_binding() {
    let now = unix_now();
    let v = verifier(0);
    let claims = good_claims(now);

    let mut no_kid = good_header();
    no_kid.kid = None;
    assert!(matches!(
        v.verify(&sign_raw(&no_kid, &claims)),
        Err(TokenError::UnknownKey)
    ));

    let mut other_kid = good_header();
    other_kid.kid = Some("../../etc/passwd".into());
    assert!(matches!(
        v.verify(&sign_raw(&other_kid, &claims)),
        Err(TokenError::UnknownKey)
    ));

    // Same RSA key, another RSA algorithm: the key is bound to RS256 only.
    let mut ps = good_header();
    ps.alg = Algorithm::PS256;
    assert!(matches!(
        v.verify(&sign_raw(&ps, &claims)),
        Err(TokenError::Algorithm(_))
    ));

    // HS256 keyed with the public key PEM (CVE-2016-10555).
    let mut hs = good_header();
    hs.alg = Algorithm::HS256;
    let forged = jsonwebtoken::encode(
        &hs,
        &claims,
        &EncodingKey::from_secret(test_rsa_pem().1.as_bytes()),
    )
    .unwrap();
    assert!(v.verify(&forged).is_err());

    // A token signed by another key under our kid.
    let (other_pem, _) = crate::auth::key::generate_rsa_pem().unwrap();
    let other = EncodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap();
    let forged = jsonwebtoken::encode(&good_header(), &claims, &other).unwrap();
    assert!(matches!(v.verify(&forged), Err(TokenError::Invalid(_))));
}

#[test]
fn alg_none_in_any_casing_is_refused() {
    let now = unix_now();
    let v = verifier(0);
    let body = URL_SAFE_NO_PAD.encode(good_claims(now).to_string());
    let kid = signing_key().kid;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
        for sig in ["", "e30"] {
            let token = format!("{header}.{body}.{sig}");
            assert!(v.verify(&token).is_err(), "alg {alg} sig {sig:?}");
        }
    }
}

#[test]
fn malformed_and_oversized_tokens_are_refused() {
    let v = verifier(0);
    for t in ["", ".", "..", "a.b.c", "not a token", "e30.e30.e30"] {
        assert!(v.verify(t).is_err(), "{t:?}");
    }
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(v.verify(&huge), Err(TokenError::TooLong)));
}

#[test]
fn a_token_is_refused_at_exactly_exp() {
    let now = unix_now();
    let v = verifier(0);
    let mut claims = good_claims(now);
    claims["exp"] = json!(now);
    assert!(v
        .verify_at(&sign_raw(&good_header(), &claims), now)
        .is_err());
    claims["exp"] = json!(now + 1);
    assert!(v.verify_at(&sign_raw(&good_header(), &claims), now).is_ok());
}

#[test]
fn a_cached_verdict_dies_with_its_key() {
    use crate::auth::key::generate_rsa_pem;
    use crate::auth::keyset::KeyFile;
    let dir = std::env::temp_dir().join(format!("chartgate-verdict-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trusted.pub.pem");
    let (private, public) = generate_rsa_pem().unwrap();
    std::fs::write(&file, &public).unwrap();
    let policy = VerifyPolicy {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway: 0,
        cache_capacity: 10,
    };
    let keys = KeySet::new(
        [],
        vec![KeyFile {
            path: file.clone(),
            algorithm: Algorithm::RS256,
        }],
        Duration::from_millis(1),
        policy.validation(),
    )
    .unwrap();
    let v = Verifier::new(keys, policy);
    let key = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
    let token = Minter::new(key, ISS.into(), AUD.into(), Duration::from_secs(300))
        .mint("ci", pull("org1/repo1"), unix_now(), None)
        .unwrap()
        .token;
    assert!(v.verify(&token).is_ok());
    // The operator replaces the trusted key; the cached verdict must not survive.
    std::fs::write(&file, generate_rsa_pem().unwrap().1).unwrap();
    // The refresher re-reads every 1 ms; wait (bounded) until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while v.verify(&token).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(v.verify(&token), Err(TokenError::UnknownKey)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_signing_algorithm_round_trips() {
    let rsa = test_rsa_pem().0.clone();
    let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    for (pem, alg) in [
        (&rsa, Algorithm::RS256),
        (&rsa, Algorithm::RS512),
        (&rsa, Algorithm::PS256),
        (&ec, Algorithm::ES256),
        (&ed, Algorithm::EdDSA),
    ] {
        let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
        let policy = VerifyPolicy {
            issuer: ISS.into(),
            audience: AUD.into(),
            leeway: 0,
            cache_capacity: 10,
        };
        let keys = KeySet::new(
            [key.public.clone()],
            vec![],
            Duration::from_secs(60),
            policy.validation(),
        )
        .unwrap();
        let verifier = Verifier::new(keys, policy);
        let minted = Minter::new(key, ISS.into(), AUD.into(), Duration::from_secs(60))
            .mint("ci", pull("org1/repo1"), unix_now(), None)
            .unwrap();
        let header = jsonwebtoken::decode_header(&minted.token).unwrap();
        assert_eq!(header.alg, alg);
        assert_eq!(verifier.verify(&minted.token).unwrap().sub, "ci", "{alg:?}");

        // The signature is checked with the key parsed once: one flipped
        // bit, a padded or re-encoded signature, another token's claims
        // under this signature, all fail (and none is a cache hit, though
        // the first shares the verified token's cache key).
        let (message, sig) = minted.token.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 1;
        let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&raw));
        let other = Minter::new(
            SigningKey::from_pem(pem.as_bytes(), alg).unwrap(),
            ISS.into(),
            AUD.into(),
            Duration::from_secs(60),
        )
        .mint("admin", pull("org1/secret"), unix_now(), None)
        .unwrap();
        let (other_message, _) = other.token.rsplit_once('.').unwrap();
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(URL_SAFE_NO_PAD.decode(sig).unwrap());
        for (what, forged) in [
            ("flipped bit", flipped),
            ("padded", format!("{}=", minted.token)),
            ("other claims", format!("{other_message}.{sig}")),
            ("no signature", format!("{message}.")),
            ("standard base64", format!("{message}.{standard}")),
        ] {
            if forged == minted.token {
                continue; // re-encoding changed nothing for this signature
            }
            assert!(
                matches!(verifier.verify(&forged), Err(TokenError::Invalid(_))),
                "{alg:?}: {what}"
            );
        }
        assert_eq!(verifier.verify(&minted.token).unwrap().sub, "ci", "{alg:?}");
    }
}
