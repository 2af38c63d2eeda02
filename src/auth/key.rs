//! Signing and verification keys: parsed once at start-up, each with its
//! RFC 7638 thumbprint as `kid` and the single algorithm it may be used with.
//!
//! Binding one algorithm to each key is what makes `alg: none`, HS256 keyed
//! with the public key (CVE-2016-10555) and cross-family tricks impossible:
//! the token's header only selects among keys, it never chooses how a key is
//! used (SECURITY.md, "token signature tricks").

use anyhow::{bail, Context};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, PublicKey as RsaPublicKey, PublicKeyComponents,
};
use aws_lc_rs::signature::{KeyPair, ParsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters,
    OctetKeyPairType, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The private key parsed once, ready to sign: jsonwebtoken's `encode`
/// re-parses the key on every call, which halves RSA signing throughput.
enum Signer {
    Rsa {
        pair: RsaKeyPair,
        padding: &'static dyn aws_lc_rs::signature::RsaEncoding,
    },
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

impl Signer {
    fn new(encoding: &EncodingKey, algorithm: Algorithm) -> anyhow::Result<Signer> {
        use aws_lc_rs::signature as sig;
        let der = encoding.inner();
        let rsa = |padding: &'static dyn sig::RsaEncoding| -> anyhow::Result<Signer> {
            let pair = RsaKeyPair::from_der(der)
                .or_else(|_| RsaKeyPair::from_pkcs8(der))
                .map_err(|e| anyhow::anyhow!("cannot parse the RSA key: {e}"))?;
            Ok(Signer::Rsa { pair, padding })
        };
        let ecdsa = |alg: &'static sig::EcdsaSigningAlgorithm| -> anyhow::Result<Signer> {
            sig::EcdsaKeyPair::from_pkcs8(alg, der)
                .map(Signer::Ecdsa)
                .map_err(|e| anyhow::anyhow!("cannot parse the EC key: {e}"))
        };
        match algorithm {
            Algorithm::RS256 => rsa(&sig::RSA_PKCS1_SHA256),
            Algorithm::RS384 => rsa(&sig::RSA_PKCS1_SHA384),
            Algorithm::RS512 => rsa(&sig::RSA_PKCS1_SHA512),
            Algorithm::PS256 => rsa(&sig::RSA_PSS_SHA256),
            Algorithm::PS384 => rsa(&sig::RSA_PSS_SHA384),
            Algorithm::PS512 => rsa(&sig::RSA_PSS_SHA512),
            Algorithm::ES256 => ecdsa(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => ecdsa(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            Algorithm::EdDSA => sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Signer::Ed25519)
                .map_err(|e| anyhow::anyhow!("cannot parse the Ed25519 key: {e}")),
            other => bail!("algorithm {other:?} cannot sign here"),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Signer::Rsa { pair, padding } => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut out)?;
                Ok(out)
            }
            Signer::Ecdsa(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// A private key the issuer signs with.
pub struct SigningKey {
    /// The only algorithm this key signs with.
    pub algorithm: Algorithm,
    /// RFC 7638 SHA-256 thumbprint, sent as the JWT `kid`.
    pub kid: String,
    /// The matching public key, for the verifier.
    pub public: VerifyKey,
    /// The public key as SPKI PEM, for RSA keys: what ChartMuseum's own
    /// `--auth-cert-path` accepts.
    pub public_pem: Option<String>,
    signer: Signer,
}

impl SigningKey {
    /// Signs `message` (a JWS signing input) with this key's algorithm.
    ///
    /// # Errors
    /// The crypto library failed to sign.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        self.signer.sign(message)
    }
}

/// A public key the verifier accepts, bound to one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key as jsonwebtoken holds it, for claim validation.
    pub decoding: DecodingKey,
    pub algorithm: Algorithm,
    pub kid: String,
    /// The public key as a JWK (with `kid`, `alg` and `use`), as the
    /// gateway publishes it at `/.well-known/jwks.json`.
    pub jwk: Jwk,
    /// The key parsed once, with `algorithm`'s verification scheme:
    /// jsonwebtoken rebuilds the key from its bytes on every `decode`
    /// (benches/auth.rs: an RS256 cache miss took 22.7 µs that way, 20.6 µs
    /// with this).
    parsed: ParsedPublicKey,
}

/// aws-lc's verification scheme for a JWS `algorithm` (RFC 7518 §3): the
/// same ones jsonwebtoken uses, with RSA keys of 2048 to 8192 bits.
fn verification(algorithm: Algorithm) -> anyhow::Result<&'static dyn VerificationAlgorithm> {
    use aws_lc_rs::signature as sig;
    Ok(match algorithm {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        other => bail!("algorithm {other:?} cannot verify here"),
    })
}

