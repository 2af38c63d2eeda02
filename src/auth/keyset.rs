//! The keys the verifier trusts, looked up by `kid`.
//!
//! chartgate's own signing key is always trusted. Extra public keys (the
//! previous signing key during a rotation, another chartgate's key) are read
//! from PEM files at start-up and then again every `refresh` by a refresher
//! thread, so a rotated file is picked up without a restart. Lookups never
//! read a file: [`KeySet::get`] answers from the set in memory, and the
//! refresher swaps a freshly parsed set in whole. A file that fails to read
//! or parse leaves the previous set in service, with an error in the log.
//!
//! The refresher is a plain thread rather than a tokio task: file reads
//! block, `KeySet`s are also built outside any runtime (`chartgate token`,
//! benches, unit tests), and a thread needs neither. It sleeps on a channel
//! whose sender the `KeySet` owns, so it ends as soon as the set is dropped
//! (a config reload drops the old gateway), not one interval later.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, Validation};
use tracing::{error, info};

use super::jws::Trusted;
use super::key::VerifyKey;

/// A trusted public key file and the one algorithm it may verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    pub algorithm: Algorithm,
}

/// Looked up on every request that carries a token; foldhash is a third
/// of SipHash's cost on a 43-byte `kid`, and still seeded per map.
type KeyMap = HashMap<String, Arc<Trusted>, foldhash::fast::RandomState>;

/// Trusted keys by `kid`.
pub struct KeySet {
    own: KeyMap,
    /// The keys from `files`, shared with the refresher; `None` when no
    /// files are configured (no refresher then).
    files: Option<Arc<FileKeys>>,
    /// Never sends; dropping it (with the set) wakes and ends the refresher.
    _stop: Option<mpsc::Sender<Infallible>>,
}

/// The trusted key files and the set last parsed from them.
struct FileKeys {
    files: Vec<KeyFile>,
    validation: Validation,
    /// Written only to swap in a new set; read for one map lookup.
    current: RwLock<KeyMap>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("own", &self.own.keys().collect::<Vec<_>>())
            .field("files", &self.files.as_ref().map_or(&[][..], |k| &k.files))
            .finish_non_exhaustive()
    }
}

fn bind(key: VerifyKey, template: &Validation) -> Arc<Trusted> {
    Arc::new(Trusted::bind(key, template))
}

impl KeySet {
    /// Trusts `own` always and the keys in `files`, re-read every `refresh`.
    /// `validation` holds the claim rules; each key narrows it to its algorithm.
    ///
    /// # Errors
    /// A file cannot be read or parsed at start-up: refuse to start rather
    /// than run without a key the operator asked for. Also if the refresher
    /// thread cannot be started.
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
        if files.is_empty() {
            return Ok(KeySet {
                own,
                files: None,
                _stop: None,
            });
        }
        let initial = load(&files, &validation)?;
        let keys = Arc::new(FileKeys {
            files,
            validation,
            current: RwLock::new(initial),
        });
        let (stop, stopped) = mpsc::channel();
        let refresher = keys.clone();
        std::thread::Builder::new()
            .name("chartgate-keys".into())
            .spawn(move || refresher.refresh_until(&stopped, refresh))
            .context("starting the trusted-key refresher")?;
        Ok(KeySet {
            own,
            files: Some(keys),
            _stop: Some(stop),
        })
    }

    /// Every trusted public key as a JWK set: the signing key's own and the
    /// extra trusted ones (a previous signing key during a rotation), as
    /// `/.well-known/jwks.json` publishes them.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let mut keys: Vec<jsonwebtoken::jwk::Jwk> =
            self.own.values().map(|t| t.key().jwk.clone()).collect();
        if let Some(files) = &self.files {
            let current = files.current.read().unwrap_or_else(|p| p.into_inner());
            keys.extend(current.values().map(|t| t.key().jwk.clone()));
        }
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        jsonwebtoken::jwk::JwkSet { keys }
    }

    /// The trusted key with this `kid`, if any. Never reads a file: this is
    /// on the path of every request carrying a token.
    pub fn get(&self, kid: &str) -> Option<Arc<Trusted>> {
        if let Some(k) = self.own.get(kid) {
            return Some(k.clone());
        }
        let keys = self.files.as_ref()?;
        // A poisoned lock only means a writer panicked mid-swap; the map
        // inside is whole (the swap is one assignment), so keep serving it.
        let current = keys.current.read().unwrap_or_else(|p| p.into_inner());
        current.get(kid).cloned()
    }
}

impl FileKeys {
    /// Re-reads the files every `refresh` until `stop` is disconnected.
    fn refresh_until(&self, stop: &mpsc::Receiver<Infallible>, refresh: Duration) {
        loop {
            match stop.recv_timeout(refresh) {
                Err(RecvTimeoutError::Timeout) => self.reload(),
                Err(RecvTimeoutError::Disconnected) => return,
                Ok(never) => match never {},
            }
        }
    }

