//! Prometheus metrics, served by the admin listener at `/metrics` in the
//! OpenMetrics text format (prometheus-client). Every family is registered
//! once, here, and every label value comes from a closed set (route kinds,
//! method classes, status codes, outcome and reason names): never a raw
//! path, a repository, a subject or a token, so the number of series does
//! not grow with traffic. Call sites record facts through the methods
//! below; nothing outside this file names a metric.

use std::time::Duration;

use hyper::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `route`, `method`, `status` of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssueLabels {
    grant: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabel {
    certificate: &'static str,
}

/// Why an authorization decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A public route: no credential needed.
    Public,
    /// Allowed anonymously (an anonymous-pull repository).
    Anonymous,
    /// Allowed with a credential.
    Allowed,
    NoCredential,
    BadSignature,
    Expired,
    /// A token that failed any other check (claims, key, format).
    InvalidToken,
    /// A wrong password or API key, or an unknown or expired account.
    BadCredential,
    WrongScope,
    LockedOut,
    /// Too many password checks in progress.
    Busy,
    /// More than one credential.
    Ambiguous,
    /// A valid OIDC id token no trust policy accepts.
    Untrusted,
    /// An OIDC id token whose single use was spent.
    Replayed,
    /// An OIDC issuer's keys could not be fetched.
    IdpUnavailable,
}

impl Decision {
    /// Every decision, in the order of [`Decision::index`].
    const ALL: [Decision; 15] = [
        Decision::Public,
        Decision::Anonymous,
        Decision::Allowed,
        Decision::NoCredential,
        Decision::BadSignature,
        Decision::Expired,
        Decision::InvalidToken,
        Decision::BadCredential,
        Decision::WrongScope,
        Decision::LockedOut,
        Decision::Busy,
        Decision::Ambiguous,
        Decision::Untrusted,
        Decision::Replayed,
        Decision::IdpUnavailable,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// `(outcome, reason)` label values.
    pub fn labels(self) -> (&'static str, &'static str) {
        use Decision::*;
        match self {
            Public => ("allowed", "public"),
            Anonymous => ("allowed", "anonymous"),
            Allowed => ("allowed", "credential"),
            NoCredential => ("denied", "no_credential"),
            BadSignature => ("denied", "bad_signature"),
            Expired => ("denied", "expired"),
            InvalidToken => ("denied", "invalid_token"),
            BadCredential => ("denied", "bad_credential"),
            WrongScope => ("denied", "wrong_scope"),
            LockedOut => ("denied", "locked_out"),
            Busy => ("denied", "busy"),
            Ambiguous => ("denied", "ambiguous"),
            Untrusted => ("denied", "untrusted_identity"),
            Replayed => ("denied", "replayed"),
            IdpUnavailable => ("denied", "idp_unavailable"),
        }
    }
}

/// A listener, for connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plain,
    Tls,
    Admin,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Plain => "plain",
            Listener::Tls => "tls",
            Listener::Admin => "admin",
        }
    }
}

/// The method as a label: the standard ones by name, the rest as `other`.
fn method_class(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Every metric the process exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    upstream_seconds: Histogram,
    decisions: Family<DecisionLabels, Counter>,
    issued: Family<IssueLabels, Counter>,
    upstream_errors: Family<KindLabel, Counter>,
    pool_idle: Gauge,
    bytes: Family<DirectionLabel, Counter>,
    connections: Family<ListenerLabel, Gauge>,
    handshakes: Family<OutcomeLabel, Counter>,
    certificate_expiry: Family<CertificateLabel, Gauge>,
    signing_key_expiry: Gauge,
    reloads: Family<OutcomeLabel, Counter>,
    shared_fallbacks: Counter,
    /// Handles into `decisions` and `bytes`, resolved once: the request
    /// path then touches an atomic, not the family's map.
    decision_counters: [Counter; Decision::ALL.len()],
    bytes_in: Counter,
    bytes_out: Counter,
}

