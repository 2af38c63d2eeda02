//! The deployment files, checked with the real tools. The Helm chart in
//! `deploy/helm/chartgate` is linted (`--strict`) and rendered by Helm 3
//! and Helm 4 over its values matrix (the defaults and `ci/*-values.yaml`).
//! The rendered manifests are checked for what the chart promises: probes on
//! the admin port, the ChartMuseum NetworkPolicy, a loopback-only sidecar, no
//! secret in a ConfigMap, and a config checksum that follows the config. The
//! schema must refuse bad values. Every rendered `chartgate.toml` must pass
//! `chartgate check`, with the files its pod would mount, written from the
//! rendered Secret. `deploy/compose.yaml` goes through `docker-compose
//! config`, and its `chartgate.toml` through `chartgate check`. A missing
//! tool fails the run; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::helm::tool;

const RELEASE: &str = "cg";
const NAMESPACE: &str = "charts-gw";
/// The master key given with `--set masterKey.value=…`: it must reach the
/// chart's Secret and no ConfigMap.
const MASTER: &str = "set-on-the-command-line-9f8e7d6c5b4a3210";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("deploy/helm/chartgate")
}

fn chartgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chartgate"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chartgate-e2e-deploy-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One pinned Helm major, with homes of its own.
struct Helm {
    major: u8,
    bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn new(major: u8, test: &str) -> Helm {
        Helm {
            major,
            bin: tool(&format!("helm{major}")),
            home: scratch(&format!("{test}-helm{major}")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(Command::new(&self.bin)
            .args(args)
            .current_dir(root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data")))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm{} {args:?} failed:\n{}",
            self.major,
            text(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `helm template` of the chart with `args` added; the documents.
    fn template(&self, args: &[&str]) -> Vec<Value> {
        let chart = chart();
        let mut all = vec![
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
        ];
        all.extend_from_slice(args);
        parse_yaml(&self.ok(&all))
    }
}

/// Every non-empty document of a YAML stream.
fn parse_yaml(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// One point of the values matrix.
struct Case {
    name: &'static str,
    /// The values file in ci/, if any.
    file: Option<&'static str>,
    sidecar: bool,
    tls: bool,
    /// Every secret comes from an existing Secret: the chart renders none.
    existing_secrets: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "default",
        file: None,
        sidecar: false,
        tls: false,
        existing_secrets: false,
    },
    Case {
        name: "external",
        file: Some("external-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: false,
    },
    Case {
        name: "sidecar",
        file: Some("sidecar-values.yaml"),
        sidecar: true,
        tls: false,
        existing_secrets: false,
    },
    Case {
        name: "ingress-passthrough",
        file: Some("ingress-passthrough-values.yaml"),
        sidecar: false,
        tls: true,
        existing_secrets: false,
    },
    Case {
        name: "ingress-tls",
        file: Some("ingress-tls-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: false,
    },
    Case {
        name: "full",
        file: Some("full-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: true,
    },
];

impl Case {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(file) = self.file {
            args.push("-f".to_owned());
            args.push(chart().join("ci").join(file).display().to_string());
        }
        args.push("--set".to_owned());
        args.push(format!("masterKey.value={MASTER}"));
        args
    }

    fn render(&self, helm: &Helm, extra: &[&str]) -> Rendered {
        let args = self.args();
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        Rendered {
            case: format!("helm{} {}", helm.major, self.name),
            docs: helm.template(&all),
        }
    }
}

/// The manifests of one render.
struct Rendered {
    case: String,
    docs: Vec<Value>,
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    s.as_str()
                        .unwrap_or_else(|| panic!("not a string: {s}"))
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(
            all.len(),
            1,
            "{}: expected one {kind}, got {}",
            self.case,
            all.len()
        );
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
    }

    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]
    }

    fn container(&self, name: &str) -> Option<&Value> {
        self.pod()["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
    }

    fn gateway(&self) -> &Value {
        self.container("chartgate")
            .unwrap_or_else(|| panic!("{}: no chartgate container", self.case))
    }

    fn selector(&self) -> BTreeMap<String, String> {
        labels(&self.one("Deployment")["spec"]["selector"]["matchLabels"])
    }

    fn config_text(&self) -> String {
        self.one("ConfigMap")["data"]["chartgate.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no chartgate.toml in the ConfigMap", self.case))
            .to_owned()
    }

    /// chartgate.toml, as JSON for uniform indexing.
    fn config(&self) -> Value {
        let table: toml::Table = toml::from_str(&self.config_text())
            .unwrap_or_else(|e| panic!("{}: chartgate.toml is not TOML: {e}", self.case));
        serde_json::to_value(table).unwrap()
    }

    /// The decoded data of the Secret named `name`, if the chart renders it.
    fn secret_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let secret = self.named("Secret", name)?;
        let mut data = BTreeMap::new();
        for (k, v) in secret["data"].as_object().into_iter().flatten() {
            data.insert(k.clone(), STANDARD.decode(v.as_str().unwrap()).unwrap());
        }
        for (k, v) in secret["stringData"].as_object().into_iter().flatten() {
            data.insert(k.clone(), v.as_str().unwrap().as_bytes().to_vec());
        }
        Some(data)
    }

    /// The container port `port` (a name or a number) of `container`.
    fn port_number(&self, container: &Value, port: &Value) -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = port.as_str().unwrap_or_else(|| panic!("bad port {port}"));
        container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: no container port named {name}", self.case))
    }
}

/// Where a mounted file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Secret { name: String, key: String },
    ConfigMap { name: String, key: String },
}

/// A volume mount of a container: the files it delivers (relative path to
/// source), or a writable directory (emptyDir, claim).
struct Mount {
    path: String,
    read_only: bool,
    files: Vec<(String, Source)>,
}

impl Rendered {
    /// The keys of a projected or plain secret/configMap source: its items,
    /// or every key of the rendered object.
    fn items(&self, kind: &str, name: &str, items: &Value) -> Vec<(String, String)> {
        if let Some(items) = items.as_array() {
            return items
                .iter()
                .map(|i| {
                    (
                        i["key"].as_str().unwrap().to_owned(),
                        i["path"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
        }
        let object = self.named(kind, name).unwrap_or_else(|| {
            panic!(
                "{}: {kind} {name} is mounted without items and not rendered: its keys are unknown",
                self.case
            )
        });
        object["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), k.clone()))
            .collect()
    }

    /// What the kubelet would mount into `container`.
    fn mounts(&self, container: &Value) -> Vec<Mount> {
        let volumes = self.pod()["spec"]["volumes"].as_array().unwrap();
        let mut mounts = Vec::new();
        for m in container["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                m["subPath"].is_null(),
                "{}: subPath mounts never see a changed Secret or ConfigMap",
                self.case
            );
            let volume = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("{}: no volume {}", self.case, m["name"]));
            let mut files = Vec::new();
            let mut add = |kind: &str, name: &str, items: &Value| {
                for (key, path) in self.items(kind, name, items) {
                    let (name, key) = (name.to_owned(), key);
                    let source = if kind == "Secret" {
                        Source::Secret { name, key }
                    } else {
                        Source::ConfigMap { name, key }
                    };
                    files.push((path, source));
                }
            };
            if let Some(s) = volume.get("secret") {
                add("Secret", s["secretName"].as_str().unwrap(), &s["items"]);
            } else if let Some(c) = volume.get("configMap") {
                add("ConfigMap", c["name"].as_str().unwrap(), &c["items"]);
            } else if let Some(p) = volume.get("projected") {
                for s in p["sources"].as_array().unwrap() {
                    if let Some(s) = s.get("secret") {
                        add("Secret", s["name"].as_str().unwrap(), &s["items"]);
                    } else if let Some(c) = s.get("configMap") {
                        add("ConfigMap", c["name"].as_str().unwrap(), &c["items"]);
                    } else {
                        panic!("{}: unexpected projected source {s}", self.case);
                    }
                }
            } else {
                assert!(
                    volume.get("emptyDir").is_some()
                        || volume.get("persistentVolumeClaim").is_some(),
                    "{}: unexpected volume {volume}",
                    self.case
                );
            }
            mounts.push(Mount {
                path: m["mountPath"].as_str().unwrap().to_owned(),
                read_only: m["readOnly"] == true,
                files,
            });
        }
        mounts
    }

    /// Every file mounted into the chartgate container, by absolute path.
    fn gateway_files(&self) -> BTreeMap<String, (Source, bool)> {
        let mut files = BTreeMap::new();
        for m in self.mounts(self.gateway()) {
            for (rel, source) in m.files {
                let path = format!("{}/{rel}", m.path.trim_end_matches('/'));
                assert!(
                    files.insert(path.clone(), (source, m.read_only)).is_none(),
                    "{}: {path} mounted twice",
                    self.case
                );
            }
        }
        files
    }
}

/// The secret references of a chartgate.toml: (key, `{file}` path or
/// `{env}` name, is_env).
fn secret_refs(config: &Value) -> Vec<(String, String, bool)> {
    let mut refs = Vec::new();
    let mut take = |key: String, v: &Value| {
        if v.is_null() {
            return;
        }
        let table = v
            .as_object()
            .unwrap_or_else(|| panic!("{key} must be {{ file }} or {{ env }}, got {v}"));
        assert_eq!(table.len(), 1, "{key}: exactly one of file or env: {v}");
        if let Some(file) = table.get("file") {
            refs.push((key, file.as_str().unwrap().to_owned(), false));
        } else {
            let env = table.get("env").unwrap_or_else(|| panic!("{key}: {v}"));
            refs.push((key, env.as_str().unwrap().to_owned(), true));
        }
    };
    take(
        "issuer.signing_key".into(),
        &config["issuer"]["signing_key"],
    );
    take(
        "upstream.basic_auth_password".into(),
        &config["upstream"]["basic_auth_password"],
    );
    take(
        "auth.shared_limits.password".into(),
        &config["auth"]["shared_limits"]["password"],
    );
    for (i, account) in config["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        take(format!("accounts[{i}].key"), &account["key"]);
    }
    refs
}

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

/// ChartMuseum's auth settings, as flags and as environment variables.
fn is_auth_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    name.starts_with("basic-auth") || name.starts_with("bearer-auth") || name.starts_with("auth-")
}

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

/// External mode: ChartMuseum is reachable only from the chartgate pods.
fn check_external(
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
fn check_sidecar(r: &Rendered, depth: u64) {
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

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
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

/// chartgate terminates TLS; nginx passes it through to the https port.
fn check_passthrough(r: &Rendered) {
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
fn check_ingress_tls(r: &Rendered) {
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

fn schema(major: u8) {
    let helm = Helm::new(major, "schema");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let template = |set: &str| helm.run(&["template", RELEASE, chart, "--set", set]);
    // The control: a good value renders, and lands in the config.
    let out = template("log.format=text");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("format = \"text\""));
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

/// The contents the test supplies for Secrets that exist before the
/// release (existingSecret, the TLS Secrets).
struct Fixtures {
    files: BTreeMap<(String, String), Vec<u8>>,
}

impl Fixtures {
    fn new(dir: &Path) -> Fixtures {
        let certs = dir.join("certs");
        let out = run(chartgate().args(["dev-certs", "--out"]).arg(&certs));
        assert!(out.status.success(), "{}", text(&out));
        let keys = dir.join("keys");
        let out = run(chartgate().args(["keygen", "--out"]).arg(&keys));
        assert!(out.status.success(), "{}", text(&out));
        let read = |p: PathBuf| std::fs::read(p).unwrap();
        let mut files = BTreeMap::new();
        let mut add = |secret: &str, key: &str, value: Vec<u8>| {
            files.insert((secret.to_owned(), key.to_owned()), value);
        };
        add("chartgate-tls", "tls.crt", read(certs.join("server.pem")));
        add(
            "chartgate-tls",
            "tls.key",
            read(certs.join("server-key.pem")),
        );
        add("chartgate-client-ca", "ca.crt", read(certs.join("ca.pem")));
        add(
            "chartgate-signing",
            "private.pem",
            read(keys.join("signing-key.pem")),
        );
        add(
            "chartgate-master",
            "token",
            b"existing-master-key-0123456789\n".to_vec(),
        );
        add(
            "chartgate-deployer",
            "api-key",
            b"deployer-api-key-0123456789".to_vec(),
        );
        add(
            "chartmuseum-basic-auth",
            "password",
            b"museum-password".to_vec(),
        );
        add("chartgate-redis", "password", b"redis-password\n".to_vec());
        Fixtures { files }
    }
}

/// Lays out what the chartgate container would see under `dir` (mounted
/// files from the rendered ConfigMap and Secrets, or the fixtures; writable
/// volumes as directories), with the config's paths moved there. Returns the
/// config file and the container's environment.
fn lay_out(r: &Rendered, dir: &Path, fixtures: &Fixtures) -> (PathBuf, Vec<(String, String)>) {
    let c = &r.case;
    let gateway = r.gateway();
    let mounts = r.mounts(gateway);
    let content = |source: &Source| -> Vec<u8> {
        match source {
            Source::ConfigMap { name, key } => r.named("ConfigMap", name).unwrap()["data"][key]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
            Source::Secret { name, key } => match r.secret_data(name) {
                Some(data) => data
                    .get(key)
                    .unwrap_or_else(|| panic!("{c}: Secret {name} has no key {key}"))
                    .clone(),
                None => fixtures
                    .files
                    .get(&(name.clone(), key.clone()))
                    .unwrap_or_else(|| panic!("{c}: no fixture for Secret {name} key {key}"))
                    .clone(),
            },
        }
    };
    let moved = |path: &str| format!("{}{path}", dir.display());
    for m in &mounts {
        std::fs::create_dir_all(moved(&m.path)).unwrap();
        for (rel, source) in &m.files {
            std::fs::write(format!("{}/{rel}", moved(&m.path)), content(source)).unwrap();
        }
    }
    // Every absolute path into a mount now points into `dir`.
    let mut config = r.config_text();
    let mut paths: Vec<&str> = mounts.iter().map(|m| m.path.as_str()).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in paths {
        config = config.replace(&format!("\"{path}/"), &format!("\"{}/", moved(path)));
    }
    assert!(
        !config.contains("\"/etc/"),
        "{c}: a path outside every mount:\n{config}"
    );
    let args = strings(&gateway["args"]);
    let file = args.iter().skip_while(|a| *a != "--config").nth(1).unwrap();
    let file = PathBuf::from(moved(file));
    std::fs::write(&file, config).unwrap();
    let mut env = Vec::new();
    for e in gateway["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_owned();
        if let Some(value) = e["value"].as_str() {
            env.push((name, value.to_owned()));
        } else {
            let key_ref = &e["valueFrom"]["secretKeyRef"];
            let source = Source::Secret {
                name: key_ref["name"].as_str().unwrap().to_owned(),
                key: key_ref["key"].as_str().unwrap().to_owned(),
            };
            env.push((name, String::from_utf8(content(&source)).unwrap()));
        }
    }
    (file, env)
}

fn check_config(file: &Path, env: &[(String, String)]) -> Output {
    run(chartgate()
        .args(["check", "--config"])
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v))))
}

fn binary_accepts(major: u8) {
    let helm = Helm::new(major, "binary");
    let fixtures = Fixtures::new(&helm.home);
    for case in CASES {
        let r = case.render(&helm, &[]);
        let dir = helm.home.join(format!("pod-{}", case.name));
        let (file, env) = lay_out(&r, &dir, &fixtures);
        let out = check_config(&file, &env);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("config ok"),
            "{}: chartgate check refused the rendered config:\n{}\n{}",
            r.case,
            text(&out),
            std::fs::read_to_string(&file).unwrap()
        );
        // The check does read the mounted files: without the signing key it
        // fails, naming the key.
        let secrets = dir.join("etc/chartgate/secrets");
        std::fs::remove_file(secrets.join("signing-key.pem")).unwrap();
        let out = check_config(&file, &env);
        assert_eq!(out.status.code(), Some(64), "{}: {}", r.case, text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("issuer.signing_key"));
    }
}

/// Docker's compose v1, from Debian's `docker-compose` package.
fn docker_compose(args: &[&str]) -> Output {
    Command::new("docker-compose")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "docker-compose is missing ({e}): install it with `apt-get install -y docker-compose` \
                 (scripts/tools.sh deploy does)"
            )
        })
}

/// The host ports a compose service publishes.
fn published(service: &Value) -> Vec<u64> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p {
            Value::String(s) => {
                let parts: Vec<&str> = s.split('/').next().unwrap().split(':').collect();
                assert!(parts.len() >= 2, "port {s} is not published");
                parts[parts.len() - 2].parse().unwrap()
            }
            p => match &p["published"] {
                Value::Number(n) => n.as_u64().unwrap(),
                Value::String(s) => s.parse().unwrap(),
                other => panic!("port {p} publishes {other}"),
            },
        })
        .collect()
}

