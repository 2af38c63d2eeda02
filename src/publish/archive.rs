//! A chart archive's identity as Helm's loader, and so ChartMuseum, reads
//! it (`helm@v3.20.0:pkg/chart/loader/archive.go`, `load.go`): the `name`
//! and `version` of `<top>/Chart.yaml`, with entry names normalized as Helm
//! normalizes them. Where the loader would let something else decide the
//! identity (a second `Chart.yaml`, a `requirements.yaml` that sets
//! `name`, a key spelled `Name`), the archive is refused instead, so the
//! identity returned is the one ChartMuseum files the chart under or
//! ChartMuseum refuses the chart. Bounded as Helm is: 100 MiB decompressed,
//! 5 MiB per file; a `Chart.yaml` of at most 1 MiB is read.

use std::io::Read;
use std::path::Path;

use serde_yaml_ng::Value;

use super::Identity;

/// Helm's `MaxDecompressedChartSize`.
const MAX_DECOMPRESSED: u64 = 100 * 1024 * 1024;
/// Helm's `MaxDecompressedFileSize`.
const MAX_FILE: u64 = 5 * 1024 * 1024;
/// Largest `Chart.yaml` or `requirements.yaml` read.
const MAX_META: u64 = 1024 * 1024;
/// `c_ISDIR`: Go's `FileInfo().IsDir()` also holds for these mode bits.
const MODE_DIR: u32 = 0o040000;

/// Reads the identity of the chart archive at `path` (blocking: run it off
/// the runtime).
///
/// # Errors
/// What makes the archive unusable; the message is safe to show the client.
pub fn identity_of_file(path: &Path) -> Result<Identity, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the chart: {e}"))?;
    identity(file, |_| {})
}

/// Reads a whole gzipped chart archive from `input` (blocking) and returns
/// its identity; `first` hears it as soon as `Chart.yaml` has been read, so
/// a caller may act on it before the rest arrives. The result is final
/// only when this returns.
///
/// # Errors
/// Not a gzipped tar, no `<chart>/Chart.yaml`, an entry Helm refuses, or
/// anything that could make Helm read another identity; safe to show.
pub fn identity(input: impl Read, first: impl FnOnce(&Identity)) -> Result<Identity, String> {
    let not_chart = |e: std::io::Error| format!("the chart is not a gzipped tar archive: {e}");
    // Go's gzip reader reads concatenated members as one stream; so does this.
    let gz = flate2::read::MultiGzDecoder::new(input).take(MAX_DECOMPRESSED);
    let mut archive = tar::Archive::new(gz);
    let mut first = Some(first);
    let mut found: Option<Identity> = None;
    for entry in archive.entries().map_err(not_chart)? {
        let mut entry = entry.map_err(not_chart)?;
        let header = entry.header();
        let kind = header.entry_type();
        let is_dir = kind.is_dir() || header.mode().is_ok_and(|m| m & !0o7777 == MODE_DIR);
        if is_dir || kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        let inner = helm_name(&name)?;
        if size > MAX_FILE {
            return Err(format!(
                "{name:?} is larger than Helm's {MAX_FILE}-byte file limit"
            ));
        }
        match inner.as_str() {
            "Chart.yaml" => {
                if found.is_some() {
                    return Err("the chart holds more than one Chart.yaml".to_owned());
                }
                if !kind.is_file() {
                    return Err(format!("{name:?} is not a regular file"));
                }
                let identity = chart_yaml(&read_meta(&mut entry, &name)?)?;
                if let Some(tell) = first.take() {
                    tell(&identity);
                }
                found = Some(identity);
            }
            "requirements.yaml" => requirements_yaml(&read_meta(&mut entry, &name)?)?,
            _ => {}
        }
    }
    found.ok_or_else(|| "the chart holds no <chart>/Chart.yaml".to_owned())
}

/// Reads a metadata file, UTF-8, without Helm's optional byte-order mark.
fn read_meta(entry: &mut impl Read, name: &str) -> Result<String, String> {
    let mut text = String::new();
    entry
        .take(MAX_META + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name:?} is unreadable: {e}"))?;
    if text.len() as u64 > MAX_META {
        return Err(format!("{name:?} is larger than {MAX_META} bytes"));
    }
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned())
}

