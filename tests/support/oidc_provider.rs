//! An OpenID provider in process, for tests of trusted publishing: OIDC
//! discovery and a JWKS on `127.0.0.1:0`, hits counted per path, with
//! switches for outages, bogus entries, `Cache-Control` and key rotation,
//! and tokens minted with the claim sets GitHub Actions and GitLab CI
//! document for their id tokens.
//!
//! Included by path from the unit tests (`src/federation/provider.rs`) and
//! from the integration and end-to-end tests, so it uses nothing of
//! chartgate's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Where discovery is served, under the issuer's path.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the JWKS is served, under the issuer's path.
pub const JWKS_PATH: &str = "/.well-known/jwks";

/// A commit id, as the CI platforms put in `sha` and friends.
const SHA: &str = "9898863c7dcd844a6fc3c70191769b8d07567f57";

/// A signing key and its public JWK (with `kid`, `use: sig` and `alg`).
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    /// A fresh key pair: RS256 (2048 bits), ES256 (P-256) or EdDSA (Ed25519).
    pub fn generate(algorithm: Algorithm, kid: &str) -> TestKey {
        let (encoding, public) = match algorithm {
            Algorithm::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
                let pkcs8: Pkcs8V1Der = pair.as_der().unwrap();
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref()));
                let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let public = json!({"kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e)});
                (EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), public)
            }
            Algorithm::ES256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
                let point = pair.public_key().as_ref();
                let public = json!({"kty": "EC", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..])});
                let pkcs8 = pair.to_pkcs8v1().unwrap();
                (EncodingKey::from_ec_der(pkcs8.as_ref()), public)
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::generate().unwrap();
                let public = json!({"kty": "OKP", "crv": "Ed25519",
                    "x": b64(pair.public_key().as_ref())});
                let pkcs8 = pair.to_pkcs8v1().unwrap();
                (EncodingKey::from_ed_der(pkcs8.as_ref()), public)
            }
            other => panic!("no test keys for {other:?}"),
        };
        let jwk = with(
            public,
            json!({"kid": kid, "use": "sig", "alg": format!("{algorithm:?}")}),
        );
        TestKey {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            jwk,
        }
    }

    /// The public key as the JWKS serves it.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// A JWT of `claims` signed with this key, naming its own `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A JWT of `claims` signed with this key but naming `kid`: another
    /// key's, to forge one the provider publishes.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// An HS256 JWT of `claims` keyed with `secret`, naming `kid`.
pub fn sign_hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// An `alg: none` JWT of `claims` naming `kid`, with an empty signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `value` with the members of `changes` set; a `null` change removes the
/// member. For overriding claims or JWK members.
pub fn with(mut value: Value, changes: Value) -> Value {
    let object = value.as_object_mut().expect("an object to change");
    for (name, change) in changes.as_object().expect("an object of changes") {
        match change {
            Value::Null => object.remove(name),
            v => object.insert(name.clone(), v.clone()),
        };
    }
    value
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a GitHub Actions id token for `acme/billing`'s release
/// workflow on `main`: a push, or a job deploying to `environment`, which
/// then names it in `sub`. Every custom claim is a string, as GitHub's are.
pub fn github_claims(issuer: &str, audience: &str, environment: Option<&str>) -> Value {
    let iat = now();
    let workflow = "acme/billing/.github/workflows/release.yml@refs/heads/main";
    let claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": "repo:acme/billing:ref:refs/heads/main",
        "aud": audience,
        "ref": "refs/heads/main",
        "sha": SHA,
        "repository": "acme/billing",
        "repository_owner": "acme",
        "repository_owner_id": "1342004",
        "run_id": "9186545183",
        "run_number": "42",
        "run_attempt": "1",
        "repository_visibility": "private",
        "repository_id": "704310118",
        "actor_id": "5710843",
        "actor": "octocat",
        "workflow": "Release",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_type": "branch",
        "ref_protected": "true",
        "workflow_ref": workflow,
        "workflow_sha": SHA,
        "job_workflow_ref": workflow,
        "job_workflow_sha": SHA,
        "runner_environment": "github-hosted",
        "check_run_id": "25819442207",
        "iss": issuer,
        "nbf": iat - 300,
        "exp": iat + 300,
        "iat": iat,
    });
    match environment {
        None => claims,
        Some(env) => with(
            claims,
            json!({"environment": env, "sub": format!("repo:acme/billing:environment:{env}")}),
        ),
    }
}

