//! Which entries of an external issuer's JWKS (RFC 7517) chartgate verifies
//! with, and as what.
//!
//! Each usable entry becomes a [`VerifyKey`] bound to the one algorithm its
//! key type allows ([`VerifyKey::from_jwk`]), filed under the issuer's own
//! `kid`. Everything else is skipped with its reason at `debug`: symmetric
//! `oct` keys, an `alg` other than the key type's (`HS256`, `none`, `RS384`
//! on an RSA key), a `use` other than `sig`, a missing `kid`, small RSA keys.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use serde_json::Value;
use tracing::debug;

use crate::auth::key::VerifyKey;

/// The most usable keys kept from one JWKS; the rest are skipped.
pub const MAX_KEYS: usize = 100;

/// An issuer's usable keys by the issuer's own `kid`.
pub type KeyMap = HashMap<String, Arc<VerifyKey>>;

/// One JWKS entry as a key to verify with, and the issuer's `kid` for it.
///
/// # Errors
/// The entry is not usable; the error says why.
pub fn verify_key(entry: &Value) -> anyhow::Result<(String, VerifyKey)> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).context("not a supported JWK")?;
    let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
        bail!("no kid");
    };
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(other) => bail!("use is {other:?}, not sig"),
    }
    let key = VerifyKey::from_jwk(&jwk)?;
    Ok((kid, key))
}

/// The usable keys of a JWKS document, at most [`MAX_KEYS`].
///
/// # Errors
/// The document has no `keys` array, or not one usable key.
pub fn usable_keys(jwks: &Value) -> anyhow::Result<KeyMap> {
    let entries = jwks
        .get("keys")
        .and_then(Value::as_array)
        .context("the JWKS has no \"keys\" array")?;
    let mut keys = KeyMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if keys.len() == MAX_KEYS {
            let skipped = entries.len() - i;
            debug!(
                skipped,
                "skipping the JWKS entries past {MAX_KEYS} usable keys"
            );
            break;
        }
        let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
        match verify_key(entry) {
            Ok(_) if keys.contains_key(kid) => debug!(kid, "skipping a JWKS entry: duplicate kid"),
            Ok((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(e) => debug!(kid, reason = %format!("{e:#}"), "skipping a JWKS entry"),
        }
    }
    if keys.is_empty() {
        bail!("the JWKS holds no usable key ({} entries)", entries.len());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::provider::test_idp::{with, TestKey};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    fn key(algorithm: Algorithm) -> TestKey {
        TestKey::generate(algorithm, &format!("{algorithm:?}"))
    }

    /// One RSA key for the tests that only vary its JWK: generating one
    /// takes a while.
    fn rsa() -> Value {
        static KEY: std::sync::OnceLock<TestKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| key(Algorithm::RS256)).jwk()
    }

    #[test]
    fn accepts_each_supported_key_type_bound_to_its_algorithm() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let test = key(alg);
            let (kid, key) = verify_key(&test.jwk()).unwrap();
            assert_eq!(kid, test.kid);
            assert_eq!(key.algorithm, alg);
            // Without `alg` and `use` the key type alone decides.
            let bare = with(test.jwk(), json!({"alg": null, "use": null}));
            assert_eq!(verify_key(&bare).unwrap().1.algorithm, alg);
        }
    }

    #[test]
    fn a_served_key_verifies_what_its_private_half_signed() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let test = key(alg);
            let token = test.sign(&json!({"sub": "x"}));
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let (_, key) = verify_key(&test.jwk()).unwrap();
            assert!(key.verifies(input.as_bytes(), &signature), "{alg:?}");
            assert!(!key.verifies(b"other", &signature), "{alg:?}");
        }
    }

    #[test]
    fn refuses_symmetric_and_mismatched_algorithms() {
        let oct = json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"});
        assert!(verify_key(&oct).is_err());
        for alg in [
            "HS256", "none", "RS384", "PS256", "ES256", "EdDSA", "RSA-OAEP",
        ] {
            let entry = with(rsa(), json!({ "alg": alg }));
            assert!(verify_key(&entry).is_err(), "RSA key with alg {alg}");
        }
        let ec = key(Algorithm::ES256).jwk();
        assert!(verify_key(&with(ec, json!({"alg": "ES384"}))).is_err());
        let ed = key(Algorithm::EdDSA).jwk();
        assert!(verify_key(&with(ed, json!({"alg": "none"}))).is_err());
    }

    #[test]
    fn refuses_missing_kid_and_non_signature_use() {
        assert!(verify_key(&with(rsa(), json!({"kid": null}))).is_err());
        assert!(verify_key(&with(rsa(), json!({"kid": ""}))).is_err());
        assert!(verify_key(&with(rsa(), json!({"use": "enc"}))).is_err());
        assert!(verify_key(&with(rsa(), json!({"use": "other"}))).is_err());
    }

    #[test]
    fn refuses_small_rsa_keys_other_curves_and_bad_material() {
        // A 1024-bit modulus (its top bit set): too small whatever it is.
        let small = URL_SAFE_NO_PAD.encode([0xc1; 128]);
        assert!(verify_key(&with(rsa(), json!({ "n": small }))).is_err());
        let p384 = json!({"kty": "EC", "kid": "p", "crv": "P-384",
            "x": URL_SAFE_NO_PAD.encode([1; 48]), "y": URL_SAFE_NO_PAD.encode([2; 48])});
        assert!(verify_key(&p384).is_err());
        let ec = key(Algorithm::ES256).jwk();
        let off_curve = with(ec, json!({"y": URL_SAFE_NO_PAD.encode([7; 32])}));
        assert!(verify_key(&off_curve).is_err());
        let short = json!({"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": "AAAA"});
        assert!(verify_key(&short).is_err());
        assert!(verify_key(&json!({"kty": "XYZ", "kid": "x"})).is_err());
    }

    #[test]
    fn a_jwks_keeps_only_its_usable_keys() {
        let rs = key(Algorithm::RS256);
        let jwks = json!({"keys": [
            {"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0"},
            with(rs.jwk(), json!({"kid": "none", "alg": "none"})),
            rs.jwk(),
            with(key(Algorithm::ES256).jwk(), json!({ "kid": &rs.kid })),
        ]});
        let keys = usable_keys(&jwks).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), [&rs.kid]);
        assert_eq!(
            keys[&rs.kid].algorithm,
            Algorithm::RS256,
            "the first of a duplicate kid"
        );
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused_and_large_ones_are_capped() {
        assert!(usable_keys(&json!({"keys": []})).is_err());
        assert!(usable_keys(&json!({"keys": [{"kty": "oct", "kid": "h", "k": "AA"}]})).is_err());
        assert!(usable_keys(&json!({"nokeys": true})).is_err());
        let many: Vec<Value> = (0..MAX_KEYS + 5)
            .map(|i| with(rsa(), json!({ "kid": format!("k{i}") })))
            .collect();
        assert_eq!(
            usable_keys(&json!({ "keys": many })).unwrap().len(),
            MAX_KEYS
        );
    }
}
