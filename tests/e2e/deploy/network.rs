//! How the rendered manifests route traffic: ChartMuseum reachable only
//! from the chartgate pods (external mode) or on loopback (sidecar mode),
//! and the two ingress TLS modes.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rendered::{is_subset, labels, strings, Rendered, Source};
use super::{is_auth_setting, NAMESPACE};

/// The `--flag value` / `--flag=value` arguments of a container.
fn flags(args: &[String]) -> BTreeMap<String, Option<String>> {
    let mut flags = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i]
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("not a flag: {}", args[i]));
        if let Some((k, v)) = arg.split_once('=') {
            flags.insert(k.to_owned(), Some(v.to_owned()));
        } else if args.get(i + 1).is_some_and(|next| !next.starts_with("--")) {
            flags.insert(arg.to_owned(), Some(args[i + 1].clone()));
            i += 1;
        } else {
            flags.insert(arg.to_owned(), None);
        }
        i += 1;
    }
    flags
}

/// External mode: ChartMuseum is reachable only from the chartgate pods.
pub(super) fn check_external(
    r: &Rendered,
    url: &str,
    cm_labels: &[(&str, &str)],
    cm_namespace: &str,
    cm_port: u64,
) {
    let c = &r.case;
    let config = r.config();
    assert_eq!(config["upstream"]["url"], url, "{c}");
    assert!(r.container("chartmuseum").is_none(), "{c}");
    let cm_labels: BTreeMap<String, String> = cm_labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let policies: Vec<&Value> = r
        .all("NetworkPolicy")
        .into_iter()
        .filter(|p| labels(&p["spec"]["podSelector"]["matchLabels"]) == cm_labels)
        .collect();
    assert_eq!(
        policies.len(),
        1,
        "{c}: one NetworkPolicy selects the ChartMuseum pods exactly"
    );
    let policy = policies[0];
    assert_eq!(policy["metadata"]["namespace"], cm_namespace, "{c}");
    assert!(
        policy["spec"]["podSelector"]["matchExpressions"].is_null(),
        "{c}"
    );
    assert!(
        strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_owned()),
        "{c}"
    );
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert!(
        !rules.is_empty(),
        "{c}: a policy with no rule admits nothing, not chartgate"
    );
    let selector = r.selector();
    for rule in rules {
        let from = rule["from"]
            .as_array()
            .unwrap_or_else(|| panic!("{c}: a rule without `from` admits every pod"));
        assert!(!from.is_empty(), "{c}");
        for peer in from {
            assert!(peer["ipBlock"].is_null(), "{c}: {peer}");
            assert_eq!(
                labels(&peer["podSelector"]["matchLabels"]),
                selector,
                "{c}: {peer}"
            );
            assert!(peer["podSelector"]["matchExpressions"].is_null(), "{c}");
            if cm_namespace == NAMESPACE {
                assert!(peer["namespaceSelector"].is_null(), "{c}: {peer}");
            } else {
                assert_eq!(
                    labels(&peer["namespaceSelector"]["matchLabels"]),
                    BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        NAMESPACE.to_owned()
                    )]),
                    "{c}: {peer}"
                );
            }
        }
        let ports = rule["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{c}");
        assert_eq!(ports[0]["port"].as_u64(), Some(cm_port), "{c}");
    }
    // The pods the policy admits are the chartgate pods.
    assert!(
        is_subset(&selector, &labels(&r.pod()["metadata"]["labels"])),
        "{c}"
    );
}

