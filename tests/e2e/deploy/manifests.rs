//! The rendered manifests of every case of the values matrix: what every
//! render must hold (ports, probes, hardening, checksums, selectors, no
//! secret in a ConfigMap, secrets mounted read-only), and the full case
//! (ServiceMonitor, PDB, HPA, the gateway's NetworkPolicy, existing Secrets),
//! and the OCI bridge's values (staging volume, `/v2` on the Ingress, a shared
//! claim for replicas). The ChartMuseum and ingress checks are in
//! `network.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::network::{check_external, check_ingress_tls, check_passthrough, check_sidecar};
use super::rendered::{is_subset, labels, strings, Mount, Rendered, Source};
use super::{case, chart, parse_yaml, secret_refs, Case, Helm, CASES, MASTER, NAMESPACE, RELEASE};

fn app_version() -> String {
    let text = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let chart = parse_yaml(&text).remove(0);
    assert_eq!(chart["apiVersion"], "v2");
    chart["appVersion"].as_str().unwrap().to_owned()
}

/// The assertions every render must pass, whatever the case.
fn check_common(r: &Rendered, case: &Case) {
    let c = &r.case;
    for d in &r.docs {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{c}: {d}"
        );
        assert!(
            d["metadata"]["name"].is_string(),
            "{c}: unnamed {}",
            d["kind"]
        );
    }
    let config = r.config();
    let deployment = r.one("Deployment");
    let pod = r.pod();
    let gateway = r.gateway();
    assert_eq!(r.container("chartmuseum").is_some(), case.sidecar, "{c}");

    // The binary listens where the pod says it does.
    assert_eq!(config["listen"]["addr"], "0.0.0.0:8080", "{c}");
    assert_eq!(config["listen"]["admin_addr"], "0.0.0.0:9090", "{c}");
    assert_eq!(r.port_number(gateway, &json!("http")), 8080, "{c}");
    assert_eq!(r.port_number(gateway, &json!("admin")), 9090, "{c}");
    if case.tls {
        assert_eq!(config["tls"]["addr"], "0.0.0.0:8443", "{c}");
        assert_eq!(r.port_number(gateway, &json!("https")), 8443, "{c}");
    } else {
        assert!(config["tls"].is_null(), "{c}: [tls] without TLS");
    }
    let proxy_ports: BTreeSet<u64> = [8080, 8443].into();

    // Probes: /healthz and /readyz on the admin port, never the proxy's.
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let p = &gateway[probe];
        if probe == "startupProbe" && p.is_null() {
            continue;
        }
        assert_eq!(p["httpGet"]["path"], path, "{c}: {probe}");
        assert_eq!(p["httpGet"]["port"], "admin", "{c}: {probe}");
        let port = r.port_number(gateway, &p["httpGet"]["port"]);
        assert_eq!(port, 9090, "{c}: {probe} port");
        assert!(!proxy_ports.contains(&port), "{c}: {probe} on a proxy port");
    }

    // Image and hardening.
    assert_eq!(
        gateway["image"],
        format!("chartgate:{}", app_version()),
        "{c}"
    );
    let pod_sc = &pod["spec"]["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true, "{c}");
    assert!(pod_sc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{c}");
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault", "{c}");
    for container in pod["spec"]["containers"].as_array().unwrap() {
        let sc = &container["securityContext"];
        let name = &container["name"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}: {name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}: {name}");
        assert!(
            strings(&sc["capabilities"]["drop"]).contains(&"ALL".to_owned()),
            "{c}: {name}"
        );
        assert!(sc["privileged"] != true, "{c}: {name}");
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(pod_sc["seccompProfile"]["type"].as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"), "{c}: {name}");
    }

    // Rollouts follow the config (and the chart's own Secret).
    let annotations = &pod["metadata"]["annotations"];
    let checksum = annotations["checksum/config"].as_str().unwrap_or_default();
    assert!(
        checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()),
        "{c}: checksum/config is {checksum:?}"
    );
    let own_secret = r.named("Secret", &format!("{RELEASE}-chartgate"));
    assert_eq!(
        own_secret.is_some(),
        !annotations["checksum/secret"].is_null(),
        "{c}: checksum/secret exactly when the chart renders its Secret"
    );
    assert_eq!(own_secret.is_none(), case.existing_secrets, "{c}");

    // The pods carry the selector labels the Services and policies use.
    let selector = r.selector();
    assert_eq!(
        selector,
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "chartgate".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), RELEASE.to_owned()),
        ]),
        "{c}"
    );
    assert!(
        is_subset(&selector, &labels(&pod["metadata"]["labels"])),
        "{c}"
    );

    // Services reach chartgate's own ports only; admin has a Service of its
    // own, so the proxy Service can be public without exposing it.
    let mut targeted = BTreeSet::new();
    for svc in r.all("Service") {
        assert_eq!(
            labels(&svc["spec"]["selector"]),
            selector,
            "{c}: {}",
            svc["metadata"]["name"]
        );
        let admin = svc["metadata"]["name"] == format!("{RELEASE}-chartgate-admin");
        for p in svc["spec"]["ports"].as_array().unwrap() {
            let target = r.port_number(gateway, &p["targetPort"]);
            assert_eq!(
                target == 9090,
                admin,
                "{c}: {} port {p}",
                svc["metadata"]["name"]
            );
            targeted.insert(target);
        }
    }
    assert!(targeted.contains(&8080), "{c}: no Service for the proxy");

    // No secret material in any ConfigMap.
    let mut secret_values: Vec<Vec<u8>> = vec![MASTER.as_bytes().to_vec()];
    for s in r.all("Secret") {
        let data = r
            .secret_data(s["metadata"]["name"].as_str().unwrap())
            .unwrap();
        secret_values.extend(data.into_values().filter(|v| v.len() >= 8));
    }
    for cm in r.all("ConfigMap") {
        for (key, value) in cm["data"].as_object().unwrap() {
            let value = value.as_str().unwrap();
            assert!(
                !value.contains("BEGIN"),
                "{c}: PEM material in ConfigMap key {key}"
            );
            for secret in &secret_values {
                let secret = String::from_utf8_lossy(secret);
                assert!(
                    !value.contains(secret.trim()),
                    "{c}: a secret in ConfigMap key {key}"
                );
            }
        }
    }
    if let Some(data) =
        own_secret.and_then(|s| r.secret_data(s["metadata"]["name"].as_str().unwrap()))
    {
        // --set masterKey.value reached the Secret (so the check above was
        // not vacuous), and the generated signing key is a PEM key.
        assert_eq!(
            data.get("master-key").map(Vec::as_slice),
            Some(MASTER.as_bytes()),
            "{c}"
        );
        let key = String::from_utf8(data["signing-key.pem"].clone()).unwrap();
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{c}");
    }

    // Every secret reference is a file from a Secret, mounted read-only;
    // the TLS files too.
    let files = r.gateway_files();
    let mut refs = secret_refs(&config);
    assert!(
        refs.iter().any(|(k, _, _)| k == "issuer.signing_key"),
        "{c}"
    );
    for key in ["cert", "key", "client_ca"] {
        if let Some(path) = config["tls"][key].as_str() {
            refs.push((format!("tls.{key}"), path.to_owned(), false));
        }
    }
    for (key, target, is_env) in &refs {
        if *is_env {
            let env = gateway["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == target.as_str())
                .unwrap_or_else(|| panic!("{c}: {key}: no env {target}"));
            assert!(
                env["value"].is_null(),
                "{c}: {key}: env {target} holds the secret itself"
            );
            assert!(env["valueFrom"]["secretKeyRef"].is_object(), "{c}: {key}");
        } else {
            let (source, read_only) = files
                .get(target)
                .unwrap_or_else(|| panic!("{c}: {key} = {target} is not mounted"));
            assert!(
                matches!(source, Source::Secret { .. }),
                "{c}: {key} from {source:?}"
            );
            assert!(read_only, "{c}: {key}: mounted writable");
        }
    }
    // The config itself comes from the ConfigMap the chart renders.
    let config_path = strings(&gateway["args"])
        .into_iter()
        .skip_while(|a| a != "--config")
        .nth(1)
        .unwrap_or_else(|| panic!("{c}: no --config"));
    assert_eq!(
        files.get(&config_path).map(|f| &f.0),
        Some(&Source::ConfigMap {
            name: format!("{RELEASE}-chartgate"),
            key: "chartgate.toml".into()
        }),
        "{c}"
    );

    // [oci] exactly when enabled, its staging directory on a volume.
    assert_eq!(
        !config["oci"].is_null(),
        case.oci,
        "{c}: [oci] exactly when oci.enabled"
    );
    if case.oci {
        staging(r);
    } else {
        assert!(
            pod["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["name"] != "oci-staging"),
            "{c}: a staging volume without [oci]"
        );
    }

    // Replicas: 2 by default, none when an HPA owns them.
    let hpa = r.all("HorizontalPodAutoscaler");
    if hpa.is_empty() {
        assert!(deployment["spec"]["replicas"].is_u64(), "{c}");
    } else {
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{c}: replicas beside an HPA"
        );
    }
}

