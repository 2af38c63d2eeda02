//! The token endpoint: wire-compatible with chartmuseum/auth-server-example
//! and a superset of it (docs/PROTOCOL.md §1.3, §6.1, §7).
//!
//! Three request forms: the example server's `POST ?grant_type=
//! client_credentials&scope=…` with `Authorization: Bearer <API key>` (or
//! Basic id:secret, or a form body); the Docker token spec's `GET
//! ?service=…&scope=…&scope=…` with Basic credentials; and the OAuth2
//! `password` grant as a form POST. Credentials are checked first, then the
//! grant type, then scopes; the grant is the intersection of what was asked
//! and what the account's rules allow, never an error for asking too much.
//! A fourth form, RFC 8693 token exchange ([`exchange`]), trades an external
//! OIDC id token for a token under a trust policy's rules.

pub mod exchange;
pub mod mint;
pub mod request;

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Request, Response};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::access::{AccessEntry, Action, ScopeRequest};
use crate::auth::account::Account;
use crate::auth::acl::Acl;
use crate::auth::credential::{self, Credential, CredentialError};
use crate::auth::guard::Guard;
use crate::auth::token::unix_now;
use crate::body::{self, Body};
use crate::error::{GatewayError, OAuthCode, JSON};
use crate::federation::verifier::BASIC_USER;
use mint::Minter;
use request::TokenRequest;

/// Largest form body read from a token request.
const MAX_FORM_BYTES: usize = 8 * 1024;
/// How long a token request's body may take to arrive.
const FORM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A token issued, with what the audit trail records of it.
#[derive(Debug)]
pub struct Issued {
    pub response: Response<Body>,
    /// The account the token is for.
    pub account: String,
    /// The request form: `client_credentials`, `password` or `docker_get`.
    pub grant: &'static str,
    pub requested: Vec<String>,
    pub granted: Vec<String>,
    /// The new token's `jti`.
    pub jti: String,
    /// How the client proved itself, when not by the account's secret
    /// (`oidc` for a token exchange).
    pub credential: Option<&'static str>,
    /// The `jti` of the token presented in exchange, if it had one.
    pub presented_jti: Option<String>,
}

/// The metrics outcome of a refused token request.
pub fn refusal_outcome(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::InvalidClient => "invalid_client",
        GatewayError::TooManyAttempts { .. } => "locked_out",
        GatewayError::Busy => "busy",
        GatewayError::IdentityProviderUnavailable(_) => "idp_unavailable",
        GatewayError::RefusedIdToken { decision, .. } => decision.labels().1,
        GatewayError::TokenRequest { code, .. } => code.as_str(),
        _ => "invalid_request",
    }
}

/// Issues tokens.
#[derive(Debug)]
pub struct Issuer {
    minter: Minter,
    depth: usize,
}

fn bad(code: OAuthCode, description: &str) -> GatewayError {
    GatewayError::TokenRequest {
        code,
        description: description.to_owned(),
    }
}

/// What an account may have of what it asked for: per scope, the
/// intersection with its rules; scopes left empty are dropped (Docker token
/// spec: grant less, never fail). A granted push carries the matched rule's
/// `charts`, so the token is limited to the charts the rule is.
pub fn grant(acl: &Acl, requested: &[ScopeRequest]) -> Vec<ScopeRequest> {
    requested
        .iter()
        .map(|s| {
            let actions = s.actions.intersection(acl.actions_for(&s.name));
            let charts = actions
                .contains(Action::Push)
                .then(|| acl.charts_for(&s.name))
                .flatten()
                .map(|c| c.patterns().to_vec());
            ScopeRequest {
                name: s.name.clone(),
                actions,
                oci: s.oci.clone(),
                charts,
            }
        })
        .filter(|s| !s.actions.is_empty())
        .collect()
}

impl Issuer {
    /// An issuer signing with `minter`, for a server of depth `depth`.
    pub fn new(minter: Minter, depth: usize) -> Issuer {
        Issuer { minter, depth }
    }

