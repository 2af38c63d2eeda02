//! NOTES.txt prints the seed walkthrough for the release (Helm 4).

use super::{case, chart, Helm, MASTER, NAMESPACE, RELEASE};

/// NOTES.txt prints the seed walkthrough for the release: the challenge,
/// the token with the master key read from its Secret, the retry, and
/// `helm repo add` with Basic credentials. Helm 4 only: Helm 3's `install
/// --dry-run=client` still needs a reachable cluster to print NOTES (its
/// `helm lint --strict` above renders NOTES.txt for both majors).
#[test]
fn notes_print_the_walkthrough_helm4() {
    let helm = Helm::new(4, "notes");
    let chart = chart();
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
        let case = case(name);
        let mut args = vec![
            "install".to_owned(),
            RELEASE.to_owned(),
            chart.display().to_string(),
            "--namespace".to_owned(),
            NAMESPACE.to_owned(),
            "--dry-run=client".to_owned(),
        ];
        args.extend(case.args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm.ok(&args);
        let notes = out
            .split_once("\nNOTES:\n")
            .unwrap_or_else(|| panic!("{name}: no NOTES in:\n{out}"))
            .1;
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
    }
}
