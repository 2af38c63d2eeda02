//! chartgate: a token-based, per-repository auth gateway in front of an
//! unmodified ChartMuseum.
//!
//! # Layout
//!
//! The folders follow a request through the gateway:
//!
//! - [`server`]: listeners, per-connection tasks, limits and stall timeouts,
//!   graceful drain, and the admin listener (`/healthz`, `/readyz`).
//! - [`gateway`]: the per-request flow and the single access-log line.
//! - [`auth`]: canonical paths, ChartMuseum's route table, scopes,
//!   credentials, token verification, keys and the `WWW-Authenticate` challenge.
//! - [`issuer`]: the `/oauth/token` endpoint and token minting.
//! - [`federation`]: trusted publishing: trust policies for external OIDC
//!   identities, their issuers' keys, and the checks of their id tokens.
//! - [`publish`]: publish rules (per-chart pushes, immutable versions),
//!   fed by the chart an upload carries.
//! - [`proxy`]: header hygiene, the streaming upstream client and its
//!   connection pool.
//! - [`error`]: every failure and the one place it becomes a status.
//! - [`telemetry`]: the access line, metrics, the audit trail and trace
//!   context: what the stages record, never what they decide.
//! - [`config`]: the file, split by lifetime into what `server` binds once
//!   and what a reload rebuilds; [`body`]: the body type.
//!
//! # Request flow
//!
//! 1. `server` accepts and hands the request to [`gateway::Gateway::handle`].
//! 2. The token path goes to [`issuer::Issuer::handle`]; everything else:
//! 3. [`auth::path::check`] refuses non-canonical paths (`400`);
//! 4. [`auth::route::Routes::resolve`] finds ChartMuseum's route, or `404`;
//! 5. a route with an action needs a token granting that exact scope, else
//!    `401` with ChartMuseum's challenge;
//! 6. a push or delete is held to the [`publish`] rules (per-chart pushes,
//!    immutable versions), reading an upload's chart while it streams;
//! 7. [`proxy`] strips and stamps headers and streams the request upstream;
//! 8. the response body carries the access record, written when it ends.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod federation;
pub mod gateway;
pub mod issuer;
pub mod oci;
pub mod proxy;
pub mod publish;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use gateway::Gateway;
pub use server::run;
