//! Link layout of the release binary. The functions chartgate runs to start
//! and to serve a request are listed in `symbol-order.txt` (written by
//! `scripts/symbol-order.sh` from a real run), and lld places them first
//! and together. Code pages are mapped by the kernel 64 KiB at a time
//! around each one touched: with the start-up and request code scattered
//! over the 10 MB text, a process touching 2.7 MB of it held 7.3 MB; packed,
//! it holds about what it runs (docs/PERFORMANCE.md, "Idle memory").
//!
//! Applied only where rustc links with its own lld by default (x86_64 Linux
//! GNU from Rust 1.90) and only to release builds of the binary. A symbol
//! the list names that no longer exists is skipped; a new one is placed as
//! before. `CHARTGATE_SYMBOL_ORDER=0` turns it off (a custom linker).

use std::env;
use std::process::Command;

fn main() {
    let list = concat!(env!("CARGO_MANIFEST_DIR"), "/src/link/symbol-order.txt");
    println!("cargo:rerun-if-changed=src/link/symbol-order.txt");
    println!("cargo:rerun-if-changed=src/link/build.rs");
    println!("cargo:rerun-if-env-changed=CHARTGATE_SYMBOL_ORDER");
    let wanted = env::var("CHARTGATE_SYMBOL_ORDER").map_or(true, |v| v != "0");
    let target = env::var("TARGET").unwrap_or_default();
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let present = std::path::Path::new(list).is_file();
    if wanted
        && present
        && release
        && target == "x86_64-unknown-linux-gnu"
        && rustc_minor() >= Some(90)
    {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The minor version of the rustc building this crate ("rustc 1.95.0 ...").
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").ok()?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
