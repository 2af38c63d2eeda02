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
mod operations;
mod oracle;
mod proxy;
mod replicas;
mod slow;
mod tls;
