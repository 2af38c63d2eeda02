//! The pod's checksum annotations: checksum/config follows the config and
//! nothing else, checksum/secret follows the chart's Secret.

use serde_json::Value;

use super::{case, chartgate, run, text, Helm};

fn checksum(major: u8) {
    let helm = Helm::new(major, "checksum");
    let keys = helm.home.join("keys");
    let out = run(chartgate().args(["keygen", "--out"]).arg(&keys));
    assert!(out.status.success(), "{}", text(&out));
    let key_arg = format!(
        "issuer.signingKey.value={}",
        keys.join("signing-key.pem").display()
    );
    let render = |extra: &[&str]| {
        let mut args = vec!["--set-file", key_arg.as_str()];
        args.extend_from_slice(extra);
        let r = case("default").render(&helm, &args);
        let annotations = r.pod()["metadata"]["annotations"].clone();
        (r.config_text(), annotations)
    };
    let sums = |a: &Value| {
        (
            a["checksum/config"].as_str().unwrap().to_owned(),
            a["checksum/secret"].as_str().unwrap().to_owned(),
        )
    };
    let (text0, base) = render(&[]);
    let (config0, secret0) = sums(&base);
    // The same values, the same sums: no spurious rollout.
    let (_, again) = render(&[]);
    assert_eq!(
        sums(&again),
        (config0.clone(), secret0.clone()),
        "helm{major}"
    );
    // A config value changes the config and its sum, not the Secret's.
    let (text1, changed) = render(&["--set", "auth.leeway=45s"]);
    assert_ne!(text0, text1);
    assert!(text1.contains("leeway = \"45s\""), "{text1}");
    let (config1, secret1) = sums(&changed);
    assert_ne!(
        config1, config0,
        "helm{major}: checksum/config ignored a config change"
    );
    assert_eq!(secret1, secret0, "helm{major}");
    // Turning the OCI bridge on is a config change too.
    let (text3, oci) = render(&["--set", "oci.enabled=true", "--set", "replicaCount=1"]);
    assert!(text3.contains("[oci]"), "{text3}");
    assert_ne!(
        sums(&oci).0,
        config0,
        "helm{major}: checksum/config ignored [oci]"
    );
    assert_eq!(sums(&oci).1, secret0, "helm{major}");
    // A pod annotation is no config change.
    let (_, annotated) = render(&["--set", "podAnnotations.team=charts"]);
    assert_eq!(annotated["team"], "charts");
    assert_eq!(sums(&annotated).0, config0, "helm{major}");
    // A new master key moves checksum/secret only.
    let (text2, rekeyed) = render(&["--set", "masterKey.value=another-master-key-0123456789"]);
    assert_eq!(text2, text0);
    let (config2, secret2) = sums(&rekeyed);
    assert_eq!(config2, config0, "helm{major}");
    assert_ne!(
        secret2, secret0,
        "helm{major}: checksum/secret ignored a new master key"
    );
}

helm_3_and_4! {
    /// checksum/config follows the config and nothing else.
    config_checksum_rolls_pods => checksum,
}
