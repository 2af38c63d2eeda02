//! End-to-end tests with the real parts: ChartMuseum v0.16.5, Helm v3.21.4,
//! Helm v4.2.4 and helm-push v0.10.4, built from their Go sources by
//! `scripts/tools.sh`, against a running chartgate. A missing tool fails the
//! run; nothing here stands in for ChartMuseum.

#[allow(dead_code)]
#[path = "../integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../support/oidc_provider.rs"]
mod oidc_provider;

mod audit;
mod chartmuseum;
mod clients;
mod deploy;
mod helm;
mod image;
mod oci;
mod operations;
mod oracle;
mod publish;
mod registry_api;
mod tls;
mod tokens;
mod trusted;
mod walkthrough;
