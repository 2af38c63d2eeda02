//! The `WWW-Authenticate` challenge: the one place its bytes are built.
//!
//! ChartMuseum formats it with raw `%s` substitution, fixed parameter order,
//! no spaces after commas, no `error` parameter and exactly one action
//! (docs/PROTOCOL.md §2.5, §7). Clients compare it byte for byte, so we do too.
//! Realm and service are checked at config load to hold no `"`, `\` or
//! control bytes, and the namespace comes from a canonical path, so raw
//! substitution cannot break the quoting.

use hyper::header::HeaderValue;

use super::access::Scope;

/// Realm and service announced in every challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    realm: String,
    service: String,
}

/// Whether `s` can sit between double quotes in a header without escaping.
pub fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Challenge {
    /// A challenge announcing `realm` (the token endpoint URL) and `service`.
    /// Both must satisfy [`is_quotable`]; config validation guarantees it.
    pub fn new(realm: impl Into<String>, service: impl Into<String>) -> Challenge {
        Challenge {
            realm: realm.into(),
            service: service.into(),
        }
    }

    /// The header value asking for `scope`.
    pub fn header(&self, scope: &Scope) -> HeaderValue {
        let value = format!(
            "Bearer realm=\"{}\",service=\"{}\",scope=\"{scope}\"",
            self.realm, self.service
        );
        // Every piece is printable ASCII (see the module docs), so this cannot
        // fail; fall back to a bare scheme rather than panic if it ever did.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The header value of a registry's base check (`GET /v2/`): realm and
    /// service, no scope, as Docker registries send it.
    pub fn base(&self) -> HeaderValue {
        let value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::Action;

    #[test]
    fn matches_chartmuseum_bytes() {
        let c = Challenge::new("http://localhost:5001/oauth/token", "localhost:5001");
        let scope = Scope::repository("org1/repo1", Action::Pull);
        assert_eq!(
            c.header(&scope).as_bytes(),
            b"Bearer realm=\"http://localhost:5001/oauth/token\",service=\"localhost:5001\",scope=\"artifact-repository:org1/repo1:pull\""
        );
    }

    #[test]
    fn matches_the_auth_library_test_vector() {
        // chartmuseum/auth@v0.6.0 authorization_test.go
        let c = Challenge::new("https://my.site.io/oauth2/token", "my.site.io");
        let scope = Scope::repository("repo", Action::Push);
        assert_eq!(
            c.header(&scope).to_str().unwrap(),
            r#"Bearer realm="https://my.site.io/oauth2/token",service="my.site.io",scope="artifact-repository:repo:push""#
        );
    }

    #[test]
    fn quotable_rejects_what_would_break_quoting() {
        assert!(is_quotable("http://localhost:8080/oauth/token"));
        for bad in ["a\"b", "a\\b", "a\r\nb", "a\u{7f}", "caf\u{e9}"] {
            assert!(!is_quotable(bad), "{bad:?}");
        }
    }
}
