//! Path gate + route matcher: never panics, and whatever the gateway
//! matches on a canonical path, ChartMuseum's matcher (literal port)
//! matches the same way, with the same repository.
#![no_main]

use chartgate::auth::path;
use chartgate::auth::route::{reference, RouteOptions, Routes};
use hyper::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Ok(path) = std::str::from_utf8(rest) else { return };
    let options = RouteOptions {
        depth: usize::from(flags & 0b11),
        context_path: (flags & 0b100 != 0).then(|| "/cm".to_owned()),
        api: flags & 0b1000 == 0,
        delete: flags & 0b1_0000 == 0,
        artifact_hub: flags & 0b10_0000 != 0,
    };
    let method = [Method::GET, Method::HEAD, Method::POST, Method::DELETE][usize::from(flags >> 6)].clone();
    if path::check(path).is_err() {
        return;
    }
    let ours = Routes::new(&options).resolve(&method, path).map(|r| (r.route.handler, r.repo));
    if let Some(o) = ours {
        assert_eq!(Some(o), reference::resolve(&options, &method, path), "{method} {path}");
    }
});
