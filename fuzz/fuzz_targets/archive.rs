//! Upload identification: whatever bytes arrive as a chart archive or a
//! provenance file, reading the chart they name never panics, and any
//! identity found is one the gateway can use as a path segment.
#![no_main]

use chartgate::publish::{archive, prov, Identity};
use libfuzzer_sys::fuzz_target;

fn usable(found: &Identity) {
    for part in [&found.name, &found.version] {
        assert!(
            !part.is_empty() && !part.contains('/') && part != "." && part != "..",
            "an unusable identity was accepted: {found:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut heard = None;
    if let Ok(found) = archive::identity(data, |first| heard = Some(first.clone())) {
        usable(&found);
        assert!(heard.is_some(), "an identity was returned without being heard first");
    }
    if let Ok(found) = prov::identity(data) {
        usable(&found);
    }
});
