//! Every rendered `chartgate.toml` accepted by `chartgate check`, with the
//! files its pod would mount, written from the rendered ConfigMap and
//! Secrets or from fixtures for the Secrets that exist before the release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::rendered::{strings, Rendered, Source};
use super::{case, chartgate, check_config, run, text, Helm, CASES};

/// The contents the test supplies for Secrets and ConfigMaps that exist
/// before the release (existingSecret, the TLS Secrets, a trust policy's CA
/// bundle), by object name and key.
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
        // ConfigMaps: the CA bundles trust policies name in `ca_file`.
        add("gitlab-ca", "ca.crt", read(certs.join("ca.pem")));
        add("kube-root-ca.crt", "ca.crt", read(certs.join("ca.pem")));
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
    let fixture = |kind: &str, name: &String, key: &String| -> Vec<u8> {
        fixtures
            .files
            .get(&(name.clone(), key.clone()))
            .unwrap_or_else(|| panic!("{c}: no fixture for {kind} {name} key {key}"))
            .clone()
    };
    let content = |source: &Source| -> Vec<u8> {
        match source {
            Source::ConfigMap { name, key } => match r.named("ConfigMap", name) {
                Some(map) => map["data"][key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{c}: ConfigMap {name} has no key {key}"))
                    .as_bytes()
                    .to_vec(),
                None => fixture("ConfigMap", name, key),
            },
            Source::Secret { name, key } => match r.secret_data(name) {
                Some(data) => data
                    .get(key)
                    .unwrap_or_else(|| panic!("{c}: Secret {name} has no key {key}"))
                    .clone(),
                None => fixture("Secret", name, key),
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

/// `chartgate check` accepts the config laid out at `file`.
fn assert_accepted(r: &Rendered, file: &Path, env: &[(String, String)]) {
    let out = check_config(file, env);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("config ok"),
        "{}: chartgate check refused the rendered config:\n{}\n{}",
        r.case,
        text(&out),
        std::fs::read_to_string(file).unwrap()
    );
}

/// Every policy's `ca_file` is read by the check: without it the check
/// fails, naming the policy's key. Returns how many were checked.
fn trust_ca_files_are_read(
    r: &Rendered,
    dir: &Path,
    file: &Path,
    env: &[(String, String)],
) -> usize {
    let config = r.config();
    let mut checked = 0;
    for (i, policy) in config["trust"].as_array().into_iter().flatten().enumerate() {
        let Some(ca) = policy["ca_file"].as_str() else {
            continue;
        };
        let ca = PathBuf::from(format!("{}{ca}", dir.display()));
        let saved = std::fs::read(&ca)
            .unwrap_or_else(|e| panic!("{}: {} is not mounted: {e}", r.case, ca.display()));
        std::fs::remove_file(&ca).unwrap();
        let out = check_config(file, env);
        assert_eq!(out.status.code(), Some(64), "{}: {}", r.case, text(&out));
        let key = format!("trust[{i}].ca_file");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&key),
            "{}: no {key} in {}",
            r.case,
            text(&out)
        );
        std::fs::write(&ca, saved).unwrap();
        checked += 1;
    }
    checked
}

fn binary_accepts(major: u8) {
    let helm = Helm::new(major, "binary");
    let fixtures = Fixtures::new(&helm.home);
    // What the matrix must exercise somewhere: trust policies (with a
    // mounted CA bundle), publish rules and rules with `charts`.
    let (mut policies, mut ca_files, mut immutable, mut charts) = (0, 0, 0, 0);
    for case in CASES {
        let r = case.render(&helm, &[]);
        let dir = helm.home.join(format!("pod-{}", case.name));
        let (file, env) = lay_out(&r, &dir, &fixtures);
        assert_accepted(&r, &file, &env);
        let config = r.config();
        policies += config["trust"].as_array().map_or(0, Vec::len);
        immutable += config["publish"]["immutable"]
            .as_array()
            .map_or(0, Vec::len);
        let rules = config["accounts"]
            .as_array()
            .into_iter()
            .chain(config["trust"].as_array())
            .flatten()
            .flat_map(|holder| holder["rules"].as_array().into_iter().flatten());
        charts += rules.filter(|rule| !rule["charts"].is_null()).count();
        ca_files += trust_ca_files_are_read(&r, &dir, &file, &env);
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
    assert!(
        policies >= 3 && ca_files >= 2 && immutable >= 2 && charts >= 2,
        "helm{major}: the values matrix lost its trust policies ({policies}), their CA \
         bundles ({ca_files}), publish rules ({immutable}) or charts rules ({charts})"
    );
}

/// Trust policies and publish rules given as values reach chartgate.toml
/// as given, through toJson: strings with quotes, backslashes, `<>&` (which
/// Go's JSON writes as `\u003c`…) and non-ASCII; booleans (false too);
/// string lists. chartgate accepts them.
fn trust_values_render(major: u8) {
    let helm = Helm::new(major, "trust-values");
    let fixtures = Fixtures::new(&helm.home);
    let trust = json!([
        {
            "name": "github-release",
            "issuer": "https://token.actions.githubusercontent.com",
            "audience": "https://charts.example.com/?a=1&b=<2>",
            "provider": "github",
            "maxTtl": "1h",
            "singleUse": false,
            "claims": {
                "repository": "acme/billing",
                "ref": ["refs/heads/main", "refs/tags/v*"],
                "environment": ["prod <eu> & \"main\"", "caf\u{e9} \u{2603}", "lit\\*"],
                "workflow_ref": "acme/billing/.github/workflows/release.yml@refs/tags/v*"
            },
            "rules": [
                {"repos": "acme/charts", "actions": ["pull", "push"], "charts": ["billing*", "a\\?b"]},
                {"repos": "acme/*", "actions": []}
            ]
        },
        {
            "name": "gitlab",
            "issuer": "https://gitlab.example.com",
            "audience": "chartgate",
            "provider": "gitlab",
            "singleUse": true,
            "claims": {"project_path": "acme/**", "ref_protected": false},
            "rules": [{"repos": "acme/stable", "actions": ["pull"]}]
        }
    ]);
    let immutable = json!(["acme/stable", "rel{ease,eases}/*"]);
    let values = format!("trust={trust}");
    let publish = format!("publish.immutable={immutable}");
    let r = case("default").render(&helm, &["--set-json", &values, "--set-json", &publish]);
    let config = r.config();
    let c = &r.case;
    let policies = config["trust"].as_array().unwrap();
    assert_eq!(policies.len(), 2, "{c}");
    for (policy, given) in policies.iter().zip(trust.as_array().unwrap()) {
        for (key, value) in [
            ("name", "name"),
            ("issuer", "issuer"),
            ("audience", "audience"),
            ("provider", "provider"),
            ("claims", "claims"),
            ("rules", "rules"),
            ("single_use", "singleUse"),
        ] {
            assert_eq!(policy[key], given[value], "{c}: trust {key}");
        }
    }
    assert_eq!(policies[0]["max_ttl"], "1h", "{c}");
    assert!(policies[1]["max_ttl"].is_null(), "{c}: chartgate's default");
    assert_eq!(config["publish"]["immutable"], immutable, "{c}");
    let dir = helm.home.join("pod");
    let (file, env) = lay_out(&r, &dir, &fixtures);
    assert_accepted(&r, &file, &env);

    // The control: the check reads what was rendered. A claim this
    // provider's policies cannot match is refused, naming it.
    let r = case("default").render(
        &helm,
        &[
            "--set-json",
            &values,
            "--set",
            "trust[1].claims.repository=acme/x",
            "--skip-schema-validation",
        ],
    );
    let dir = helm.home.join("pod-bad");
    let (file, env) = lay_out(&r, &dir, &fixtures);
    let out = check_config(&file, &env);
    assert_eq!(out.status.code(), Some(64), "{c}: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trust[1].claims.repository"),
        "{c}: {}",
        text(&out)
    );

    // Without policies or immutable repositories, neither section.
    let config = case("default").render(&helm, &[]).config();
    assert!(
        config["trust"].is_null() && config["publish"].is_null(),
        "{config}"
    );
}

helm_3_and_4! {
    /// `chartgate check` accepts every rendered chartgate.toml, as mounted.
    binary_accepts_rendered_config => binary_accepts,
    /// Trust policies and publish rules reach chartgate.toml as given.
    trust_and_publish_values_render => trust_values_render,
}
