//! Response and request body types shared by every stage.
//!
//! Upstream bodies are streamed through untouched; the gateway's own replies
//! (challenges, errors, tokens) are small in-memory bodies built here.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Boxed error carried by streaming bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type the gateway hands to hyper, in both directions.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A body holding `bytes` in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A compact JSON body, serialized from `value`.
pub fn json(value: &serde_json::Value) -> Body {
    // Serializing a `Value` cannot fail: every key is a string.
    full(serde_json::to_vec(value).unwrap_or_default())
}