fn manifests(major: u8) {
    let helm = Helm::new(major, "manifests");
    let chartmuseum_default = [("app.kubernetes.io/name", "chartmuseum")];
    for case in CASES {
        let r = case.render(&helm, &[]);
        check_common(&r, case);
        let c = &r.case;
        let config = r.config();
        match case.name {
            "default" | "ingress-passthrough" | "ingress-tls" => {
                let url = format!("http://chartmuseum.{NAMESPACE}.svc:8080");
                check_external(&r, &url, &chartmuseum_default, NAMESPACE, 8080);
                assert_eq!(config["log"]["format"], "json", "{c}: json logs by default");
                if case.name == "default" {
                    assert_eq!(r.one("Deployment")["spec"]["replicas"], 2, "{c}");
                    assert!(r.all("Ingress").is_empty(), "{c}");
                    assert_eq!(
                        config["auth"]["realm"],
                        format!("http://{RELEASE}-chartgate.{NAMESPACE}.svc:8080/oauth/token"),
                        "{c}"
                    );
                }
            }
            "external" => {
                // Labels given replace the default selector, never merge.
                check_external(
                    &r,
                    "http://museum.charts.svc:80",
                    &[
                        ("app.kubernetes.io/name", "chartmuseum"),
                        ("app.kubernetes.io/instance", "museum"),
                    ],
                    "charts",
                    8080,
                );
                assert_eq!(config["chartmuseum"]["context_path"], "/cm", "{c}");
                // A hash may sit in the config; a generated key may not.
                let accounts = config["accounts"].as_array().unwrap();
                assert!(accounts[1]["secret_hash"]
                    .as_str()
                    .unwrap()
                    .starts_with("$argon2id$"));
                assert_eq!(
                    accounts[2]["key"]["file"], "/etc/chartgate/secrets/account-ci_at_builds",
                    "{c}"
                );
                let data = r.secret_data(&format!("{RELEASE}-chartgate")).unwrap();
                assert_eq!(data["account-ci_at_builds"].len(), 40, "{c}");
            }
            "full" => {
                check_external(
                    &r,
                    &format!("http://chartmuseum.{NAMESPACE}.svc:8080"),
                    &[("app", "chartmuseum"), ("release", "museum")],
                    NAMESPACE,
                    8080,
                );
                check_full(&r);
                // Autoscaled replicas share the staging claim.
                assert_eq!(
                    staging(&r).volume["persistentVolumeClaim"]["claimName"],
                    "chartgate-oci-staging",
                    "{c}"
                );
                assert_eq!(config["oci"]["upload_timeout"], "15m", "{c}");
            }
            "sidecar" => {
                check_sidecar(&r, 1);
                assert_eq!(config["log"]["format"], "text", "{c}");
                assert_eq!(
                    r.one("Deployment")["spec"]["strategy"]["type"],
                    "Recreate",
                    "{c}"
                );
                let claim = r.one("PersistentVolumeClaim");
                assert_eq!(
                    claim["metadata"]["annotations"]["helm.sh/resource-policy"],
                    "keep"
                );
                // One replica: the OCI staging area is a capped emptyDir.
                assert_eq!(
                    staging(&r).volume,
                    json!({"name": "oci-staging", "emptyDir": {"sizeLimit": "512Mi"}}),
                    "{c}"
                );
                assert_eq!(config["oci"]["upload_timeout"], "30m", "{c}");
            }
            other => unreachable!("{other}"),
        }
        match case.name {
            "ingress-passthrough" => check_passthrough(&r),
            "ingress-tls" => check_ingress_tls(&r),
            _ => {}
        }
    }
    // A sidecar at another depth follows it, on both sides.
    let r = case("sidecar").render(&helm, &["--set", "chartmuseum.depth=3"]);
    check_sidecar(&r, 3);
}

