//! Micro-benchmarks of the per-request and per-token work: signing with the
//! key parsed once (against jsonwebtoken's `encode`, which re-parses it),
//! verifying with and without the verdict cache, route resolution and
//! scope matching. Run: `cargo bench --bench auth`.

use std::hint::black_box;
use std::time::Duration;

use chartgate::auth::access::{allows, AccessEntry, Action, Scope, RESOURCE_TYPE};
use chartgate::auth::key::{generate_rsa_pem, SigningKey, VerifyKey};
use chartgate::auth::keyset::KeySet;
use chartgate::auth::route::{RouteOptions, Routes};
use chartgate::auth::token::{unix_now, Claims, Verifier, VerifyPolicy};
use chartgate::issuer::mint::Minter;
use criterion::{criterion_group, criterion_main, Criterion};
use hyper::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};

fn access() -> Vec<AccessEntry> {
    vec![AccessEntry {
        kind: RESOURCE_TYPE.into(),
        name: "org1/repo1".into(),
        actions: vec!["pull".into(), "push".into()],
        charts: None,
    }]
}

/// A verifier trusting `key` alone, remembering at most `cache_capacity` verdicts.
fn trusting(key: &VerifyKey, cache_capacity: u64) -> Verifier {
    let policy = VerifyPolicy {
        issuer: "chartgate".into(),
        audience: "svc".into(),
        leeway: 0,
        cache_capacity,
    };
    let keys = KeySet::new(
        [key.clone()],
        vec![],
        Duration::from_secs(60),
        policy.validation(),
    )
    .unwrap();
    Verifier::new(keys, policy)
}

fn benches(c: &mut Criterion) {
    let (private, _) = generate_rsa_pem().unwrap();
    let key = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
    let verifier = trusting(&key.public, 10_000);
    let minter = Minter::new(
        key,
        "chartgate".into(),
        "svc".into(),
        Duration::from_secs(3600),
    );
    let token = minter.mint("bench", access(), unix_now(), None).unwrap();

    // Issuance per algorithm against the raw signing cost of the same key.
    let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    for (name, pem, alg) in [
        ("RS256", &private, Algorithm::RS256),
        ("ES256", &ec, Algorithm::ES256),
        ("EdDSA", &ed, Algorithm::EdDSA),
    ] {
        let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
        let public = key.public.clone();
        let message = [b'x'; 600];
        c.bench_function(&format!("raw sign {name}"), |b| {
            b.iter(|| key.sign(black_box(&message)).unwrap())
        });
        let m = Minter::new(
            key,
            "chartgate".into(),
            "svc".into(),
            Duration::from_secs(3600),
        );
        c.bench_function(&format!("mint {name}, key parsed once"), |b| {
            b.iter(|| {
                m.mint(black_box("bench"), access(), unix_now(), None)
                    .unwrap()
            })
        });

        // Verification per algorithm: the crypto floor (aws-lc, key parsed
        // once, the token's own signing input) against the full
        // jsonwebtoken::decode a cache miss runs (header, key, claims).
        let minted = m.mint("bench", access(), unix_now(), None).unwrap();
        let (input, sig) = minted.token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        use aws_lc_rs::signature::{self as sig, KeyPair};
        let der = pem::parse(pem.as_bytes()).unwrap().into_contents();
        let (floor, public_der): (&'static dyn sig::VerificationAlgorithm, Vec<u8>) = match alg {
            Algorithm::RS256 => (
                &sig::RSA_PKCS1_2048_8192_SHA256,
                sig::RsaKeyPair::from_pkcs8(&der)
                    .unwrap()
                    .public_key()
                    .as_ref()
                    .to_vec(),
            ),
            Algorithm::ES256 => (
                &sig::ECDSA_P256_SHA256_FIXED,
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .unwrap()
                    .public_key()
                    .as_ref()
                    .to_vec(),
            ),
            _ => (
                &sig::ED25519,
                sig::Ed25519KeyPair::from_pkcs8(&der)
                    .unwrap()
                    .public_key()
                    .as_ref()
                    .to_vec(),
            ),
        };
        let parsed = sig::ParsedPublicKey::new(floor, &public_der).unwrap();
        parsed.verify_sig(input.as_bytes(), &sig).unwrap();
        c.bench_function(
            &format!("verify {name}, raw (aws-lc, key parsed once)"),
            |b| {
                b.iter(|| {
                    parsed
                        .verify_sig(black_box(input.as_bytes()), &sig)
                        .unwrap()
                })
            },
        );
        let mut validation = Validation::new(alg);
        validation.set_audience(&["svc"]);
        c.bench_function(
            &format!("verify {name}, uncached (jsonwebtoken::decode)"),
            |b| {
                b.iter(|| {
                    jsonwebtoken::decode::<Claims>(
                        black_box(&minted.token),
                        &public.decoding,
                        &validation,
                    )
                    .unwrap()
                })
            },
        );
        // What a cache miss costs the gateway: chartgate's Verifier with a
        // one-entry verdict cache, cycling through distinct tokens (the
        // signature with the key parsed once, then jsonwebtoken's claim
        // checks, then the verdict insert).
        let missing = trusting(&public, 1);
        let tokens: Vec<String> = (0..256)
            .map(|i| {
                m.mint(&format!("bench{i}"), access(), unix_now(), None)
                    .unwrap()
                    .token
            })
            .collect();
        let mut next = tokens.iter().cycle();
        c.bench_function(&format!("verify {name}, chartgate cache miss"), |b| {
            b.iter(|| missing.verify(black_box(next.next().unwrap())).unwrap())
        });
    }
    let encoding = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k".into());
    c.bench_function("jsonwebtoken::encode RS256 (re-parses the key)", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&token.claims), &encoding).unwrap())
    });
    verifier.verify(&token.token).unwrap();
    c.bench_function("verify, verdict cache hit", |b| {
        b.iter(|| verifier.verify(black_box(&token.token)).unwrap())
    });

    let routes = Routes::new(&RouteOptions {
        depth: 2,
        ..RouteOptions::default()
    });
    c.bench_function("path check + route resolve", |b| {
        b.iter(|| {
            let p = black_box("/org1/repo1/charts/mychart-0.1.0.tgz");
            chartgate::auth::path::check(p).unwrap();
            routes.resolve(&Method::GET, p).unwrap().scope()
        })
    });
    let entries = access();
    let scope = Scope::repository("org1/repo1", Action::Pull);
    c.bench_function("scope match", |b| {
        b.iter(|| allows(black_box(&entries), black_box(&scope)))
    });
}

criterion_group!(auth, benches);
criterion_main!(auth);
