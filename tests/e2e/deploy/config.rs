//! Every rendered `chartgate.toml` accepted by `chartgate check`, with the
//! files its pod would mount, written from the rendered ConfigMap and
//! Secrets or from fixtures for the Secrets that exist before the release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::rendered::{strings, Rendered, Source};
use super::{chartgate, check_config, run, text, Helm, CASES};

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
    // Every absolute path into a mount, or of one (oci.staging_dir), now
    // points into `dir`.
    let mut config = r.config_text();
    let mut paths: Vec<&str> = mounts.iter().map(|m| m.path.as_str()).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in paths {
        for end in ["/", "\""] {
            config = config.replace(
                &format!("\"{path}{end}"),
                &format!("\"{}{end}", moved(path)),
            );
        }
    }
    assert!(
        !config.contains("\"/etc/") && !config.contains("\"/var/"),
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
        // [oci]'s staging directory is the mounted volume: the check made
        // its subdirectories there, and fails, naming the key, when it
        // cannot.
        assert_eq!(r.config()["oci"].is_null(), !case.oci, "{}", r.case);
        if let Some(staging) = r.config()["oci"]["staging_dir"].as_str() {
            let staging = PathBuf::from(format!("{}{staging}", dir.display()));
            for sub in ["uploads", "blobs"] {
                assert!(staging.join(sub).is_dir(), "{}: no {sub}", r.case);
            }
            std::fs::remove_dir_all(&staging).unwrap();
            std::fs::write(&staging, "not a directory").unwrap();
            let out = check_config(&file, &env);
            assert_eq!(out.status.code(), Some(64), "{}: {}", r.case, text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("oci.staging_dir"),
                "{}: {}",
                r.case,
                text(&out)
            );
            std::fs::remove_file(&staging).unwrap();
            std::fs::create_dir(&staging).unwrap();
        }
        // The check does read the mounted files: without the signing key it
        // fails, naming the key.
        let secrets = dir.join("etc/chartgate/secrets");
        std::fs::remove_file(secrets.join("signing-key.pem")).unwrap();
        let out = check_config(&file, &env);
        assert_eq!(out.status.code(), Some(64), "{}: {}", r.case, text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("issuer.signing_key"));
    }
}

helm_3_and_4! {
    /// `chartgate check` accepts every rendered chartgate.toml, as mounted.
    binary_accepts_rendered_config => binary_accepts,
}
