//! Helm's native `oci://` workflow through chartgate's registry bridge,
//! with the real parts: Helm 3 and 4 `registry login`, `push`, `pull` by
//! version and by range, `show chart` and `template` over plain HTTP and
//! over TLS; the cm-push ↔ OCI round trip byte-identical both ways; the
//! ORAS CLI as a second, independent OCI client; a signed chart's
//! provenance carried and verified both ways; and the denials each client
//! shows, with ChartMuseum's request log proving nothing was
//! uploaded. Behind the gateway runs the real ChartMuseum, unmodified.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chartgate::server::devcert;

use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::{assert_same, blocking, tool, Helm};

/// The ORAS CLI with a clean environment and its own credential store.
/// Returns (success, stdout, stdout + stderr).
fn oras(home: &Path, args: &[&str]) -> (bool, String, String) {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new(tool("oras"))
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("the oras CLI (scripts/tools.sh oras) is needed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, text)
}

/// The accounts config with the registry bridge on, its realm on the
/// listener the clients dial (OCI clients refuse a loopback realm on
/// another host or scheme).
fn registry_config(staging: &Path, realm: &str, certs: &Path) -> String {
    let mut text = accounts_config().replace("http://localhost:8080/oauth/token", realm);
    let tls = format!(
        "\n[tls]\naddr = \"127.0.0.1:0\"\ncert = \"{c}/server.pem\"\nkey = \"{c}/server-key.pem\"\n\n[oci]\nstaging_dir = \"{s}\"\n\n",
        c = certs.display(),
        s = staging.display()
    );
    let at = text.find("[[accounts]]").unwrap();
    text.insert_str(at, &tls);
    text
}

/// Whether ChartMuseum ever received an upload into `repo`.
fn uploads_into(cm: &ChartMuseum, repo: &str) -> usize {
    cm.sync();
    cm.served()
        .iter()
        .filter(|s| s.method == "POST" && s.path.starts_with(&format!("/api/{repo}/")))
        .count()
}

struct Site {
    cm: Arc<ChartMuseum>,
    /// `127.0.0.1:PORT` of the listener in use.
    host: String,
    /// Flags that reach it: `--plain-http` or `--ca-file <ca>`.
    flags: Vec<String>,
}

impl Site {
    fn oci(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host)
    }

    fn with<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend(self.flags.iter().map(String::as_str));
        v
    }
}

