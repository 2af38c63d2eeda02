//! Scope parsing: never panics, and what parses prints back to a string
//! that parses to the same scope.
#![no_main]

use chartgate::auth::access::ScopeRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&depth, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let depth = usize::from(depth % 4);
    if let Ok(scope) = ScopeRequest::parse(s, depth) {
        let again = ScopeRequest::parse(&scope.to_string(), depth).expect("printed scope reparses");
        assert_eq!(scope, again);
    }
});
