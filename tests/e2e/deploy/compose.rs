//! `deploy/compose.yaml` through `docker-compose config`, and its
//! `chartgate.toml` (with `[oci]` staging on the one writable volume) through
//! `chartgate check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::rendered::strings;
use super::{
    chartgate, check_config, is_auth_setting, parse_yaml, root, run, scratch, secret_refs, text,
};

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

    // The one writable mount is [oci]'s staging directory: a named volume,
    // handed to chartgate's user by a one-shot chown that chartgate waits
    // for (Docker creates it owned by root).
    let staging = gw_config["oci"]["staging_dir"]
        .as_str()
        .expect("deploy/compose/chartgate.toml has no [oci] staging_dir");
    assert_eq!(gw_config["oci"]["upload_timeout"], "15m");
    for v in strings(&gw["volumes"]) {
        let parts: Vec<&str> = v.split(':').collect();
        if parts[1] == staging {
            assert!(parts.len() == 2 || parts[2] == "rw", "{v}");
            assert!(
                config["volumes"][parts[0]].is_object(),
                "{v}: no named volume"
            );
        } else {
            assert_eq!(parts.last(), Some(&"ro"), "{v}: writable");
        }
    }
    let volume = mounts
        .get(staging)
        .unwrap_or_else(|| panic!("{staging} is not mounted: {mounts:?}"));
    let (chown_name, chown) = services
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, s)| {
            strings(&s["volumes"])
                .iter()
                .any(|v| v.starts_with(&format!("{volume}:")))
                && strings(&s["entrypoint"]).first().map(String::as_str) == Some("/bin/chown")
        })
        .unwrap_or_else(|| panic!("nothing hands volume {volume} to {user}"));
    let entrypoint = strings(&chown["entrypoint"]);
    assert_eq!(entrypoint.len(), 3, "{entrypoint:?}");
    assert_eq!(entrypoint[1], user, "{chown_name} chowns to another user");
    assert!(
        strings(&chown["volumes"]).contains(&format!("{volume}:{}:rw", entrypoint[2]))
            || strings(&chown["volumes"]).contains(&format!("{volume}:{}", entrypoint[2])),
        "{chown_name} chowns {} but mounts {}",
        entrypoint[2],
        chown["volumes"]
    );
    assert_eq!(
        gw["depends_on"][chown_name]["condition"], "service_completed_successfully",
        "{}",
        gw["depends_on"]
    );

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
        )
        .replace(
            &format!("\"{staging}\""),
            &format!("\"{}{staging}\"", dir.display()),
        );
    assert!(
        !moved.contains("\"/var/"),
        "a path outside every mount:\n{moved}"
    );
    let file = dir.join("chartgate.toml");
    std::fs::write(&file, moved).unwrap();
    let out = check_config(&file, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("config ok"),
        "chartgate check refused deploy/compose/chartgate.toml:\n{}",
        text(&out)
    );
    // It prepared the staging area in the (moved) volume.
    let staging = PathBuf::from(format!("{}{staging}", dir.display()));
    assert!(staging.join("uploads").is_dir(), "{}", staging.display());
}