/// A fresh directory for Helm to pull into (`helm pull -d` needs one).
fn fresh(helm: &Helm, name: &str) -> PathBuf {
    let dir = helm.home().join(name.replace(':', "-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Login, push, pull by version and range, show, template, and the
/// denials, for one Helm major against `site`.
fn helm_workflow(helm: &Helm, site: &Site, chart: &str) {
    let host = site.host.as_str();
    let wrong = helm.fails(
        &site.with(&["registry", "login", host, "-u", "alice", "-p", "wrong"]),
        &[],
    );
    assert!(wrong.contains("401"), "wrong password: {wrong}");
    let out = helm.ok(
        &site.with(&[
            "registry",
            "login",
            host,
            "-u",
            "alice",
            "-p",
            ALICE_PASSWORD,
        ]),
        &[],
    );
    let said = format!("{out}{}", "");
    assert!(
        said.contains("Login Succeeded") || helm_login_stored(helm, host),
        "login: {said}"
    );

    let v1 = helm.package(chart, "0.1.0");
    let v2 = helm.package(chart, "0.2.0+b1");
    let repo = site.oci("org1/repo1");
    for file in [&v1, &v2] {
        helm.ok(&site.with(&["push", file.to_str().unwrap(), &repo]), &[]);
    }
    // OCI push → ChartMuseum holds the very bytes Helm packaged.
    assert_same(
        &v1,
        &site.cm.stored("org1/repo1", &format!("{chart}-0.1.0.tgz")),
    );
    assert_same(
        &v2,
        &site
            .cm
            .stored("org1/repo1", &format!("{chart}-0.2.0+b1.tgz")),
    );

    let reference = format!("{repo}/{chart}");
    let out1 = fresh(helm, &format!("pulled-{host}-1"));
    let d1 = out1.to_str().unwrap();
    helm.ok(
        &site.with(&["pull", &reference, "--version", "0.1.0", "-d", d1]),
        &[],
    );
    assert_same(&out1.join(format!("{chart}-0.1.0.tgz")), &v1);
    // A range resolves through the tags list: the highest match, with its
    // `+` given back (the tag is `0.2.0_b1`).
    let out2 = fresh(helm, &format!("pulled-{host}-2"));
    let d2 = out2.to_str().unwrap();
    helm.ok(
        &site.with(&["pull", &reference, "--version", "0.x", "-d", d2]),
        &[],
    );
    assert_same(&out2.join(format!("{chart}-0.2.0+b1.tgz")), &v2);

    let shown = helm.ok(
        &site.with(&["show", "chart", &reference, "--version", "0.1.0"]),
        &[],
    );
    assert!(
        shown.contains(&format!("name: {chart}")) && shown.contains("version: 0.1.0"),
        "show chart: {shown}"
    );
    let rendered = helm.ok(
        &site.with(&["template", "rel", &reference, "--version", "0.1.0"]),
        &[],
    );
    assert!(
        rendered.contains("kind: Deployment") && rendered.contains(&format!("rel-{chart}")),
        "template: {rendered}"
    );

    // Another tenant's repository: alice has no rule for org1/secret.
    let secret = helm.fails(
        &site.with(&["push", v1.to_str().unwrap(), &site.oci("org1/secret")]),
        &[],
    );
    assert!(
        secret.contains("401") || secret.contains("403"),
        "push to org1/secret: {secret}"
    );
    assert_eq!(uploads_into(&site.cm, "org1/secret"), 0);
}

/// Whether Helm stored a credential for `host` (Helm 4 prints its success
/// line on stderr).
fn helm_login_stored(helm: &Helm, host: &str) -> bool {
    let store = helm.home().join("config/registry/config.json");
    std::fs::read_to_string(store).is_ok_and(|s| s.contains(host))
}

/// What both tests start with: a fresh work dir, the real ChartMuseum, a
/// dev CA and certificates, and a gateway whose realm is on its plain
/// listener (OCI clients take a realm only on the host they dialled).
struct Bridge {
    work: PathBuf,
    cm: Arc<ChartMuseum>,
    certs: PathBuf,
    staging: PathBuf,
    gw: Gw,
    /// The plain listener, as `127.0.0.1:port`.
    plain: String,
}

impl Bridge {
    async fn start(tag: &str) -> Bridge {
        let work = std::env::temp_dir().join(format!("chartgate-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let storage = work.join("storage");
        let cm = blocking(move || {
            ChartMuseum::start(
                &Options {
                    depth: 2,
                    ..Options::default()
                },
                &storage,
                &storage.with_extension("log"),
            )
        })
        .await;
        let certs = work.join("certs");
        devcert::generate(&["localhost", "127.0.0.1"], "ci-bot")
            .unwrap()
            .write(&certs)
            .unwrap();
        let staging = work.join("staging");
        let text = registry_config(&staging, "http://localhost:8080/oauth/token", &certs);
        let gw = spawn_gateway(config(&text, cm.addr)).await;
        let plain = format!("127.0.0.1:{}", gw.addr.port());
        let bridge = Bridge {
            work,
            cm: Arc::new(cm),
            certs,
            staging,
            gw,
            plain,
        };
        bridge.realm_on(&bridge.plain, "http");
        bridge
    }

    /// Rebuilds the gateway with its realm on `host` over `scheme`.
    fn realm_on(&self, host: &str, scheme: &str) {
        let realm = format!("{scheme}://{host}/oauth/token");
        self.gw.live.replace(rebuild(
            &self.gw,
            config(
                &registry_config(&self.staging, &realm, &self.certs),
                self.cm.addr,
            ),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_and_oras_use_chartmuseum_as_an_oci_registry() {
    let bridge = Bridge::start("oci").await;
    let (work, cm, plain) = (&bridge.work, &bridge.cm, &bridge.plain);
    let tls = format!("127.0.0.1:{}", bridge.gw.tls_addr.unwrap().port());

    for major in [3u8, 4] {
        let site = Site {
            cm: cm.clone(),
            host: plain.clone(),
            flags: vec!["--plain-http".into()],
        };
        let helm = Helm::new(major, work.join(format!("helm{major}")));
        blocking(move || {
            helm_workflow(&helm, &site, &format!("plain{major}"));
            round_trips(&helm, &site, major);
            pull_only_and_anonymous(&helm, &site, major);
        })
        .await;
    }
    let (home, host, cm2) = (work.join("oras"), plain.clone(), cm.clone());
    blocking(move || oras_client(&home, &host, &cm2)).await;

    // Over TLS, the realm on the TLS listener.
    bridge.realm_on(&tls, "https");
    let ca = bridge.certs.join("ca.pem").display().to_string();
    for major in [3u8, 4] {
        let site = Site {
            cm: cm.clone(),
            host: tls.clone(),
            flags: vec!["--ca-file".into(), ca.clone()],
        };
        let helm = Helm::new(major, work.join(format!("tls-helm{major}")));
        blocking(move || helm_workflow(&helm, &site, &format!("tls{major}"))).await;
    }
    // Nothing is left staged once every push was published.
    let left: Vec<_> = walk(&bridge.staging.join("blobs"));
    assert!(left.is_empty(), "staged blobs left behind: {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A chart pushed by helm-push is pulled over OCI byte-identical to what
/// ChartMuseum stored, and an OCI-pushed chart is pulled from the classic
/// repository byte-identical to what Helm packaged.
fn round_trips(helm: &Helm, site: &Site, major: u8) {
    let classic = format!("http://{}/org1/repo1", site.host);
    let name = format!("cm{major}");
    let file = helm.package(&name, "1.0.0");
    helm.ok(
        &[
            "cm-push",
            file.to_str().unwrap(),
            &classic,
            "--username",
            "alice",
            "--password",
            ALICE_PASSWORD,
        ],
        &[],
    );
    let stored = site.cm.stored("org1/repo1", &format!("{name}-1.0.0.tgz"));
    let out = fresh(helm, "from-cm-push");
    let reference = site.oci(&format!("org1/repo1/{name}"));
    helm.ok(
        &site.with(&[
            "pull",
            &reference,
            "--version",
            "1.0.0",
            "-d",
            out.to_str().unwrap(),
        ]),
        &[],
    );
    assert_same(&out.join(format!("{name}-1.0.0.tgz")), &stored);

    helm.ok(
        &[
            "repo",
            "add",
            "classic",
            &classic,
            "--username",
            "alice",
            "--password",
            ALICE_PASSWORD,
        ],
        &[],
    );
    let chart = format!("plain{major}");
    let pulled = helm.pull(&format!("classic/{chart}"), "0.1.0", "from-classic", &[]);
    let pushed = helm.home().join(format!("src/{chart}-0.1.0.tgz"));
    assert_same(&pulled, &pushed);
}

/// A pull-only account cannot push (ChartMuseum receives no upload); an
/// anonymous-pull repository is pulled with no login at all.
fn pull_only_and_anonymous(helm: &Helm, site: &Site, major: u8) {
    let host = site.host.as_str();
    helm.ok(
        &site.with(&["registry", "login", host, "-u", "ci", "-p", CI_KEY]),
        &[],
    );
    let file = helm.package("readonly", &format!("{major}.0.0"));
    let refused = helm.fails(
        &site.with(&["push", file.to_str().unwrap(), &site.oci("org2/repo2")]),
        &[],
    );
    assert!(
        refused.contains("401") || refused.contains("403"),
        "pull-only push: {refused}"
    );
    assert_eq!(uploads_into(&site.cm, "org2/repo2"), 0);

    // Seeded straight into ChartMuseum's API, as an operator would.
    let anon = helm.package("anon", &format!("{major}.0.0"));
    let seeded = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--data-binary"])
        .arg(format!("@{}", anon.display()))
        .arg(format!("{}/api/public/charts/charts", site.cm.url()))
        .status()
        .expect("curl is needed");
    assert!(seeded.success(), "seeding public/charts failed");
    let stranger = Helm::new(major, helm.home().join("stranger"));
    let out = fresh(&stranger, "anon");
    stranger.ok(
        &site.with(&[
            "pull",
            &site.oci("public/charts/anon"),
            "--version",
            &format!("{major}.0.0"),
            "-d",
            out.to_str().unwrap(),
        ]),
        &[],
    );
    assert_same(&out.join(anon.file_name().unwrap()), &anon);
    // The same stranger is refused a repository that is not anonymous.
    let denied = stranger.fails(
        &site.with(&[
            "pull",
            &site.oci(&format!("org1/repo1/plain{major}")),
            "--version",
            "0.1.0",
        ]),
        &[],
    );
    assert!(denied.contains("401"), "anonymous pull of org1: {denied}");
}

/// The ORAS CLI lists the tags Helm pushed and pulls the chart (the derived
/// manifest titles the archive layer, so ORAS writes it as a file); a wrong
/// password and another tenant are refused.
fn oras_client(home: &Path, host: &str, cm: &ChartMuseum) {
    let creds = ["--plain-http", "-u", "alice", "-p", ALICE_PASSWORD];
    let repo = format!("{host}/org1/repo1/plain3");
    let (ok, tags, text) = oras(home, &[&["repo", "tags", &repo][..], &creds].concat());
    assert!(ok, "oras repo tags: {text}");
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["0.1.0", "0.2.0_b1"]);
    let out = home.join("pulled");
    let (ok, _, text) = oras(
        home,
        &[
            &[
                "pull",
                &format!("{repo}:0.1.0"),
                "-o",
                out.to_str().unwrap(),
            ][..],
            &creds,
        ]
        .concat(),
    );
    assert!(ok, "oras pull: {text}");
    let stored = cm.stored("org1/repo1", "plain3-0.1.0.tgz");
    assert_same(&out.join("plain3-0.1.0.tgz"), &stored);

    let wrong = ["--plain-http", "-u", "alice", "-p", "wrong"];
    let (ok, _, text) = oras(home, &[&["repo", "tags", &repo][..], &wrong].concat());
    assert!(!ok && text.contains("401"), "wrong password: {text}");
    let secret = format!("{host}/org1/secret/plain3");
    let (ok, _, text) = oras(home, &[&["repo", "tags", &secret][..], &creds].concat());
    assert!(
        !ok && text.contains("unauthorized"),
        "another tenant: {text}"
    );
}

/// Runs gpg in `home` with no agent prompts; panics on failure.
fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("gpg")
        .args(["--batch", "--homedir"])
        .arg(home)
        .args(args)
        .output()
        .expect("gpg is needed to sign a chart");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh signing key; returns (secret keyring, public keyring) files in
/// the format Helm reads.
fn signing_keyrings(work: &Path) -> (PathBuf, PathBuf) {
    let home = work.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(
        &home,
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "chartgate test <test@example.com>",
            "rsa2048",
            "sign",
            "never",
        ],
    );
    let (secret, public) = (work.join("secring.gpg"), work.join("pubring.gpg"));
    std::fs::write(&secret, gpg(&home, &["--export-secret-keys"])).unwrap();
    std::fs::write(&public, gpg(&home, &["--export"])).unwrap();
    (secret, public)
}

/// A signed chart pushed with `helm push` lands in ChartMuseum with its
/// `.prov`, and verifies when pulled both ways: over OCI, where the bridge
/// serves the provenance file as a layer, and from the classic repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_charts_carry_their_provenance_both_ways() {
    let bridge = Bridge::start("oci-prov").await;
    let (work, cm, host) = (bridge.work.clone(), bridge.cm.clone(), bridge.plain.clone());
    blocking(move || {
        let (secret, public) = signing_keyrings(&work);
        let helm = Helm::new(3, work.join("helm"));
        let src = helm.home().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let chart = src.join("signed");
        helm.ok(&["create", chart.to_str().unwrap()], &[]);
        let (c, s, k) = (
            chart.to_str().unwrap(),
            src.to_str().unwrap(),
            secret.to_str().unwrap(),
        );
        helm.ok(
            &[
                "package",
                c,
                "-d",
                s,
                "--sign",
                "--key",
                "chartgate test",
                "--keyring",
                k,
            ],
            &[],
        );
        let archive = src.join("signed-0.1.0.tgz");
        let prov = src.join("signed-0.1.0.tgz.prov");
        assert!(prov.exists(), "helm package --sign wrote no .prov");
        let plain = ["--plain-http"];
        let login = [
            "registry",
            "login",
            &host,
            "-u",
            "alice",
            "-p",
            ALICE_PASSWORD,
        ];
        helm.ok(&[&login[..], &plain].concat(), &[]);
        let repo = format!("oci://{host}/org1/repo1");
        helm.ok(
            &[&["push", archive.to_str().unwrap(), &repo][..], &plain].concat(),
            &[],
        );
        assert_same(&prov, &cm.stored("org1/repo1", "signed-0.1.0.tgz.prov"));
        assert_same(&archive, &cm.stored("org1/repo1", "signed-0.1.0.tgz"));

        let pubring = public.to_str().unwrap();
        let out = fresh(&helm, "verified-oci");
        let d = out.to_str().unwrap();
        let reference = format!("{repo}/signed");
        let pull = ["pull", &reference, "--version", "0.1.0", "-d", d];
        let verify = ["--verify", "--keyring", pubring];
        let said = helm.ok(&[&pull[..], &verify, &plain].concat(), &[]);
        assert!(said.contains("Signed by: chartgate test"), "{said}");
        assert_same(&out.join("signed-0.1.0.tgz.prov"), &prov);

        let classic = format!("http://{host}/org1/repo1");
        let add = ["repo", "add", "classic", &classic, "--username", "alice"];
        helm.ok(&[&add[..], &["--password", ALICE_PASSWORD]].concat(), &[]);
        let out = fresh(&helm, "verified-classic");
        let d = out.to_str().unwrap();
        let pull = ["pull", "classic/signed", "--version", "0.1.0", "-d", d];
        let said = helm.ok(&[&pull[..], &verify].concat(), &[]);
        assert!(said.contains("Signed by: chartgate test"), "{said}");
    })
    .await;
}
