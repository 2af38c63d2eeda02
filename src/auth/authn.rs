//! Authentication: turns whatever credential a request presents into a
//! [`Principal`], and decides whether that principal holds a scope.
//!
//! Five credential forms are accepted, all judged by the same rules:
//! `Authorization: Bearer <jwt>`, a raw token under a configurable header
//! (helm-push `--auth-header`), `Authorization: Basic` with an account id and
//! secret (plain Helm), `Authorization: Basic` whose password is a JWT
//! (token as password), and, when no header credential is sent, a client
//! certificate the TLS handshake verified, mapped to an account by its CN. A Bearer value or raw token that is not a JWT is an
//! account's API key. Basic with the user `oidc` carries an external OIDC id
//! token instead (trusted publishing, [`crate::federation`]): it proves the
//! identity a trust policy accepts, with that policy's rules. A credential that is present but wrong is always a
//! failure, never a fall-back to anonymous access.
//!
//! Helm sends Basic credentials with every request, so successful password
//! checks are remembered (keyed by a SHA-256 of id and secret, bounded,
//! short-lived) and a slow argon2 verification runs off the async reactor.
//! Failures are never remembered. The cache belongs to this value, so a
//! config reload, which builds a new one, drops it.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use hyper::header::{HeaderMap, HeaderName};

use super::access::{allows, Action, Scope};
use super::account::{Account, Accounts};
use super::acl::Acl;
use super::credential::{self, Credential, CredentialError};
use super::token::{unix_now, Claims, TokenError, Verifier};
use crate::federation::verifier::{Federation, FederationError, BASIC_USER};

/// Who a request is, once authenticated.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A verified token; its `access` claim says what it grants.
    Token(Arc<Claims>),
    /// An account proven by its secret or API key; its rules decide.
    Account(Arc<Account>),
    /// No credentials at all.
    Anonymous,
}

impl Principal {
    /// The name for logs and token subjects.
    pub fn subject(&self) -> &str {
        match self {
            Principal::Token(c) => &c.sub,
            Principal::Account(a) => &a.id,
            Principal::Anonymous => "-",
        }
    }
}

/// Why authentication failed (logged, never sent).
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("unknown API key")]
    ApiKey,
    #[error("wrong secret, unknown or expired account {0:?}")]
    Password(String),
    #[error("password check failed to run")]
    Blocking,
    #[error("too many password checks in progress")]
    Busy,
    #[error(transparent)]
    Federation(#[from] FederationError),
}

/// How a request presented its credential (for the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer <jwt>`.
    BearerToken,
    /// A JWT under the raw-token header (helm-push `--auth-header`).
    TokenHeader,
    /// `Authorization: Basic` with a JWT as the password.
    BasicToken,
    /// `Authorization: Basic` with an account id and secret.
    BasicPassword,
    /// An API key as `Bearer` or under the raw-token header.
    ApiKey,
    /// A verified TLS client certificate.
    ClientCert,
    /// `Authorization: Basic oidc:<id token>`: an external OIDC identity.
    Oidc,
    /// No credential.
    Nothing,
}

impl Via {
    /// The name used in audit events.
    pub fn name(self) -> &'static str {
        match self {
            Via::BearerToken => "bearer_token",
            Via::TokenHeader => "token_header",
            Via::BasicToken => "basic_token",
            Via::BasicPassword => "basic_password",
            Via::ApiKey => "api_key",
            Via::ClientCert => "client_cert",
            Via::Oidc => "oidc",
            Via::Nothing => "none",
        }
    }
}

/// A credential as presented, before it is checked.
enum Presented {
    Jwt(String),
    IdToken(String),
    ApiKey(String),
    Password { user: String, password: String },
}

/// `Authorization` scheme prefix of a Bearer credential, with its one space.
const BEARER: &[u8] = b"bearer ";

fn is_jwt(s: &str) -> bool {
    // A counting fold (no early exit) vectorizes; tokens are < 8 KiB.
    s.bytes().fold(0u32, |dots, b| dots + u32::from(b == b'.')) == 2
}

/// Settings for an [`Authenticator`].
#[derive(Debug, Clone)]
pub struct AuthnOptions {
    /// Header carrying a raw token (helm-push `--auth-header`), if any.
    pub token_header: Option<HeaderName>,
    /// How long a successful password check is remembered.
    pub cache_ttl: Duration,
    /// Most remembered password checks.
    pub cache_capacity: u64,
}

/// Checks credentials against tokens and accounts.
pub struct Authenticator {
    verifier: Verifier,
    accounts: Arc<Accounts>,
    anonymous: Acl,
    options: AuthnOptions,
    remembered: moka::future::Cache<[u8; 32], Arc<Account>>,
    /// Trust policies for OIDC id tokens, when any are configured.
    federation: Option<Arc<Federation>>,
    /// Bounds concurrent argon2 checks: each takes ~19 MiB and a core for
    /// tens of milliseconds, and failures are never cached.
    slow_checks: Arc<tokio::sync::Semaphore>,
}

