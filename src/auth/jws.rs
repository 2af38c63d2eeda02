//! The one place a JWT's signature is checked, for every kind of token the
//! gateway accepts: its own, another chartgate's, and external OIDC id
//! tokens (trusted publishing).
//!
//! A [`Trusted`] key pairs a public key with the claim rules its tokens
//! must meet. The rules are handed to jsonwebtoken with its own signature
//! check switched off (it would re-parse the key on every call; aws-lc
//! checks the signature here with the key parsed once), so they must never
//! be used anywhere else: the rules are private to this module, and
//! [`verify`] checks the algorithm and the signature before it decodes a
//! single claim.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::key::VerifyKey;
use super::token::{TokenError, MAX_TOKEN_LEN};

/// A key ready to verify with: the key and the claim rules bound to it.
pub struct Trusted {
    key: VerifyKey,
    /// Claim rules only; jsonwebtoken's signature check is off here.
    claims: Validation,
}

impl Trusted {
    /// Binds `key` to the claim rules of `template`, narrowed to the key's
    /// own algorithm.
    pub fn bind(key: VerifyKey, template: &Validation) -> Trusted {
        let mut claims = template.clone();
        claims.algorithms = vec![key.algorithm];
        #[allow(deprecated)]
        claims.insecure_disable_signature_validation();
        Trusted { key, claims }
    }

    /// The public key.
    pub fn key(&self) -> &VerifyKey {
        &self.key
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm
    }
}

/// The token's JOSE header, bounded in size first.
///
/// # Errors
/// The token is too long or its header does not parse.
pub fn header(token: &str) -> Result<Header, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    jsonwebtoken::decode_header(token).map_err(TokenError::Header)
}

/// The `iss` a token claims, read without any check: only for choosing
/// which issuer's keys to verify it with. [`verify`] then checks the
/// signature with one of that issuer's keys and the claim against the
/// configured issuer, so a lie here only selects keys that will refuse it.
pub fn claimed_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

/// Verifies `token` (whose parsed header is `header`) with `trusted`: the
/// header's algorithm must be the key's own, the signature must verify,
/// and only then are the claims decoded and checked against the key's
/// claim rules.
///
/// # Errors
/// Which check failed.
pub fn verify<T: DeserializeOwned>(
    token: &str,
    header: &Header,
    trusted: &Trusted,
) -> Result<T, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if header.alg != trusted.key.algorithm {
        return Err(TokenError::Algorithm(header.alg));
    }
    // The signature over everything before the last '.', as JWS compact
    // serialisation (RFC 7515 §7.1) and jsonwebtoken split it.
    let bad_signature = || TokenError::Invalid(ErrorKind::InvalidSignature.into());
    let (message, signature) = token.rsplit_once('.').ok_or_else(bad_signature)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| bad_signature())?;
    if !trusted.key.verifies(message.as_bytes(), &signature) {
        return Err(bad_signature());
    }
    jsonwebtoken::decode::<T>(token, &trusted.key.decoding, &trusted.claims)
        .map(|data| data.claims)
        .map_err(TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::key::{tests::test_rsa_pem, SigningKey};

    fn signed(key: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn rules() -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&["me"]);
        v.set_audience(&["you"]);
        v
    }

    #[test]
    fn the_signature_is_checked_before_any_claim() {
        let key = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
        let trusted = Trusted::bind(key.public.clone(), &rules());
        let good = signed(
            &key,
            r#"{"alg":"RS256"}"#,
            r#"{"iss":"me","aud":"you","exp":99999999999}"#,
        );
        let h = header(&good).unwrap();
        let claims: serde_json::Value = verify(&good, &h, &trusted).unwrap();
        assert_eq!(claims["iss"], "me");

        // Same claims, signature of other claims: refused as a signature.
        let other = signed(
            &key,
            r#"{"alg":"RS256"}"#,
            r#"{"iss":"me","aud":"you","exp":1}"#,
        );
        let (body, _) = good.rsplit_once('.').unwrap();
        let spliced = format!("{body}.{}", other.rsplit_once('.').unwrap().1);
        let err = verify::<serde_json::Value>(&spliced, &h, &trusted).unwrap_err();
        assert!(matches!(err, TokenError::Invalid(e) if *e.kind() == ErrorKind::InvalidSignature));

        // A header naming another algorithm never reaches the key.
        let hs = signed(&key, r#"{"alg":"HS256"}"#, r#"{"iss":"me"}"#);
        let err = verify::<serde_json::Value>(&hs, &header(&hs).unwrap(), &trusted).unwrap_err();
        assert!(matches!(err, TokenError::Algorithm(Algorithm::HS256)));

        // Signed, but the claims break the rules.
        let wrong_aud = signed(
            &key,
            r#"{"alg":"RS256"}"#,
            r#"{"iss":"me","aud":"them","exp":99999999999}"#,
        );
        let err = verify::<serde_json::Value>(&wrong_aud, &h, &trusted).unwrap_err();
        assert!(matches!(err, TokenError::Invalid(e) if *e.kind() == ErrorKind::InvalidAudience));
    }

    #[test]
    fn claimed_issuer_reads_only_iss() {
        let key = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
        let t = signed(&key, r#"{"alg":"RS256"}"#, r#"{"iss":"https://a.example"}"#);
        assert_eq!(claimed_issuer(&t).as_deref(), Some("https://a.example"));
        assert_eq!(claimed_issuer("a.!!.c"), None);
        assert_eq!(claimed_issuer("nodots"), None);
    }
}
