//! Bad values refused, by values.schema.json and by the templates.

use super::{chart, text, Helm, RELEASE};

fn schema(major: u8) {
    let helm = Helm::new(major, "schema");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let template = |set: &str| helm.run(&["template", RELEASE, chart, "--set", set]);
    // The control: a good value renders, and lands in the config.
    let out = template("log.format=text");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("format = \"text\""));
    let out = helm.run(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "oci.enabled=true",
        "--set",
        "replicaCount=1",
        "--set",
        "oci.uploadTimeout=1h 30m",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("upload_timeout = \"1h 30m\""));
    for (set, names) in [
        ("log.format=xml", "/log/format"),
        ("chartmuseum.mode=bogus", "/chartmuseum/mode"),
        ("replicaCount=two", "/replicaCount"),
        ("ingress.tls.mode=terminate", "/ingress/tls/mode"),
        ("chartmuseum.depth=17", "/chartmuseum/depth"),
        ("issuer.tokenTtl=forever", "/issuer/tokenTtl"),
        ("accounts[0].id=bad id", "/accounts/0"),
        ("unknownTopLevel=1", "unknownTopLevel"),
        ("listen.addr=0.0.0.0:80", "addr"),
        ("oci.enabled=yes", "/oci/enabled"),
        ("oci.uploadTimeout=soon", "/oci/uploadTimeout"),
        ("oci.uploadTimeout=0s", "/oci/uploadTimeout"),
        ("oci.staging.sizeLimit=lots", "/oci/staging/sizeLimit"),
        ("oci.staging.accessModes={ReadWriteMany}", "accessModes"),
        ("oci.stagingDir=/tmp", "stagingDir"),
    ] {
        let out = template(set);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm{major}: --set {set} rendered");
        assert!(err.contains("schema"), "helm{major}: --set {set}: {err}");
        assert!(err.contains(names), "helm{major}: --set {set}: {err}");
    }
    // Combinations the schema cannot see, refused by the templates.
    for (args, message) in [
        (
            vec![
                "--set",
                "ingress.enabled=true",
                "--set",
                "ingress.tls.mode=passthrough",
            ],
            "needs tls.enabled",
        ),
        (
            vec![
                "--set",
                "chartmuseum.mode=sidecar",
                "--set",
                "replicaCount=2",
            ],
            "ReadWriteMany",
        ),
        (vec!["--set", "tls.enabled=true"], "tls.secretName"),
        // An emptyDir per pod cannot hold a push whose manifest reaches
        // another pod: the chart refuses it rather than lean on affinity.
        (
            vec!["--set", "oci.enabled=true"],
            "oci.staging.existingClaim",
        ),
        (
            vec![
                "--set",
                "oci.enabled=true",
                "--set",
                "replicaCount=1",
                "--set",
                "autoscaling.enabled=true",
            ],
            "oci.staging.existingClaim",
        ),
        (
            vec![
                "--set",
                "accounts[0].id=a",
                "--set",
                "accounts[0].rules=null",
            ],
            "rules",
        ),
        (
            vec![
                "--set",
                "accounts[0].id=a",
                "--set",
                "accounts[0].rules[0].repos=x",
                "--set",
                "accounts[0].rules[0].actions={pull}",
            ],
            "exactly one of",
        ),
    ] {
        let mut all = vec!["template", RELEASE, chart];
        all.extend_from_slice(&args);
        let out = helm.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm{major} {args:?} rendered");
        assert!(err.contains(message), "helm{major} {args:?}: {err}");
    }
}

helm_3_and_4! {
    /// values.schema.json and the templates refuse bad values.
    bad_values_are_refused => schema,
}
