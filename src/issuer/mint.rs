//! Minting: turns a subject and its grants into a signed JWT.
//!
//! Used by the `/oauth/token` endpoint and by the offline `chartgate token`
//! command, so both produce the same claims (PROTOCOL.md §6.1 "JWT").

use std::time::Duration;

use jsonwebtoken::Header;

use crate::auth::access::AccessEntry;
use crate::auth::key::SigningKey;
use crate::auth::token::Claims;

/// Signs tokens with one key for one issuer and audience.
#[derive(Debug)]
pub struct Minter {
    key: SigningKey,
    header: Header,
    issuer: String,
    audience: String,
    ttl: Duration,
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
        Minter {
            key,
            header,
            issuer,
            audience,
            ttl,
        }
    }

    /// The signing key (its public half is what verifiers trust).
    pub fn key(&self) -> &SigningKey {
        &self.key
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
    ) -> Result<Minted, jsonwebtoken::errors::Error> {
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
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key.encoding)?;
        Ok(Minted { token, claims })
    }
}
