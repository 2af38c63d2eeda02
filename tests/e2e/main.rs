//! End-to-end tests with the real clients: Helm v3.21.4, Helm v4.2.4 and
//! helm-push v0.10.4, built from their Go modules by `scripts/tools.sh`,
//! against a running chartgate. A missing tool fails the run.

#[allow(dead_code)]
#[path = "../integration/common.rs"]
mod common;

mod clients;
mod helm;
mod standin;
mod tls;