impl VerifyKey {
    fn new(
        decoding: DecodingKey,
        algorithm: Algorithm,
        mut jwk: Jwk,
        public: &[u8],
    ) -> anyhow::Result<VerifyKey> {
        let parsed = ParsedPublicKey::new(verification(algorithm)?, public)
            .map_err(|e| anyhow::anyhow!("cannot parse the public key: {e}"))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common = CommonParameters {
            public_key_use: Some(jsonwebtoken::jwk::PublicKeyUse::Signature),
            key_algorithm: format!("{algorithm:?}").parse().ok(),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        Ok(VerifyKey {
            decoding,
            algorithm,
            kid,
            jwk,
            parsed,
        })
    }

    /// Whether `signature` is this key's signature, under its one
    /// algorithm, of the JWS signing input `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Parses an algorithm name from the config (`RS256`, `PS256`, `ES256`, ...).
///
/// # Errors
/// The name is unknown, symmetric (`HS*`) or not supported for signing here.
pub fn parse_algorithm(name: &str) -> anyhow::Result<Algorithm> {
    let alg: Algorithm = name
        .parse()
        .with_context(|| format!("unknown algorithm {name:?}"))?;
    if is_rsa(alg) || matches!(alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA) {
        Ok(alg)
    } else {
        bail!("algorithm {alg:?} is not supported; use RS256, PS256, ES256 or EdDSA")
    }
}

fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

impl SigningKey {
    /// Parses a PEM private key (RSA in PKCS#1 or PKCS#8; EC in PKCS#8) for `algorithm`.
    ///
    /// # Errors
    /// The PEM does not hold a private key of the family `algorithm` needs.
    pub fn from_pem(pem: &[u8], algorithm: Algorithm) -> anyhow::Result<SigningKey> {
        let encoding = if is_rsa(algorithm) {
            EncodingKey::from_rsa_pem(pem).context("not an RSA private key in PEM form")?
        } else if algorithm == Algorithm::EdDSA {
            EncodingKey::from_ed_pem(pem)
                .context("not an Ed25519 private key in PKCS#8 PEM form")?
        } else {
            EncodingKey::from_ec_pem(pem).context("not an EC private key in PKCS#8 PEM form")?
        };
        let signer = Signer::new(&encoding, algorithm)?;
        let jwk = match &signer {
            // jsonwebtoken derives RSA and EC JWKs but not Ed25519 ones
            // (its `from_encoding_key` panics there), so build that one here.
            Signer::Ed25519(pair) => Jwk {
                common: CommonParameters::default(),
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                }),
            },
            _ => Jwk::from_encoding_key(&encoding, algorithm)
                .context("cannot derive the public key")?,
        };
        let decoding = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => DecodingKey::from_rsa_components(&p.n, &p.e)?,
            AlgorithmParameters::EllipticCurve(p) => DecodingKey::from_ec_components(&p.x, &p.y)?,
            AlgorithmParameters::OctetKeyPair(p) => DecodingKey::from_ed_components(&p.x)?,
            _ => bail!("unsupported key type"),
        };
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        let public_pem = if is_rsa(algorithm) {
            Some(rsa_public_pem(pem)?)
        } else {
            None
        };
        let public_key: &[u8] = match &signer {
            Signer::Rsa { pair, .. } => pair.public_key().as_ref(),
            Signer::Ecdsa(pair) => pair.public_key().as_ref(),
            Signer::Ed25519(pair) => pair.public_key().as_ref(),
        };
        let public = VerifyKey::new(decoding, algorithm, jwk, public_key)?;
        Ok(SigningKey {
            signer,
            public_pem,
            algorithm,
            public,
            kid,
        })
    }
}

