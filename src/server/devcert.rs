//! Throwaway TLS material for local runs and tests (`chartgate dev-certs`):
//! a CA, a server certificate for `localhost`/`127.0.0.1`/`::1`, and a
//! client certificate for mutual TLS. Generated on demand, never committed;
//! the CA's private key is not written anywhere, so nothing more can be
//! signed with it once the command exits.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// PEM files of a development PKI.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// Generates a CA, a server certificate for `hosts` and a client
/// certificate with common name `client_cn`, all ECDSA P-256.
///
/// # Errors
/// Key generation or signing failed.
pub fn generate(hosts: &[&str], client_cn: &str) -> Result<DevPki> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "chartgate development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(Vec::<String>::new())?;
    for host in hosts {
        server.subject_alt_names.push(match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*host).try_into()?),
        });
    }
    server.distinguished_name.push(
        DnType::CommonName,
        hosts.first().copied().unwrap_or("localhost"),
    );
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, client_cn);
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca)?;

    Ok(DevPki {
        ca_cert: ca.pem(),
        // The chain a server presents: its leaf, then the issuing CA.
        server_cert: format!("{}{}", server_cert.pem(), ca.pem()),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

impl DevPki {
    /// Writes `ca.pem`, `server.pem`, `server-key.pem`, `client.pem` and
    /// `client-key.pem` into `dir` (keys readable by the owner only).
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            ("ca.pem", &self.ca_cert, 0o644),
            ("server.pem", &self.server_cert, 0o644),
            ("server-key.pem", &self.server_key, 0o600),
            ("client.pem", &self.client_cert, 0o644),
            ("client-key.pem", &self.client_key, 0o600),
        ];
        for (name, contents, mode) in files {
            let path = dir.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            file.write_all(contents.as_bytes())?;
        }
        Ok(())
    }
}