/// The claims of a GitLab CI id token for a pipeline of `acme/billing` on
/// its protected `main` branch, optionally deploying to `environment`.
/// Ids are strings except `runner_id`, as GitLab's are.
pub fn gitlab_claims(issuer: &str, audience: &str, environment: Option<&str>) -> Value {
    let iat = now();
    let host = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    let claims = json!({
        "namespace_id": "72",
        "namespace_path": "acme",
        "project_id": "20",
        "project_path": "acme/billing",
        "user_id": "31",
        "user_login": "dev",
        "user_email": "dev@acme.example",
        "pipeline_id": "574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": "main",
        "ref_type": "branch",
        "ref_path": "refs/heads/main",
        "ref_protected": "true",
        "runner_id": 12270852,
        "runner_environment": "gitlab-hosted",
        "sha": SHA,
        "project_visibility": "private",
        "ci_config_ref_uri": format!("{host}/acme/billing//.gitlab-ci.yml@refs/heads/main"),
        "ci_config_sha": SHA,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": issuer,
        "iat": iat,
        "nbf": iat - 5,
        "exp": iat + 3600,
        "sub": "project_path:acme/billing:ref_type:branch:ref:main",
        "aud": audience,
    });
    match environment {
        None => claims,
        Some(env) => with(
            claims,
            json!({"environment": env, "environment_protected": "true",
                "deployment_tier": "production"}),
        ),
    }
}

/// How the provider is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// Every request answers `503`.
    Unavailable,
    /// Every connection is closed without an answer.
    Reset,
    /// Requests are read and never answered.
    Hang,
}

#[derive(Default)]
struct State {
    keys: Vec<TestKey>,
    /// Served after the keys, as they are: bogus entries.
    extra: Vec<Value>,
    down: Option<Down>,
    cache_control: Option<String>,
    discovery_issuer: Option<String>,
    jwks_uri: Option<String>,
    padding: usize,
    hits: HashMap<String, usize>,
    /// Keys generated so far, by algorithm, for the next kid.
    generated: HashMap<Algorithm, usize>,
}

/// The running provider; it stops when dropped.
pub struct OidcProvider {
    issuer: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OidcProvider {
    /// A provider whose issuer is `http://127.0.0.1:PORT`, publishing one
    /// RS256, one ES256 and one EdDSA key (`rs256-1`, `es256-1`, `eddsa-1`;
    /// fresh keys for every provider).
    pub async fn start() -> OidcProvider {
        OidcProvider::serve("", None).await
    }

    /// The same with the issuer at `path` under the server (`/tenant`).
    pub async fn start_at(path: &str) -> OidcProvider {
        OidcProvider::serve(path, None).await
    }

    /// The same over TLS with this certificate chain and key (PEM), as
    /// `https://localhost:PORT`.
    pub async fn start_tls(chain_pem: &str, key_pem: &str) -> OidcProvider {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        OidcProvider::serve("", Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(path: &str, tls: Option<TlsAcceptor>) -> OidcProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let issuer = match tls {
            Some(_) => format!("https://localhost:{port}{path}"),
            None => format!("http://127.0.0.1:{port}{path}"),
        };
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn(accept(listener, tls, state.clone(), issuer.clone()));
        let provider = OidcProvider {
            issuer,
            state,
            server,
        };
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            provider.rotate(alg);
        }
        provider
    }

    /// The issuer URL, as discovery and the minted tokens name it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the JWKS is served.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.issuer)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Requests for `path` under the issuer ([`DISCOVERY_PATH`], [`JWKS_PATH`]),
    /// whether they were answered or not.
    pub fn hits(&self, path: &str) -> usize {
        let path = format!("{}{path}", issuer_path(&self.issuer));
        self.state().hits.get(&path).copied().unwrap_or(0)
    }

    pub fn discovery_hits(&self) -> usize {
        self.hits(DISCOVERY_PATH)
    }

    pub fn jwks_hits(&self) -> usize {
        self.hits(JWKS_PATH)
    }

    /// Takes the provider down until [`OidcProvider::come_up`].
    pub fn go_down(&self, how: Down) {
        self.state().down = Some(how);
    }

    pub fn come_up(&self) {
        self.state().down = None;
    }

    /// The `Cache-Control` value of JWKS responses (none by default).
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state().cache_control = value.map(str::to_owned);
    }