/// A freshly generated RSA-2048 key pair as PEM: `(private PKCS#8, public SPKI)`.
/// The public half is what ChartMuseum's own `--auth-cert-path` accepts.
///
/// # Errors
/// Key generation or encoding failed inside the crypto library.
pub fn generate_rsa_pem() -> anyhow::Result<(String, String)> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).context("generating an RSA key")?;
    let private: Pkcs8V1Der = pair.as_der().context("encoding the private key")?;
    let public: PublicKeyX509Der = pair
        .public_key()
        .as_der()
        .context("encoding the public key")?;
    Ok((
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref())),
    ))
}

impl VerifyKey {
    /// Parses an RSA public key PEM (`PUBLIC KEY`, SPKI; or `RSA PUBLIC KEY`,
    /// PKCS#1) to be trusted for `algorithm` only. Its `kid` is its RFC 7638
    /// thumbprint, the same one chartgate puts in the tokens it signs.
    ///
    /// # Errors
    /// The PEM holds no RSA public key, or `algorithm` is not an RSA one.
    pub fn from_rsa_public_pem(pem: &[u8], algorithm: Algorithm) -> anyhow::Result<VerifyKey> {
        if !is_rsa(algorithm) {
            bail!("algorithm {algorithm:?} cannot be used with an RSA key");
        }
        let block = pem::parse(pem).context("not PEM")?;
        if !matches!(block.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY") {
            bail!("PEM block is {:?}, expected PUBLIC KEY", block.tag());
        }
        let key = RsaPublicKey::from_der(block.contents())
            .map_err(|e| anyhow::anyhow!("not an RSA public key: {e}"))?;
        let parts = PublicKeyComponents::<Vec<u8>>::from(&key);
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: URL_SAFE_NO_PAD.encode(&parts.n),
                e: URL_SAFE_NO_PAD.encode(&parts.e),
            }),
        };
        VerifyKey::new(
            DecodingKey::from_rsa_raw_components(&parts.n, &parts.e),
            algorithm,
            jwk,
            key.as_ref(),
        )
    }
}

impl VerifyKey {
    /// Parses a public JWK from an external issuer's JWKS, bound to the one
    /// algorithm its key type may verify here: RS256 for RSA (2048 to 8192
    /// bits), ES256 for EC P-256, EdDSA for OKP Ed25519. Its `kid` is its
    /// RFC 7638 thumbprint; the issuer's own `kid` is the caller's to keep.
    ///
    /// # Errors
    /// A symmetric (`oct`) key, any other curve, an RSA modulus outside 2048
    /// to 8192 bits, malformed key material, or an `alg` naming any other
    /// algorithm than the key type's one (`HS256`, `none`, `RS384`, ...).
    pub fn from_jwk(jwk: &Jwk) -> anyhow::Result<VerifyKey> {
        let (algorithm, decoding, public) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => rsa_jwk(p)?,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                let (x, y) = (jwk_coordinate(&p.x, "x")?, jwk_coordinate(&p.y, "y")?);
                let point = [&[0x04][..], &x, &y].concat();
                let decoding = DecodingKey::from_ec_components(&p.x, &p.y)?;
                (Algorithm::ES256, decoding, point)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                let x = jwk_coordinate(&p.x, "x")?;
                (Algorithm::EdDSA, DecodingKey::from_ed_components(&p.x)?, x)
            }
            AlgorithmParameters::OctetKey(_) => bail!("symmetric (oct) keys are never trusted"),
            AlgorithmParameters::EllipticCurve(p) => bail!("curve {:?} is not supported", p.curve),
            AlgorithmParameters::OctetKeyPair(p) => bail!("curve {:?} is not supported", p.curve),
        };
        if let Some(alg) = jwk.common.key_algorithm {
            if alg.to_string() != format!("{algorithm:?}") {
                bail!("alg {alg} does not fit the key type, which verifies {algorithm:?} only");
            }
        }
        let bare = Jwk {
            common: CommonParameters::default(),
            algorithm: jwk.algorithm.clone(),
        };
        VerifyKey::new(decoding, algorithm, bare, &public)
    }
}

