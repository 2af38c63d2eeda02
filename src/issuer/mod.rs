//! The token endpoint (`POST /oauth/token`): wire-compatible with
//! chartmuseum/auth-server-example and a superset of it (PROTOCOL.md §1.3,
//! §6.1, §7): credentials first, then `grant_type`, then scopes; a JSON reply
//! with `access_token`, `token`, `expires_in`, `issued_at` and `scope`.

pub mod mint;
pub mod request;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Request, Response};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::access::AccessEntry;
use crate::auth::credential::{self, Credential, CredentialError};
use crate::auth::token::unix_now;
use crate::body::{self, Body};
use crate::error::{GatewayError, OAuthCode, JSON};
use crate::secret::Secret;
use mint::Minter;
use request::TokenRequest;

/// Largest form body read from a token request.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// The account the master key authenticates as.
pub const MASTER_ACCOUNT: &str = "master";

/// The only grant type the endpoint serves.
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Issues tokens.
#[derive(Debug)]
pub struct Issuer {
    minter: Minter,
    master_key: Secret,
    depth: usize,
}

impl Issuer {
    /// An issuer signing with `minter`, authenticating `master_key`, and
    /// granting repository names for a server of depth `depth`.
    pub fn new(minter: Minter, master_key: Secret, depth: usize) -> Issuer {
        Issuer {
            minter,
            master_key,
            depth,
        }
    }

    /// The minter (for its public key).
    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// Serves one token request. Returns the authenticated subject with the
    /// response so the access log can name it.
    ///
    /// # Errors
    /// The request is refused; see [`GatewayError`] for the statuses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<(String, Response<Body>), GatewayError> {
        if req.method() != Method::POST {
            return Err(GatewayError::TokenMethod);
        }
        let subject = self.authenticate(req.headers())?;
        let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
        let form = read_form(req).await?;
        let request = TokenRequest::parse(&query, &form, self.depth)?;
        match request.grant_type.as_deref() {
            Some(CLIENT_CREDENTIALS) => {}
            None => {
                return Err(GatewayError::TokenRequest {
                    code: OAuthCode::InvalidRequest,
                    description: "grant_type is required".into(),
                })
            }
            Some(_) => {
                return Err(GatewayError::TokenRequest {
                    code: OAuthCode::UnsupportedGrantType,
                    description: "grant_type must be client_credentials".into(),
                })
            }
        }
        // The master key may be granted any valid scope; per-account rules
        // narrow this to an intersection.
        let granted = request.scopes;
        let access: Vec<AccessEntry> = granted.iter().map(AccessEntry::from_request).collect();
        let now = unix_now();
        let minted = self
            .minter
            .mint(&subject, access, now)
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
            "expires_in": self.minter.ttl().as_secs(),
            "issued_at": issued_at,
            "scope": scope,
        });
        let mut response = Response::new(body::json(&reply));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Ok((subject, response))
    }

    /// Checks the client's credentials; returns the account they prove.
    fn authenticate(&self, headers: &hyper::HeaderMap) -> Result<String, GatewayError> {
        let credential = match credential::from_headers(headers) {
            Ok(Some(c)) => c,
            Err(CredentialError::Duplicate) => return Err(GatewayError::DuplicateCredentials),
            Ok(None) | Err(_) => return Err(GatewayError::InvalidClient),
        };
        // Both arms run the same constant-time comparison, so an unknown
        // account costs what a wrong key does.
        let (claimed, key) = match &credential {
            Credential::Bearer(key) => (MASTER_ACCOUNT, key.as_str()),
            Credential::Basic { user, password } => (user.as_str(), password.as_str()),
        };
        let key_ok = self.master_key.matches(key);
        if key_ok && claimed == MASTER_ACCOUNT {
            Ok(MASTER_ACCOUNT.to_owned())
        } else {
            Err(GatewayError::InvalidClient)
        }
    }
}

/// Reads a form-encoded body, bounded; any other body is ignored, as the
/// example server ignores every body.
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
        return Ok(Bytes::new());
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
        Err(_) => Err(GatewayError::TokenRequest {
            code: OAuthCode::InvalidRequest,
            description: "could not read the request body".into(),
        }),
    }
}
