//! [`Federation`]: from an external id token to who it proves and what it
//! may do. The token's signature is checked with a key of the issuer it
//! claims, fetched only from that issuer's configured discovery document
//! or JWKS ([`super::provider`]), through the same function that checks
//! chartgate's own tokens ([`crate::auth::jws::verify`]); then `iss`,
//! `aud`, `exp`, `iat` and `nbf`; then the first trust policy whose claim
//! matchers all hold decides the grant.
//!
//! Two doors use it. The token exchange at `/oauth/token` verifies each
//! time and, for single-use policies, spends the token's `jti`. Basic
//! `oidc:<id token>` (Helm, helm-push) sends the same token with every
//! request, so a verified identity is remembered until it expires, as
//! verified chartgate tokens are; single-use policies refuse that door.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use aws_lc_rs::digest;
use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use moka::Expiry;

use super::fetch::Fetcher;
use super::policy::{IdClaims, Policy};
use super::provider::{KeyError, Provider, ProviderSettings};
use super::replay::Replay;
use crate::auth::account::Account;
use crate::auth::jws::{self, Trusted};
use crate::auth::shared::SharedCounts;
use crate::auth::token::{unix_now, TokenError};
use crate::config::TrustConfig;

/// The Basic user name that marks the password as an OIDC id token
/// (`helm repo add --username oidc --password "$ID_TOKEN"`).
pub const BASIC_USER: &str = "oidc";

/// Why an id token was not accepted. The detail goes to the log; clients
/// are told only the class (see [`FederationError::class`]).
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("id token: {0}")]
    Token(#[from] TokenError),
    #[error("id token names an issuer no trust policy has")]
    UnknownIssuer,
    #[error("id token has no iat")]
    NoIssuedAt,
    #[error("no trust policy matches this identity")]
    NoPolicy,
    #[error("id token's jti was already used")]
    Replayed,
    #[error("id token has no jti, which its single-use policy needs")]
    NoJti,
    #[error("policy {0:?} allows only the token exchange")]
    ExchangeOnly(String),
    #[error("the issuer's keys cannot be fetched: {0}")]
    Unavailable(String),
}

impl FederationError {
    /// What a client may be told.
    pub fn class(&self) -> &'static str {
        match self {
            FederationError::Unavailable(_) => "the identity provider's keys are unavailable",
            FederationError::NoPolicy | FederationError::UnknownIssuer => {
                "no trust policy matches this identity"
            }
            FederationError::Replayed => "the id token was already exchanged",
            FederationError::ExchangeOnly(_) => {
                "this identity's policy allows only the token exchange"
            }
            _ => "the id token is invalid or expired",
        }
    }
}

/// An identity a policy accepted.
#[derive(Debug)]
pub struct Identity {
    /// The policy that matched.
    pub policy: Arc<Policy>,
    /// The identity as an account: `<policy>:<identity>` as id, the
    /// policy's rules, expiring with the token or the policy's cap.
    pub account: Arc<Account>,
    /// The id token's `jti`, for the audit trail.
    pub jti: Option<String>,
}

/// Remembers each identity until its account expires.
struct UntilExpiry;

impl Expiry<[u8; 32], Arc<Identity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Identity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let until = value.account.expires.unwrap_or(0);
        Some(Duration::from_secs(until.saturating_sub(unix_now())))
    }
}

/// The trust policies and their issuers' keys.
pub struct Federation {
    policies: Vec<Arc<Policy>>,
    /// One provider, and one set of claim rules, per issuer.
    issuers: HashMap<String, (Arc<Provider>, Validation)>,
    leeway: u64,
    remembered: Cache<[u8; 32], Arc<Identity>>,
    replay: Replay,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("policies", &self.policies.len())
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Most identities remembered for the Basic door at once.
const REMEMBERED: u64 = 10_000;
/// Most spent single-use ids remembered at once.
const REPLAY_CAPACITY: u64 = 100_000;

impl Federation {
    /// Federation over `policies`, fetching each issuer's keys with the
    /// provider `providers` holds for it.
    ///
    /// # Errors
    /// A policy's issuer has no provider.
    pub fn new(
        policies: Vec<Arc<Policy>>,
        providers: HashMap<String, Arc<Provider>>,
        leeway: Duration,
        replay: Replay,
    ) -> Result<Federation> {
        let mut issuers = HashMap::new();
        for (issuer, provider) in providers {
            let audiences: Vec<&str> = policies
                .iter()
                .filter(|p| p.issuer == issuer)
                .map(|p| p.audience.as_str())
                .collect();
            ensure!(!audiences.is_empty(), "issuer {issuer} has no trust policy");
            let mut rules = Validation::new(Algorithm::RS256);
            rules.leeway = leeway.as_secs();
            rules.validate_nbf = true;
            rules.set_issuer(&[&issuer]);
            rules.set_audience(&audiences);
            rules.set_required_spec_claims(&["exp", "iss", "aud"]);
            issuers.insert(issuer, (provider, rules));
        }
        for p in &policies {
            ensure!(
                issuers.contains_key(&p.issuer),
                "trust policy {:?}: no provider for {}",
                p.name,
                p.issuer
            );
        }
        Ok(Federation {
            policies,
            issuers,
            leeway: leeway.as_secs(),
            remembered: Cache::builder()
                .max_capacity(REMEMBERED)
                .expire_after(UntilExpiry)
                .build(),
            replay,
        })
    }

