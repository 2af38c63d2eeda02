//! Config validation: the sample parses, and each bad key is named.

use super::*;
use crate::auth::key::tests::test_rsa_pem;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    match name {
        "MASTER" => Some("0123456789abcdef-master".into()),
        "SHORT" => Some("short".into()),
        "KEY" => Some(test_rsa_pem().0.clone()),
        _ => None,
    }
}

const GOOD: &str = r#"
[listen]
addr = "127.0.0.1:8080"
admin_addr = "127.0.0.1:9090"

[upstream]
url = "http://127.0.0.1:8081"

[chartmuseum]
depth = 2

[auth]
realm = "http://localhost:8080/oauth/token"
service = "localhost:8080"

[issuer]
signing_key = { env = "KEY" }

[[accounts]]
id = "master"
key = { env = "MASTER" }
rules = [{ repos = "**", actions = ["pull", "push"] }]
"#;

fn load(text: &str) -> Result<Config> {
    Config::from_toml_str(text, Path::new("."), &env)
}

#[test]
fn good_config_gets_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.gateway.routes.depth, 2);
    assert_eq!(c.gateway.auth.audience, "localhost:8080");
    assert_eq!(c.gateway.auth.issuer, "chartgate");
    assert_eq!(c.gateway.issuer.path, "/oauth/token");
    assert_eq!(c.gateway.issuer.token_ttl, Duration::from_secs(300));
    assert_eq!(c.gateway.upstream.max_upload_bytes, 20 * 1024 * 1024);
    assert_eq!(c.server.listen.read_timeout, Duration::from_secs(75));
    assert_eq!(c.server.listen.write_timeout, Duration::from_secs(60));
    let master = c
        .gateway
        .accounts
        .by_api_key("0123456789abcdef-master", 0)
        .unwrap();
    assert_eq!(master.id, "master");
    assert!(master
        .acl
        .allows("org1/repo1", crate::auth::access::Action::Push));
}