    /// Serves one token request: the response, with what it granted to whom.
    ///
    /// # Errors
    /// The request is refused; see [`GatewayError`] for the statuses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        guard: &Guard,
        peer: IpAddr,
    ) -> Result<Issued, GatewayError> {
        let is_get = match *req.method() {
            Method::GET => true,
            Method::POST => false,
            _ => return Err(GatewayError::TokenMethod),
        };
        let header_credential = match credential::from_headers(req.headers()) {
            Ok(c) => c,
            Err(CredentialError::Duplicate) => return Err(GatewayError::DuplicateCredentials),
            Err(_) => return Err(GatewayError::InvalidClient),
        };
        let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
        let form = if is_get {
            Bytes::new()
        } else {
            read_form(req).await?
        };
        let request = TokenRequest::parse(&query, &form, self.depth)?;
        if request.grant_type.as_deref() == Some(exchange::GRANT) {
            return self
                .exchange(&request, header_credential.is_some(), guard, peer)
                .await;
        }

        // Who is asking: header credentials, or the password grant's form
        // fields (RFC 6749 §4.3), never both.
        let credential = if request.grant_type.as_deref() == Some("password") {
            if header_credential.is_some() {
                return Err(bad(OAuthCode::InvalidRequest, "credentials given twice"));
            }
            match (&request.username, &request.password) {
                (Some(user), Some(password)) => Credential::Basic {
                    user: user.clone(),
                    password: password.clone(),
                },
                _ => {
                    return Err(bad(
                        OAuthCode::InvalidRequest,
                        "the password grant needs username and password in the form body",
                    ))
                }
            }
        } else {
            header_credential.ok_or(GatewayError::InvalidClient)?
        };
        let account = guard
            .client(&credential, peer)
            .await
            .map_err(|denied| GatewayError::denied(denied, |_| GatewayError::InvalidClient))?;

        match request.grant_type.as_deref() {
            Some("client_credentials" | "password") => {}
            // The Docker GET form carries no grant type.
            None if is_get => {}
            None => return Err(bad(OAuthCode::InvalidRequest, "grant_type is required")),
            Some(_) => {
                return Err(bad(
                    OAuthCode::UnsupportedGrantType,
                    "grant_type must be client_credentials, password or token-exchange",
                ))
            }
        }
        let form = match request.grant_type.as_deref() {
            Some("password") => "password",
            Some(_) => "client_credentials",
            None => "docker_get",
        };
        let mut issued = self.issue(&account, &request, form)?;
        if matches!(&credential, Credential::Basic { user, .. } if user == BASIC_USER) {
            issued.credential = Some("oidc");
        }
        Ok(issued)
    }

    /// Grants `account` what it may have of `request`'s scopes, and signs
    /// the token: the one place every grant form ends.
    fn issue(
        &self,
        account: &Account,
        request: &TokenRequest,
        form: &'static str,
    ) -> Result<Issued, GatewayError> {
        let granted = grant(&account.acl, &request.scopes);
        let now = unix_now();
        let access: Vec<AccessEntry> = granted.iter().map(AccessEntry::from_request).collect();
        let minted = self
            .minter
            .mint(&account.id, access, now, account.expires)
            .map_err(|e| GatewayError::Internal(format!("signing failed: {e}")))?;
        let scope = granted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let issued_at = OffsetDateTime::from_unix_timestamp(now as i64)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        let mut reply = json!({
            "access_token": minted.token,
            "token": minted.token,
            "expires_in": minted.claims.exp.saturating_sub(now),
            "issued_at": issued_at,
            "scope": scope,
        });
        if form == exchange::GRANT {
            // RFC 8693 §2.2.1.
            reply["issued_token_type"] = exchange::ACCESS_TOKEN_TYPE.into();
            reply["token_type"] = "Bearer".into();
        }
        let mut response = Response::new(body::json(&reply));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Ok(Issued {
            response,
            account: account.id.clone(),
            grant: form,
            requested: request.scopes.iter().map(ToString::to_string).collect(),
            granted: granted.iter().map(ToString::to_string).collect(),
            jti: minted.claims.jti.clone().unwrap_or_default(),
            credential: None,
            presented_jti: None,
        })
    }
}

/// Reads a form-encoded body, bounded; any other body is read and ignored,
/// as the example server ignores every body.
async fn read_form(req: Request<Incoming>) -> Result<Bytes, GatewayError> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        let limit = MAX_FORM_BYTES as u64;
        return if crate::body::drain(req.into_body(), limit, FORM_TIMEOUT).await {
            Ok(Bytes::new())
        } else {
            Err(GatewayError::PayloadTooLarge { limit })
        };
    }
    match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge {
                limit: MAX_FORM_BYTES as u64,
            })
        }
        Err(_) => Err(bad(
            OAuthCode::InvalidRequest,
            "could not read the request body",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::RawRule;

    #[test]
    fn a_granted_push_carries_the_rules_charts() {
        let rule = |repos: &str, actions: &[&str], charts: Option<&[&str]>| RawRule {
            repos: repos.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            charts: charts.map(|c| c.iter().map(|s| s.to_string()).collect()),
        };
        let acl = Acl::compile(
            &[
                rule("org1/open", &["pull", "push"], None),
                rule("org1/*", &["pull", "push"], Some(&["billing", "billing-*"])),
                rule("org2/*", &["pull"], Some(&["billing"])),
            ],
            "rules",
        )
        .unwrap();
        let ask = |s: &str| ScopeRequest::parse(s, 2).unwrap();
        let granted = grant(
            &acl,
            &[
                ask("artifact-repository:org1/repo1:pull,push"),
                ask("repository:org1/repo1/billing-api:pull,push"),
                ask("artifact-repository:org1/open:push"),
                ask("artifact-repository:org1/repo1:pull"),
                ask("artifact-repository:org2/repo2:pull,push"),
            ],
        );
        let charts: Vec<_> = granted.iter().map(|g| g.charts.clone()).collect();
        let limited = Some(vec!["billing".to_owned(), "billing-*".to_owned()]);
        assert_eq!(
            charts,
            [limited.clone(), limited.clone(), None, None, None],
            "{granted:?}"
        );
        let entry = AccessEntry::from_request(&granted[0]);
        assert_eq!(entry.charts, limited);
    }
}
