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

/// Whether `b` belongs to the RFC 7235 token68 alphabet (before any
/// trailing `=`). Branch-free, so the check over a whole token vectorizes:
/// every token of every request passes through here.
#[inline]
fn token68_byte(b: u8) -> bool {
    let lower = b | 0x20;
    (lower.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// Whether `s` is a non-empty RFC 7235 token68 (what a JWT or API key is).
pub fn is_token68(s: &str) -> bool {
    is_token68_bytes(s.as_bytes())
}

fn is_token68_bytes(s: &[u8]) -> bool {
    let end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = &s[..end];
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & token68_byte(b))
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
    // Bytes, not `to_str`: the token68 check below already confines the
    // credential to ASCII, in one pass.
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(CredentialError::Malformed)?;
    let (scheme, rest) = (&value[..space], &value[space + 1..]);
    if !is_token68_bytes(rest) {
        return Err(CredentialError::Malformed);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| CredentialError::Malformed)?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Ok(Some(Credential::Bearer(rest.to_owned())))
    } else if scheme.eq_ignore_ascii_case(b"basic") {
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
    fn token68_alphabet_is_exact() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(token68_byte(b), want, "byte {b:#04x}");
        }
        assert!(is_token68("a.b_c~d+e/f-g=="));
        assert!(!is_token68("===") && !is_token68("") && !is_token68("a=b"));
        assert!(!is_token68("caf\u{e9}"));
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
