//! `[[accounts]]`: each account's id, secret, expiry and ordered rules.
//! Owned by the gateway; a reload replaces them all at once.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::raw::RawAccount;
use super::{rfc3339, EnvLookup};
use crate::auth::account::{Account, Accounts, SecretHash, MIN_KEY_LEN};
use crate::auth::acl::Acl;

/// Validates every account; `client_certs` says whether the TLS listener
/// verifies client certificates, which `client_cert_cn` needs.
///
/// # Errors
/// The first invalid account key, as `accounts[N].key`.
pub fn validate(
    raw: Vec<RawAccount>,
    client_certs: bool,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Accounts> {
    let mut accounts = Vec::with_capacity(raw.len());
    for (n, account) in raw.into_iter().enumerate() {
        accounts.push(account.validate(&format!("accounts[{n}]"), base, env)?);
    }
    ensure!(
        client_certs || accounts.iter().all(|a| a.client_cn.is_none()),
        "accounts: client_cert_cn needs tls.client_ca, which verifies client certificates"
    );
    Accounts::new(accounts)
}

impl RawAccount {
    fn validate(self, key: &str, base: &Path, env: EnvLookup<'_>) -> Result<Account> {
        let id = self.id;
        ensure!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@')),
            "{key}.id must be 1-64 characters of [A-Za-z0-9._@-], got {id:?}"
        );
        if let Some(cn) = &self.client_cert_cn {
            ensure!(
                !cn.is_empty() && cn.len() <= 256 && !cn.chars().any(char::is_control),
                "{key}.client_cert_cn must be a non-empty common name"
            );
        }
        let secret = match (self.secret_hash, self.key) {
            (None, None) if self.client_cert_cn.is_some() => None,
            (Some(stored), None) => Some(
                SecretHash::parse(&stored).with_context(|| format!("{key}.secret_hash ({id})"))?,
            ),
            (None, Some(source)) => {
                let raw = source.resolve(&format!("{key}.key"), base, env)?;
                let raw =
                    String::from_utf8(raw).with_context(|| format!("{key}.key is not UTF-8"))?;
                let raw = raw.trim_end_matches(['\r', '\n']);
                ensure!(
                    raw.len() >= MIN_KEY_LEN && crate::auth::credential::is_token68(raw),
                    "{key}.key must be at least {} characters of [A-Za-z0-9._~+/=-]",
                    MIN_KEY_LEN
                );
                Some(SecretHash::of_api_key(raw))
            }
            _ => bail!(
                "{key}: give exactly one of `secret_hash` or `key` (or only `client_cert_cn`)"
            ),
        };
        let expires = self
            .expires
            .as_deref()
            .map(|when| rfc3339(&format!("{key}.expires"), when))
            .transpose()?;
        let acl = Acl::compile(&self.rules, &format!("{key}.rules"))?;
        Ok(Account {
            id,
            secret,
            client_cn: self.client_cert_cn,
            expires,
            acl,
        })
    }
}
