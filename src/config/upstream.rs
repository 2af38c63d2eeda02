//! `[upstream]`: where ChartMuseum is and how to reach it. Owned by the
//! gateway, so a reload may point it elsewhere.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use hyper::header::HeaderValue;
use hyper::Uri;

use super::raw::RawUpstream;
use super::EnvLookup;
use crate::server::tls;

/// Upstream (ChartMuseum) settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `scheme://authority` of ChartMuseum.
    pub base: Uri,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_upload_bytes: u64,
    /// TLS settings for an `https://` upstream (unused, with no trusted
    /// roots, for `http://`).
    pub tls: Arc<rustls::ClientConfig>,
    /// `Authorization` value injected into every upstream request.
    pub authorization: Option<HeaderValue>,
}

impl RawUpstream {
    /// # Errors
    /// The first invalid `upstream.*` key, by name.
    pub fn validate(self, base: &Path, env: EnvLookup<'_>) -> Result<UpstreamConfig> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| anyhow!("upstream.url: {e}: {:?}", self.url))?;
        ensure!(
            matches!(uri.scheme_str(), Some("http" | "https")),
            "upstream.url must start with http:// or https://, got {:?}",
            self.url
        );
        ensure!(
            uri.authority().is_some(),
            "upstream.url has no host: {:?}",
            self.url
        );
        ensure!(
            matches!(uri.path(), "" | "/") && uri.query().is_none(),
            "upstream.url must be scheme://host:port only; set chartmuseum.context_path for a prefix"
        );
        ensure!(
            !self.connect_timeout.is_zero(),
            "upstream.connect_timeout must be more than zero"
        );
        ensure!(
            !self.timeout.is_zero(),
            "upstream.timeout must be more than zero"
        );
        ensure!(
            self.max_upload_bytes > 0,
            "upstream.max_upload_bytes must be more than zero"
        );
        let tls = self.client_tls(uri.scheme_str() == Some("https"), base)?;
        let authorization = self.authorization(base, env)?;
        Ok(UpstreamConfig {
            base: uri,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_upload_bytes: self.max_upload_bytes,
            tls,
            authorization,
        })
    }

    /// The Basic credential presented to ChartMuseum, if configured.
    fn authorization(&self, base: &Path, env: EnvLookup<'_>) -> Result<Option<HeaderValue>> {
        let (user, password) = match (&self.basic_auth_user, &self.basic_auth_password) {
            (None, None) => return Ok(None),
            (Some(user), Some(password)) => (user, password),
            _ => bail!("upstream.basic_auth_user and upstream.basic_auth_password go together"),
        };
        ensure!(
            !user.is_empty() && !user.contains(':'),
            "upstream.basic_auth_user must be non-empty and hold no ':'"
        );
        let password = password.resolve("upstream.basic_auth_password", base, env)?;
        let password =
            String::from_utf8(password).context("upstream.basic_auth_password is not UTF-8")?;
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{}", password.trim_end_matches(['\r', '\n'])),
        );
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .context("upstream.basic_auth_password")?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// The rustls client settings for the upstream. An `http://` upstream
    /// gets settings that trust nothing, since they are never used.
    fn client_tls(&self, https: bool, base: &Path) -> Result<Arc<rustls::ClientConfig>> {
        ensure!(
            https
                || (self.ca_file.is_none()
                    && self.client_cert.is_none()
                    && self.client_key.is_none()),
            "upstream.ca_file, client_cert and client_key need an https:// upstream.url"
        );
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for cert in tls::load_certs(&base.join(ca)).context("upstream.ca_file")? {
                    roots.add(cert).context("upstream.ca_file")?;
                }
            }
            None if https => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            None => {}
        }
        let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("upstream TLS versions")?
            .with_root_certificates(roots);
        let config = match (&self.client_cert, &self.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = tls::load_certs(&base.join(cert)).context("upstream.client_cert")?;
                let key = tls::load_key(&base.join(key)).context("upstream.client_key")?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("upstream.client_cert / upstream.client_key")?
            }
            _ => bail!("upstream.client_cert and upstream.client_key go together"),
        };
        Ok(Arc::new(config))
    }
}
