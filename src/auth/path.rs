//! Canonical request paths: the gate every proxied path passes before routing.
//!
//! ChartMuseum percent-decodes the path and then splits it on `/` with no
//! cleaning at all (docs/PROTOCOL.md §3.1, §3.3), so every alternative spelling of a
//! path is a chance for the gateway and the upstream to disagree about which
//! repository a request touches. Rather than normalise, we accept exactly one
//! spelling: the one Helm and helm-push produce. Anything else is a `400`
//! before any auth decision (SECURITY.md principle 2, "reject, don't repair").

use std::fmt;

/// Longest path accepted, in bytes. Real chart paths are well under 256.
pub const MAX_PATH_LEN: usize = 2048;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/` (hyper hands us origin-form paths, so this is defensive).
    NotAbsolute,
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A byte outside the safe set, including `%`, `;`, `\`, control and non-ASCII bytes.
    Byte(u8),
    /// `//` or a trailing `/` anywhere but the root.
    EmptySegment,
    /// A `.` or `..` segment.
    DotSegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("path is not absolute"),
            PathError::TooLong => write!(f, "path longer than {MAX_PATH_LEN} bytes"),
            PathError::Byte(b) => write!(f, "path contains byte 0x{b:02x}"),
            PathError::EmptySegment => f.write_str("path has an empty segment"),
            PathError::DotSegment => f.write_str("path has a dot segment"),
        }
    }
}

impl std::error::Error for PathError {}

/// True for the bytes a path segment or repository name may hold.
///
/// Chart names are `[a-z0-9-]`, versions are SemVer (`[0-9A-Za-z.+-]`), and
/// repository names are ours to restrict. Percent signs are excluded, which
/// makes the raw path and ChartMuseum's decoded path the same string.
pub fn is_safe_byte(b: u8) -> bool {
    SAFE[usize::from(b)]
}

/// [`is_safe_byte`] as a table: one load per byte of every request path.
const SAFE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-');
        b += 1;
    }
    table
};

/// The rules on a segment's shape, apart from its bytes.
fn check_shape(segment: &[u8]) -> Result<(), PathError> {
    match segment {
        [] => Err(PathError::EmptySegment),
        b"." | b".." => Err(PathError::DotSegment),
        _ => Ok(()),
    }
}

/// Checks one segment of a path or repository name.
///
/// # Errors
/// The first rule the segment breaks.
pub fn check_segment(segment: &str) -> Result<(), PathError> {
    check_shape(segment.as_bytes())?;
    match segment.bytes().find(|b| !is_safe_byte(*b)) {
        Some(b) => Err(PathError::Byte(b)),
        None => Ok(()),
    }
}

/// Whether `s` is one component of an OCI repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (OCI distribution spec, "Pulling
/// manifests"). No `..`, no leading or trailing separator, no uppercase.
pub fn is_oci_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|c| alnum(**c)).count();
        if run == 0 {
            return false;
        }
        i += run;
        if i == b.len() {
            return true;
        }
        let sep = b[i..].iter().take_while(|c| !alnum(**c)).count();
        let ok = match &b[i..i + sep] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|c| *c == b'-'),
        };
        if !ok || i + sep == b.len() {
            return false;
        }
        i += sep;
    }
    false
}

