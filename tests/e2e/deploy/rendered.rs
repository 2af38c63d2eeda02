//! A render of the chart, read: its objects, the chartgate pod and its
//! containers, what the kubelet would mount, and the decoded Secrets.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// The manifests of one render.
pub(super) struct Rendered {
    pub(super) case: String,
    pub(super) docs: Vec<Value>,
}

pub(super) fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

pub(super) fn strings(v: &Value) -> Vec<String> {
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
    pub(super) fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub(super) fn one(&self, kind: &str) -> &Value {
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

    pub(super) fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
    }

    pub(super) fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]
    }

    pub(super) fn container(&self, name: &str) -> Option<&Value> {
        self.pod()["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
    }

    pub(super) fn gateway(&self) -> &Value {
        self.container("chartgate")
            .unwrap_or_else(|| panic!("{}: no chartgate container", self.case))
    }

    pub(super) fn selector(&self) -> BTreeMap<String, String> {
        labels(&self.one("Deployment")["spec"]["selector"]["matchLabels"])
    }

    pub(super) fn config_text(&self) -> String {
        self.one("ConfigMap")["data"]["chartgate.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no chartgate.toml in the ConfigMap", self.case))
            .to_owned()
    }

    /// chartgate.toml, as JSON for uniform indexing.
    pub(super) fn config(&self) -> Value {
        let table: toml::Table = toml::from_str(&self.config_text())
            .unwrap_or_else(|e| panic!("{}: chartgate.toml is not TOML: {e}", self.case));
        serde_json::to_value(table).unwrap()
    }

    /// The decoded data of the Secret named `name`, if the chart renders it.
    pub(super) fn secret_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
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
    pub(super) fn port_number(&self, container: &Value, port: &Value) -> u64 {
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
pub(super) enum Source {
    Secret { name: String, key: String },
    ConfigMap { name: String, key: String },
}

/// A volume mount of a container: the files it delivers (relative path to
/// source), or a writable directory (emptyDir, claim).
pub(super) struct Mount {
    pub(super) path: String,
    pub(super) read_only: bool,
    pub(super) files: Vec<(String, Source)>,
    /// The pod's volume behind the mount, as rendered.
    pub(super) volume: Value,
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
    pub(super) fn mounts(&self, container: &Value) -> Vec<Mount> {
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
                volume: volume.clone(),
            });
        }
        mounts
    }

    /// Every file mounted into the chartgate container, by absolute path.
    pub(super) fn gateway_files(&self) -> BTreeMap<String, (Source, bool)> {
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
