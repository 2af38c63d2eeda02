//! Tokens the end-to-end tests need beyond what the issuer hands out: the
//! same claims re-signed with the gateway's key after an edit (an expired
//! token), and a signature that no key made.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chartgate::auth::key::{parse_algorithm, SigningKey};
use serde_json::Value;

use crate::common::signing_pem;

/// `token`'s claims passed through `edit`, signed again with the test
/// signing key (RS256), under the same header.
pub fn resign(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    edit(&mut claims);
    let message = format!(
        "{header}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let key = SigningKey::from_pem(
        signing_pem().0.as_bytes(),
        parse_algorithm("RS256").unwrap(),
    )
    .unwrap();
    let signature = key.sign(message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `token` already expired: `exp` ten seconds before now.
pub fn expired(token: &str) -> String {
    resign(token, |claims| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["exp"] = (now - 10).into();
        claims["iat"] = (now - 310).into();
        claims["nbf"] = (now - 310).into();
    })
}

/// `token` with one signature character changed, so the signature is well
/// formed and wrong. A middle character: the last one may only carry
/// padding bits.
pub fn bad_signature(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 10;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