/// An entry's name inside its chart, as `LoadArchiveFiles` computes it: the
/// first component dropped (split on `\` if the name has one, else `/`),
/// then `path.Clean`. Errors where Helm refuses the entry.
fn helm_name(name: &str) -> Result<String, String> {
    let delimiter = if name.contains('\\') { '\\' } else { '/' };
    let mut parts = name.split(delimiter);
    let top = parts.next().unwrap_or("");
    let rest = parts.collect::<Vec<_>>().join("/");
    if rest.starts_with('/') {
        return Err(format!("{name:?}: the chart holds an absolute path"));
    }
    let cleaned = clean(&rest);
    if cleaned == "." {
        return Err(format!("{name:?} lies outside the chart's directory"));
    }
    if cleaned.starts_with("..") {
        return Err(format!("{name:?} refers to a parent directory"));
    }
    let b = cleaned.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/' {
        return Err(format!("{name:?} is a drive path"));
    }
    if top == "Chart.yaml" {
        return Err("Chart.yaml is not inside the chart's directory".to_owned());
    }
    Ok(cleaned)
}

/// Go's `path.Clean` (lexical: `.` and empty segments dropped, `..`
/// removing the segment before it).
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for segment in p.split('/') {
        match segment {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if !rooted => out.push(".."),
                _ => {}
            },
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `encoding/json` folds field names case-insensitively, with `ſ`
/// and the Kelvin sign as `s` and `k`: `Name` and `verſion` set the fields
/// too. Returns which of the two a key sets, if either.
fn identity_key(key: &str) -> Option<&'static str> {
    let folded: String = key
        .chars()
        .map(|c| match c {
            'ſ' => 's',
            'K' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    match folded.as_str() {
        "name" => Some("name"),
        "version" => Some("version"),
        _ => None,
    }
}

/// The top-level mapping of a metadata file. A merge key (`<<`) is refused:
/// Helm's YAML 1.1 parser merges it, this one would not.
fn mapping(text: &str, file: &str) -> Result<serde_yaml_ng::Mapping, String> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{file} is not valid YAML: {e}"))?;
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => serde_yaml_ng::Mapping::new(),
        _ => return Err(format!("{file} is not a mapping")),
    };
    if map.keys().any(|k| k.as_str() == Some("<<")) {
        return Err(format!("{file} uses a merge key (<<)"));
    }
    Ok(map)
}

/// `name` and `version` from `Chart.yaml`, each spelled exactly once, in
/// lowercase, as a string.
fn chart_yaml(text: &str) -> Result<Identity, String> {
    let (mut name, mut version) = (None, None);
    for (key, value) in mapping(text, "Chart.yaml")? {
        let Some(field) = key.as_str().and_then(identity_key) else {
            continue;
        };
        let key = key.as_str().unwrap_or_default();
        if key != field {
            return Err(format!("Chart.yaml spells {field} as {key:?}"));
        }
        let Value::String(text) = value else {
            return Err(format!("Chart.yaml's {field} is not a string"));
        };
        match field {
            "name" => name = Some(text),
            _ => version = Some(text),
        }
    }
    match (name, version) {
        (Some(name), Some(version)) => Identity::checked(name, version),
        _ => Err("Chart.yaml has no name and version".to_owned()),
    }
}

/// Helm reads a top-level `requirements.yaml` into the chart's metadata
/// too, after `Chart.yaml`: one that sets `name` or `version` is refused.
fn requirements_yaml(text: &str) -> Result<(), String> {
    let map = mapping(text, "requirements.yaml")?;
    match map.keys().find_map(|k| k.as_str().and_then(identity_key)) {
        Some(field) => Err(format!("requirements.yaml sets the chart's {field}")),
        None => Ok(()),
    }
}

