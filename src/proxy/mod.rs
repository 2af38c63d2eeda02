//! The forward stage: header hygiene ([`header`]), the upstream client
//! ([`upstream`]) and its connection pool ([`pool`]). Nothing here decides whether a request may pass.

pub mod header;
pub mod pool;
pub mod upstream;
