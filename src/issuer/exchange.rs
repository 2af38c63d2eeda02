//! RFC 8693 token exchange at the token endpoint: a CI job trades the OIDC
//! id token its platform signed for a short-lived chartgate token, with no
//! stored secret (trusted publishing, docs/TRUSTED-PUBLISHING.md).
//!
//! The id token is the only credential: a request that also carries an
//! `Authorization` header is refused as ambiguous. The grant is what the
//! matched policy's rules allow of the scopes asked, living no longer than
//! the id token nor the policy's `max_ttl` (the identity's account expiry),
//! nor the issuer's own token lifetime.

use std::net::IpAddr;

use super::{bad, Issued, Issuer};
use crate::auth::authn::AuthnError;
use crate::auth::guard::{failure_decision, Guard};
use crate::error::{GatewayError, OAuthCode};
use crate::issuer::request::TokenRequest;

/// `grant_type` of a token exchange.
pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token types accepted: an OIDC id token, or any JWT.
const SUBJECT_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
/// What is issued (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Issuer {
    /// Serves a token exchange: checks the request's form, then the id
    /// token under the trust policies, then grants and signs.
    ///
    /// # Errors
    /// `invalid_request` for a malformed exchange or an id token that is
    /// not accepted (RFC 8693 §2.2.2), `503` when the issuer's keys cannot
    /// be fetched, `429` when the client's address is locked out.
    pub(super) async fn exchange(
        &self,
        request: &TokenRequest,
        has_header_credential: bool,
        guard: &Guard,
        peer: IpAddr,
    ) -> Result<Issued, GatewayError> {
        let subject_token = check(request, has_header_credential)?;
        let identity = guard
            .exchange(subject_token, peer)
            .await
            .map_err(|denied| {
                GatewayError::denied(denied, |e| {
                    tracing::info!(error = %e, "token exchange refused");
                    GatewayError::RefusedIdToken {
                        decision: failure_decision(&e),
                        class: match &e {
                            AuthnError::Federation(f) => f.class(),
                            _ => "the id token is invalid or expired",
                        },
                    }
                })
            })?;
        let mut issued = self.issue(&identity.account, request, GRANT)?;
        issued.credential = Some("oidc");
        issued.presented_jti = identity.jti;
        Ok(issued)
    }
}

/// The subject token of a well-formed exchange request.
fn check(request: &TokenRequest, has_header_credential: bool) -> Result<&str, GatewayError> {
    if has_header_credential {
        return Err(bad(
            OAuthCode::InvalidRequest,
            "a token exchange takes no Authorization header: the subject_token is the credential",
        ));
    }
    if request.actor_token.is_some() {
        return Err(bad(
            OAuthCode::InvalidRequest,
            "actor_token (delegation) is not supported",
        ));
    }
    if request
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(bad(
            OAuthCode::InvalidRequest,
            "requested_token_type must be urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    let token = request
        .subject_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(OAuthCode::InvalidRequest, "subject_token is required"))?;
    match request.subject_token_type.as_deref() {
        Some(t) if SUBJECT_TYPES.contains(&t) => Ok(token),
        _ => Err(bad(
            OAuthCode::InvalidRequest,
            "subject_token_type must be urn:ietf:params:oauth:token-type:id_token or :jwt",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> TokenRequest {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        TokenRequest::parse(b"", form.as_bytes(), 2).unwrap()
    }

    fn description(e: GatewayError) -> String {
        match e {
            GatewayError::TokenRequest { description, .. } => description,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_exchange_yields_its_subject_token() {
        let r = request(&[
            ("grant_type", GRANT),
            ("subject_token", "a.b.c"),
            ("subject_token_type", SUBJECT_TYPES[0]),
        ]);
        assert_eq!(check(&r, false).unwrap(), "a.b.c");
        let r = request(&[
            ("grant_type", GRANT),
            ("subject_token", "a.b.c"),
            ("subject_token_type", SUBJECT_TYPES[1]),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ]);
        assert_eq!(check(&r, false).unwrap(), "a.b.c");
    }

    #[test]
    fn malformed_exchanges_say_what_is_wrong() {
        let ok = [
            ("grant_type", GRANT),
            ("subject_token", "a.b.c"),
            ("subject_token_type", SUBJECT_TYPES[0]),
        ];
        assert!(description(check(&request(&ok), true).unwrap_err()).contains("Authorization"));
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&ok[..2], "subject_token_type"),
            (&[ok[0], ok[2]], "subject_token is required"),
            (&[ok[0], ok[1], ok[2], ("actor_token", "x")], "actor_token"),
            (
                &[
                    ok[0],
                    ok[1],
                    ok[2],
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:id_token",
                    ),
                ],
                "requested_token_type",
            ),
        ];
        for (fields, want) in cases {
            let got = description(check(&request(fields), false).unwrap_err());
            assert!(got.contains(want), "{fields:?}: {got}");
        }
    }

    #[test]
    fn the_subject_token_never_rides_in_the_query() {
        let q = format!("grant_type={GRANT}&subject_token=a.b.c");
        assert!(TokenRequest::parse(q.as_bytes(), b"", 2).is_err());
    }
}
