//! Minting: turns a subject and its grants into a signed JWT.
//!
//! Used by the `/oauth/token` endpoint and by the offline `chartgate token`
//! command, so both produce the same claims (docs/PROTOCOL.md §6.1 "JWT").

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Header;

use crate::auth::access::AccessEntry;
use crate::auth::key::SigningKey;
use crate::auth::token::Claims;

/// Signs tokens with one key for one issuer and audience.
#[derive(Debug)]
pub struct Minter {
    key: SigningKey,
    /// The JOSE header, already base64url-encoded: it never changes.
    header: String,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("serializing the claims")]
    Serialize(#[from] serde_json::Error),
    #[error("the crypto library failed to sign")]
    Sign,
}

/// A freshly signed token and what it says.
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub claims: Claims,
}

impl Minter {
    /// A minter signing with `key` as `issuer` for `audience`, tokens living `ttl`.
    pub fn new(key: SigningKey, issuer: String, audience: String, ttl: Duration) -> Minter {
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        // Serializing a header of strings cannot fail.
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        Minter {
            key,
            header,
            issuer,
            audience,
            ttl,
        }
    }

    /// How long minted tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for `subject` granting `access`, issued at `now` (unix
    /// seconds), expiring after the TTL or at `not_after`, whichever is first.
    ///
    /// # Errors
    /// Signing failed inside the crypto library.
    pub fn mint(
        &self,
        subject: &str,
        access: Vec<AccessEntry>,
        now: u64,
        not_after: Option<u64>,
    ) -> Result<Minted, MintError> {
        let exp = (now + self.ttl.as_secs()).min(not_after.unwrap_or(u64::MAX));
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.audience.clone(),
            exp,
            nbf: Some(now),
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            access,
        };
        // JWS compact serialization (RFC 7515 §7.1), signed with the key
        // parsed once at start-up.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
        let signing_input = format!("{}.{payload}", self.header);
        let signature = self
            .key
            .sign(signing_input.as_bytes())
            .map_err(|_| MintError::Sign)?;
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        Ok(Minted { token, claims })
    }
}