/// Checks that `path` is in canonical form: `/` alone, or `/`-separated safe,
/// non-empty, non-dot segments with no trailing slash.
///
/// # Errors
/// The first rule the path breaks.
pub fn check(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if rest.is_empty() {
        return Ok(());
    }
    // [`check_segment`] on each `/`-separated segment in turn, in one pass
    // over the bytes (this runs on every request: a third of the cost of
    // splitting first). A segment holding an unsafe byte can be neither
    // empty nor a dot segment, so the first error is the same.
    let mut start = 0;
    for (i, &b) in rest.as_bytes().iter().enumerate() {
        if b == b'/' {
            check_shape(&rest.as_bytes()[start..i])?;
            start = i + 1;
        } else if !is_safe_byte(b) {
            return Err(PathError::Byte(b));
        }
    }
    check_shape(&rest.as_bytes()[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_components_follow_the_spec_grammar() {
        for good in [
            "a",
            "mychart",
            "my-chart",
            "my--chart",
            "my_chart",
            "my__chart",
            "a.b",
            "0x1",
        ] {
            assert!(is_oci_component(good), "{good:?}");
        }
        for bad in [
            "", "My", "-a", "a-", "a..b", "a___b", "a_-b", ".a", "a.", "a b", "a/b", "%2e",
        ] {
            assert!(!is_oci_component(bad), "{bad:?}");
        }
    }

    /// The definition the one-pass [`check`] must agree with.
    fn check_by_segments(path: &str) -> Result<(), PathError> {
        if path.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if rest.is_empty() {
            return Ok(());
        }
        rest.split('/').try_for_each(check_segment)
    }

    #[test]
    fn one_pass_agrees_with_segment_by_segment() {
        // Every path of up to four bytes over an alphabet holding each
        // class the rules tell apart, after a leading '/' or not.
        let alphabet = ["a", "/", ".", "%", "-", "\u{e9}"];
        let mut paths = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
        }
        paths.sort();
        paths.dedup();
        assert!(paths.len() > 1500);
        for p in &paths {
            for path in [p.clone(), format!("/{p}"), format!("/org1/{p}/index.yaml")] {
                assert_eq!(check(&path), check_by_segments(&path), "{path:?}");
            }
        }
        for b in 0..=255u8 {
            assert_eq!(
                is_safe_byte(b),
                b.is_ascii_alphanumeric() || b".+_-".contains(&b),
                "{b}"
            );
        }
    }

    #[test]
    fn accepts_what_helm_sends() {
        for p in [
            "/",
            "/index.yaml",
            "/org1/repo1/index.yaml",
            "/org1/repo1/charts/mychart-0.1.0.tgz",
            "/org1/repo1/charts/mychart-1.0.0+build.5.tgz.prov",
            "/api/org1/repo1/charts",
            "/api/org1/repo1/charts/my_chart/1.2.3-rc.1",
            "/health",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_every_non_canonical_spelling() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolute),
            ("index.yaml", PathError::NotAbsolute),
            ("//index.yaml", PathError::EmptySegment),
            ("/org1//index.yaml", PathError::EmptySegment),
            ("/org1/repo1/", PathError::EmptySegment),
            ("/org1/./repo1/index.yaml", PathError::DotSegment),
            ("/org1/../charts/x.tgz", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/org1%2Frepo1/index.yaml", PathError::Byte(b'%')),
            ("/org1/%2e%2e/index.yaml", PathError::Byte(b'%')),
            ("/org1/repo1;x=1/index.yaml", PathError::Byte(b';')),
            ("/org1\\repo1/index.yaml", PathError::Byte(b'\\')),
            ("/org1/re\u{0}po/index.yaml", PathError::Byte(0)),
            ("/org1/re\npo/index.yaml", PathError::Byte(b'\n')),
            ("/org1/rep\u{e9}/index.yaml", PathError::Byte(0xc3)),
            ("/org1/repo'1/index.yaml", PathError::Byte(b'\'')),
            ("/org1/repo\"1/index.yaml", PathError::Byte(b'"')),
            ("/org1/repo 1/index.yaml", PathError::Byte(b' ')),
            ("/org1/repo1/index.yaml#frag", PathError::Byte(b'#')),
            ("/org1/repo1/index.yaml?x", PathError::Byte(b'?')),
            ("/a:b/index.yaml", PathError::Byte(b':')),
        ];
        for (p, want) in cases {
            assert_eq!(check(p), Err(*want), "{p:?}");
        }
    }

    #[test]
    fn bounds_length() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(check(&long), Err(PathError::TooLong));
    }
}
