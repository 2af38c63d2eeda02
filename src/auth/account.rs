//! Accounts: who may authenticate, with what secret, until when, and with
//! which access rules.
//!
//! A secret is stored only as a hash: an argon2id PHC string for passwords
//! people choose, or a SHA-256 digest for API keys chartgate generates
//! (`cgk_` + 256 random bits, where a slow hash would add cost but no
//! strength). An API key alone identifies its account, so it can be sent as
//! `Authorization: Bearer <key>`, like the example server's master key.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::acl::Acl;

/// Prefix of API keys chartgate generates.
pub const API_KEY_PREFIX: &str = "cgk_";
/// Shortest API key accepted from configuration.
pub const MIN_KEY_LEN: usize = 16;
/// Prefix of a stored API-key digest.
pub const DIGEST_PREFIX: &str = "sha256:";

/// How an account's secret is stored.
#[derive(Clone)]
pub enum SecretHash {
    /// An argon2 PHC string (`$argon2id$v=19$...`).
    Argon2(String),
    /// SHA-256 of an API key.
    Sha256([u8; 32]),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretHash::Argon2(_) => f.write_str("Argon2(<hash>)"),
            SecretHash::Sha256(_) => f.write_str("Sha256(<digest>)"),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

impl SecretHash {
    /// Parses a stored hash: a PHC argon2 string or `sha256:<64 hex>`.
    ///
    /// # Errors
    /// Neither form, or a PHC string that is not argon2.
    pub fn parse(stored: &str) -> Result<SecretHash> {
        if let Some(hex) = stored.strip_prefix(DIGEST_PREFIX) {
            let bytes = decode_hex(hex)
                .ok_or_else(|| anyhow!("{DIGEST_PREFIX} must be followed by 64 hex digits"))?;
            return Ok(SecretHash::Sha256(bytes));
        }
        let phc = PasswordHash::new(stored).map_err(|e| anyhow!("not a PHC string: {e}"))?;
        if !phc.algorithm.as_str().starts_with("argon2") {
            bail!("unsupported hash algorithm {}", phc.algorithm);
        }
        Ok(SecretHash::Argon2(stored.to_owned()))
    }

    /// The digest form of an API key, for keys read from env or file.
    pub fn of_api_key(key: &str) -> SecretHash {
        SecretHash::Sha256(sha256(key.as_bytes()))
    }

    /// Whether verifying this hash is slow (argon2).
    pub fn is_slow(&self) -> bool {
        matches!(self, SecretHash::Argon2(_))
    }

    /// Whether `candidate` is the secret. Constant-time for digests; argon2
    /// verification is constant-time by construction.
    pub fn verify(&self, candidate: &str) -> bool {
        match self {
            SecretHash::Sha256(d) => sha256(candidate.as_bytes()).ct_eq(d).into(),
            SecretHash::Argon2(phc) => argon2_verify(phc, candidate.as_bytes()),
        }
    }
}

/// argon2 working memory (about 19 MiB per check with the defaults), kept
/// for reuse: allocating and freeing it for every check fragmented the heap
/// under a guessing spray (peak RSS grew by 845 MB in 10 s). The pool holds
/// one buffer per concurrent check, which the authenticator bounds.
static ARGON2_MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

/// Verifies `candidate` against an argon2 PHC string, in constant time,
/// using pooled working memory.
fn argon2_verify(phc: &str, candidate: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        argon2::Params::try_from(&hash),
        argon2::Algorithm::try_from(hash.algorithm),
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let pool = || ARGON2_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let mut blocks = pool().pop().unwrap_or_default();
    blocks.resize(params.block_count(), argon2::Block::default());
    let hashed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(candidate, salt, &mut out, &mut blocks)
        .is_ok();
    pool().push(blocks);
    hashed && bool::from(out.ct_eq(expected.as_bytes()))
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a password with argon2id (the crate's defaults, OWASP's minimum).
///
/// # Errors
/// The system random source failed.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow!("no system randomness"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("{e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("{e}"))?
        .to_string())
}

/// A fresh API key and the digest to store for it.
///
/// # Errors
/// The system random source failed.
pub fn new_api_key() -> Result<(String, String)> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("no system randomness"))?;
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = format!("{DIGEST_PREFIX}{}", encode_hex(&sha256(key.as_bytes())));
    Ok((key, digest))
}

/// One account.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    /// `None` for an account that authenticates only by client certificate.
    pub secret: Option<SecretHash>,
    /// Common name of the client certificate that proves this account.
    pub client_cn: Option<String>,
    /// Unix seconds after which the account no longer authenticates.
    pub expires: Option<u64>,
    pub acl: Acl,
}

