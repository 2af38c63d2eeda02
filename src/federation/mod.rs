//! Trusted publishing: external OIDC identities (GitHub Actions, GitLab CI,
//! Kubernetes service accounts) exchanged for chartgate tokens.
//!
//! [`fetch`] reads issuers' discovery documents and JWKS under the URL
//! policy and size and time bounds; [`jwk`] decides which JWKS entries are
//! usable keys; [`provider`] keeps one issuer's keys cached and fresh.
//! [`policy`] says which identities a trust policy accepts and what they
//! get; [`verifier`] checks an id token end to end and remembers the
//! identities of the Basic door; [`replay`] spends single-use ids.

pub mod fetch;
pub mod jwk;
pub mod policy;
pub mod provider;
pub mod replay;
pub mod verifier;
