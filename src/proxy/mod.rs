//! The forward stage: header hygiene ([`header`]), the upstream client
//! ([`upstream`]) and its connection pool ([`pool`]), and the taps that
//! watch bodies in flight ([`tap`], [`inspect`]). Nothing here decides
//! whether a request may pass.

pub mod header;
pub mod inspect;
pub mod pool;
pub mod tap;
pub mod upstream;
