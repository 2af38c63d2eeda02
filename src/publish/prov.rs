//! A provenance file's identity as ChartMuseum reads it
//! (`pkg/repo/provenance.go` `ProvenanceFilenameFromContent`): the file must
//! begin with `-----BEGIN PGP SIGNED MESSAGE-----`, and the chart is the
//! first `\nname:[ *](.+)` and `\nversion:[ *](.+)` in it (the signed copy of
//! `Chart.yaml`).

use super::Identity;

/// Largest provenance file read.
pub use crate::oci::storage::MAX_PROV_BYTES;

const PGP_BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";

/// The chart a provenance file names.
///
/// # Errors
/// Not a signed message, or no usable name and version; safe to show.
pub fn identity(content: &[u8]) -> Result<Identity, String> {
    if !content.starts_with(PGP_BEGIN) {
        return Err("the provenance file is not a PGP signed message".to_owned());
    }
    let (Some(name), Some(version)) = (field(content, b"name"), field(content, b"version")) else {
        return Err("the provenance file names no chart name and version".to_owned());
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Identity::checked(text(name), text(version))
}

/// The leftmost match of Go's `\n<key>:[ *](.+)`: the rest of the line
/// after `\n<key>:` and one space or `*`, at least one byte long.
fn field<'a>(content: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut needle = b"\n".to_vec();
    needle.extend_from_slice(key);
    needle.push(b':');
    (0..content.len()).find_map(|at| {
        let rest = content[at..].strip_prefix(needle.as_slice())?;
        let (sep, value) = rest.split_first()?;
        if !matches!(sep, b' ' | b'*') {
            return None;
        }
        let end = value
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(value.len());
        (end > 0).then(|| &value[..end])
    })
}

#[cfg(test)]
pub(crate) mod fixture {
    /// A provenance file's shape, unsigned, naming `name` at `version`.
    pub fn prov(name: &str, version: &str) -> Vec<u8> {
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: {name}\nversion: {version}\n\n...\nfiles:\n  {name}-{version}.tgz: sha256:00\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQBQJ\n-----END PGP SIGNATURE-----\n"
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_name_and_version() {
        let got = identity(&fixture::prov("billing", "1.0.0")).unwrap();
        assert_eq!(
            (got.name.as_str(), got.version.as_str()),
            ("billing", "1.0.0")
        );
        // Go's regexp: an empty value does not match, the search goes on.
        let text =
            b"-----BEGIN PGP SIGNED MESSAGE-----\nname: \nname:*b\nversion: 2.0.0\nname: c\n";
        let got = identity(text).unwrap();
        assert_eq!((got.name.as_str(), got.version.as_str()), ("b", "2.0.0"));
    }

    #[test]
    fn refuses_what_chartmuseum_would_misread() {
        for bad in [
            &b"name: x\nversion: 1.0.0\n"[..],
            b"-----BEGIN PGP SIGNED MESSAGE-----\nname: x\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nname: x\r\nversion: 1.0.0\r\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nname:  x\nversion: 1.0.0\n",
        ] {
            assert!(identity(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