/// The mount of `[oci]`'s staging directory: a writable volume of its own,
/// an emptyDir or a claim (the root filesystem is read-only).
fn staging(r: &Rendered) -> Mount {
    let c = &r.case;
    let config = r.config();
    let dir = config["oci"]["staging_dir"]
        .as_str()
        .unwrap_or_else(|| panic!("{c}: [oci] without staging_dir"));
    let mount = r
        .mounts(r.gateway())
        .into_iter()
        .find(|m| m.path == dir)
        .unwrap_or_else(|| panic!("{c}: oci.staging_dir {dir} is not a mount"));
    assert!(!mount.read_only, "{c}: {dir} is mounted read-only");
    assert!(
        mount.files.is_empty()
            && (mount.volume["emptyDir"].is_object()
                || mount.volume["persistentVolumeClaim"]["claimName"].is_string()),
        "{c}: {dir} is on {}",
        mount.volume
    );
    mount
}

/// The OCI bridge's values beyond the matrix: the defaults, an uncapped
/// emptyDir, replicas on a shared claim (never session affinity: the chart
/// refuses an emptyDir instead, see `schema.rs`), and `/v2` at the host root
/// on the Ingress.
fn oci(major: u8) {
    let helm = Helm::new(major, "oci");
    let on = ["--set", "oci.enabled=true", "--set", "replicaCount=1"];
    let check = |r: &Rendered, base: &Case| {
        let case = Case { oci: true, ..*base };
        check_common(r, &case);
    };

    let r = case("default").render(&helm, &on);
    check(&r, case("default"));
    let c = &r.case;
    let config = r.config();
    assert_eq!(
        config["oci"]["staging_dir"], "/var/lib/chartgate/oci",
        "{c}"
    );
    assert_eq!(config["oci"]["upload_timeout"], "15m", "{c}");
    assert_eq!(
        staging(&r).volume["emptyDir"],
        json!({"sizeLimit": "1Gi"}),
        "{c}"
    );
    // No cap is still an emptyDir, never a volume without a source.
    let r = case("default").render(
        &helm,
        &[&on[..], &["--set", "oci.staging.sizeLimit="]].concat(),
    );
    assert_eq!(staging(&r).volume["emptyDir"], json!({}), "{}", r.case);

    // Replicas share a claim; the Services stay without affinity.
    let r = case("default").render(
        &helm,
        &[
            "--set",
            "oci.enabled=true",
            "--set",
            "replicaCount=3",
            "--set",
            "oci.staging.existingClaim=oci-rwx",
        ],
    );
    check(&r, case("default"));
    let c = &r.case;
    assert_eq!(r.one("Deployment")["spec"]["replicas"], 3, "{c}");
    assert_eq!(
        staging(&r).volume,
        json!({"name": "oci-staging", "persistentVolumeClaim": {"claimName": "oci-rwx"}}),
        "{c}"
    );
    for svc in r.all("Service") {
        assert!(
            svc["spec"]["sessionAffinity"].is_null(),
            "{c}: {} has session affinity",
            svc["metadata"]["name"]
        );
    }

    // Behind the Ingress: the realm is on the host and scheme clients dial,
    // and /v2 and the realm reach chartgate at the host root whatever
    // ingress.path.
    for (path, expected) in [
        ("/", vec![("/", "Prefix")]),
        (
            "/charts",
            vec![
                ("/charts", "Prefix"),
                ("/v2", "Prefix"),
                ("/oauth/token", "Exact"),
            ],
        ),
    ] {
        let set = format!("ingress.path={path}");
        let r = case("ingress-tls").render(&helm, &[&on[..], &["--set", &set]].concat());
        check(&r, case("ingress-tls"));
        let c = &r.case;
        assert_eq!(
            r.config()["auth"]["realm"],
            "https://charts.example.com/oauth/token",
            "{c}"
        );
        let paths = r.one("Ingress")["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap()
            .clone();
        let got: Vec<(&str, &str)> = paths
            .iter()
            .map(|p| (p["path"].as_str().unwrap(), p["pathType"].as_str().unwrap()))
            .collect();
        assert_eq!(got, expected, "{c}: ingress.path={path}");
        for p in &paths {
            assert_eq!(p["backend"], paths[0]["backend"], "{c}");
        }
        assert_eq!(
            paths[0]["backend"]["service"]["name"],
            format!("{RELEASE}-chartgate"),
            "{c}"
        );
    }
    // Without [oci], no /v2 path.
    let r = case("ingress-tls").render(&helm, &["--set", "ingress.path=/charts"]);
    assert_eq!(
        r.one("Ingress")["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{}",
        r.case
    );
}

/// ServiceMonitor, PDB, HPA, both NetworkPolicies, existing Secrets.
fn check_full(r: &Rendered) {
    let c = &r.case;
    let selector = r.selector();
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1", "{c}");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin", "{c}");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics", "{c}");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus", "{c}");
    let sm_selector = labels(&sm["spec"]["selector"]["matchLabels"]);
    let scraped: Vec<&Value> = r
        .all("Service")
        .into_iter()
        .filter(|s| is_subset(&sm_selector, &labels(&s["metadata"]["labels"])))
        .collect();
    assert_eq!(
        scraped.len(),
        1,
        "{c}: the ServiceMonitor selects the admin Service only"
    );
    let port = &scraped[0]["spec"]["ports"][0];
    assert_eq!(port["name"], "admin", "{c}");
    assert_eq!(r.port_number(r.gateway(), &port["targetPort"]), 9090, "{c}");

    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1", "{c}");
    assert_eq!(
        labels(&pdb["spec"]["selector"]["matchLabels"]),
        selector,
        "{c}"
    );
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{c}");

    let hpa = r.one("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2", "{c}");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment", "{c}");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        r.one("Deployment")["metadata"]["name"]
    );
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(2), json!(5))
    );

    // The gateway's own policy: proxy ports from the ingress controller,
    // admin from monitoring.
    let own = r
        .all("NetworkPolicy")
        .into_iter()
        .find(|p| labels(&p["spec"]["podSelector"]["matchLabels"]) == selector)
        .unwrap_or_else(|| panic!("{c}: no NetworkPolicy for chartgate"));
    let rules = own["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{c}");
    assert_eq!(rules[0]["ports"][0]["port"], "http", "{c}");
    assert_eq!(
        rules[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );
    assert_eq!(rules[1]["ports"][0]["port"], "admin", "{c}");
    assert_eq!(
        rules[1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    // Every secret from an existing Secret, by the names and keys given.
    let files = r.gateway_files();
    let secret = |name: &str, key: &str| Source::Secret {
        name: name.into(),
        key: key.into(),
    };
    for (path, source) in [
        (
            "signing-key.pem",
            secret("chartgate-signing", "private.pem"),
        ),
        ("master-key", secret("chartgate-master", "token")),
        ("account-deployer", secret("chartgate-deployer", "api-key")),
        (
            "chartmuseum-password",
            secret("chartmuseum-basic-auth", "password"),
        ),
        ("redis-password", secret("chartgate-redis", "password")),
    ] {
        assert_eq!(
            files[&format!("/etc/chartgate/secrets/{path}")].0,
            source,
            "{c}"
        );
    }
    assert!(r.all("Secret").is_empty(), "{c}");
    let config = r.config();
    assert_eq!(config["accounts"][0]["id"], "admin", "{c}");
    assert_eq!(config["upstream"]["basic_auth_user"], "chartgate", "{c}");
    let shared = &config["auth"]["shared_limits"];
    assert_eq!(
        shared["redis_url"], "redis://redis.charts-gw.svc:6379/0",
        "{c}"
    );
    assert_eq!(shared["key_prefix"], "chartgate-prod", "{c}");
    assert_eq!(
        shared["password"]["file"], "/etc/chartgate/secrets/redis-password",
        "{c}"
    );
    assert_eq!(
        r.gateway()["startupProbe"]["httpGet"]["path"],
        "/healthz",
        "{c}"
    );
}

helm_3_and_4! {
    /// The rendered manifests of every case keep the chart's promises.
    rendered_manifests => manifests,
    /// The OCI bridge's staging volume, replicas and Ingress follow its values.
    oci_staging_follows_values => oci,
}
