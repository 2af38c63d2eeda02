//! The `chartgate` binary: parse the command line, load the config, serve.

/// A streaming proxy allocates and frees response-sized buffers on every
/// request; glibc's allocator grew and trimmed its heap around them (brk and
/// a page fault per 64 KiB download), mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tracing::{error, info};

use chartgate::auth::access::{AccessEntry, ScopeRequest};
use chartgate::auth::token::unix_now;
use chartgate::auth::{account, key};
use chartgate::config::LogFormat;
use chartgate::issuer::{self, mint::Minter};
use chartgate::server::admin::Admin;
use chartgate::server::devcert;
use chartgate::server::reload::{self, Live};
use chartgate::telemetry::metrics::Metrics;
use chartgate::{server, telemetry, Config, Gateway};

/// Exit status for a bad command line or configuration (BSD `EX_USAGE`).
const EX_USAGE: u8 = 64;
/// Exit status for a failure while running, such as a listener address in
/// use (BSD `EX_SOFTWARE` is for bugs; `EX_UNAVAILABLE` for a service that
/// cannot be provided).
const EX_UNAVAILABLE: u8 = 69;

/// A failure after the configuration was accepted: not a usage error.
#[derive(Debug)]
struct RuntimeFailure(anyhow::Error);

impl std::fmt::Display for RuntimeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for RuntimeFailure {}