    /// The federation `trust` configures, or `None` without policies.
    /// Builds no connection: keys are fetched when a token first needs them.
    ///
    /// # Errors
    /// A CA bundle cannot be read.
    pub fn from_config(
        trust: &TrustConfig,
        leeway: Duration,
        shared: Option<Arc<SharedCounts>>,
    ) -> Result<Option<Federation>> {
        if trust.is_empty() {
            return Ok(None);
        }
        let mut fetchers: HashMap<Option<PathBuf>, Arc<Fetcher>> = HashMap::new();
        let mut providers = HashMap::new();
        for source in &trust.issuers {
            let fetcher = match fetchers.get(&source.ca_file) {
                Some(f) => f.clone(),
                None => {
                    let f =
                        Arc::new(Fetcher::new(source.ca_file.as_deref()).with_context(|| {
                            format!("trust policies for {}: ca_file", source.issuer)
                        })?);
                    fetchers.insert(source.ca_file.clone(), f.clone());
                    f
                }
            };
            let provider = Provider::new(
                source.issuer.clone(),
                source.jwks_uri.clone(),
                fetcher,
                ProviderSettings::default(),
            );
            providers.insert(source.issuer.clone(), Arc::new(provider));
        }
        Federation::new(
            trust.policies.clone(),
            providers,
            leeway,
            Replay::new(REPLAY_CAPACITY, shared),
        )
        .map(Some)
    }

    /// The identity `token` proves, for the token exchange: verified every
    /// time, its `jti` spent when its policy is single-use.
    ///
    /// # Errors
    /// Why the token was not accepted.
    pub async fn exchange(&self, token: &str) -> Result<Identity, FederationError> {
        let (identity, exp) = self.identify(token).await?;
        if identity.policy.single_use {
            let jti = identity.jti.as_deref().ok_or(FederationError::NoJti)?;
            let key = format!("{}\u{0}{jti}", identity.policy.issuer);
            if !self.replay.first_use(&key, exp + self.leeway).await {
                return Err(FederationError::Replayed);
            }
        }
        Ok(identity)
    }

    /// The account `token` proves, for Basic `oidc:<id token>`: remembered
    /// until it expires, never for a single-use policy.
    ///
    /// # Errors
    /// Why the token was not accepted.
    pub async fn account(&self, token: &str) -> Result<Arc<Account>, FederationError> {
        let id = token_digest(token);
        if let Some(known) = self.remembered.get(&id) {
            if known.account.is_active(unix_now()) {
                return Ok(known.account.clone());
            }
            self.remembered.invalidate(&id);
        }
        let (identity, _) = self.identify(token).await?;
        if identity.policy.single_use {
            return Err(FederationError::ExchangeOnly(identity.policy.name.clone()));
        }
        let identity = Arc::new(identity);
        self.remembered.insert(id, identity.clone());
        Ok(identity.account.clone())
    }

    /// Verifies `token` and finds its policy; also returns its `exp`.
    async fn identify(&self, token: &str) -> Result<(Identity, u64), FederationError> {
        let header = jws::header(token)?;
        let issuer = jws::claimed_issuer(token).ok_or(FederationError::UnknownIssuer)?;
        let (provider, rules) = self
            .issuers
            .get(&issuer)
            .ok_or(FederationError::UnknownIssuer)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = provider.key(kid).await.map_err(|e| match e {
            KeyError::UnknownKid => FederationError::Token(TokenError::UnknownKey),
            KeyError::Unavailable(why) => FederationError::Unavailable(why),
        })?;
        let trusted = Trusted::bind(key.as_ref().clone(), rules);
        let claims: IdClaims = jws::verify(token, &header, &trusted)?;
        let now = unix_now();
        let iat = claims.iat.ok_or(FederationError::NoIssuedAt)?;
        if iat > now + self.leeway {
            return Err(TokenError::IssuedInFuture.into());
        }
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired.into());
        }
        let policy = self
            .policies
            .iter()
            .find(|p| p.matches(&claims))
            .ok_or(FederationError::NoPolicy)?;
        let expires = claims.exp.min(now.saturating_add(policy.max_ttl.as_secs()));
        let account = Account {
            id: policy.subject(&claims),
            secret: None,
            client_cn: None,
            expires: Some(expires),
            acl: policy.acl.clone(),
        };
        Ok((
            Identity {
                policy: policy.clone(),
                account: Arc::new(account),
                jti: claims.jti.clone(),
            },
            claims.exp,
        ))
    }
}

/// SHA-256 of a whole id token: the key it is remembered under.
fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}
