//! Token verification: the JWT claims chartgate issues and accepts, the
//! [`Verifier`] that checks them, and the cache of verified tokens.
//!
//! Verification is strict where ChartMuseum is lax (docs/PROTOCOL.md §2.4): the
//! key is chosen by `kid` and fixes the algorithm, `exp`, `iss` and `aud` are
//! required and checked, `nbf` and `iat` may not lie in the future beyond the
//! configured leeway. A verified token is remembered (moka) only until its own `exp` plus leeway, and the expiry is checked
//! again on every hit, so a cached verdict never outlives the token.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use moka::Expiry;
use serde::{Deserialize, Serialize};

use super::access::AccessEntry;
use super::jws;
use super::keyset::KeySet;

/// Longest token accepted, in bytes. Ours are under 1 KiB; a token is read
/// from a header that hyper already bounds, this bounds the work per token.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims chartgate puts in a token, and requires of one it accepts
/// (docs/PROTOCOL.md §2.2, §6.1 "JWT").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Grants; a token without any grants nothing here (where the claim is
    /// absent or null, ChartMuseum's bearer mode panics and answers 500,
    /// docs/PROTOCOL.md §2.5).
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

/// Why a token was refused. Every variant becomes the same `401` challenge;
/// the detail is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token header is malformed")]
    Header(#[source] jsonwebtoken::errors::Error),
    #[error("token names no key this gateway trusts")]
    UnknownKey,
    #[error("token algorithm {0:?} is not the one its key is bound to")]
    Algorithm(Algorithm),
    #[error("token failed validation")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token has expired")]
    Expired,
}

/// What the verifier checks beyond the signature.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Most verified tokens remembered at once.
    pub cache_capacity: u64,
}

impl VerifyPolicy {
    /// The claim rules as a jsonwebtoken validation template; each trusted
    /// key narrows its algorithm list to the key's own algorithm.
    pub fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v
    }
}

/// A verified token, remembered until `valid_until` (unix seconds,
/// exclusive) and only while its key is still trusted.
#[derive(Debug)]
struct Verdict {
    /// The whole token: a hit counts only if it equals the one presented.
    token: Box<str>,
    claims: Arc<Claims>,
    valid_until: u64,
    kid: String,
}

/// Expires each cached verdict when its token does.
struct UntilTokenExpiry;

impl Expiry<CacheKey, Arc<Verdict>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Verdict>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.valid_until.saturating_sub(unix_now()) + 1,
        ))
    }
}

/// Where a verdict is filed: the token's last [`CACHE_KEY_LEN`] bytes.
///
/// For a signed token those are signature bytes, unpredictable without the
/// key, so distinct tokens share a key only by accident; hashing the whole
/// token (SHA-256, or even the cache's SipHash) cost more than the rest of
/// a cache hit. A shared key is harmless: a hit counts only when the stored
/// token equals the presented one, and only verified tokens are ever stored,
/// so an attacker can neither plant entries nor flood one bucket.
type CacheKey = [u8; CACHE_KEY_LEN];
const CACHE_KEY_LEN: usize = 32;

fn cache_key(token: &[u8]) -> CacheKey {
    let tail = &token[token.len().saturating_sub(CACHE_KEY_LEN)..];
    let mut key = [0u8; CACHE_KEY_LEN];
    key[..tail.len()].copy_from_slice(tail);
    key
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Checks tokens against the trusted keys and the policy.
pub struct Verifier {
    keys: KeySet,
    policy: VerifyPolicy,
    /// Hashed with foldhash, seeded per cache: SipHash on the 32-byte key
    /// was a third of a cache hit (callgrind). Flooding a bucket is not a
    /// concern either way: only verified tokens are ever stored.
    verdicts: Cache<CacheKey, Arc<Verdict>, foldhash::fast::RandomState>,
}

impl Verifier {
    /// The keys this verifier trusts, as a JWK set for publishing.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.keys.jwks()
    }

    /// A verifier trusting `keys` (each for its own algorithm only).
    pub fn new(keys: KeySet, policy: VerifyPolicy) -> Verifier {
        let verdicts = Cache::builder()
            .max_capacity(policy.cache_capacity)
            .expire_after(UntilTokenExpiry)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Verifier {
            keys,
            policy,
            verdicts,
        }
    }

    /// Verifies `token` now.
    ///
    /// # Errors
    /// Why the token is not acceptable.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// The claims of `token` if it equals a token verified before that is
    /// still valid now and whose key is still trusted; `None` otherwise
    /// (then [`Verifier::verify`] decides, and says why). Takes raw header
    /// bytes: a token equal to a verified one passed every syntax check, so
    /// the request path need not parse it first.
    pub fn cached(&self, token: &[u8]) -> Option<Arc<Claims>> {
        let verdict = self.verdicts.get(&cache_key(token))?;
        (verdict.token.as_bytes() == token
            && unix_now() < verdict.valid_until
            && self.keys.get(&verdict.kid).is_some())
        .then(|| verdict.claims.clone())
    }

    /// Verifies `token` as of `now` (unix seconds). Signature and claims are
    /// checked against the real clock on a cache miss; a cache hit is
    /// re-checked against `now`, which lets tests move the clock.
    ///
    /// # Errors
    /// Why the token is not acceptable.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let id = cache_key(token.as_bytes());
        if let Some(verdict) = self.verdicts.get(&id).filter(|v| *v.token == *token) {
            if now >= verdict.valid_until {
                self.verdicts.invalidate(&id);
                return Err(TokenError::Expired);
            }
            // A key removed from the trusted set takes its tokens with it.
            if self.keys.get(&verdict.kid).is_none() {
                self.verdicts.invalidate(&id);
                return Err(TokenError::UnknownKey);
            }
            return Ok(verdict.claims.clone());
        }

        let header = jws::header(token)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let trusted = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let claims: Claims = jws::verify(token, &header, &trusted)?;
        if claims.iat.is_some_and(|iat| iat > now + self.policy.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        // ChartMuseum's rule is `now < exp`; jsonwebtoken also accepts
        // `now == exp + leeway`, so the strict check is ours.
        let valid_until = claims.exp.saturating_add(self.policy.leeway);
        if now >= valid_until {
            return Err(TokenError::Expired);
        }
        let claims = Arc::new(claims);
        self.verdicts.insert(
            id,
            Arc::new(Verdict {
                token: token.into(),
                claims: claims.clone(),
                valid_until,
                kid: kid.to_owned(),
            }),
        );
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
