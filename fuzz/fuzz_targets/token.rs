//! Token verification: never panics, and no input forged without the key
//! is ever accepted.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use chartgate::auth::key::{generate_rsa_pem, SigningKey};
use chartgate::auth::keyset::KeySet;
use chartgate::auth::token::{Verifier, VerifyPolicy};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let (private, _) = generate_rsa_pem().unwrap();
        let key = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
        let policy = VerifyPolicy { issuer: "chartgate".into(), audience: "svc".into(), leeway: 0, cache_capacity: 16 };
        let keys = KeySet::new([key.public], vec![], Duration::from_secs(60), policy.validation()).unwrap();
        Verifier::new(keys, policy)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    assert!(verifier().verify(token).is_err(), "a token forged without the key was accepted");
});
