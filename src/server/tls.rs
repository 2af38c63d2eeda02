//! TLS for the downstream listener: rustls with TLS 1.2 and 1.3 only, ALPN
//! `h2` and `http/1.1`, optional client certificates, and a certificate that
//! can be replaced while the listener runs.
//!
//! The certificate and key are re-read when their files change (polled) and
//! on SIGHUP. A new pair goes into service only if both parse and the key
//! matches the certificate, so a half-written or corrupt pair is refused
//! with a logged error and the old pair keeps serving. Connections already
//! open keep the certificate they were established with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tracing::{error, info};

/// The crypto provider every TLS config in chartgate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate in a PEM file.
///
/// # Errors
/// The file is unreadable or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
///
/// # Errors
/// The file is unreadable or holds no private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading a private key from {}", path.display()))
}

/// Loads a chain and key, checking the key belongs to the chain's leaf.
///
/// # Errors
/// Either file is unreadable or unparsable, or the key does not match.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| {
        anyhow!(
            "{} and {} are not a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// What identifies a version of the files on disk.
type Fingerprint = [(Option<SystemTime>, u64); 2];

fn fingerprint(cert: &Path, key: &Path) -> Fingerprint {
    let stat = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [stat(cert), stat(key)]
}

/// The server certificate in service, replaceable at run time.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file versions last tried, so a broken pair is reported once, not
    /// on every poll.
    tried: Mutex<Fingerprint>,
}

impl CertStore {
    /// Loads the pair at `cert` and `key`.
    ///
    /// # Errors
    /// The pair cannot be loaded: refuse to start without a certificate.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<CertStore> {
        let tried = fingerprint(&cert, &key);
        let pair = load_pair(&cert, &key)?;
        Ok(CertStore {
            current: RwLock::new(Arc::new(pair)),
            tried: Mutex::new(tried),
            cert,
            key,
        })
    }

    /// Re-reads the pair now; on failure the old pair stays.
    ///
    /// # Errors
    /// Why the new pair was refused.
    pub fn reload(&self) -> Result<()> {
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = fingerprint(&self.cert, &self.key);
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// Reloads if either file changed since the last attempt.
    pub fn reload_if_changed(&self) {
        let now = fingerprint(&self.cert, &self.key);
        if now == *self.tried.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        match self.reload() {
            Ok(()) => info!(cert = %self.cert.display(), "TLS certificate reloaded"),
            Err(e) => {
                error!(error = %format!("{e:#}"), "new TLS certificate refused; the previous one stays in service")
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Polls the certificate files every `interval` until the process ends.
pub async fn watch(store: Arc<CertStore>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = store.clone();
        // File IO and key parsing stay off the async workers.
        let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
    }
}

/// The rustls server config: TLS 1.3 and 1.2, ALPN h2 then http/1.1, the
/// certificate from `store`, and, with `client_ca`, optional client
/// certificates verified against that CA.
///
/// # Errors
/// The CA file cannot be loaded.
pub fn server_config(store: Arc<CertStore>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("adding {} to the client CA store", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The not-after time (unix seconds) of the leaf certificate in service.
pub fn not_after(store: &CertStore) -> Option<i64> {
    let pair = store
        .current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let leaf = pair.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The common name of a verified client certificate, if it has one.
pub fn client_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests;
