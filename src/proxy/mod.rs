//! The forward stage: header hygiene ([`header`]) and the upstream client
//! ([`upstream`]). Nothing here decides whether a request may pass.

pub mod header;
pub mod upstream;