    /// Re-reads the key files; on failure keeps serving the last good set.
    /// Parsing happens outside the lock, which is held only for the swap.
    fn reload(&self) {
        let map = match load(&self.files, &self.validation) {
            Ok(map) => map,
            Err(e) => {
                error!(error = %format!("{e:#}"), "reloading trusted keys failed; keeping the previous set");
                return;
            }
        };
        // This thread is the only writer, so the set read here is the one replaced.
        let changed = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            map.len() != current.len() || map.keys().any(|k| !current.contains_key(k))
        };
        let keys = map.len();
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            map,
        );
        // The replaced set is freed here, after the lock is released.
        drop(old);
        if changed {
            info!(keys, "trusted keys reloaded with changes");
        }
    }
}

fn load(files: &[KeyFile], validation: &Validation) -> anyhow::Result<KeyMap> {
    let mut map = KeyMap::default();
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
    use std::time::Instant;

    use super::*;
    use crate::auth::key::{generate_rsa_pem, tests::test_rsa_pem, SigningKey};

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chartgate-keyset-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("trusted.pub.pem")
    }

    /// A fresh key pair: its `kid` and its public PEM.
    fn key_pair() -> (String, String) {
        let (private, public) = generate_rsa_pem().unwrap();
        let kid = SigningKey::from_pem(private.as_bytes(), Algorithm::RS256)
            .unwrap()
            .kid;
        (kid, public)
    }

    fn trusting(path: &std::path::Path, refresh: Duration) -> KeySet {
        KeySet::new(
            [],
            vec![KeyFile {
                path: path.to_owned(),
                algorithm: Algorithm::RS256,
            }],
            refresh,
            Validation::new(Algorithm::RS256),
        )
        .unwrap()
    }

    /// Polls `done` until it holds, failing with `what` after 10 s (a
    /// generous bound for a loaded machine; it normally takes one interval).
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn own_keys_and_file_keys_are_found_by_kid() {
        let own = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
        let (other, other_public) = key_pair();
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
        let found = set.get(&other).unwrap();
        assert_eq!(found.algorithm(), Algorithm::RS256);
        assert!(set.get("no-such-kid").is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn without_files_there_is_no_refresher() {
        let own = SigningKey::from_pem(test_rsa_pem().0.as_bytes(), Algorithm::RS256).unwrap();
        let set = KeySet::new(
            [own.public.clone()],
            vec![],
            Duration::from_millis(1),
            Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert!(set.files.is_none() && set._stop.is_none());
        assert!(set.get(&own.kid).is_some());
        assert!(set.get("no-such-kid").is_none());
    }

    #[test]
    fn a_rotated_file_is_picked_up_and_a_broken_one_is_not() {
        let (a, a_pub) = key_pair();
        let (b, b_pub) = key_pair();
        let (c, c_pub) = key_pair();
        let path = tmp("rotate");
        std::fs::write(&path, &a_pub).unwrap();
        let refresh = Duration::from_millis(20);
        let set = trusting(&path, refresh);
        assert!(set.get(&a).is_some());

        // Rotation: the refresher picks the new key up, and the old one
        // stops being trusted in the same swap.
        std::fs::write(&path, &b_pub).unwrap();
        eventually("the rotated key is trusted", || set.get(&b).is_some());
        assert!(set.get(&a).is_none(), "old key still trusted");

        // A truncated rewrite: a reload fails and keeps the last good set,
        // whether run directly or by the refresher over many intervals.
        std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\ntrunc").unwrap();
        set.files.as_ref().unwrap().reload();
        assert!(
            set.get(&b).is_some(),
            "a broken file dropped the last good key"
        );
        std::thread::sleep(refresh * 10);
        assert!(
            set.get(&b).is_some(),
            "a broken file dropped the last good key"
        );

        // The refresher survived the failures: the next good file is picked up.
        std::fs::write(&path, &c_pub).unwrap();
        eventually("a good file after a broken one is trusted", || {
            set.get(&c).is_some()
        });
        assert!(set.get(&b).is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn get_answers_from_memory_and_never_reads_the_file() {
        let (a, a_pub) = key_pair();
        let (b, b_pub) = key_pair();
        let path = tmp("memory");
        std::fs::write(&path, &a_pub).unwrap();
        // No refresh falls inside this test.
        let set = trusting(&path, Duration::from_secs(3600));

        std::fs::remove_file(&path).unwrap();
        assert!(set.get(&a).is_some(), "a lookup read the deleted file");
        std::fs::write(&path, &b_pub).unwrap();
        assert!(set.get(&b).is_none(), "a lookup read the rewritten file");
        assert!(set.get(&a).is_some());

        // Only a refresh reads it.
        set.files.as_ref().unwrap().reload();
        assert!(set.get(&b).is_some());
        assert!(set.get(&a).is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_refresher_ends_when_the_set_is_dropped() {
        let (_, a_pub) = key_pair();
        let path = tmp("drop");
        std::fs::write(&path, &a_pub).unwrap();
        // An hour-long interval: the refresher must end on the drop itself,
        // not at its next wake-up.
        let set = trusting(&path, Duration::from_secs(3600));
        let shared = Arc::downgrade(set.files.as_ref().unwrap());
        assert_eq!(shared.strong_count(), 2, "the refresher holds the keys");
        drop(set);
        // The refresher's closure owns the other reference; it is gone
        // only once the thread has returned.
        eventually("the refresher thread ends", || shared.strong_count() == 0);
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
