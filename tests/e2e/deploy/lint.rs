//! `helm lint --strict` over the values matrix, with Helm 3 and Helm 4.

use std::path::PathBuf;

use super::{chart, Helm, CASES};

fn lint(major: u8) {
    let helm = Helm::new(major, "lint");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    // The matrix is what is in ci/, and at least these.
    let mut files: Vec<String> = std::fs::read_dir(chart_dir_ci())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for case in CASES.iter().filter_map(|c| c.file) {
        assert!(files.iter().any(|f| f == case), "ci/{case} is missing");
    }
    let out = helm.ok(&["lint", "--strict", chart]);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    for file in &files {
        let path = chart_dir_ci().join(file);
        let out = helm.ok(&["lint", "--strict", chart, "-f", path.to_str().unwrap()]);
        assert!(
            out.contains("0 chart(s) failed"),
            "helm{major} ci/{file}: {out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
    // --strict does fail: a values file the schema refuses.
    let bad = helm.home.join("bad.yaml");
    std::fs::write(&bad, "log:\n  format: xml\n").unwrap();
    let out = helm.run(&["lint", "--strict", chart, "-f", bad.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "helm{major} lint accepted log.format=xml"
    );
}

fn chart_dir_ci() -> PathBuf {
    chart().join("ci")
}

helm_3_and_4! {
    /// `helm lint --strict` with the defaults and every ci/ values file.
    chart_lints_strictly => lint,
}