#[derive(Parser)]
#[command(version, about = "Token-based auth gateway for ChartMuseum")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Path to the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the public key (SPKI PEM) matching the configured signing key:
    /// what a ChartMuseum in its own bearer mode takes as --auth-cert-path.
    PublicKey {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Hash a password read from standard input (one line) with argon2id;
    /// paste the result into an account's `secret_hash`.
    HashSecret,
    /// Print a fresh API key and the `secret_hash` digest to store for it.
    NewKey,
    /// Mint a token offline with the config's signing key, for an account,
    /// granting the intersection of the scopes asked for and its rules.
    Token {
        #[arg(long, short)]
        config: PathBuf,
        /// The account the token is for (its `sub`).
        #[arg(long)]
        account: String,
        /// A scope such as artifact-repository:org1/repo1:pull,push; repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Token lifetime (default: the issuer's token_ttl), e.g. 30m.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// How many distinct tokens to print, one per line (benchmarks).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Write a throwaway development PKI: ca.pem, server.pem and
    /// server-key.pem (for localhost, 127.0.0.1 and ::1), client.pem and
    /// client-key.pem. The CA's key is not kept.
    DevCerts {
        /// Directory to write into; created if missing.
        #[arg(long)]
        out: PathBuf,
        /// Common name of the client certificate.
        #[arg(long, default_value = "dev-client")]
        client_cn: String,
    },
    /// Write a new RSA-2048 signing key pair (signing-key.pem, signing-key.pub.pem).
    Keygen {
        /// Directory to write into; created if missing.
        #[arg(long)]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up logging once its config names the format.
    if !matches!(cli.command, Command::Serve { .. }) {
        telemetry::init(LogFormat::Text);
    }
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => Config::load(&config).map(|_| println!("config ok")),
        Command::PublicKey { config } => public_key(&config),
        Command::Keygen { out, force } => keygen(out, force),
        Command::HashSecret => hash_secret(),
        Command::DevCerts { out, client_cn } => {
            devcert::generate(&["localhost", "127.0.0.1", "::1"], &client_cn)
                .and_then(|pki| pki.write(&out))
                .map(|()| {
                    println!(
                "wrote ca.pem, server.pem, server-key.pem, client.pem, client-key.pem to {}",
                out.display()
            )
                })
        }
        Command::NewKey => account::new_api_key().map(|(key, digest)| {
            println!("key:         {key}");
            println!("secret_hash: {digest}");
        }),
        Command::Token {
            config,
            account,
            scopes,
            ttl,
            count,
        } => token(&config, &account, &scopes, ttl, count),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<RuntimeFailure>() => {
            error!(error = %e, "chartgate stopped");
            eprintln!("chartgate: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("chartgate: {e:#}");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    // Load and validate before touching the network, so a bad config never
    // leaves a half-started process behind.
    let config = Config::load(&config_path)?;
    telemetry::init(config.server.log_format);
    let runtime = server::runtime(config.server.listen.worker_threads)
        .context("starting the async runtime")
        .map_err(RuntimeFailure)?;
    runtime
        .block_on(run(config, config_path))
        .map_err(|e| RuntimeFailure(e).into())
}

/// Binds, builds the gateway and serves until a shutdown signal.
async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    let server = config.server.clone();
    let listeners = server::bind(&server.listen, server.tls.as_ref()).await?;
    let certs = server.tls.as_ref().map(|t| t.certs.clone());
    info!(
        upstream = %config.gateway.upstream.base,
        depth = config.gateway.routes.depth,
        realm = %config.gateway.auth.realm,
        kid = %config.gateway.issuer.signing_key.kid,
        "chartgate starting"
    );
    let metrics = Arc::new(Metrics::new());
    let gateway = Gateway::from_config(config.gateway, metrics.clone())?;
    let live = Arc::new(Live::new(gateway, config.table, metrics));
    let admin = Arc::new(Admin {
        live: live.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        certs: certs.clone(),
    });
    tokio::spawn(reload::on_sighup(live.clone(), config_path, certs));
    let shutdown = async {
        if let Err(e) = server::shutdown::signal().await {
            error!(error = %e, "cannot install signal handlers");
            std::future::pending::<()>().await;
        }
    };
    server::run(
        listeners,
        live,
        Some(admin),
        server.listen,
        server.tls,
        shutdown,
    )
    .await
}

fn public_key(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    match &config.gateway.issuer.signing_key.public_pem {
        Some(pem) => {
            print!("{pem}");
            Ok(())
        }
        None => bail!("issuer.signing_key: public-key export supports RSA keys only"),
    }
}

fn keygen(out: PathBuf, force: bool) -> anyhow::Result<()> {
    let private = out.join("signing-key.pem");
    let public = out.join("signing-key.pub.pem");
    if !force && (private.exists() || public.exists()) {
        bail!(
            "{} already exists; pass --force to replace it",
            private.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (private_pem, public_pem) = key::generate_rsa_pem()?;
    write_private(&private, private_pem.as_bytes())?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))?;
    println!("wrote {} and {}", private.display(), public.display());
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

fn hash_secret() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    println!("{}", account::hash_password(password)?);
    Ok(())
}

fn token(
    config_path: &std::path::Path,
    account_id: &str,
    scopes: &[String],
    ttl: Option<std::time::Duration>,
    count: u32,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let gateway = config.gateway;
    let account = gateway
        .accounts
        .get(account_id)
        .with_context(|| format!("no account {account_id:?} in the config"))?;
    let now = unix_now();
    if !account.is_active(now) {
        bail!("account {account_id:?} has expired");
    }
    let requested = scopes
        .iter()
        .map(|s| ScopeRequest::parse(s, gateway.routes.depth).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let granted = issuer::grant(&account.acl, &requested);
    if granted.len() < requested.len() {
        eprintln!("chartgate: note: some requested scopes are not allowed for {account_id:?} and were left out");
    }
    let minter = Minter::new(
        gateway.issuer.signing_key,
        gateway.auth.issuer.clone(),
        gateway.auth.audience.clone(),
        ttl.unwrap_or(gateway.issuer.token_ttl),
    );
    let access: Vec<AccessEntry> = granted.iter().map(AccessEntry::from_request).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        // Each has its own jti, so every token is distinct.
        let minted = minter.mint(&account.id, access.clone(), now, account.expires)?;
        std::io::Write::write_all(&mut out, format!("{}\n", minted.token).as_bytes())?;
    }
    Ok(())
}