fn env_map(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), v)
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|e| {
                let (k, v) = e
                    .as_str()
                    .unwrap()
                    .split_once('=')
                    .unwrap_or((e.as_str().unwrap(), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `docker-compose config` resolves the file; what it says is checked.
#[test]
fn compose_file_resolves_and_keeps_chartmuseum_private() {
    let out = docker_compose(&["-f", "deploy/compose.yaml", "config"]);
    assert!(
        out.status.success(),
        "docker-compose config failed:\n{}",
        text(&out)
    );
    let config = parse_yaml(&String::from_utf8(out.stdout).unwrap()).remove(0);
    let services = &config["services"];

    let cm = &services["chartmuseum"];
    assert_eq!(cm["image"], "ghcr.io/helm/chartmuseum:v0.16.5");
    assert!(
        cm["ports"].is_null(),
        "chartmuseum is published: {}",
        cm["ports"]
    );
    assert!(
        strings(&cm["expose"]).contains(&"8080".to_owned()),
        "{}",
        cm["expose"]
    );
    let env = env_map(cm);
    assert_eq!(env.get("DEPTH").map(String::as_str), Some("2"));
    assert_eq!(env.get("STORAGE").map(String::as_str), Some("local"));
    assert_eq!(
        env.get("STORAGE_LOCAL_ROOTDIR").map(String::as_str),
        Some("/charts")
    );
    assert_eq!(env.get("PORT").map_or("8080", String::as_str), "8080");
    for name in env.keys() {
        assert!(
            !is_auth_setting(name),
            "chartmuseum has auth setting {name}"
        );
        assert_ne!(
            name, "CHART_URL",
            "an absolute chart URL bypasses the gateway"
        );
    }
    let cm_volumes = strings(&cm["volumes"]);
    assert!(
        cm_volumes.iter().any(|v| v.starts_with("charts:/charts")),
        "{cm_volumes:?}"
    );
    assert!(
        config["volumes"]["charts"].is_object(),
        "charts is a named volume"
    );
    // No other service publishes ChartMuseum's port for it.
    for (name, service) in services.as_object().unwrap() {
        if name != "chartgate" {
            assert!(
                published(service).is_empty(),
                "{name} publishes {:?}",
                published(service)
            );
        }
    }

    let gw = &services["chartgate"];
    assert_eq!(gw["image"], "chartgate:latest");
    assert_eq!(gw["build"]["context"], root().display().to_string());
    assert_eq!(gw["build"]["dockerfile"], "deploy/Dockerfile");
    let ports = published(gw);
    assert!(
        ports.contains(&8443),
        "chartgate does not publish 8443: {ports:?}"
    );
    assert!(!ports.contains(&9090), "the admin port is published");
    assert_eq!(gw["read_only"], true);
    let user = gw["user"].as_str().expect("chartgate sets a user");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "chartgate runs as {user}"
    );
    assert!(
        gw["healthcheck"].is_null(),
        "a scratch image cannot run a healthcheck"
    );
    assert!(
        gw["depends_on"]["chartmuseum"].is_object(),
        "{}",
        gw["depends_on"]
    );
    let command = strings(&gw["command"]);
    let config_path = command
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap()
        .clone();
    let mounts: BTreeMap<String, String> = strings(&gw["volumes"])
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (parts[1].to_owned(), parts[0].to_owned())
        })
        .collect();
    assert_eq!(
        mounts.get(&config_path).map(String::as_str),
        Some(
            root()
                .join("deploy/compose/chartgate.toml")
                .to_str()
                .unwrap()
        ),
        "{mounts:?}"
    );
    let certs = mounts
        .get("/etc/chartgate/certs")
        .unwrap_or_else(|| panic!("no certs mount: {mounts:?}"));
    assert_eq!(Path::new(certs), root().join("deploy/certs"));
    assert!(
        strings(&gw["volumes"]).iter().all(|v| v.ends_with(":ro")),
        "{}",
        gw["volumes"]
    );

    // The gateway's config agrees with the compose file, and the binary
    // accepts it with the secrets compose would mount.
    let toml_text = std::fs::read_to_string(root().join("deploy/compose/chartgate.toml")).unwrap();
    let table: toml::Table = toml::from_str(&toml_text).unwrap();
    let gw_config = serde_json::to_value(table).unwrap();
    assert_eq!(gw_config["upstream"]["url"], "http://chartmuseum:8080");
    assert_eq!(gw_config["chartmuseum"]["depth"].to_string(), env["DEPTH"]);
    assert_eq!(gw_config["tls"]["addr"], "0.0.0.0:8443");
    for key in ["cert", "key"] {
        assert!(gw_config["tls"][key]
            .as_str()
            .unwrap()
            .starts_with("/etc/chartgate/certs/"));
    }
    assert!(!toml_text.contains("BEGIN"));

    let dir = scratch("compose");
    let out = run(chartgate()
        .args(["dev-certs", "--out"])
        .arg(dir.join("etc/chartgate/certs")));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(chartgate().args(["keygen", "--out"]).arg(dir.join("keys")));
    assert!(out.status.success(), "{}", text(&out));
    let secrets_dir = dir.join("run/secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    let mut secret_files = Vec::new();
    for s in gw["secrets"].as_array().unwrap() {
        let (source, target) = match s {
            Value::String(name) => (name.clone(), name.clone()),
            s => {
                let source = s["source"].as_str().unwrap().to_owned();
                let target = s["target"]
                    .as_str()
                    .map_or_else(|| source.clone(), str::to_owned);
                (source, target)
            }
        };
        assert!(
            config["secrets"][&source]["file"].is_string(),
            "secret {source} is a file"
        );
        let value = if source.contains("signing") {
            std::fs::read(dir.join("keys/signing-key.pem")).unwrap()
        } else {
            b"compose-master-key-0123456789\n".to_vec()
        };
        std::fs::write(secrets_dir.join(&target), value).unwrap();
        secret_files.push(format!("/run/secrets/{target}"));
    }
    for (key, v) in secret_refs(&gw_config).iter().map(|(k, v, _)| (k, v)) {
        assert!(
            secret_files.contains(v),
            "{key} = {v} is no compose secret: {secret_files:?}"
        );
    }
    let moved = toml_text
        .replace(
            "\"/etc/chartgate/",
            &format!("\"{}/etc/chartgate/", dir.display()),
        )
        .replace(
            "\"/run/secrets/",
            &format!("\"{}/run/secrets/", dir.display()),
        );
    let file = dir.join("chartgate.toml");
    std::fs::write(&file, moved).unwrap();
    let out = check_config(&file, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("config ok"),
        "chartgate check refused deploy/compose/chartgate.toml:\n{}",
        text(&out)
    );
}

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

/// Each test once with Helm 3 and once with Helm 4.
macro_rules! helm_3_and_4 {
    ($($(#[doc = $doc:literal])* $name:ident => $body:ident,)*) => {
        $(
            $(#[doc = $doc])*
            mod $name {
                #[test]
                fn helm3() {
                    super::$body(3)
                }
                #[test]
                fn helm4() {
                    super::$body(4)
                }
            }
        )*
    };
}

helm_3_and_4! {
    /// `helm lint --strict` with the defaults and every ci/ values file.
    chart_lints_strictly => lint,
    /// The rendered manifests of every case keep the chart's promises.
    rendered_manifests => manifests,
    /// checksum/config follows the config and nothing else.
    config_checksum_rolls_pods => checksum,
    /// values.schema.json and the templates refuse bad values.
    bad_values_are_refused => schema,
    /// `chartgate check` accepts every rendered chartgate.toml, as mounted.
    binary_accepts_rendered_config => binary_accepts,
}
