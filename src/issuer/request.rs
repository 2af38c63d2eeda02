//! Reading a token request: parameters from the query string (the example
//! server's wire form) and from a form body (RFC 6749 §4.4), merged under
//! RFC 6749 §3.2's rule that no parameter may appear twice, except `scope`,
//! which may repeat and may hold several space-separated scopes (Docker).

use crate::auth::access::ScopeRequest;
use crate::error::{GatewayError, OAuthCode};

/// Parameters that may carry a secret and so are refused in the query
/// string, where proxies and access logs would keep them.
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "password",
    "refresh_token",
    "access_token",
    "subject_token",
    "actor_token",
];

/// A parsed token request.
#[derive(Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scopes: Vec<ScopeRequest>,
    pub service: Option<String>,
    /// Password grant fields (form body only).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Token exchange fields (RFC 8693 §2.1).
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<String>,
}

// The password never reaches a log through Debug.
impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scopes", &self.scopes)
            .field("service", &self.service)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "subject_token",
                &self.subject_token.as_ref().map(|_| "<redacted>"),
            )
            .field("subject_token_type", &self.subject_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn invalid(code: OAuthCode, description: impl Into<String>) -> GatewayError {
    GatewayError::TokenRequest {
        code,
        description: description.into(),
    }
}

impl TokenRequest {
    /// Parses `query` and `form` (either may be empty), checking scope names
    /// for a server of repository depth `depth`.
    ///
    /// # Errors
    /// `invalid_request` for repeated or misplaced parameters,
    /// `invalid_scope` for a scope that does not parse.
    pub fn parse(query: &[u8], form: &[u8], depth: usize) -> Result<TokenRequest, GatewayError> {
        let mut req = TokenRequest::default();
        let mut raw_scopes = Vec::new();
        let from_query = form_urlencoded::parse(query).map(|kv| (true, kv));
        let from_form = form_urlencoded::parse(form).map(|kv| (false, kv));
        for (in_query, (key, value)) in from_query.chain(from_form) {
            if in_query && SECRET_PARAMS.contains(&key.as_ref()) {
                return Err(invalid(
                    OAuthCode::InvalidRequest,
                    format!("{key} must not be sent in the query string"),
                ));
            }
            match key.as_ref() {
                "scope" => raw_scopes.push(value.into_owned()),
                "grant_type" => set_once(&mut req.grant_type, "grant_type", value.into_owned())?,
                "service" => set_once(&mut req.service, "service", value.into_owned())?,
                "username" => set_once(&mut req.username, "username", value.into_owned())?,
                "password" => set_once(&mut req.password, "password", value.into_owned())?,
                "subject_token" => {
                    set_once(&mut req.subject_token, "subject_token", value.into_owned())?;
                }
                "subject_token_type" => set_once(
                    &mut req.subject_token_type,
                    "subject_token_type",
                    value.into_owned(),
                )?,
                "requested_token_type" => set_once(
                    &mut req.requested_token_type,
                    "requested_token_type",
                    value.into_owned(),
                )?,
                "actor_token" => {
                    set_once(&mut req.actor_token, "actor_token", value.into_owned())?;
                }
                // Other parameters (client_id, offline_token, account, ...)
                // are accepted and ignored, as RFC 6749 §3.1 requires.
                _ => {}
            }
        }
        for scope in raw_scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
        {
            let parsed = ScopeRequest::parse(scope, depth)
                .map_err(|why| invalid(OAuthCode::InvalidScope, why))?;
            req.scopes.push(parsed);
        }
        Ok(req)
    }
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), GatewayError> {
    if slot.is_some() {
        return Err(invalid(
            OAuthCode::InvalidRequest,
            format!("{name} given more than once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<TokenRequest, GatewayError>) -> Option<OAuthCode> {
        match r {
            Err(GatewayError::TokenRequest { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn reads_the_seed_query() {
        let r = TokenRequest::parse(
            b"grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push",
            b"",
            2,
        )
        .unwrap();
        assert_eq!(r.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(r.scopes.len(), 1);
        assert_eq!(
            r.scopes[0].to_string(),
            "artifact-repository:org1/repo1:pull,push"
        );
    }

    #[test]
    fn reads_a_form_body_and_several_scopes() {
        let r = TokenRequest::parse(
            b"scope=artifact-repository:org2/repo2:pull",
            b"grant_type=client_credentials&scope=artifact-repository%3Aorg1%2Frepo1%3Apull+artifact-repository%3Arepo%3Apull",
            2,
        )
        .unwrap();
        let scopes: Vec<String> = r.scopes.iter().map(ToString::to_string).collect();
        assert_eq!(
            scopes,
            [
                "artifact-repository:org2/repo2:pull",
                "artifact-repository:org1/repo1:pull",
                "artifact-repository:repo:pull"
            ]
        );
    }

    #[test]
    fn refuses_repeats_secrets_in_query_and_bad_scopes() {
        assert_eq!(
            code(TokenRequest::parse(b"grant_type=a", b"grant_type=b", 2)),
            Some(OAuthCode::InvalidRequest)
        );
        assert_eq!(
            code(TokenRequest::parse(b"client_secret=x", b"", 2)),
            Some(OAuthCode::InvalidRequest)
        );
        assert_eq!(
            code(TokenRequest::parse(
                b"scope=artifact-repository:org1/../x:pull",
                b"",
                2
            )),
            Some(OAuthCode::InvalidScope)
        );
        assert_eq!(
            code(TokenRequest::parse(
                b"scope=artifact-repository:org1/repo1:delete",
                b"",
                2
            )),
            Some(OAuthCode::InvalidScope)
        );
        // The seed allowed a secret-looking key only in its Authorization header.
        assert!(TokenRequest::parse(b"", b"client_secret=x", 2).is_ok());
    }
}
