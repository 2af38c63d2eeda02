//! Integration tests: the gateway on loopback, with in-process upstreams,
//! and the real chartmuseum/auth library as an oracle.

mod accounts;
mod attacks;
mod common;
mod exhaustion;
mod h2flood;
mod issuer;
mod leaks;
mod lifecycle;
mod limits;
#[allow(dead_code)]
#[path = "../support/oidc_provider.rs"]
mod oidc_provider;
mod oidc_provider_selftest;
mod operations;
mod oracle;
mod proxy;
mod publish;
mod replicas;
mod slow;
mod tls;
mod trusted;
