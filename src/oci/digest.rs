//! Content digests as the registry API writes them: `sha256:<64 hex>`, the
//! one algorithm the bridge accepts (it is also the one ChartMuseum records
//! for every chart, so a chart layer's digest is ChartMuseum's own).

use std::fmt;

use aws_lc_rs::digest;

use crate::proxy::inspect::hex;

/// A SHA-256 content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

/// Why a digest string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a digest is sha256:<64 lowercase hex digits>")]
pub struct DigestError;

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    ///
    /// # Errors
    /// Another algorithm, or not exactly 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let hex = s.strip_prefix("sha256:").ok_or(DigestError)?;
        Digest::from_hex(hex)
    }

    /// Parses 64 lowercase hex digits (ChartMuseum's `digest` field).
    ///
    /// # Errors
    /// Not exactly 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return Err(DigestError);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(DigestError),
        };
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Digest(out))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_context(digest::digest(&digest::SHA256, bytes))
    }

    /// The digest a finished hashing context computed.
    pub fn from_context(d: digest::Digest) -> Digest {
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hashes() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
    }

    #[test]
    fn refuses_other_forms() {
        let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in [
            hex64.to_owned(),
            format!("sha512:{hex64}"),
            format!("sha256:{}", hex64.to_uppercase()),
            format!("sha256:{}", &hex64[1..]),
            format!("sha256:{hex64}0"),
            "sha256:".to_owned(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }
}
