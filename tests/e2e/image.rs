//! The container image, proven without a container runtime: the OCI archive
//! `scripts/image.sh` builds (FROM scratch, with buildah) is unpacked layer
//! by layer into a root filesystem, and its own entrypoint and command run
//! in it under `chroot` as the image's user, serving the seed walkthrough in
//! front of the real ChartMuseum. The upstream is named by host name, so
//! the static binary's name resolution (`/etc/hosts` through glibc's
//! built-in `files` source) is exercised too.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::Helm;

fn archive() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/image/chartgate.oci.tar");
    assert!(
        path.exists(),
        "{} is missing: scripts/image.sh builds it (the README's test command runs it)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn blob(oci: &Path, digest: &str) -> PathBuf {
    oci.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Unpacks the archive's one image into `rootfs`; returns its config.
fn unpack(archive: &Path, work: &Path) -> (PathBuf, Value) {
    let oci = work.join("oci");
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&oci).unwrap();
    std::fs::create_dir_all(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&oci));
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    for layer in manifest["layers"].as_array().unwrap() {
        let file = blob(&oci, layer["digest"].as_str().unwrap());
        run(Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&rootfs)
            .arg("--no-same-owner"));
    }
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    (rootfs, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_the_walkthrough_from_its_own_root_filesystem() {
    let work = std::env::temp_dir().join(format!("chartgate-e2e-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let archive = archive();
    eprintln!(
        "image archive: {} bytes",
        std::fs::metadata(&archive).unwrap().len()
    );
    let (rootfs, config) = unpack(&archive, &work);

    // What the image is: a non-root user, the binary, no shell.
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    let entrypoint: Vec<String> = serde_json::from_value(c["Entrypoint"].clone()).unwrap();
    let cmd: Vec<String> = serde_json::from_value(c["Cmd"].clone()).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/chartgate"]);
    assert_eq!(cmd, ["serve", "--config", "/etc/chartgate/chartgate.toml"]);
    for absent in [
        "bin/sh",
        "bin/bash",
        "usr/bin/env",
        "lib64/ld-linux-x86-64.so.2",
    ] {
        assert!(!rootfs.join(absent).exists(), "the image holds /{absent}");
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());

    // A chart in ChartMuseum, and the config the image's command reads.
    let storage = work.join("storage");
    std::fs::create_dir_all(storage.join("org1/repo1")).unwrap();
    let helm = Helm::new(3, work.join("helm"));
    let src = helm.home().join("mychart");
    helm.ok(&["create", src.to_str().unwrap()], &[]);
    helm.ok(
        &["package", src.to_str().unwrap(), "--version", "0.1.0"],
        &[],
    );
    std::fs::copy(
        helm.home().join("mychart-0.1.0.tgz"),
        storage.join("org1/repo1/mychart-0.1.0.tgz"),
    )
    .unwrap();
    let cm = tokio::task::spawn_blocking(move || {
        ChartMuseum::start(
            &Options {
                depth: 2,
                ..Options::default()
            },
            &storage,
            &storage.with_extension("log"),
        )
    })
    .await
    .unwrap();
    let etc = rootfs.join("etc/chartgate");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("signing-key.pem"), &signing_pem().0).unwrap();
    let text = BASE_CONFIG
        .replace(
            "http://UPSTREAM",
            &format!("http://chartmuseum:{}", cm.addr.port()),
        )
        .replace(
            "signing_key = { env = \"KEY\" }",
            "signing_key = { file = \"signing-key.pem\" }",
        );
    std::fs::write(etc.join("chartgate.toml"), text).unwrap();
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1 localhost chartmuseum\n",
    )
    .unwrap();
    run(Command::new("chown").arg("-R").arg("65532:65532").arg(&etc));

    let mut chroot = Command::new("/usr/sbin/chroot");
    chroot
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args(&entrypoint)
        .args(&cmd)
        .env_clear()
        .env("MASTER", MASTER_KEY)
        .env("RUST_LOG", "info");
    let gw = spawn_serving(chroot).await;
    let base = format!("http://{}", gw.addr);

    let r = get(&format!("{base}/org1/repo1/index.yaml"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"http://localhost:8080/oauth/token\",service=\"localhost:8080\",scope=\"artifact-repository:org1/repo1:pull\""
    );
    let token = {
        let r = send(
            hyper::Request::post(format!(
                "{base}/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull"
            ))
            .header("authorization", format!("Bearer {MASTER_KEY}"))
            .body(full(bytes::Bytes::new()))
            .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().unwrap().to_owned()
    };
    let r = get(
        &format!("{base}/org1/repo1/index.yaml"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("mychart") && r.text().contains("0.1.0"));

    // It runs as the image's user, not as root.
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid}"
    );
    drop((gw, cm));
    std::fs::remove_dir_all(&work).unwrap();
}
