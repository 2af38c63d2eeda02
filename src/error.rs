//! `GatewayError`: every way a request can fail, and the one place each is
//! turned into a status code and a short JSON body.
//!
//! Bodies are generic; the cause goes to the log (at a level chosen by
//! [`GatewayError::is_client_fault`]), never to the client.

use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::auth::access::Scope;
use crate::auth::authn::AuthnError;
use crate::auth::challenge::Challenge;
use crate::auth::guard::{failure_decision, Denied};
use crate::auth::path::PathError;
use crate::body::{self, Body};
use crate::publish::PublishRefusal;
use crate::telemetry::metrics::Decision;

/// `application/json; charset=utf-8`, as gin sends it.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// Why a proxied request was not authorized; logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials")]
    Missing,
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error("{subject:?} is not granted this scope")]
    InsufficientScope { subject: String },
}

/// RFC 6749 §5.2 error codes the token endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidRequest,
    UnsupportedGrantType,
    InvalidScope,
}

impl OAuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::InvalidScope => "invalid_scope",
        }
    }
}

/// OCI distribution error codes (distribution-spec v1.1, "Error Codes"),
/// each with the status the spec gives it. Two codes appear twice, with
/// the status their case needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciCode {
    BlobUnknown,
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_INVALID` for a chunk out of order: 416.
    RangeInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// `DENIED` for a chart version that already exists: 409.
    Exists,
    /// An operation the bridge does not offer: 405.
    Unsupported,
    /// An artifact that is not a Helm chart: 415.
    UnsupportedMedia,
}

impl OciCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "BLOB_UNKNOWN",
            OciCode::BlobUploadInvalid | OciCode::RangeInvalid => "BLOB_UPLOAD_INVALID",
            OciCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            OciCode::DigestInvalid => "DIGEST_INVALID",
            OciCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciCode::ManifestInvalid => "MANIFEST_INVALID",
            OciCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciCode::NameInvalid => "NAME_INVALID",
            OciCode::NameUnknown => "NAME_UNKNOWN",
            OciCode::SizeInvalid => "SIZE_INVALID",
            OciCode::Exists => "DENIED",
            OciCode::Unsupported | OciCode::UnsupportedMedia => "UNSUPPORTED",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            OciCode::BlobUnknown
            | OciCode::BlobUploadUnknown
            | OciCode::ManifestBlobUnknown
            | OciCode::ManifestUnknown
            | OciCode::NameUnknown => StatusCode::NOT_FOUND,
            OciCode::BlobUploadInvalid
            | OciCode::DigestInvalid
            | OciCode::ManifestInvalid
            | OciCode::NameInvalid
            | OciCode::SizeInvalid => StatusCode::BAD_REQUEST,
            OciCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            OciCode::Exists => StatusCode::CONFLICT,
            OciCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            OciCode::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

/// Which error body a route speaks: ChartMuseum's `{"error": …}`, or the
/// OCI distribution spec's `{"errors": [{"code", "message"}]}` under `/v2/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    ChartMuseum,
    Oci,
}

