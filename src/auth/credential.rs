//! Credentials presented by a client: read from the `Authorization` header,
//! never from the query string or any other header.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::{HeaderMap, AUTHORIZATION};

/// A credential in one of the schemes chartgate understands.
#[derive(PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>`: a JWT at the proxy, an API key at the issuer.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
}

// Never print secrets, not even in debug output.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
        }
    }
}

/// Why the `Authorization` header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// More than one `Authorization` header: ChartMuseum reads only the
    /// first, an intermediary may read another, so refuse the ambiguity.
    #[error("more than one Authorization header")]
    Duplicate,
    /// Not valid for its scheme (bad base64, no `:`, bytes outside token68).
    #[error("malformed Authorization header")]
    Malformed,
    /// A scheme other than Bearer or Basic.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
}

/// Whether `s` is a non-empty RFC 7235 token68 (what a JWT or API key is).
pub fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Reads the credential in `headers`, if any.
///
/// The scheme is matched case-insensitively and must be followed by exactly
/// one space (RFC 7235 §2.1; ChartMuseum's own regex wants one space too).
///
/// # Errors
/// See [`CredentialError`].
pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential>, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CredentialError::Duplicate);
    }
    let value = value.to_str().map_err(|_| CredentialError::Malformed)?;
    let (scheme, rest) = value.split_once(' ').ok_or(CredentialError::Malformed)?;
    if !is_token68(rest) {
        return Err(CredentialError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(Credential::Bearer(rest.to_owned())))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .map_err(|_| CredentialError::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialError::Malformed)?;
        let (user, password) = decoded.split_once(':').ok_or(CredentialError::Malformed)?;
        Ok(Some(Credential::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }))
    } else {
        Err(CredentialError::UnsupportedScheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn parse(values: &[&str]) -> Result<Option<Credential>, CredentialError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        from_headers(&h)
    }

    #[test]
    fn reads_bearer_and_basic() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(
            parse(&["Bearer abc.def.ghi"]),
            Ok(Some(Credential::Bearer("abc.def.ghi".into())))
        );
        assert_eq!(
            parse(&["bEaReR abc"]),
            Ok(Some(Credential::Bearer("abc".into())))
        );
        assert_eq!(
            parse(&["Basic dXNlcjpwYTpzcw=="]),
            Ok(Some(Credential::Basic {
                user: "user".into(),
                password: "pa:ss".into()
            }))
        );
    }

    #[test]
    fn refuses_ambiguous_or_malformed_headers() {
        assert_eq!(
            parse(&["Bearer a", "Bearer b"]),
            Err(CredentialError::Duplicate)
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer  abc",
            "Bearer a b",
            "Bearer a\"b",
            "Basic !!",
            "Basic dXNlcg==",
            "MASTERKEY",
        ] {
            assert_eq!(parse(&[bad]), Err(CredentialError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse(&["Digest abc"]),
            Err(CredentialError::UnsupportedScheme)
        );
        assert_eq!(
            parse(&["xBearer abc"]),
            Err(CredentialError::UnsupportedScheme)
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Credential::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::Bearer("tok".into())).contains("tok"));
    }
}
