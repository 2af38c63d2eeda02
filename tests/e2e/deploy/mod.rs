//! The deployment files, checked with the real tools. The Helm chart in
//! `deploy/helm/chartgate` is linted (`--strict`) and rendered by Helm 3
//! and Helm 4 over its values matrix (the defaults and `ci/*-values.yaml`).
//! The rendered manifests are checked for what the chart promises: probes on
//! the admin port, the ChartMuseum NetworkPolicy, a loopback-only sidecar, no
//! secret in a ConfigMap, a config checksum that follows the config, and the
//! OCI bridge's `[oci]` with its staging directory on a writable volume that
//! every replica shares. The schema must refuse bad values, trust policies
//! included. Every rendered `chartgate.toml` must pass `chartgate check`,
//! with the files its pod would mount, written from the rendered Secret (or
//! fixtures for existing Secrets and ConfigMaps, such as a trust policy's CA
//! bundle); trust policies and publish rules given as values must reach it
//! unchanged. `deploy/compose.yaml` goes through `docker-compose
//! config`, and its `chartgate.toml` through `chartgate check`. A missing
//! tool fails the run; nothing is skipped.
//!
//! The files: this one holds the shared parts (the values matrix, running
//! Helm and `chartgate`, parsing documents, scratch directories);
//! `rendered.rs` reads a render (objects, containers, mounts, Secrets);
//! `lint.rs` lints the chart; `manifests.rs` and `network.rs` check the
//! rendered manifests; `checksums.rs` the config and secret checksums;
//! `schema.rs` the refused values; `config.rs` the rendered configs under
//! `chartgate check`; `notes.rs` NOTES.txt; `compose.rs` the compose file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

use crate::helm::tool;

use self::rendered::Rendered;

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
    /// `oci.enabled`: the config has `[oci]`, the pod a staging volume.
    oci: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "default",
        file: None,
        sidecar: false,
        tls: false,
        existing_secrets: false,
        oci: false,
    },
    Case {
        name: "external",
        file: Some("external-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: false,
        oci: false,
    },
    Case {
        name: "sidecar",
        file: Some("sidecar-values.yaml"),
        sidecar: true,
        tls: false,
        existing_secrets: false,
        oci: true,
    },
    Case {
        name: "ingress-passthrough",
        file: Some("ingress-passthrough-values.yaml"),
        sidecar: false,
        tls: true,
        existing_secrets: false,
        oci: false,
    },
    Case {
        name: "ingress-tls",
        file: Some("ingress-tls-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: false,
        oci: false,
    },
    Case {
        name: "full",
        file: Some("full-values.yaml"),
        sidecar: false,
        tls: false,
        existing_secrets: true,
        oci: true,
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

/// ChartMuseum's auth settings, as flags and as environment variables.
fn is_auth_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    name.starts_with("basic-auth") || name.starts_with("bearer-auth") || name.starts_with("auth-")
}

fn check_config(file: &Path, env: &[(String, String)]) -> Output {
    run(chartgate()
        .args(["check", "--config"])
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v))))
}

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
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

mod checksums;
mod compose;
mod config;
mod lint;
mod manifests;
mod network;
mod notes;
mod rendered;
mod schema;