/// How long a password check may wait for a free argon2 slot before the
/// request is refused as busy.
const SLOW_CHECK_WAIT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("accounts", &self.accounts.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `verifier` and `accounts`, letting anyone pull
    /// what `anonymous` allows.
    pub fn new(
        verifier: Verifier,
        accounts: Arc<Accounts>,
        anonymous: Acl,
        options: AuthnOptions,
    ) -> Authenticator {
        let remembered = moka::future::Cache::builder()
            .max_capacity(options.cache_capacity)
            .time_to_live(options.cache_ttl)
            .build();
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        Authenticator {
            verifier,
            accounts,
            anonymous,
            options,
            remembered,
            federation: None,
            slow_checks: Arc::new(tokio::sync::Semaphore::new(slots)),
        }
    }

    /// Also accepts OIDC id tokens under `federation`'s trust policies.
    pub fn with_federation(mut self, federation: Arc<Federation>) -> Authenticator {
        self.federation = Some(federation);
        self
    }

    /// The trust policies, for the token exchange.
    pub fn federation(&self) -> Option<&Federation> {
        self.federation.as_deref()
    }

    /// The account an OIDC id token proves (Basic `oidc:<id token>`).
    async fn federated(&self, token: &str) -> Result<Arc<Account>, AuthnError> {
        let federation = self
            .federation
            .as_ref()
            .ok_or(FederationError::UnknownIssuer)?;
        Ok(federation.account(token).await?)
    }

    /// The public keys tokens are verified with, as a JWK set.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.verifier.jwks()
    }

    /// The configured raw-token header, which must never reach the upstream.
    pub fn token_header(&self) -> Option<&HeaderName> {
        self.options.token_header.as_ref()
    }

    /// Reads the one credential in `headers`, and how it came.
    fn presented(&self, headers: &HeaderMap) -> Result<Option<(Presented, Via)>, CredentialError> {
        let authorization = credential::from_headers(headers)?;
        let raw = match &self.options.token_header {
            Some(name) => {
                let mut values = headers.get_all(name).iter();
                let first = values.next();
                if values.next().is_some() {
                    return Err(CredentialError::Duplicate);
                }
                first
            }
            None => None,
        };
        match (authorization, raw) {
            (Some(_), Some(_)) => Err(CredentialError::Duplicate),
            (None, None) => Ok(None),
            (None, Some(value)) => {
                let token = value
                    .to_str()
                    .map_err(|_| CredentialError::Malformed)?
                    .trim();
                if token.is_empty() || !credential::is_token68(token) {
                    return Err(CredentialError::Malformed);
                }
                Ok(Some(if is_jwt(token) {
                    (Presented::Jwt(token.to_owned()), Via::TokenHeader)
                } else {
                    (Presented::ApiKey(token.to_owned()), Via::ApiKey)
                }))
            }
            (Some(Credential::Bearer(t)), None) => Ok(Some(if is_jwt(&t) {
                (Presented::Jwt(t), Via::BearerToken)
            } else {
                (Presented::ApiKey(t), Via::ApiKey)
            })),
            (Some(Credential::Basic { user, password }), None) => Ok(Some(if user == BASIC_USER {
                (Presented::IdToken(password), Via::Oidc)
            } else if is_jwt(&password) {
                (Presented::Jwt(password), Via::BasicToken)
            } else {
                (Presented::Password { user, password }, Via::BasicPassword)
            })),
        }
    }

    /// The fast path for the common case, a client re-sending a Bearer
    /// token verified before: the verdict is found from the header's bytes
    /// without parsing or copying them. Anything else (a miss, a second
    /// credential, another scheme) returns `None` for the full path, which
    /// decides and explains.
    fn cached_bearer(&self, headers: &HeaderMap) -> Option<Arc<Claims>> {
        let mut values = headers.get_all(hyper::header::AUTHORIZATION).iter();
        let value = values.next()?.as_bytes();
        if values.next().is_some()
            || self
                .options
                .token_header
                .as_ref()
                .is_some_and(|h| headers.contains_key(h))
        {
            return None;
        }
        let (scheme, token) = value.split_at_checked(BEARER.len())?;
        if !scheme.eq_ignore_ascii_case(BEARER) {
            return None;
        }
        self.verifier.cached(token)
    }

    /// Whether `headers` present a credential at all, and which account it
    /// claims (the Basic user id), for the failure limiter. A client
    /// certificate is not an attempt: the TLS layer already verified it.
    pub fn attempt(&self, headers: &HeaderMap) -> Option<Option<String>> {
        let raw = self
            .options
            .token_header
            .as_ref()
            .is_some_and(|h| headers.contains_key(h));
        if !headers.contains_key(hyper::header::AUTHORIZATION) && !raw {
            return None;
        }
        // Only a Basic credential names an account; skip parsing the rest.
        let basic = headers.get(hyper::header::AUTHORIZATION).is_some_and(|v| {
            v.as_bytes()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
        });
        if !basic {
            return Some(None);
        }
        // The shared `oidc` user names no account: counting its failures
        // would let anyone lock every CI identity out at once.
        Some(match credential::from_headers(headers) {
            Ok(Some(Credential::Basic { user, .. })) if user != BASIC_USER => Some(user),
            _ => None,
        })
    }

    /// Authenticates the credential in `headers` or, when there is none,
    /// the connection's verified client certificate (`client_cn`).
    ///
    /// # Errors
    /// A credential is present but malformed, ambiguous or wrong.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_cn: Option<&str>,
    ) -> Result<Principal, AuthnError> {
        self.authenticate_via(headers, client_cn)
            .await
            .map(|(principal, _)| principal)
    }

    /// [`Authenticator::authenticate`], also saying how the credential came.
    ///
    /// # Errors
    /// A credential is present but malformed, ambiguous or wrong.
    pub async fn authenticate_via(
        &self,
        headers: &HeaderMap,
        client_cn: Option<&str>,
    ) -> Result<(Principal, Via), AuthnError> {
        if let Some(claims) = self.cached_bearer(headers) {
            return Ok((Principal::Token(claims), Via::BearerToken));
        }
        let Some((presented, via)) = self.presented(headers)? else {
            return Ok(
                match client_cn.and_then(|cn| self.accounts.by_client_cn(cn, unix_now())) {
                    Some(account) => (Principal::Account(account), Via::ClientCert),
                    None => (Principal::Anonymous, Via::Nothing),
                },
            );
        };
        let principal = match presented {
            Presented::Jwt(token) => Principal::Token(self.verifier.verify(&token)?),
            // The slow paths are boxed: an async fn's future is as large as
            // its largest await, and every request's future is moved whole.
            Presented::IdToken(token) => {
                Principal::Account(Box::pin(self.federated(&token)).await?)
            }
            Presented::ApiKey(key) => self
                .accounts
                .by_api_key(&key, unix_now())
                .map(Principal::Account)
                .ok_or(AuthnError::ApiKey)?,
            Presented::Password { user, password } => {
                Principal::Account(Box::pin(self.account(&user, &password)).await?)
            }
        };
        Ok((principal, via))
    }

    /// Authenticates an account by API key (`Bearer`) or id and secret
    /// (`Basic`, or the OAuth2 password grant): the issuer's client check.
    ///
    /// # Errors
    /// The credential is not an account's, or is wrong.
    pub async fn client(&self, credential: &Credential) -> Result<Arc<Account>, AuthnError> {
        match credential {
            Credential::Bearer(key) => self
                .accounts
                .by_api_key(key, unix_now())
                .ok_or(AuthnError::ApiKey),
            Credential::Basic { user, password } if user == BASIC_USER => {
                self.federated(password).await
            }
            Credential::Basic { user, password } => self.account(user, password).await,
        }
    }

    /// Checks `user`'s `password`, remembering successes.
    async fn account(&self, user: &str, password: &str) -> Result<Arc<Account>, AuthnError> {
        let id = remember_key(user, password);
        let now = unix_now();
        if let Some(account) = self.remembered.get(&id).await {
            if account.is_active(now) {
                return Ok(account);
            }
            self.remembered.invalidate(&id).await;
        }
        // Concurrent checks of the same credential share one verification
        // (a burst of parallel CI pulls runs argon2 once); a failure is
        // handed to every waiter and never stored.
        self.remembered
            .try_get_with(id, self.verify_password(user, password, now))
            .await
            .map_err(|e| match &*e {
                AuthnError::Busy => AuthnError::Busy,
                AuthnError::Blocking => AuthnError::Blocking,
                _ => AuthnError::Password(user.to_owned()),
            })
    }

    /// Runs one password check, off the reactor and bounded when slow.
    async fn verify_password(
        &self,
        user: &str,
        password: &str,
        now: u64,
    ) -> Result<Arc<Account>, AuthnError> {
        let verified = if self.accounts.has_slow_checks() {
            let permit =
                tokio::time::timeout(SLOW_CHECK_WAIT, self.slow_checks.clone().acquire_owned())
                    .await
                    .map_err(|_| AuthnError::Busy)?
                    .map_err(|_| AuthnError::Busy)?;
            let accounts = self.accounts.clone();
            let (u, p) = (user.to_owned(), password.to_owned());
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                accounts.verify(&u, &p, now)
            })
            .await
            .map_err(|_| AuthnError::Blocking)?
        } else {
            self.accounts.verify(user, password, now)
        };
        verified.ok_or_else(|| AuthnError::Password(user.to_owned()))
    }

    /// Whether `principal` holds `scope`. Anonymous pull rights extend to
    /// every authenticated principal too.
    pub fn allows(&self, principal: &Principal, scope: &Scope) -> bool {
        let own = match principal {
            Principal::Token(claims) => allows(&claims.access, scope),
            Principal::Account(account) => account.acl.allows(&scope.namespace, scope.action),
            Principal::Anonymous => false,
        };
        own || (scope.action == Action::Pull
            && self.anonymous.allows(&scope.namespace, Action::Pull))
    }
}

/// The cache key for a password check: SHA-256 over the id and secret,
/// length-prefixed so `("a:b", "c")` and `("a", "b:c")` differ.
fn remember_key(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(user.len() as u64).to_be_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests;
