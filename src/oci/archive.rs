//! What a chart archive says it is: the `name` and `version` in its own
//! `Chart.yaml`, read from the staged `.tgz` before anything is published.
//! Bounded as Helm's loader is: at most 100 MiB decompressed, and a
//! `Chart.yaml` of at most 1 MiB.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

/// Helm's cap on a chart's decompressed size (`MaxDecompressedChartSize`).
const MAX_DECOMPRESSED: u64 = 100 * 1024 * 1024;
/// Largest `Chart.yaml` read.
const MAX_CHART_YAML: u64 = 1024 * 1024;

/// A chart's identity, from its `Chart.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    pub name: String,
    pub version: String,
}

/// Reads the identity of the chart archive at `path` (blocking: run it off
/// the runtime).
///
/// # Errors
/// Not a gzipped tar, no `<chart>/Chart.yaml`, or one without a name and
/// version; the message is safe to show the client.
pub fn identity(path: &Path) -> Result<Identity, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read the staged chart: {e}"))?;
    read_identity(file)
}

fn read_identity(input: impl Read) -> Result<Identity, String> {
    let not_chart =
        |e: std::io::Error| format!("the chart layer is not a gzipped tar archive: {e}");
    let gz = flate2::read::GzDecoder::new(input).take(MAX_DECOMPRESSED);
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().map_err(not_chart)? {
        let entry = entry.map_err(not_chart)?;
        let path = entry.path().map_err(not_chart)?;
        let parts: Vec<_> = path.components().collect();
        let is_chart_yaml = parts.len() == 2
            && matches!(parts[0], std::path::Component::Normal(_))
            && parts[1].as_os_str() == "Chart.yaml";
        if !is_chart_yaml {
            continue;
        }
        let mut text = String::new();
        entry
            .take(MAX_CHART_YAML)
            .read_to_string(&mut text)
            .map_err(|e| format!("Chart.yaml is unreadable: {e}"))?;
        return serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("Chart.yaml has no valid name and version: {e}"));
    }
    Err("the chart layer holds no <chart>/Chart.yaml".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn reads_name_and_version_of_the_top_chart() {
        let archive = tgz(&[
            (
                "mychart/charts/dep/Chart.yaml",
                "name: dep\nversion: 9.9.9\n",
            ),
            (
                "mychart/Chart.yaml",
                "apiVersion: v2\nname: mychart\nversion: 0.1.0+b.1\n",
            ),
        ]);
        assert_eq!(
            read_identity(&archive[..]).unwrap(),
            Identity {
                name: "mychart".into(),
                version: "0.1.0+b.1".into()
            }
        );
    }

    #[test]
    fn stops_reading_past_helms_decompressed_cap() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(MAX_DECOMPRESSED + 1);
        header.set_mode(0o644);
        header.set_cksum();
        let zeros = std::io::repeat(0).take(MAX_DECOMPRESSED + 1);
        tar.append_data(&mut header, "mychart/templates/big", zeros)
            .unwrap();
        let chart = "name: mychart\nversion: 0.1.0\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(chart.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "mychart/Chart.yaml", chart.as_bytes())
            .unwrap();
        let bomb = tar.into_inner().unwrap().finish().unwrap();
        assert!(bomb.len() < 1024 * 1024, "{} bytes compressed", bomb.len());
        assert!(read_identity(&bomb[..]).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_chart() {
        assert!(read_identity(&b"not gzip"[..]).is_err());
        assert!(read_identity(&tgz(&[("x/values.yaml", "a: 1\n")])[..]).is_err());
        assert!(read_identity(&tgz(&[("x/Chart.yaml", "name: [\n")])[..]).is_err());
        assert!(read_identity(&tgz(&[("Chart.yaml", "name: x\nversion: 1.0.0\n")])[..]).is_err());
    }
}