/// Latency buckets from 0.25 ms to about 33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// All families, registered under the `chartgate_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("chartgate");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            upstream_seconds: latency_histogram(),
            decisions: Family::default(),
            issued: Family::default(),
            upstream_errors: Family::default(),
            pool_idle: Gauge::default(),
            bytes: Family::default(),
            connections: Family::default(),
            handshakes: Family::default(),
            certificate_expiry: Family::default(),
            signing_key_expiry: Gauge::default(),
            reloads: Family::default(),
            shared_fallbacks: Counter::default(),
            decision_counters: Default::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            registry: Registry::default(),
        };
        let decision_counters = Decision::ALL.map(|d| {
            let (outcome, reason) = d.labels();
            m.decisions
                .get_or_create(&DecisionLabels { outcome, reason })
                .clone()
        });
        let bytes = |direction| m.bytes.get_or_create(&DirectionLabel { direction }).clone();
        let (bytes_in, bytes_out) = (bytes("in"), bytes("out"));
        let r = &mut registry;
        r.register(
            "requests",
            "Requests answered, by route kind, method and status",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Whole requests, from the head read to the last body byte",
            m.request_seconds.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "ChartMuseum's time to a response head",
            m.upstream_seconds.clone(),
        );
        r.register(
            "auth_decisions",
            "Authorization decisions, by outcome and reason",
            m.decisions.clone(),
        );
        r.register(
            "tokens_issued",
            "Token requests, by grant and outcome",
            m.issued.clone(),
        );
        r.register(
            "upstream_errors",
            "Requests ChartMuseum could not answer, by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "upstream_pool_idle_connections",
            "Idle pooled connections to ChartMuseum",
            m.pool_idle.clone(),
        );
        r.register(
            "body_bytes",
            "Body bytes: in from clients, out to clients",
            m.bytes.clone(),
        );
        r.register(
            "open_connections",
            "Open downstream connections, by listener",
            m.connections.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes on the listener, by outcome",
            m.handshakes.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "Not-after time of each certificate in use",
            m.certificate_expiry.clone(),
        );
        r.register(
            "signing_key_expiry_timestamp_seconds",
            "issuer.signing_key_expires, when set",
            m.signing_key_expiry.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by outcome",
            m.reloads.clone(),
        );
        r.register(
            "shared_limit_fallbacks",
            "Times Redis could not be used for the shared failure limits (per-replica limits applied)",
            m.shared_fallbacks.clone(),
        );
        Metrics {
            registry,
            decision_counters,
            bytes_in,
            bytes_out,
            ..m
        }
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A request finished: its route kind, method, status and duration.
    pub fn request(&self, route: &'static str, method: &Method, status: u16, took: Duration) {
        let labels = RequestLabels {
            route,
            method: method_class(method),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// ChartMuseum answered with a response head after `took`.
    pub fn upstream_answered(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// ChartMuseum could not be reached (`connect`) or did not answer in
    /// time (`timeout`).
    pub fn upstream_failed(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// The upstream pool's idle connections, read at scrape time.
    pub fn set_pool_idle(&self, idle: usize) {
        self.pool_idle.set(i64::try_from(idle).unwrap_or(i64::MAX));
    }

    pub fn decision(&self, decision: Decision) {
        self.decision_counters[decision.index()].inc();
    }

    /// A token request: the grant form and whether a token was issued.
    pub fn token_request(&self, grant: &'static str, outcome: &'static str) {
        self.issued
            .get_or_create(&IssueLabels { grant, outcome })
            .inc();
    }

    /// Body bytes received from clients.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    /// Body bytes sent to clients.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// A connection opened on `listener`; the count drops when the guard does.
    pub fn connection(&self, listener: Listener) -> ConnectionGuard {
        let gauge = self
            .connections
            .get_or_create(&ListenerLabel {
                listener: listener.name(),
            })
            .clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// A TLS handshake ended: `ok`, `failed` or `timeout`.
    pub fn handshake(&self, outcome: &'static str) {
        self.handshakes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The not-after time (unix seconds) of the `certificate` in use.
    pub fn certificate_expires(&self, certificate: &'static str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&CertificateLabel { certificate })
            .set(not_after);
    }

    pub fn signing_key_expires(&self, when: Option<u64>) {
        self.signing_key_expiry
            .set(when.map_or(0, |w| i64::try_from(w).unwrap_or(i64::MAX)));
    }

    /// The shared failure limits fell back to per-replica ones.
    pub fn shared_limit_fallback(&self) {
        self.shared_fallbacks.inc();
    }

    /// A reload ended: `ok` or `failed`.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// Holds one open connection in the gauge.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_with_their_labels() {
        let m = Metrics::new();
        m.request("index", &Method::GET, 200, Duration::from_millis(3));
        m.decision(Decision::Expired);
        m.token_request("client_credentials", "issued");
        let text = m.encode();
        assert!(
            text.contains(r#"chartgate_requests_total{route="index",method="GET",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chartgate_auth_decisions_total{outcome="denied",reason="expired"} 1"#)
        );
        assert!(text.contains(
            r#"chartgate_tokens_issued_total{grant="client_credentials",outcome="issued"} 1"#
        ));
        assert!(text.contains("chartgate_request_duration_seconds_bucket{le="));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn connection_guards_count_down() {
        let m = Metrics::new();
        let a = m.connection(Listener::Plain);
        let b = m.connection(Listener::Plain);
        assert!(m
            .encode()
            .contains(r#"chartgate_open_connections{listener="plain"} 2"#));
        drop((a, b));
        assert!(m
            .encode()
            .contains(r#"chartgate_open_connections{listener="plain"} 0"#));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let m = Metrics::new();
        for name in ["FOO", "BAR", "get"] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            m.request("unknown", &method, 404, Duration::ZERO);
        }
        let text = m.encode();
        assert!(text.contains(r#"method="other",status="404"} 3"#), "{text}");
    }
}