#[test]
fn the_shipped_sample_parses() {
    let sample = include_str!("../../config/chartgate.toml");
    assert!(sample.contains("CHARTGATE_MASTER_KEY"));
    let dir = std::env::temp_dir().join(format!("chartgate-sample-{}", std::process::id()));
    crate::server::devcert::generate(&["localhost"], "dev-client")
        .unwrap()
        .write(&dir)
        .unwrap();
    let sample = sample
        .replace(
            "../certs/dev/server.pem",
            &dir.join("server.pem").display().to_string(),
        )
        .replace(
            "../certs/dev/server-key.pem",
            &dir.join("server-key.pem").display().to_string(),
        );
    let c = load(
        &sample
            .replace(
                r#"signing_key = { file = "../certs/dev/signing-key.pem" }"#,
                r#"signing_key = { env = "KEY" }"#,
            )
            .replace("CHARTGATE_MASTER_KEY", "MASTER"),
    )
    .unwrap();
    assert_eq!(c.gateway.upstream.base, "http://127.0.0.1:8081/");
    assert_eq!(c.server.listen.addr.unwrap().to_string(), "127.0.0.1:8080");
    assert_eq!(c.gateway.auth.realm, "http://localhost:8080/oauth/token");
    assert_eq!(c.gateway.routes.depth, 2);
    assert_eq!(c.server.tls.unwrap().addr.to_string(), "127.0.0.1:8443");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each mutation of the good config must fail with a message naming `key`.
#[test]
fn every_bad_key_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nworker_threads = 0",
            "listen.worker_threads",
        ),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nread_timeout = \"0s\"",
            "listen.read_timeout",
        ),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nwrite_timeout = \"0s\"",
            "listen.write_timeout",
        ),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nread_timeout = \"a minute\"",
            "read_timeout",
        ),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nwrite_timeout = 60",
            "write_timeout",
        ),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:9090\"\nread_timout = \"60s\"",
            "read_timout",
        ),
        (
            "key = { env = \"MASTER\" }",
            "key = { env = \"UNSET\" }",
            "accounts[0].key.env",
        ),
        (
            "key = { env = \"MASTER\" }",
            "key = { env = \"SHORT\" }",
            "accounts[0].key",
        ),
        (
            "key = { env = \"MASTER\" }",
            "key = { env = \"MASTER\", file = \"x\" }",
            "accounts[0].key",
        ),
        (
            "key = { env = \"MASTER\" }",
            "key = \"inline-secret-is-refused\"",
            "key",
        ),
        (
            "key = { env = \"MASTER\" }",
            "secret_hash = \"plain\"",
            "accounts[0].secret_hash",
        ),
        (
            "key = { env = \"MASTER\" }",
            "key = { env = \"MASTER\" }\nexpires = \"tomorrow\"",
            "accounts[0].expires",
        ),
        ("id = \"master\"", "id = \"a:b\"", "accounts[0].id"),
        (
            "repos = \"**\"",
            "repos = \"org/[\"",
            "accounts[0].rules[0].repos",
        ),
        (
            "\"pull\", \"push\"]",
            "\"pull\", \"delete\"]",
            "accounts[0].rules[0].actions",
        ),
        (
            "service = \"localhost:8080\"",
            "service = \"localhost:8080\"\nanonymous_pull = [\"/x\"]",
            "auth.anonymous_pull",
        ),
        (
            "service = \"localhost:8080\"",
            "service = \"localhost:8080\"\ntoken_header = \"Authorization\"",
            "auth.token_header",
        ),
        (
            "service = \"localhost:8080\"",
            "service = \"localhost:8080\"\ntoken_header = \"bad header\"",
            "auth.token_header",
        ),
        ("depth = 2", "depth = \"two\"", "depth"),
        ("depth = 2", "depth = 99", "chartmuseum.depth"),
        ("depth = 2", "depth = 2\nbogus = 1", "bogus"),
        ("addr = \"127.0.0.1:8080\"", "addr = \"nowhere\"", "addr"),
        (
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:8080\"",
            "listen.admin_addr",
        ),
        (
            "url = \"http://127.0.0.1:8081\"",
            "url = \"ftp://127.0.0.1:8081\"",
            "upstream.url",
        ),
        (
            "url = \"http://127.0.0.1:8081\"",
            "url = \"http://127.0.0.1:8081/cm\"",
            "upstream.url",
        ),
        (
            "url = \"http://127.0.0.1:8081\"",
            "url = \"http://127.0.0.1:8081\"\ntimeout = \"soon\"",
            "timeout",
        ),
        (
            "realm = \"http://localhost:8080/oauth/token\"",
            "realm = \"/oauth/token\"",
            "auth.realm",
        ),
        (
            "realm = \"http://localhost:8080/oauth/token\"",
            "realm = \"http://x/\\\"y\"",
            "auth.realm",
        ),
        (
            "service = \"localhost:8080\"",
            "service = \"\"",
            "auth.service",
        ),
        (
            "depth = 2",
            "depth = 2\ncontext_path = \"/a/../b\"",
            "chartmuseum.context_path",
        ),
        (
            "signing_key = { env = \"KEY\" }",
            "signing_key = { file = \"/nonexistent/key.pem\" }",
            "issuer.signing_key.file",
        ),
        (
            "signing_key = { env = \"KEY\" }",
            "signing_key = { env = \"MASTER\" }",
            "issuer.signing_key",
        ),
        (
            "signing_key = { env = \"KEY\" }",
            "signing_key = { env = \"KEY\" }\nalgorithm = \"HS256\"",
            "issuer.algorithm",
        ),
        (
            "signing_key = { env = \"KEY\" }",
            "signing_key = { env = \"KEY\" }\ntoken_ttl = \"5s\"",
            "issuer.token_ttl",
        ),
        (
            "signing_key = { env = \"KEY\" }",
            "signing_key = { env = \"KEY\" }\npath = \"/\"",
            "issuer.path",
        ),
    ];
    for (from, to, key) in cases {
        assert!(GOOD.contains(from), "fixture lacks {from:?}");
        let text = GOOD.replacen(from, to, 1);
        let err = format!("{:#}", load(&text).expect_err(to));
        assert!(
            err.contains(key),
            "error for {to:?} does not name {key:?}: {err}"
        );
    }
}

#[test]
fn missing_section_is_named() {
    let text = GOOD.replace("[upstream]\nurl = \"http://127.0.0.1:8081\"\n", "");
    let err = format!("{:#}", load(&text).unwrap_err());
    assert!(err.contains("upstream"), "{err}");
}

#[test]
fn context_path_is_normalised_like_chartmuseum() {
    let c = load(&GOOD.replace("depth = 2", "depth = 2\ncontext_path = \"cm/\"")).unwrap();
    assert_eq!(c.gateway.routes.context_path.as_deref(), Some("/cm"));
    let c = load(&GOOD.replace("depth = 2", "depth = 2\ncontext_path = \"/\"")).unwrap();
    assert_eq!(c.gateway.routes.context_path, None);
}

#[test]
fn log_format_is_text_or_json() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.server.log_format, LogFormat::Text);
    let c = load(&format!("{GOOD}\n[log]\nformat = \"json\"\n")).unwrap();
    assert_eq!(c.server.log_format, LogFormat::Json);
    let err = format!(
        "{:#}",
        load(&format!("{GOOD}\n[log]\nformat = \"xml\"\n")).unwrap_err()
    );
    assert!(err.contains("log.format"), "{err}");
}

#[test]
fn audit_file_is_relative_to_the_config() {
    let c = Config::from_toml_str(
        &format!("{GOOD}\n[audit]\nfile = \"audit.jsonl\"\n"),
        Path::new("/etc/chartgate"),
        &env,
    )
    .unwrap();
    assert_eq!(
        c.gateway.audit.file.as_deref(),
        Some(Path::new("/etc/chartgate/audit.jsonl"))
    );
    assert!(load(GOOD).unwrap().gateway.audit.file.is_none());
}
