//! Authorization header parsing: never panics on any header value.
#![no_main]

use chartgate::auth::credential;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let _ = credential::from_headers(&headers);
});
