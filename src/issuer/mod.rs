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

use crate::auth::access::{AccessEntry, ScopeRequest};
use crate::auth::account::Account;
use crate::auth::credential::{self, Credential, CredentialError};
use crate::auth::guard::{Denied, Guard};
use crate::auth::token::unix_now;
use crate::body::{self, Body};
use crate::error::{GatewayError, OAuthCode, JSON};
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
}

/// The metrics outcome of a refused token request.
pub fn refusal_outcome(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::InvalidClient => "invalid_client",
        GatewayError::TooManyAttempts { .. } => "locked_out",
        GatewayError::Busy => "busy",
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
/// spec: grant less, never fail).
pub fn grant(account: &Account, requested: &[ScopeRequest]) -> Vec<ScopeRequest> {
    requested
        .iter()
        .map(|s| ScopeRequest {
            name: s.name.clone(),
            actions: s.actions.intersection(account.acl.actions_for(&s.name)),
            oci: s.oci.clone(),
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
            .map_err(|denied| match denied {
                Denied::LockedOut(retry_after) => GatewayError::TooManyAttempts { retry_after },
                Denied::Busy => GatewayError::Busy,
                Denied::Ambiguous => GatewayError::DuplicateCredentials,
                Denied::Failed(_) => GatewayError::InvalidClient,
            })?;

        match request.grant_type.as_deref() {
            Some("client_credentials" | "password") => {}
            // The Docker GET form carries no grant type.
            None if is_get => {}
            None => return Err(bad(OAuthCode::InvalidRequest, "grant_type is required")),
            Some(_) => {
                return Err(bad(
                    OAuthCode::UnsupportedGrantType,
                    "grant_type must be client_credentials or password",
                ))
            }
        }

        let form = match request.grant_type.as_deref() {
            Some("password") => "password",
            Some(_) => "client_credentials",
            None => "docker_get",
        };
        let granted = grant(&account, &request.scopes);
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
        let reply = json!({
            "access_token": minted.token,
            "token": minted.token,
            "expires_in": minted.claims.exp.saturating_sub(now),
            "issued_at": issued_at,
            "scope": scope,
        });
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
