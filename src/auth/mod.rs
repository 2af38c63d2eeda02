//! Everything the proxy decides before forwarding: is the path canonical
//! ([`path`]), which route and scope it needs ([`route`], [`access`]), who
//! is asking ([`credential`], [`token`], [`authn`]), under which limits
//! ([`guard`], [`limit`]), and what to answer when the answer is no
//! ([`challenge`]). Keys live in [`key`] and [`keyset`].

pub mod access;
pub mod account;
pub mod acl;
pub mod authn;
pub mod challenge;
pub mod credential;
pub mod guard;
pub mod jws;
pub mod key;
pub mod keyset;
pub mod limit;
pub mod path;
pub mod route;
pub mod shared;
pub mod token;