/// Every failure of a request, one variant per cause.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("non-canonical path: {0}")]
    BadPath(#[from] PathError),
    #[error("missing, repeated or malformed Host or request target")]
    DuplicateHost,
    #[error("more than one Authorization header")]
    DuplicateCredentials,
    #[error("no such route")]
    NotFound,
    #[error("unauthorized for {scope}: {cause}")]
    Unauthorized { scope: Scope, cause: AuthFailure },
    /// The registry's base check (`GET /v2/`) without a valid credential.
    #[error("registry login: {cause}")]
    Unauthenticated { cause: AuthFailure },
    #[error("registry: {message}")]
    Registry { code: OciCode, message: String },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// A publish rule refused an upload, a delete or a manifest push.
    #[error("publish rule: {0}")]
    Publish(#[from] PublishRefusal),
    #[error("token request: {description}")]
    TokenRequest {
        code: OAuthCode,
        description: String,
    },
    #[error("token request: bad client credentials")]
    InvalidClient,
    /// A token exchange's id token was not accepted (RFC 8693 §2.2.2:
    /// `invalid_request`); `class` is what the client is told.
    #[error("token exchange: {class}")]
    RefusedIdToken {
        decision: Decision,
        class: &'static str,
    },
    #[error("token endpoint takes GET or POST")]
    TokenMethod,
    #[error("too many password checks in progress")]
    Busy,
    #[error("an OIDC issuer's keys are unavailable: {0}")]
    IdentityProviderUnavailable(String),
    #[error("too many failed attempts; retry in {retry_after:?}")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("upstream unreachable")]
    UpstreamUnavailable(#[source] crate::body::BoxError),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The error for a credential the guard turned away; `failed` says
    /// what a checked-and-wrong credential is at this door.
    pub fn denied(denied: Denied, failed: impl FnOnce(AuthnError) -> GatewayError) -> GatewayError {
        match denied {
            Denied::LockedOut(retry_after) => GatewayError::TooManyAttempts { retry_after },
            Denied::Busy => GatewayError::Busy,
            Denied::Ambiguous => GatewayError::DuplicateCredentials,
            Denied::Unavailable(why) => GatewayError::IdentityProviderUnavailable(why),
            Denied::Failed(e) => failed(e),
        }
    }

    /// The status this error is answered with. Exhaustive on purpose.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_) => StatusCode::BAD_REQUEST,
            GatewayError::DuplicateHost => StatusCode::BAD_REQUEST,
            GatewayError::DuplicateCredentials => StatusCode::BAD_REQUEST,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Registry { code, .. } => code.status(),
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Publish(PublishRefusal::Unreadable(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Publish(PublishRefusal::ChartNotAllowed { .. }) => StatusCode::FORBIDDEN,
            GatewayError::Publish(PublishRefusal::Immutable { .. }) => StatusCode::CONFLICT,
            GatewayError::TokenRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::InvalidClient => StatusCode::UNAUTHORIZED,
            GatewayError::RefusedIdToken { .. } => StatusCode::BAD_REQUEST,
            GatewayError::TokenMethod => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::IdentityProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the client caused this (logged at `debug`) rather than the
    /// upstream or the gateway (logged at `warn`/`error`).
    pub fn is_client_fault(&self) -> bool {
        self.status().is_client_error()
    }

    /// The short JSON body sent with this error, in the route's dialect.
    fn body(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::ChartMuseum => self.chartmuseum_body(),
            Dialect::Oci => {
                let (code, message) = self.oci_error();
                json!({"errors": [{"code": code, "message": message}]})
            }
        }
    }

    /// The OCI code and message of this error.
    fn oci_error(&self) -> (&'static str, String) {
        let fixed = |code, message: &str| (code, message.to_owned());
        match self {
            GatewayError::Registry { code, message } => (code.as_str(), message.clone()),
            GatewayError::BadPath(_) => fixed("NAME_INVALID", "invalid repository name"),
            GatewayError::NotFound => fixed("NAME_UNKNOWN", "no such registry endpoint"),
            GatewayError::Unauthorized { .. } | GatewayError::Unauthenticated { .. } => {
                fixed("UNAUTHORIZED", "authentication required")
            }
            GatewayError::DuplicateCredentials => {
                fixed("UNAUTHORIZED", "more than one Authorization header")
            }
            GatewayError::PayloadTooLarge { limit } => {
                ("SIZE_INVALID", format!("upload larger than {limit} bytes"))
            }
            GatewayError::Publish(PublishRefusal::Unreadable(why)) => {
                ("MANIFEST_INVALID", why.clone())
            }
            GatewayError::Publish(refusal) => ("DENIED", refusal.to_string()),
            GatewayError::TooManyAttempts { .. } => {
                fixed("TOOMANYREQUESTS", "too many failed attempts")
            }
            GatewayError::Busy
            | GatewayError::UpstreamUnavailable(_)
            | GatewayError::UpstreamTimeout => fixed("UNAVAILABLE", "chart storage unavailable"),
            GatewayError::IdentityProviderUnavailable(_) => fixed(
                "UNAVAILABLE",
                "the identity provider's keys are unavailable",
            ),
            GatewayError::Internal(_) => fixed("UNKNOWN", "internal server error"),
            GatewayError::DuplicateHost
            | GatewayError::TokenRequest { .. }
            | GatewayError::InvalidClient
            | GatewayError::RefusedIdToken { .. }
            | GatewayError::TokenMethod => fixed("UNSUPPORTED", "bad request"),
        }
    }

    fn chartmuseum_body(&self) -> serde_json::Value {
        match self {
            GatewayError::BadPath(_) | GatewayError::DuplicateHost => {
                json!({"error": "bad request"})
            }
            GatewayError::DuplicateCredentials => {
                json!({"error": "bad request", "error_description": "more than one Authorization header"})
            }
            // The two bodies ChartMuseum itself sends (docs/PROTOCOL.md §7).
            GatewayError::NotFound => json!({"error": "not found"}),
            GatewayError::Unauthorized { .. } | GatewayError::Unauthenticated { .. } => {
                json!({"error": "unauthorized"})
            }
            GatewayError::Registry { message, .. } => json!({"error": message}),
            // Messages built from what the client sent, for helm-push to print.
            GatewayError::Publish(refusal) => json!({"error": refusal.to_string()}),
            GatewayError::PayloadTooLarge { .. } => json!({"error": "request too large"}),
            GatewayError::TokenRequest { code, description } => {
                json!({"error": code.as_str(), "error_description": description})
            }
            GatewayError::InvalidClient => json!({"error": "invalid_client"}),
            GatewayError::RefusedIdToken { class, .. } => {
                json!({"error": "invalid_request", "error_description": class})
            }
            GatewayError::TokenMethod => {
                json!({"error": "invalid_request", "error_description": "use GET or POST"})
            }
            GatewayError::Busy => json!({"error": "busy"}),
            GatewayError::IdentityProviderUnavailable(_) => json!({
                "error": "temporarily_unavailable",
                "error_description": "the identity provider's keys are unavailable"
            }),
            GatewayError::TooManyAttempts { .. } => json!({"error": "too many failed attempts"}),
            GatewayError::UpstreamUnavailable(_) => json!({"error": "bad gateway"}),
            GatewayError::UpstreamTimeout => json!({"error": "gateway timeout"}),
            GatewayError::Internal(_) => json!({"error": "internal server error"}),
        }
    }

    /// The authorization decision this error reports, for metrics and the
    /// audit trail; `None` for failures that come before or after one.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            GatewayError::Unauthorized { cause, .. } | GatewayError::Unauthenticated { cause } => {
                Some(match cause {
                    AuthFailure::Missing => Decision::NoCredential,
                    AuthFailure::Authn(e) => failure_decision(e),
                    AuthFailure::InsufficientScope { .. } => Decision::WrongScope,
                })
            }
            GatewayError::TooManyAttempts { .. } => Some(Decision::LockedOut),
            GatewayError::Busy => Some(Decision::Busy),
            GatewayError::IdentityProviderUnavailable(_) => Some(Decision::IdpUnavailable),
            GatewayError::DuplicateCredentials => Some(Decision::Ambiguous),
            GatewayError::InvalidClient => Some(Decision::BadCredential),
            GatewayError::RefusedIdToken { decision, .. } => Some(*decision),
            GatewayError::BadPath(_)
            | GatewayError::DuplicateHost
            | GatewayError::NotFound
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::TokenRequest { .. }
            | GatewayError::TokenMethod
            | GatewayError::UpstreamUnavailable(_)
            | GatewayError::UpstreamTimeout
            | GatewayError::Registry { .. }
            | GatewayError::Publish(_)
            | GatewayError::Internal(_) => None,
        }
    }

    /// The full response for this error, with the body of `dialect`.
    pub fn into_response(self, challenge: &Challenge, dialect: Dialect) -> Response<Body> {
        let mut response = Response::new(body::json(&self.body(dialect)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, JSON);
        match &self {
            GatewayError::Unauthorized { scope, .. } => {
                headers.insert(WWW_AUTHENTICATE, challenge.header(scope));
            }
            GatewayError::Unauthenticated { .. } => {
                headers.insert(WWW_AUTHENTICATE, challenge.base());
            }
            GatewayError::InvalidClient => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"chartgate\""),
                );
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            GatewayError::TokenRequest { .. } | GatewayError::RefusedIdToken { .. } => {
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            GatewayError::TokenMethod => {
                headers.insert(ALLOW, HeaderValue::from_static("GET, POST"));
            }
            GatewayError::Busy => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::IdentityProviderUnavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
            }
            GatewayError::TooManyAttempts { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            GatewayError::PayloadTooLarge { .. } | GatewayError::BadPath(_) => {
                // The unread rest of the body must not be parsed as a next request.
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::Action;
    use http_body_util::BodyExt;

    fn scope() -> Scope {
        Scope::repository("org1/repo1", Action::Push)
    }

    fn all() -> Vec<(GatewayError, u16, &'static str)> {
        vec![
            (
                GatewayError::BadPath(PathError::DotSegment),
                400,
                r#"{"error":"bad request"}"#,
            ),
            (
                GatewayError::DuplicateHost,
                400,
                r#"{"error":"bad request"}"#,
            ),
            (
                GatewayError::DuplicateCredentials,
                400,
                r#"{"error":"bad request","error_description":"more than one Authorization header"}"#,
            ),
            (GatewayError::NotFound, 404, r#"{"error":"not found"}"#),
            (
                GatewayError::Unauthorized {
                    scope: scope(),
                    cause: AuthFailure::Missing,
                },
                401,
                r#"{"error":"unauthorized"}"#,
            ),
            (
                GatewayError::PayloadTooLarge { limit: 1 },
                413,
                r#"{"error":"request too large"}"#,
            ),
            (
                GatewayError::TokenRequest {
                    code: OAuthCode::InvalidScope,
                    description: "x".into(),
                },
                400,
                r#"{"error":"invalid_scope","error_description":"x"}"#,
            ),
            (
                GatewayError::InvalidClient,
                401,
                r#"{"error":"invalid_client"}"#,
            ),
            (
                GatewayError::TokenMethod,
                405,
                r#"{"error":"invalid_request","error_description":"use GET or POST"}"#,
            ),
            (GatewayError::Busy, 503, r#"{"error":"busy"}"#),
            (
                PublishRefusal::Unreadable("the chart holds no <chart>/Chart.yaml".into()).into(),
                400,
                r#"{"error":"the chart holds no <chart>/Chart.yaml"}"#,
            ),
            (
                PublishRefusal::ChartNotAllowed {
                    chart: "other".into(),
                    repo: "org1/repo1".into(),
                }
                .into(),
                403,
                r#"{"error":"chart \"other\" may not be pushed to org1/repo1"}"#,
            ),
            (
                PublishRefusal::Immutable {
                    chart: "app".into(),
                    version: "1.0.0".into(),
                    repo: "org1/stable".into(),
                }
                .into(),
                409,
                r#"{"error":"chart version app-1.0.0 is immutable in org1/stable"}"#,
            ),
            (
                GatewayError::TooManyAttempts {
                    retry_after: std::time::Duration::from_secs(300),
                },
                429,
                r#"{"error":"too many failed attempts"}"#,
            ),
            (
                GatewayError::UpstreamUnavailable("refused".into()),
                502,
                r#"{"error":"bad gateway"}"#,
            ),
            (
                GatewayError::UpstreamTimeout,
                504,
                r#"{"error":"gateway timeout"}"#,
            ),
            (
                GatewayError::Internal("x".into()),
                500,
                r#"{"error":"internal server error"}"#,
            ),
        ]
    }

    #[tokio::test]
    async fn each_error_has_its_status_and_generic_body() {
        let challenge = Challenge::new("http://gw/oauth/token", "gw");
        for (err, status, body) in all() {
            let what = format!("{err:?}");
            let resp = err.into_response(&challenge, Dialect::ChartMuseum);
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_eq!(
                resp.headers()[CONTENT_TYPE],
                "application/json; charset=utf-8"
            );
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), body, "{what}");
        }
    }

    #[test]
    fn unauthorized_carries_the_challenge() {
        let challenge = Challenge::new("http://gw/oauth/token", "gw");
        let err = GatewayError::Unauthorized {
            scope: scope(),
            cause: AuthFailure::Missing,
        };
        let resp = err.into_response(&challenge, Dialect::ChartMuseum);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="http://gw/oauth/token",service="gw",scope="artifact-repository:org1/repo1:push""#
        );
    }

    #[test]
    fn bodies_never_carry_the_cause() {
        let err = GatewayError::Unauthorized {
            scope: scope(),
            cause: AuthFailure::InsufficientScope {
                subject: "secret-subject".into(),
            },
        };
        assert!(!err
            .body(Dialect::ChartMuseum)
            .to_string()
            .contains("secret-subject"));
        let err = GatewayError::Internal("key file /etc/x unreadable".into());
        assert!(!err
            .body(Dialect::ChartMuseum)
            .to_string()
            .contains("/etc/x"));
    }
}