/// Sidecar mode: ChartMuseum on loopback, no auth, in step with the config,
/// and no Service or policy exposing it.
pub(super) fn check_sidecar(r: &Rendered, depth: u64) {
    let c = &r.case;
    let config = r.config();
    assert_eq!(config["upstream"]["url"], "http://127.0.0.1:8081", "{c}");
    assert_eq!(config["chartmuseum"]["depth"].as_u64(), Some(depth), "{c}");
    let cm = r
        .container("chartmuseum")
        .unwrap_or_else(|| panic!("{c}: no chartmuseum container"));
    assert_eq!(cm["image"], "ghcr.io/helm/chartmuseum:v0.16.5", "{c}");
    assert!(
        cm["command"].is_null(),
        "{c}: the image's entrypoint is chartmuseum"
    );
    let args = flags(&strings(&cm["args"]));
    assert_eq!(
        args["listen-host"].as_deref(),
        Some("127.0.0.1"),
        "{c}: {args:?}"
    );
    assert_eq!(args["port"].as_deref(), Some("8081"), "{c}");
    assert_eq!(
        args["depth"].as_deref(),
        Some(depth.to_string().as_str()),
        "{c}"
    );
    assert_eq!(
        args.contains_key("disable-delete"),
        config["chartmuseum"]["disable_delete"] == true
    );
    assert_eq!(
        args.contains_key("disable-api"),
        config["chartmuseum"]["disable_api"] == true
    );
    assert_eq!(args["storage"].as_deref(), Some("local"), "{c}");
    let root = args["storage-local-rootdir"].clone().unwrap();
    assert!(
        r.mounts(cm).iter().any(|m| m.path == root && !m.read_only),
        "{c}: the storage root is a writable volume"
    );
    for flag in args.keys() {
        assert!(!is_auth_setting(flag), "{c}: ChartMuseum flag --{flag}");
    }
    for env in cm["env"].as_array().into_iter().flatten() {
        assert!(
            !is_auth_setting(env["name"].as_str().unwrap()),
            "{c}: {env}"
        );
    }
    assert!(cm["ports"].is_null(), "{c}: ChartMuseum declares no port");
    for svc in r.all("Service") {
        for p in svc["spec"]["ports"].as_array().unwrap() {
            assert_ne!(p["port"].as_u64(), Some(8081), "{c}: {p}");
            assert_ne!(p["targetPort"].as_u64(), Some(8081), "{c}: {p}");
            // Named target ports are all the gateway's.
            r.port_number(r.gateway(), &p["targetPort"]);
        }
    }
    for p in r.all("NetworkPolicy") {
        assert_eq!(
            labels(&p["spec"]["podSelector"]["matchLabels"]),
            r.selector(),
            "{c}"
        );
    }
}

/// chartgate terminates TLS; nginx passes it through to the https port.
pub(super) fn check_passthrough(r: &Rendered) {
    let c = &r.case;
    let ingress = r.one("Ingress");
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/ssl-passthrough"], "true",
        "{c}"
    );
    assert!(
        ingress["spec"]["tls"].is_null(),
        "{c}: the ingress holds no certificate"
    );
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let svc = r
        .named("Service", backend["name"].as_str().unwrap())
        .unwrap();
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == backend["port"]["name"])
        .unwrap_or_else(|| panic!("{c}: the backend port is not on the Service"));
    assert_eq!(r.port_number(r.gateway(), &port["targetPort"]), 8443, "{c}");
    let files = r.gateway_files();
    let config = r.config();
    for (key, secret_key) in [("cert", "tls.crt"), ("key", "tls.key")] {
        let path = config["tls"][key].as_str().unwrap();
        assert_eq!(
            files[path].0,
            Source::Secret {
                name: "chartgate-tls".into(),
                key: secret_key.into()
            },
            "{c}"
        );
    }
    assert_eq!(
        config["auth"]["realm"], "https://charts.example.com/oauth/token",
        "{c}"
    );
    assert_eq!(config["auth"]["service"], "charts.example.com", "{c}");
}

/// The ingress terminates TLS and forwards plain HTTP.
pub(super) fn check_ingress_tls(r: &Rendered) {
    let c = &r.case;
    let ingress = r.one("Ingress");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"], "charts-example-com-tls",
        "{c}"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"][0], "charts.example.com",
        "{c}"
    );
    let annotations = &ingress["metadata"]["annotations"];
    assert!(
        annotations["nginx.ingress.kubernetes.io/ssl-passthrough"].is_null(),
        "{c}"
    );
    assert_eq!(
        annotations["cert-manager.io/cluster-issuer"], "letsencrypt",
        "{c}"
    );
    // nginx lets through what chartgate would (its default is 1m).
    let config = r.config();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
        config["upstream"]["max_upload_bytes"].to_string(),
        "{c}"
    );
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["port"]["name"], "http", "{c}");
    assert_eq!(
        config["auth"]["realm"], "https://charts.example.com/oauth/token",
        "{c}"
    );
}