/// An RSA JWK's RS256 decoding key and SPKI DER, if its modulus has 2048 to
/// 8192 bits: the range aws-lc verifies (it would refuse others only when
/// verifying, so refuse them here, where the reason can be told).
fn rsa_jwk(p: &RSAKeyParameters) -> anyhow::Result<(Algorithm, DecodingKey, Vec<u8>)> {
    let decode = |v: &str, name: &str| {
        URL_SAFE_NO_PAD
            .decode(v)
            .with_context(|| format!("{name} is not base64url"))
    };
    let (n, e) = (decode(&p.n, "n")?, decode(&p.e, "e")?);
    // Big-endian integers; a leading zero byte is tolerated, not counted.
    let strip = |v: &[u8]| -> Vec<u8> { v.iter().copied().skip_while(|b| *b == 0).collect() };
    let (n, e) = (strip(&n), strip(&e));
    let bits = n
        .first()
        .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
    if !(2048..=8192).contains(&bits) {
        bail!("RSA key of {bits} bits; 2048 to 8192 are accepted");
    }
    let parts = PublicKeyComponents { n: &n, e: &e };
    let der = parts
        .as_der()
        .map_err(|_| anyhow::anyhow!("not a valid RSA public key"))?;
    let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
    Ok((Algorithm::RS256, decoding, der.as_ref().to_vec()))
}

/// A 32-byte curve coordinate (P-256 `x`/`y`, Ed25519 `x`) from base64url.
fn jwk_coordinate(value: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .with_context(|| format!("{name} is not base64url"))?;
    if bytes.len() != 32 {
        bail!("{name} has {} bytes, expected 32", bytes.len());
    }
    Ok(bytes)
}

/// The SPKI public key PEM of an RSA private key PEM.
///
/// # Errors
/// The input is not an RSA private key.
pub fn rsa_public_pem(private_pem: &[u8]) -> anyhow::Result<String> {
    let encoding = EncodingKey::from_rsa_pem(private_pem).context("not an RSA private key")?;
    let pair = RsaKeyPair::from_der(encoding.inner())
        .or_else(|_| RsaKeyPair::from_pkcs8(encoding.inner()))
        .map_err(|e| anyhow::anyhow!("cannot parse the RSA key: {e}"))?;
    let public: PublicKeyX509Der = pair
        .public_key()
        .as_der()
        .context("encoding the public key")?;
    Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One RSA key per test binary: generation takes tens of milliseconds.
    pub(crate) fn test_rsa_pem() -> &'static (String, String) {
        static KEY: OnceLock<(String, String)> = OnceLock::new();
        KEY.get_or_init(|| generate_rsa_pem().unwrap())
    }

    #[test]
    fn generated_key_round_trips() {
        let (private, public) = test_rsa_pem();
        let key = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
        assert_eq!(key.kid.len(), 43, "base64url SHA-256 thumbprint");
        assert_eq!(&rsa_public_pem(private.as_bytes()).unwrap(), public);
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn kid_is_stable_and_key_specific() {
        let (private, _) = test_rsa_pem();
        let a = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
        let b = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
        assert_eq!(a.kid, b.kid);
        let (other, _) = generate_rsa_pem().unwrap();
        let c = SigningKey::from_pem(other.as_bytes(), Algorithm::RS256).unwrap();
        assert_ne!(a.kid, c.kid);
    }

    #[test]
    fn a_public_pem_gets_the_signing_keys_kid() {
        let (private, public) = test_rsa_pem();
        let signing = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256).unwrap();
        let verify = VerifyKey::from_rsa_public_pem(public.as_bytes(), Algorithm::RS256).unwrap();
        assert_eq!(verify.kid, signing.kid);
        assert!(VerifyKey::from_rsa_public_pem(public.as_bytes(), Algorithm::ES256).is_err());
        assert!(VerifyKey::from_rsa_public_pem(private.as_bytes(), Algorithm::RS256).is_err());
        assert!(VerifyKey::from_rsa_public_pem(b"garbage", Algorithm::RS256).is_err());
    }

    #[test]
    fn refuses_mismatched_and_symmetric_algorithms() {
        let (private, _) = test_rsa_pem();
        assert!(SigningKey::from_pem(private.as_bytes(), Algorithm::ES256).is_err());
        assert!(parse_algorithm("HS256").is_err());
        assert!(parse_algorithm("none").is_err());
        assert_eq!(parse_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        assert!(parse_algorithm("ES512").is_err());
        assert_eq!(parse_algorithm("PS256").unwrap(), Algorithm::PS256);
    }
}
