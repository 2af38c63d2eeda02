//! The keys the verifier trusts, looked up by `kid`.
//!
//! chartgate's own signing key is always trusted. Extra public keys (the
//! previous signing key during a rotation, another chartgate's key) are read
//! from PEM files and cached with moka for `refresh`; after that the files
//! are read again on the next lookup, so a rotated file is picked up without
//! a restart. Loads are coalesced (one reader at a time), unknown `kid`s
//! never trigger a load, and a file that fails to parse leaves the previous
//! set in service with an error in the log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use tracing::{error, info};

use super::key::VerifyKey;

/// A trusted public key file and the one algorithm it may verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    pub algorithm: Algorithm,
}

/// A key ready to verify with: the key and the validation rules bound to it.
pub struct Trusted {
    pub key: VerifyKey,
    pub validation: Validation,
}

type KeyMap = HashMap<String, Arc<Trusted>>;

/// Trusted keys by `kid`.
pub struct KeySet {
    own: KeyMap,
    files: Vec<KeyFile>,
    validation: Validation,
    loaded: Cache<(), Arc<KeyMap>>,
    last_good: Mutex<Arc<KeyMap>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("own", &self.own.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn bind(key: VerifyKey, template: &Validation) -> Arc<Trusted> {
    let mut validation = template.clone();
    validation.algorithms = vec![key.algorithm];
    Arc::new(Trusted { key, validation })
}

impl KeySet {
    /// Trusts `own` always and the keys in `files`, re-read every `refresh`.
    /// `validation` holds the claim rules; each key narrows it to its algorithm.
    ///
    /// # Errors
    /// A file cannot be read or parsed at start-up: refuse to start rather
    /// than run without a key the operator asked for.
    pub fn new(
        own: impl IntoIterator<Item = VerifyKey>,
        files: Vec<KeyFile>,
        refresh: Duration,
        validation: Validation,
    ) -> anyhow::Result<KeySet> {
        let own: KeyMap = own
            .into_iter()
            .map(|k| (k.kid.clone(), bind(k, &validation)))
            .collect();
        let initial = Arc::new(load(&files, &validation)?);
        let loaded = Cache::builder()
            .max_capacity(1)
            .time_to_live(refresh)
            .build();
        loaded.insert((), initial.clone());
        Ok(KeySet {
            own,
            files,
            validation,
            loaded,
            last_good: Mutex::new(initial),
        })
    }

    /// The trusted key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<Arc<Trusted>> {
        if let Some(k) = self.own.get(kid) {
            return Some(k.clone());
        }
        if self.files.is_empty() {
            return None;
        }
        let files = self.loaded.get_with((), || self.reload());
        files.get(kid).cloned()
    }

    /// Re-reads the key files; on failure keeps serving the last good set.
    fn reload(&self) -> Arc<KeyMap> {
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        match load(&self.files, &self.validation) {
            Ok(map) => {
                let map = Arc::new(map);
                if map.len() != last_good.len() || map.keys().any(|k| !last_good.contains_key(k)) {
                    info!(keys = map.len(), "trusted keys reloaded with changes");
                }
                *last_good = map.clone();
                map
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "reloading trusted keys failed; keeping the previous set");
                last_good.clone()
            }
        }
    }
}

fn load(files: &[KeyFile], validation: &Validation) -> anyhow::Result<KeyMap> {
    use anyhow::Context;
    let mut map = KeyMap::new();
    for file in files {
        let pem = std::fs::read(&file.path)
            .with_context(|| format!("reading trusted key {}", file.path.display()))?;
        let key = VerifyKey::from_rsa_public_pem(&pem, file.algorithm)
            .with_context(|| format!("trusted key {}", file.path.display()))?;
        map.insert(key.kid.clone(), bind(key, validation));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::key::{generate_rsa_pem, tests::test_rsa_pem, SigningKey};

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chartgate-keyset-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("trusted.pub.pem")
    }

    #[test]
    fn own_keys_and_file_keys_are_found_by_kid() {
        let own = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
        let (other_private, other_public) = generate_rsa_pem().unwrap();
        let other = SigningKey::from_pem(other_private.as_bytes(), Algorithm::RS256).unwrap();
        let path = tmp("find");
        std::fs::write(&path, &other_public).unwrap();
        let set = KeySet::new(
            [own.public.clone()],
            vec![KeyFile {
                path: path.clone(),
                algorithm: Algorithm::RS256,
            }],
            Duration::from_secs(60),
            Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert!(set.get(&own.kid).is_some());
        let found = set.get(&other.kid).unwrap();
        assert_eq!(found.validation.algorithms, vec![Algorithm::RS256]);
        assert!(set.get("no-such-kid").is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_rotated_file_is_picked_up_and_a_broken_one_is_not() {
        let (a_priv, a_pub) = generate_rsa_pem().unwrap();
        let (b_priv, b_pub) = generate_rsa_pem().unwrap();
        let a = SigningKey::from_pem(a_priv.as_bytes(), Algorithm::RS256)
            .unwrap()
            .kid;
        let b = SigningKey::from_pem(b_priv.as_bytes(), Algorithm::RS256)
            .unwrap()
            .kid;
        let path = tmp("rotate");
        std::fs::write(&path, &a_pub).unwrap();
        let set = KeySet::new(
            [],
            vec![KeyFile {
                path: path.clone(),
                algorithm: Algorithm::RS256,
            }],
            Duration::from_millis(50),
            Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert!(set.get(&a).is_some());

        std::fs::write(&path, &b_pub).unwrap();
        set.loaded.invalidate_all();
        assert!(set.get(&b).is_some(), "rotated key not picked up");
        assert!(set.get(&a).is_none(), "old key still trusted");

        std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\ntrunc").unwrap();
        set.loaded.invalidate_all();
        assert!(
            set.get(&b).is_some(),
            "a broken file dropped the last good key"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_file_refuses_to_start() {
        let err = KeySet::new(
            [],
            vec![KeyFile {
                path: "/nonexistent/k.pem".into(),
                algorithm: Algorithm::RS256,
            }],
            Duration::from_secs(1),
            Validation::new(Algorithm::RS256),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/k.pem"));
    }
}