/// Builds gzipped tar archives for tests.
#[cfg(test)]
pub(crate) mod fixture {
    /// An archive of `(path, content)` regular files, in order. Paths are
    /// written as given (up to 100 bytes), `..` included.
    pub fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append(&header, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    /// A minimal chart `name` at `version`.
    pub fn chart(name: &str, version: &str) -> Vec<u8> {
        let meta = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
        tgz(&[
            (&format!("{name}/Chart.yaml"), meta.as_bytes()),
            (&format!("{name}/values.yaml"), b"replicas: 1\n"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::tgz;
    use super::*;

    fn read(archive: &[u8]) -> Result<Identity, String> {
        identity(archive, |_| {})
    }

    fn id(name: &str, version: &str) -> Identity {
        Identity {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn reads_name_and_version_of_the_top_chart() {
        let archive = tgz(&[
            (
                "mychart/charts/dep/Chart.yaml",
                b"name: dep\nversion: 9.9.9\n",
            ),
            (
                "mychart/Chart.yaml",
                b"\xef\xbb\xbfapiVersion: v2\nname: mychart\nversion: 0.1.0+b.1\n",
            ),
            ("mychart/requirements.yaml", b"dependencies:\n- name: dep\n"),
        ]);
        assert_eq!(read(&archive).unwrap(), id("mychart", "0.1.0+b.1"));
    }

    #[test]
    fn tells_the_first_identity_before_reading_the_rest() {
        let archive = tgz(&[
            ("c/Chart.yaml", b"name: c\nversion: 1.0.0\n"),
            ("c/x.yaml", b"a: 1\n"),
        ]);
        let mut told = None;
        let got = identity(&archive[..], |i| told = Some(i.clone())).unwrap();
        assert_eq!(told, Some(got));
    }

    #[test]
    fn names_are_normalized_as_helm_does() {
        for path in ["c/x/../Chart.yaml", "c/./Chart.yaml", "c\\Chart.yaml"] {
            let archive = tgz(&[(path, b"name: c\nversion: 1.0.0\n")]);
            assert_eq!(read(&archive).unwrap(), id("c", "1.0.0"), "{path}");
        }
        assert_eq!(clean("a//b/./c/../d"), "a/b/d");
        assert_eq!(clean("../a/.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn refuses_what_would_let_helm_read_another_identity() {
        let cases: [&[(&str, &[u8])]; 7] = [
            &[
                ("a/Chart.yaml", b"name: billing\nversion: 1.0.0\n"),
                ("b/Chart.yaml", b"name: other\nversion: 1.0.0\n"),
            ],
            &[
                ("a/Chart.yaml", b"name: billing\nversion: 1.0.0\n"),
                ("a/x/../Chart.yaml", b"name: other\nversion: 1.0.0\n"),
            ],
            &[
                ("a/Chart.yaml", b"name: billing\nversion: 1.0.0\n"),
                ("a/requirements.yaml", b"name: other\n"),
            ],
            &[(
                "a/Chart.yaml",
                b"name: billing\nversion: 1.0.0\nNAME: other\n",
            )],
            &[("a/Chart.yaml", b"name: billing\nver\xc5\xbfion: 1.0.0\n")],
            &[(
                "a/Chart.yaml",
                b"<<: {name: other}\nname: billing\nversion: 1.0.0\n",
            )],
            &[(
                "a/Chart.yaml",
                b"name: billing\nname: other\nversion: 1.0.0\n",
            )],
        ];
        for files in cases {
            assert!(read(&tgz(files)).is_err(), "{files:?}");
        }
    }

    #[test]
    fn stops_reading_past_helms_decompressed_cap() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for i in 0..21 {
            let mut header = tar::Header::new_gnu();
            header.set_size(MAX_FILE);
            header.set_mode(0o644);
            header.set_cksum();
            let zeros = std::io::repeat(0).take(MAX_FILE);
            tar.append_data(&mut header, format!("mychart/templates/big{i}"), zeros)
                .unwrap();
        }
        let chart = "name: mychart\nversion: 0.1.0\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(chart.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "mychart/Chart.yaml", chart.as_bytes())
            .unwrap();
        let bomb = tar.into_inner().unwrap().finish().unwrap();
        assert!(bomb.len() < 1024 * 1024, "{} bytes compressed", bomb.len());
        assert!(read(&bomb).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_chart() {
        assert!(read(b"not gzip").is_err());
        assert!(read(&tgz(&[("x/values.yaml", b"a: 1\n")])).is_err());
        assert!(read(&tgz(&[("x/Chart.yaml", b"name: [\n")])).is_err());
        assert!(read(&tgz(&[("x/Chart.yaml", b"name: x\n")])).is_err());
        assert!(read(&tgz(&[("x/Chart.yaml", b"name: x\nversion: 1.0\n")])).is_err());
        assert!(read(&tgz(&[("Chart.yaml", b"name: x\nversion: 1.0.0\n")])).is_err());
        assert!(read(&tgz(&[("x/Chart.yaml", b"name: a b\nversion: 1.0.0\n")])).is_err());
        let full = tgz(&[("x/Chart.yaml", b"name: x\nversion: 1.0.0\n")]);
        assert!(read(&full[..full.len() / 2]).is_err());
    }
}
