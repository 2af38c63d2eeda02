//! Bad values refused, by values.schema.json and by the templates.

use serde_json::{json, Value};

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
    trust_and_publish(&helm, major);
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

/// Bad trust policies and publish rules, refused by the schema; and what
/// only the templates can see (names, issuers, the `oidc` id).
fn trust_and_publish(helm: &Helm, major: u8) {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let good = json!({
        "name": "github",
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": "https://charts.example.com",
        "provider": "github",
        "claims": {"repository": "acme/billing", "ref": "refs/heads/main"},
        "rules": [{"repos": "acme/charts", "actions": ["pull", "push"], "charts": ["billing*"]}]
    });
    let template = |trust: &[Value], args: &[&str]| {
        let trust = format!("trust={}", Value::from(trust.to_vec()));
        let mut all = vec!["template", RELEASE, chart, "--set-json", &trust];
        all.extend_from_slice(args);
        helm.run(&all)
    };
    // The control: a good policy, immutable repositories and an account's
    // rule with `charts` render.
    let out = template(
        std::slice::from_ref(&good),
        &[
            "--set-json",
            "publish.immutable=[\"acme/stable\"]",
            "--set-json",
            "masterKey.rules=[{\"repos\":\"**\",\"actions\":[\"pull\"],\"charts\":[\"x\"]}]",
        ],
    );
    assert!(out.status.success(), "helm{major}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "provider = \"github\"",
        "[publish]",
        "charts = [\"x\"]",
        "charts = [\"billing*\"]",
    ] {
        assert!(stdout.contains(line), "helm{major}: no {line}: {stdout}");
    }
    let with = |path: &[&str], value: Option<Value>| {
        let mut policy = good.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut policy;
        for key in parents {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        match value {
            Some(v) => at[*last] = v,
            None => {
                at.as_object_mut().unwrap().remove(*last);
            }
        }
        policy
    };
    for (policy, names) in [
        (
            with(&["provider"], Some(json!("bitbucket"))),
            "/trust/0/provider",
        ),
        (with(&["audience"], None), "missing property 'audience'"),
        (with(&["audience"], Some(json!(""))), "/trust/0/audience"),
        (with(&["claims"], None), "missing property 'claims'"),
        (with(&["rules"], None), "missing property 'rules'"),
        (with(&["name"], Some(json!("GitHub"))), "/trust/0/name"),
        (with(&["jwks_uri"], Some(json!("https://x"))), "jwks_uri"),
        (
            with(&["issuer"], Some(json!("http://gitlab.example.com"))),
            "/trust/0/issuer",
        ),
        (
            with(&["jwksUri"], Some(json!("https://a@b/keys"))),
            "/trust/0/jwksUri",
        ),
        (with(&["caFile"], Some(json!("ca.crt"))), "/trust/0/caFile"),
        (with(&["maxTtl"], Some(json!("0s"))), "/trust/0/maxTtl"),
        (
            with(&["singleUse"], Some(json!("yes"))),
            "/trust/0/singleUse",
        ),
        (with(&["claims"], Some(json!({}))), "/trust/0/claims"),
        // No identifying claim: the policy would trust every repository.
        (
            with(&["claims"], Some(json!({"ref": "refs/heads/main"}))),
            "missing property 'repository_owner'",
        ),
        // A claim of another provider.
        (
            with(&["claims", "project_path"], Some(json!("acme/billing"))),
            "invalid propertyName 'project_path'",
        ),
        (
            with(&["claims", "ref"], Some(json!(1))),
            "/trust/0/claims/ref",
        ),
        (
            with(&["claims", "ref"], Some(json!([]))),
            "/trust/0/claims/ref",
        ),
        (with(&["rules"], Some(json!([]))), "/trust/0/rules"),
        (
            with(&["rules", "0", "charts"], Some(json!([]))),
            "/trust/0/rules/0/charts",
        ),
        (
            with(&["rules", "0", "charts"], Some(json!(["acme/billing"]))),
            "/trust/0/rules/0/charts/0",
        ),
        (
            with(&["rules", "0", "actions"], Some(json!(["publish"]))),
            "/trust/0/rules/0/actions/0",
        ),
        (
            with(&["rules", "0", "repos"], Some(json!("/acme"))),
            "/trust/0/rules/0/repos",
        ),
    ] {
        let out = template(std::slice::from_ref(&policy), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm{major}: {policy} rendered");
        assert!(err.contains("schema"), "helm{major}: {policy}: {err}");
        assert!(err.contains(names), "helm{major}: {policy}: {err}");
    }
    for (args, names) in [
        (
            vec!["--set", "publish.immutable=acme/stable"],
            "/publish/immutable",
        ),
        (
            vec!["--set-json", "publish.immutable=[\"/acme\"]"],
            "/publish/immutable/0",
        ),
        (vec!["--set", "publish.mutable={acme/stable}"], "mutable"),
        (
            vec!["--set-json", "masterKey.rules[0].charts=[]"],
            "/masterKey/rules/0/charts",
        ),
    ] {
        let out = template(&[], &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm{major} {args:?} rendered");
        assert!(err.contains("schema"), "helm{major} {args:?}: {err}");
        assert!(err.contains(names), "helm{major} {args:?}: {err}");
    }
    // What chartgate would refuse at start, refused at render time.
    let gitlab = |name: &str, jwks: &str| {
        json!({
            "name": name,
            "issuer": "https://gitlab.example.com",
            "audience": "chartgate",
            "provider": "gitlab",
            "jwksUri": jwks,
            "claims": {"project_path": "acme/*"},
            "rules": [{"repos": "acme/*", "actions": ["pull"]}]
        })
    };
    for (trust, args, message) in [
        (
            vec![good.clone()],
            vec!["--set", "masterKey.accountId=oidc"],
            "\"oidc\" is reserved",
        ),
        (
            vec![good.clone(), with(&["audience"], Some(json!("other")))],
            vec![],
            "trust[1].name: \"github\" is used by another policy",
        ),
        (
            vec![
                gitlab("a", ""),
                gitlab("b", "https://gitlab.example.com/keys"),
            ],
            vec![],
            "same jwksUri and caFile",
        ),
    ] {
        let out = template(&trust, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "helm{major} {trust:?} {args:?} rendered"
        );
        assert!(err.contains(message), "helm{major} {args:?}: {err}");
    }
    // The control for those: distinct names, one issuer's source.
    let out = template(&[gitlab("a", ""), gitlab("b", "")], &[]);
    assert!(out.status.success(), "helm{major}: {}", text(&out));
}

helm_3_and_4! {
    /// values.schema.json and the templates refuse bad values.
    bad_values_are_refused => schema,
}