impl Account {
    /// Whether the account is usable at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// All accounts, by id and by API-key digest.
#[derive(Debug, Default)]
pub struct Accounts {
    by_id: HashMap<String, Arc<Account>>,
    by_key: HashMap<[u8; 32], Arc<Account>>,
    by_cn: HashMap<String, Arc<Account>>,
    /// Verified against when an id is unknown, so an unknown account costs
    /// what a wrong password does.
    decoy: Option<SecretHash>,
    /// How many times the decoy ran (tests assert the cost is paid).
    #[cfg(test)]
    pub(crate) decoy_runs: std::sync::atomic::AtomicUsize,
    /// How many password checks ran (tests assert they are shared).
    #[cfg(test)]
    pub(crate) verify_runs: std::sync::atomic::AtomicUsize,
}

impl Accounts {
    /// Indexes `accounts`.
    ///
    /// # Errors
    /// Two accounts share an id or an API key.
    pub fn new(accounts: Vec<Account>) -> Result<Accounts> {
        let mut set = Accounts::default();
        for account in accounts {
            let account = Arc::new(account);
            if let Some(cn) = &account.client_cn {
                if set.by_cn.insert(cn.clone(), account.clone()).is_some() {
                    bail!("accounts: two accounts map client certificate CN {cn:?}");
                }
            }
            if let Some(SecretHash::Sha256(d)) = &account.secret {
                if set.by_key.insert(*d, account.clone()).is_some() {
                    bail!(
                        "accounts: two accounts share the API key of {:?}",
                        account.id
                    );
                }
            }
            if set
                .by_id
                .insert(account.id.clone(), account.clone())
                .is_some()
            {
                bail!("accounts: id {:?} appears twice", account.id);
            }
        }
        if set
            .by_id
            .values()
            .any(|a| a.secret.as_ref().is_some_and(SecretHash::is_slow))
        {
            set.decoy = Some(SecretHash::Argon2(hash_password("decoy")?));
        }
        Ok(set)
    }

    /// Whether an account has this id.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The account an API key belongs to, if it is active.
    pub fn by_api_key(&self, key: &str, now: u64) -> Option<Arc<Account>> {
        self.by_key
            .get(&sha256(key.as_bytes()))
            .filter(|a| a.is_active(now))
            .cloned()
    }

    /// The account `id` proves with `secret`, if it is active. May run
    /// argon2: call it off the async reactor.
    ///
    /// Every failure costs one argon2 verification when any account has a
    /// password (the decoy stands in where no password hash applies), so the
    /// time taken says nothing about which ids exist or what kind of secret
    /// they hold. Only success with an API key is fast.
    pub fn verify(&self, id: &str, secret: &str, now: u64) -> Option<Arc<Account>> {
        #[cfg(test)]
        self.verify_runs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let account = self.by_id.get(id);
        let verified = match account.and_then(|a| a.secret.as_ref()) {
            Some(SecretHash::Argon2(_)) => {
                account.filter(|a| a.secret.as_ref().is_some_and(|h| h.verify(secret)))
            }
            Some(hash @ SecretHash::Sha256(_)) if hash.verify(secret) => account,
            _ => {
                if let Some(decoy) = &self.decoy {
                    let _ = decoy.verify(secret);
                    #[cfg(test)]
                    self.decoy_runs
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                None
            }
        };
        verified.filter(|a| a.is_active(now)).cloned()
    }

    /// Whether a password check may be slow (so the caller should move it
    /// to a blocking thread and bound how many run at once).
    pub fn has_slow_checks(&self) -> bool {
        self.decoy.is_some()
    }

    /// The account a verified client certificate's common name maps to.
    pub fn by_client_cn(&self, cn: &str, now: u64) -> Option<Arc<Account>> {
        self.by_cn.get(cn).filter(|a| a.is_active(now)).cloned()
    }

    /// An account by id (for offline minting).
    pub fn get(&self, id: &str) -> Option<Arc<Account>> {
        self.by_id.get(id).cloned()
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, secret: SecretHash, expires: Option<u64>) -> Account {
        Account {
            id: id.into(),
            secret: Some(secret),
            client_cn: None,
            expires,
            acl: Acl::default(),
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("s3cret pass").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let h = SecretHash::parse(&phc).unwrap();
        assert!(h.verify("s3cret pass"));
        assert!(!h.verify("s3cret pas"));
    }

    #[test]
    fn api_keys_round_trip_through_their_digest() {
        let (key, digest) = new_api_key().unwrap();
        assert!(key.starts_with(API_KEY_PREFIX) && key.len() == 4 + 43);
        let h = SecretHash::parse(&digest).unwrap();
        assert!(h.verify(&key));
        assert!(!h.verify("cgk_wrong"));
        let accounts = Accounts::new(vec![account("ci", h, None)]).unwrap();
        assert_eq!(accounts.by_api_key(&key, 0).unwrap().id, "ci");
        assert!(accounts.by_api_key("cgk_other", 0).is_none());
        assert_eq!(accounts.verify("ci", &key, 0).unwrap().id, "ci");
    }

    #[test]
    fn bad_stored_hashes_are_refused() {
        for bad in [
            "",
            "plaintext",
            "sha256:abcd",
            "sha256:zz",
            "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA",
        ] {
            assert!(SecretHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expired_and_unknown_accounts_do_not_authenticate() {
        let accounts = Accounts::new(vec![
            account(
                "old",
                SecretHash::of_api_key("k1-0123456789abcdef"),
                Some(100),
            ),
            account("new", SecretHash::of_api_key("k2-0123456789abcdef"), None),
        ])
        .unwrap();
        assert!(accounts.verify("old", "k1-0123456789abcdef", 99).is_some());
        assert!(accounts.verify("old", "k1-0123456789abcdef", 100).is_none());
        assert!(accounts.by_api_key("k1-0123456789abcdef", 100).is_none());
        assert!(accounts
            .verify("nobody", "k2-0123456789abcdef", 0)
            .is_none());
        assert!(accounts.verify("new", "k1-0123456789abcdef", 0).is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let dup_id = Accounts::new(vec![
            account("a", SecretHash::of_api_key("x"), None),
            account("a", SecretHash::of_api_key("y"), None),
        ]);
        assert!(dup_id.is_err());
        let dup_key = Accounts::new(vec![
            account("a", SecretHash::of_api_key("x"), None),
            account("b", SecretHash::of_api_key("x"), None),
        ]);
        assert!(dup_key.is_err());
    }
}
