//! NOTES.txt prints the seed walkthrough for the release (Helm 4).

use super::{case, chart, Helm, MASTER, NAMESPACE, RELEASE};

/// The NOTES of `helm install --dry-run=client` for a case of the matrix.
fn notes(helm: &Helm, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "install".to_owned(),
        RELEASE.to_owned(),
        chart().display().to_string(),
        "--namespace".to_owned(),
        NAMESPACE.to_owned(),
        "--dry-run=client".to_owned(),
    ];
    args.extend(case(name).args());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm.ok(&args);
    out.split_once("\nNOTES:\n")
        .unwrap_or_else(|| panic!("{name}: no NOTES in:\n{out}"))
        .1
        .to_owned()
}

/// NOTES.txt prints the seed walkthrough for the release: the challenge,
/// the token with the master key read from its Secret, the retry, and
/// `helm repo add` with Basic credentials. Helm 4 only: Helm 3's `install
/// --dry-run=client` still needs a reachable cluster to print NOTES (its
/// `helm lint --strict` above renders NOTES.txt for both majors).
#[test]
fn notes_print_the_walkthrough_helm4() {
    let helm = Helm::new(4, "notes");
    for (name, extra, repo, secret, key, account) in [
        (
            "default",
            vec![],
            "org1/repo1",
            "cg-chartgate",
            "master-key",
            "master",
        ),
        (
            "sidecar",
            vec![],
            "org1",
            "cg-chartgate",
            "master-key",
            "master",
        ),
        (
            "full",
            vec![],
            "org1/repo1",
            "chartgate-master",
            "token",
            "admin",
        ),
        (
            "default",
            vec!["--set", "chartmuseum.depth=0"],
            "",
            "cg-chartgate",
            "master-key",
            "master",
        ),
    ] {
        let notes = notes(&helm, name, &extra);
        let path = if repo.is_empty() {
            String::new()
        } else {
            format!("/{repo}")
        };
        let scope = format!(
            "artifact-repository:{}:pull",
            if repo.is_empty() { "repo" } else { repo }
        );
        for needle in [
            format!("kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-chartgate 8080:8080"),
            format!("export CHARTGATE_MASTER_KEY=$(kubectl -n {NAMESPACE} get secret {secret}"),
            format!("-o jsonpath='{{.data.{key}}}' | base64 -d)"),
            format!("curl -si \"$GW{path}/index.yaml\""),
            "curl -s -X POST -H \"Authorization: Bearer $CHARTGATE_MASTER_KEY\"".to_owned(),
            format!(
                "\"$GW/oauth/token?grant_type=client_credentials&scope={scope}\" | jq -r .token)"
            ),
            format!("curl -s -H \"Authorization: Bearer $TOKEN\" \"$GW{path}/index.yaml\""),
            format!("\"$GW{path}\""),
            format!("--username {account} --password \"$CHARTGATE_MASTER_KEY\""),
        ] {
            assert!(
                notes.contains(&needle),
                "{name} {extra:?}: NOTES lack {needle:?}:\n{notes}"
            );
        }
        assert!(
            !notes.contains(MASTER),
            "{name}: NOTES print the master key"
        );
        // The OCI commands exactly when the bridge is on (sidecar, full).
        let host = format!("{RELEASE}-chartgate.{NAMESPACE}.svc:8080");
        let oci = [
            format!(
                "helm registry login {host} --plain-http \\\n       \
                 --username {account} --password \"$CHARTGATE_MASTER_KEY\""
            ),
            format!("helm push mychart-0.1.0.tgz oci://{host}{path} --plain-http"),
            format!("helm pull oci://{host}{path}/mychart --version 0.1.0 --plain-http"),
            "set auth.realm=http://localhost:8080/oauth/token".to_owned(),
        ];
        for needle in &oci {
            assert_eq!(
                notes.contains(needle),
                case(name).oci,
                "{name} {extra:?}: {needle:?} in NOTES without oci.enabled, or missing:\n{notes}"
            );
        }
    }
}

/// Behind an Ingress with TLS, the OCI commands dial the realm's host over
/// HTTPS: no `--plain-http`, no port-forward advice. Without a master key,
/// they name the placeholders.
#[test]
fn notes_print_the_oci_commands_helm4() {
    let helm = Helm::new(4, "notes-oci");
    let on = ["--set", "oci.enabled=true", "--set", "replicaCount=1"];
    let text = notes(&helm, "ingress-tls", &on);
    for needle in [
        "Helm's oci:// commands, served under /v2/ at the host root.",
        "helm registry login charts.example.com \\\n",
        "--username master --password \"$CHARTGATE_MASTER_KEY\"",
        "helm push mychart-0.1.0.tgz oci://charts.example.com/org1/repo1\n",
        "helm pull oci://charts.example.com/org1/repo1/mychart --version 0.1.0\n",
    ] {
        assert!(text.contains(needle), "NOTES lack {needle:?}:\n{text}");
    }
    for absent in ["--plain-http", "auth.realm="] {
        assert!(!text.contains(absent), "NOTES hold {absent:?}:\n{text}");
    }
    // Depth 0 under a context path, with no master key.
    let text = notes(
        &helm,
        "default",
        &[
            &on[..],
            &[
                "--set",
                "masterKey.enabled=false",
                "--set",
                "chartmuseum.depth=0",
                "--set",
                "chartmuseum.contextPath=/cm",
            ],
        ]
        .concat(),
    );
    for needle in [
        "3. Helm's oci:// commands, served under /v2/ at the host root (not under /cm).",
        "--username ID --password KEY",
        "helm push mychart-0.1.0.tgz oci://cg-chartgate.charts-gw.svc:8080 --plain-http",
        "helm pull oci://cg-chartgate.charts-gw.svc:8080/mychart --version 0.1.0 --plain-http",
    ] {
        assert!(text.contains(needle), "NOTES lack {needle:?}:\n{text}");
    }
}
