//! Driving the real Helm 3, Helm 4 and helm-push binaries, each in its own
//! throwaway HELM_* homes, with helm-push installed as a plugin from local
//! files (no network: docs/PROTOCOL.md §4.4–4.5).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn tools_dir() -> PathBuf {
    match std::env::var_os("CHARTGATE_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/chartgate/tools"),
    }
}

/// A pinned tool from the cache; missing is a loud failure, never a skip.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/tools.sh e2e` (the README's test command does)",
        path.display()
    );
    path
}

/// A file's bytes; a missing file fails the test naming it.
fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `f` (a blocking helm, curl or ChartMuseum call) off the runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Asserts two files hold the same bytes (a pulled chart and the one
/// ChartMuseum stored, or the one packaged).
pub fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (read(a), read(b));
    assert!(
        x == y,
        "{} ({} bytes) differs from {} ({} bytes)",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

/// helm-push v0.10.4's own manifest (plugin.yaml), for Helm 3; bench/helm.sh
/// installs the same file.
const LEGACY_MANIFEST: &str = include_str!("../tools/helm-push/plugin.yaml");

/// Helm 4 turns a legacy manifest with downloaders into a getter only, so
/// the same binary is installed twice: as a `cli/v1` command and as a
/// `getter/v1` for `cm://` (docs/PROTOCOL.md §4.5).
const V4_CLI_MANIFEST: &str = r#"apiVersion: v1
type: cli/v1
name: cm-push
version: 0.10.4
runtime: subprocess
config:
  usage: cm-push CHART REPO
  shortHelp: Push chart package to ChartMuseum
runtimeConfig:
  platformCommand:
    - command: "${HELM_PLUGIN_DIR}/bin/helm-cm-push"
"#;

const V4_GETTER_MANIFEST: &str = r#"apiVersion: v1
type: getter/v1
name: cm-getter
version: 0.10.4
runtime: subprocess
config:
  protocols:
    - cm
runtimeConfig:
  protocolCommands:
    - platformCommand:
        - command: bin/helm-cm-push
      protocols:
        - cm
"#;

/// One Helm installation with its own homes and plugins.
pub struct Helm {
    pub major: u8,
    bin: PathBuf,
    home: PathBuf,
}

fn install_plugin(plugins: &Path, dir: &str, manifest: &str) {
    let d = plugins.join(dir);
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::write(d.join("plugin.yaml"), manifest).unwrap();
    std::os::unix::fs::symlink(tool("helm-cm-push"), d.join("bin/helm-cm-push")).unwrap();
}

impl Helm {
    pub fn new(major: u8, home: PathBuf) -> Helm {
        let bin = tool(&format!("helm{major}"));
        let plugins = home.join("data/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        if major == 3 {
            install_plugin(&plugins, "helm-push", LEGACY_MANIFEST);
        } else {
            install_plugin(&plugins, "cm-push", V4_CLI_MANIFEST);
            install_plugin(&plugins, "cm-getter", V4_GETTER_MANIFEST);
        }
        Helm { major, bin, home }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Runs `helm args...` with `env` added; blocking.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.home)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env("HELM_PLUGINS", self.home.join("data/plugins"))
            .env("HELM_BIN", &self.bin);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "helm{} {:?} failed:\nstdout: {}\nstderr: {}",
            self.major,
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm pull CHART --version V` into a fresh directory named `into`;
    /// returns the downloaded file.
    pub fn pull(&self, chart: &str, version: &str, into: &str, env: &[(&str, &str)]) -> PathBuf {
        let out = self.home.join(into);
        std::fs::create_dir_all(&out).unwrap();
        self.ok(
            &[
                "pull",
                chart,
                "--version",
                version,
                "-d",
                out.to_str().unwrap(),
            ],
            env,
        );
        let name = chart.rsplit('/').next().unwrap();
        out.join(format!("{name}-{version}.tgz"))
    }

    /// `helm create` (once) + `helm package` of `name` at `version` in this
    /// home's `src/`; returns the packaged file.
    pub fn package(&self, name: &str, version: &str) -> PathBuf {
        let dir = self.home.join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let chart = dir.join(name);
        if !chart.exists() {
            self.ok(&["create", chart.to_str().unwrap()], &[]);
        }
        let (c, d) = (chart.to_str().unwrap(), dir.to_str().unwrap());
        self.ok(&["package", c, "--version", version, "-d", d], &[]);
        dir.join(format!("{name}-{version}.tgz"))
    }

    /// Runs and asserts failure; returns stdout and stderr together.
    pub fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "helm{} {:?} should have failed:\n{text}",
            self.major,
            args
        );
        text
    }
}