    /// Makes discovery name this `issuer` instead of the provider's own.
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        self.state().discovery_issuer = issuer.map(str::to_owned);
    }

    /// Makes discovery name this `jwks_uri` instead of the provider's own.
    pub fn set_jwks_uri(&self, uri: Option<&str>) {
        self.state().jwks_uri = uri.map(str::to_owned);
    }

    /// Pads the JWKS with a member of `bytes` bytes, to make it oversized.
    pub fn set_jwks_padding(&self, bytes: usize) {
        self.state().padding = bytes;
    }

    /// Publishes `key` (after the current ones).
    pub fn add_key(&self, key: TestKey) {
        self.state().keys.push(key);
    }

    /// Stops publishing the key with this `kid`.
    pub fn remove_key(&self, kid: &str) {
        self.state().keys.retain(|k| k.kid != kid);
    }

    /// Publishes a fresh key for `algorithm`, with a new kid
    /// (`rs256-2`, ...), and returns it.
    pub fn rotate(&self, algorithm: Algorithm) -> TestKey {
        let n = {
            let mut state = self.state();
            let n = state.generated.entry(algorithm).or_default();
            *n += 1;
            *n
        };
        // Generated outside the lock: an RSA key takes a while.
        let key = TestKey::generate(algorithm, &format!("{algorithm:?}-{n}").to_lowercase());
        self.add_key(key.clone());
        key
    }

    /// The published keys, in JWKS order.
    pub fn keys(&self) -> Vec<TestKey> {
        self.state().keys.clone()
    }

    /// The first published key for `algorithm`.
    pub fn key(&self, algorithm: Algorithm) -> TestKey {
        self.keys()
            .into_iter()
            .find(|k| k.algorithm == algorithm)
            .unwrap_or_else(|| panic!("no published {algorithm:?} key"))
    }

    /// Also serves a symmetric `kty: oct`, `alg: HS256` entry keyed with
    /// `secret` under `kid`: what an attacker would like a verifier to use.
    pub fn add_oct_entry(&self, kid: &str, secret: &[u8]) {
        let entry =
            json!({"kty": "oct", "kid": kid, "use": "sig", "alg": "HS256", "k": b64(secret)});
        self.state().extra.push(entry);
    }

    /// Also serves a fresh RSA key under `kid` with `alg: none`, and returns
    /// its private half so tests can sign with it.
    pub fn add_none_entry(&self, kid: &str) -> TestKey {
        let key = TestKey::generate(Algorithm::RS256, kid);
        self.state()
            .extra
            .push(with(key.jwk(), json!({"alg": "none"})));
        key
    }

    /// [`github_claims`] for this issuer.
    pub fn github_claims(&self, audience: &str, environment: Option<&str>) -> Value {
        github_claims(&self.issuer, audience, environment)
    }

    /// [`gitlab_claims`] for this issuer.
    pub fn gitlab_claims(&self, audience: &str, environment: Option<&str>) -> Value {
        gitlab_claims(&self.issuer, audience, environment)
    }

    /// `claims` signed with the first published key (RS256 unless rotated out).
    pub fn mint(&self, claims: &Value) -> String {
        let key = self.state().keys.first().cloned().expect("a published key");
        key.sign(claims)
    }
}

/// The path part of an issuer URL (`""` for a bare origin).
fn issuer_path(issuer: &str) -> &str {
    let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    rest.find('/')
        .map_or("", |i| rest[i..].trim_end_matches('/'))
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<Mutex<State>>,
    issuer: String,
) {
    // Connection tasks live in the set, so aborting this task ends them too.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        let (state, issuer, tls) = (state.clone(), issuer.clone(), tls.clone());
        connections.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let answer = respond(&state, &issuer, req.uri().path());
                async move {
                    match answer {
                        Some(answer) => answer,
                        None => std::future::pending().await,
                    }
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                None => http.serve_connection(TokioIo::new(stream), svc).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), svc).await,
                    Err(_) => return,
                },
            };
        });
    }
}

/// The answer to a request for `path`; `None` for none ever ([`Down::Hang`]).
fn respond(
    state: &Mutex<State>,
    issuer: &str,
    path: &str,
) -> Option<Result<Response<Full<Bytes>>, std::io::Error>> {
    let mut state = state.lock().unwrap();
    *state.hits.entry(path.to_owned()).or_default() += 1;
    match state.down {
        Some(Down::Reset) => Some(Err(std::io::Error::other("the provider is down"))),
        Some(Down::Unavailable) => Some(Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "{}", None))),
        Some(Down::Hang) => None,
        None => Some(Ok(document(&state, issuer, path))),
    }
}

fn document(state: &State, issuer: &str, path: &str) -> Response<Full<Bytes>> {
    let base = issuer_path(issuer);
    if path == format!("{base}{DISCOVERY_PATH}") {
        reply(StatusCode::OK, &discovery(state, issuer).to_string(), None)
    } else if path == format!("{base}{JWKS_PATH}") {
        let mut keys: Vec<Value> = state.keys.iter().map(TestKey::jwk).collect();
        keys.extend(state.extra.iter().cloned());
        let mut jwks = json!({ "keys": keys });
        if state.padding > 0 {
            jwks = with(jwks, json!({"padding": "x".repeat(state.padding)}));
        }
        let cache = state.cache_control.as_deref();
        reply(StatusCode::OK, &jwks.to_string(), cache)
    } else {
        reply(StatusCode::NOT_FOUND, "{}", None)
    }
}

fn discovery(state: &State, issuer: &str) -> Value {
    json!({
        "issuer": state.discovery_issuer.as_deref().unwrap_or(issuer),
        "jwks_uri": state.jwks_uri.clone().unwrap_or_else(|| format!("{issuer}{JWKS_PATH}")),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "scopes_supported": ["openid"],
    })
}

fn reply(status: StatusCode, body: &str, cache_control: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
    if let Some(value) = cache_control {
        headers.insert(CACHE_CONTROL, value.parse().unwrap());
    }
    resp
}
