//! Reading the gateway's audit file (JSON lines) in end-to-end tests.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The audit events in `file` (JSON lines) once `until` holds for them, or
/// whatever is there after 10 s (a bounded wait: the audit writer appends
/// just after each answer); callers assert on what they get.
pub fn audit_until(file: &Path, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if until(&events) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
