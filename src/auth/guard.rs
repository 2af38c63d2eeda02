//! The one auth guard: the failure limiter, the authenticator, and the
//! accounting between them. The proxy and the issuer both ask it, so a
//! wrong password counts the same against the same limits whichever door
//! it was tried at, and a lockout holds at both.
//!
//! A request without a credential is never counted. A credential that is
//! checked and wrong counts once against its address and, for Basic, the
//! account it names; a success clears both. A busy password checker or an
//! ambiguous credential is refused without counting.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderMap;

use super::account::Account;
use super::authn::{Authenticator, AuthnError, Principal, Via};
use super::credential::{Credential, CredentialError};
use super::limit::FailureLimiter;
use super::shared::SharedCounts;
use super::token::TokenError;
use crate::federation::verifier::{FederationError, Identity, BASIC_USER};
use crate::telemetry::metrics::Decision;

/// Why the guard turned a credential away.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("too many failed attempts; retry in {0:?}")]
    LockedOut(Duration),
    #[error("too many password checks in progress")]
    Busy,
    #[error("more than one credential")]
    Ambiguous,
    #[error("an OIDC issuer's keys are unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Failed(AuthnError),
}

impl Denied {
    /// The metrics and audit reason.
    pub fn decision(&self) -> Decision {
        match self {
            Denied::LockedOut(_) => Decision::LockedOut,
            Denied::Busy => Decision::Busy,
            Denied::Ambiguous => Decision::Ambiguous,
            Denied::Unavailable(_) => Decision::IdpUnavailable,
            Denied::Failed(e) => failure_decision(e),
        }
    }
}

/// The reason a failed check is counted under.
pub fn failure_decision(e: &AuthnError) -> Decision {
    match e {
        AuthnError::Token(TokenError::Expired) => Decision::Expired,
        AuthnError::Token(TokenError::Invalid(inner))
            if matches!(
                inner.kind(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature
            ) =>
        {
            Decision::BadSignature
        }
        AuthnError::Token(_) => Decision::InvalidToken,
        AuthnError::Credential(CredentialError::Duplicate) => Decision::Ambiguous,
        AuthnError::Busy => Decision::Busy,
        AuthnError::Federation(f) => match f {
            FederationError::Token(TokenError::Expired) => Decision::Expired,
            FederationError::Token(_) | FederationError::NoIssuedAt | FederationError::NoJti => {
                Decision::InvalidToken
            }
            FederationError::UnknownIssuer
            | FederationError::NoPolicy
            | FederationError::ExchangeOnly(_) => Decision::Untrusted,
            FederationError::Replayed => Decision::Replayed,
            FederationError::Unavailable(_) => Decision::IdpUnavailable,
        },
        AuthnError::Credential(_)
        | AuthnError::ApiKey
        | AuthnError::Password(_)
        | AuthnError::Blocking => Decision::BadCredential,
    }
}

/// Limiter and authenticator, used together.
#[derive(Debug)]
pub struct Guard {
    authn: Authenticator,
    limiter: FailureLimiter,
    /// The fleet's counts, when replicas share them.
    shared: Option<Arc<SharedCounts>>,
}

impl Guard {
    pub fn new(
        authn: Authenticator,
        limiter: FailureLimiter,
        shared: Option<Arc<SharedCounts>>,
    ) -> Guard {
        Guard {
            authn,
            limiter,
            shared,
        }
    }

    /// The authenticator, for scope decisions and the raw-token header.
    pub fn authn(&self) -> &Authenticator {
        &self.authn
    }

    /// Who a proxied request is: its header credential or, with none, the
    /// connection's verified client certificate.
    ///
    /// # Errors
    /// The credential is wrong, ambiguous, locked out, or cannot be checked now.
    pub async fn request(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        client_cn: Option<&str>,
    ) -> Result<(Principal, Via), Denied> {
        let attempt = self.authn.attempt(headers);
        let claimed = attempt.as_ref().map(|a| a.as_deref());
        self.accounted(
            peer,
            claimed,
            self.authn.authenticate_via(headers, client_cn),
        )
        .await
    }

    /// Which account a token request's client credential proves.
    ///
    /// # Errors
    /// As for [`Guard::request`].
    pub async fn client(
        &self,
        credential: &Credential,
        peer: IpAddr,
    ) -> Result<Arc<Account>, Denied> {
        let claimed = match credential {
            Credential::Basic { user, .. } if user != BASIC_USER => Some(user.as_str()),
            Credential::Basic { .. } | Credential::Bearer(_) => None,
        };
        self.accounted(peer, Some(claimed), self.authn.client(credential))
            .await
    }

    /// The identity an OIDC id token proves, for the token exchange; a
    /// failure counts against the client's address.
    ///
    /// # Errors
    /// As for [`Guard::request`]; `Failed` also when no policy is configured.
    pub async fn exchange(&self, id_token: &str, peer: IpAddr) -> Result<Identity, Denied> {
        let check = async {
            let federation = self
                .authn
                .federation()
                .ok_or(FederationError::UnknownIssuer)?;
            Ok(federation.exchange(id_token).await?)
        };
        self.accounted(peer, Some(None), check).await
    }

    /// Runs `check` under the limits: refused up front when `attempt` (the
    /// account a credential names, if it names one) is locked out here or,
    /// with shared limits, anywhere in the fleet; counted as a failure or
    /// success after, in both.
    async fn accounted<T>(
        &self,
        peer: IpAddr,
        attempt: Option<Option<&str>>,
        check: impl Future<Output = Result<T, AuthnError>>,
    ) -> Result<T, Denied> {
        let mut seen = None;
        if let Some(account) = attempt {
            self.limiter
                .check(peer, account)
                .map_err(Denied::LockedOut)?;
            if let Some(shared) = &self.shared {
                // Boxed, as each Redis round trip below: kept out of the
                // future every request moves.
                seen = Some(
                    Box::pin(shared.check(peer, account))
                        .await
                        .map_err(Denied::LockedOut)?,
                );
            }
        }
        match check.await {
            Ok(value) => {
                if let Some(account) = attempt {
                    self.limiter.succeeded(peer, account);
                    if let (Some(shared), Some(seen)) = (&self.shared, seen) {
                        Box::pin(shared.succeeded(peer, account, seen)).await;
                    }
                }
                Ok(value)
            }
            Err(AuthnError::Busy) => Err(Denied::Busy),
            Err(AuthnError::Federation(FederationError::Unavailable(why))) => {
                Err(Denied::Unavailable(why))
            }
            Err(AuthnError::Credential(CredentialError::Duplicate)) => Err(Denied::Ambiguous),
            Err(e) => {
                if let Some(account) = attempt {
                    self.limiter.failed(peer, account);
                    if let Some(shared) = &self.shared {
                        Box::pin(shared.failed(peer, account)).await;
                    }
                }
                Err(Denied::Failed(e))
            }
        }
    }
}
