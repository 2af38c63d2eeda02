//! Certificate loading and replacement.

use super::*;
use crate::server::devcert;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chartgate-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn leaf(store: &CertStore) -> Vec<u8> {
    store
        .current
        .read()
        .unwrap()
        .end_entity_cert()
        .unwrap()
        .to_vec()
}

#[test]
fn loads_pkcs8_sec1_and_pkcs1_keys() {
    let d = dir("formats");
    let pki = devcert::generate(&["localhost"], "client").unwrap();
    pki.write(&d).unwrap();
    assert!(load_pair(&d.join("server.pem"), &d.join("server-key.pem")).is_ok());
    // The same EC key as SEC1.
    let key = load_key(&d.join("server-key.pem")).unwrap();
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        panic!("rcgen writes PKCS#8")
    };
    let ec = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.secret_pkcs8_der(),
    )
    .unwrap();
    let sec1 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::EcPrivateKeyRfc5915Der>::as_der(
        &ec.private_key(),
    )
    .unwrap();
    std::fs::write(
        d.join("sec1.pem"),
        pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.as_ref())),
    )
    .unwrap();
    assert!(load_pair(&d.join("server.pem"), &d.join("sec1.pem")).is_ok());
    // An RSA key as PKCS#1, with a certificate for it.
    let (rsa_pkcs8, _) = crate::auth::key::generate_rsa_pem().unwrap();
    let key = rcgen::KeyPair::from_pem(&rsa_pkcs8).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.join("rsa.pem"), cert.pem()).unwrap();
    let der = pem::parse(&rsa_pkcs8).unwrap();
    let (_, info) = x509_parser::der_parser::parse_der(der.contents()).unwrap();
    let pkcs1 = info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec();
    std::fs::write(
        d.join("rsa-key.pem"),
        pem::encode(&pem::Pem::new("RSA PRIVATE KEY", pkcs1)),
    )
    .unwrap();
    assert!(load_pair(&d.join("rsa.pem"), &d.join("rsa-key.pem")).is_ok());
    // A key that is not the certificate's.
    assert!(load_pair(&d.join("rsa.pem"), &d.join("server-key.pem")).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_mismatched_or_corrupt_pair_is_refused_and_the_old_one_stays() {
    let d = dir("swap");
    let a = devcert::generate(&["localhost"], "client").unwrap();
    let b = devcert::generate(&["localhost"], "client").unwrap();
    a.write(&d).unwrap();
    let store = CertStore::load(d.join("server.pem"), d.join("server-key.pem")).unwrap();
    let first = leaf(&store);

    // Half-written: new certificate, old key.
    std::fs::write(d.join("server.pem"), &b.server_cert).unwrap();
    assert!(store.reload().is_err());
    assert_eq!(leaf(&store), first);
    // Corrupt.
    std::fs::write(
        d.join("server-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nnope\n",
    )
    .unwrap();
    assert!(store.reload().is_err());
    assert_eq!(leaf(&store), first);
    // Complete: now it swaps.
    std::fs::write(d.join("server-key.pem"), &b.server_key).unwrap();
    store.reload().unwrap();
    assert_ne!(leaf(&store), first);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn client_common_name_is_read_from_the_certificate() {
    let pki = devcert::generate(&["localhost"], "ci-bot").unwrap();
    let cert = CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap();
    assert_eq!(client_common_name(&cert).as_deref(), Some("ci-bot"));
}
