//! Secrets held in memory: never printed, compared in constant time.

use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

/// Shortest secret accepted from configuration.
pub const MIN_LEN: usize = 16;

/// A secret value (an API key). Kept only as its SHA-256, so a memory dump
/// or a stray `Debug` cannot reveal it, and compared in constant time.
#[derive(Clone)]
pub struct Secret {
    digest: [u8; 32],
    len: usize,
}

fn sha256(value: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, value).as_ref());
    out
}

impl Secret {
    /// Wraps `value`, keeping only its digest and length.
    pub fn new(value: String) -> Secret {
        Secret {
            digest: sha256(value.as_bytes()),
            len: value.len(),
        }
    }

    /// Length of the original value, for configuration checks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the original value was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `candidate` is this secret. Hashing first makes the time
    /// independent of where the inputs differ and of their lengths.
    pub fn matches(&self, candidate: &str) -> bool {
        sha256(candidate.as_bytes()).ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_itself() {
        let s = Secret::new("correct horse battery staple".into());
        assert!(s.matches("correct horse battery staple"));
        assert!(!s.matches("correct horse battery stapl"));
        assert!(!s.matches(""));
        assert!(!format!("{s:?}").contains("horse"));
    }
}
