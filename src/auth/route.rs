//! ChartMuseum's route table and its path matcher, ported so the gateway
//! derives the same `(route, repository)` the upstream will act on.
//!
//! The table mirrors `pkg/chartmuseum/server/multitenant/routes.go` row for
//! row and [`Routes::resolve`] follows `router/match.go` step for step
//! (docs/PROTOCOL.md §3.2, §3.3), for a fixed `--depth` and an optional
//! `--context-path`. It runs only on paths that [`super::path::check`]
//! accepted, and is narrower than the original in one place: a context path
//! must end on a segment boundary. Dynamic depth is not supported.

use hyper::Method;

use super::access::{Action, Scope, DEFAULT_NAMESPACE};

/// Which handler a row leads to; used for logging and by the table's gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Welcome,
    Info,
    Health,
    Index,
    Chart,
    ArtifactHub,
    ApiList,
    ApiChart,
    ApiVersion,
    ApiTemplates,
    ApiValues,
    ApiUpload,
    ApiProvenance,
    ApiDelete,
}

impl Handler {
    /// The route kind, as logs and metrics name it.
    pub fn name(self) -> &'static str {
        use Handler::*;
        match self {
            Welcome => "welcome",
            Info => "info",
            Health => "health",
            Index => "index",
            Chart => "chart",
            ArtifactHub => "artifact_hub",
            ApiList => "api_list",
            ApiChart => "api_chart",
            ApiVersion => "api_version",
            ApiTemplates => "api_templates",
            ApiValues => "api_values",
            ApiUpload => "api_upload",
            ApiProvenance => "api_provenance",
            ApiDelete => "api_delete",
        }
    }

    /// Whether the row belongs to the chart-manipulation API (`--disable-api`).
    pub fn is_api(self) -> bool {
        use Handler::*;
        matches!(
            self,
            ApiList
                | ApiChart
                | ApiVersion
                | ApiTemplates
                | ApiValues
                | ApiUpload
                | ApiProvenance
                | ApiDelete
        )
    }
}

/// One row of the route table.
#[derive(Debug)]
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub action: Option<Action>,
    pub handler: Handler,
}

/// Rows in ChartMuseum's order. Order decides ties, exactly as upstream.
fn table() -> Vec<RouteDef> {
    use Action::{Pull, Push};
    use Handler::*;
    let row = |method: Method, path, action, handler| RouteDef {
        method,
        path,
        action,
        handler,
    };
    vec![
        row(Method::GET, "/", Some(Pull), Welcome),
        row(Method::GET, "/info", None, Info),
        row(Method::GET, "/health", None, Health),
        row(Method::GET, "/:repo/index.yaml", Some(Pull), Index),
        row(Method::HEAD, "/:repo/index.yaml", Some(Pull), Index),
        row(Method::GET, "/:repo/charts/:filename", Some(Pull), Chart),
        row(
            Method::GET,
            "/artifacthub-repo.yml",
            Some(Pull),
            ArtifactHub,
        ),
        row(Method::GET, "/api/:repo/charts", Some(Pull), ApiList),
        row(
            Method::HEAD,
            "/api/:repo/charts/:name",
            Some(Pull),
            ApiChart,
        ),
        row(Method::GET, "/api/:repo/charts/:name", Some(Pull), ApiChart),
        row(
            Method::HEAD,
            "/api/:repo/charts/:name/:version",
            Some(Pull),
            ApiVersion,
        ),
        row(
            Method::GET,
            "/api/:repo/charts/:name/:version",
            Some(Pull),
            ApiVersion,
        ),
        row(
            Method::GET,
            "/api/:repo/charts/:name/:version/templates",
            Some(Pull),
            ApiTemplates,
        ),
        row(
            Method::GET,
            "/api/:repo/charts/:name/:version/values",
            Some(Pull),
            ApiValues,
        ),
        row(Method::POST, "/api/:repo/charts", Some(Push), ApiUpload),
        row(Method::POST, "/api/:repo/prov", Some(Push), ApiProvenance),
        row(
            Method::DELETE,
            "/api/:repo/charts/:name/:version",
            Some(Push),
            ApiDelete,
        ),
    ]
}

/// The upstream flags that add or remove routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOptions {
    /// `--depth`: how many path segments name a repository.
    pub depth: usize,
    /// `--context-path`, normalised to `/x` form, or `None`.
    pub context_path: Option<String>,
    /// False when ChartMuseum runs with `--disable-api`.
    pub api: bool,
    /// False when ChartMuseum runs with `--disable-delete`.
    pub delete: bool,
    /// True when ChartMuseum runs with `--artifact-hub-repo-id`.
    pub artifact_hub: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            depth: 0,
            context_path: None,
            api: true,
            delete: true,
            artifact_hub: false,
        }
    }
}

/// A matched request: the row and the repository it names (`""` if none).
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub route: &'a RouteDef,
    pub repo: String,
}

impl Resolved<'_> {
    /// The permission the request needs, or `None` for a public route.
    pub fn scope(self) -> Option<Scope> {
        let action = self.route.action?;
        let namespace = if self.repo.is_empty() {
            DEFAULT_NAMESPACE.to_owned()
        } else {
            self.repo
        };
        Some(Scope::repository(namespace, action))
    }
}

/// The compiled route table for one upstream configuration.
#[derive(Debug)]
pub struct Routes {
    rows: Vec<RouteDef>,
    /// Each row's path with its first `/:repo` removed, split into
    /// segments once.
    templates: Vec<Box<[Segment]>>,
    depth: usize,
    context_path: Option<String>,
}

/// Whether ChartMuseum treats `url` as an API path: it starts with `/api/`
/// and does not end in `.yaml`, `.tgz` or `.prov`.
fn is_api(url: &str) -> bool {
    url.starts_with("/api/")
        && ![".yaml", ".tgz", ".prov"]
            .iter()
            .any(|ext| url.ends_with(ext))
}

/// The rows ChartMuseum registers under `options`, in its order.
fn enabled_rows(options: &RouteOptions) -> Vec<RouteDef> {
    table()
        .into_iter()
        .filter(|r| match r.handler {
            Handler::ArtifactHub => options.artifact_hub,
            Handler::ApiDelete => options.api && options.delete,
            h => options.api || !h.is_api(),
        })
        .collect()
}

impl Routes {
    /// Builds the table ChartMuseum would serve with `options`.
    pub fn new(options: &RouteOptions) -> Routes {
        let rows = enabled_rows(options);
        let templates = rows
            .iter()
            .map(|r| {
                r.path
                    .replacen("/:repo", "", 1)
                    .split('/')
                    .map(Segment::parse)
                    .collect()
            })
            .collect();
        Routes {
            rows,
            templates,
            depth: options.depth,
            context_path: options.context_path.clone(),
        }
    }

    /// Matches `method` and a canonical `path` the way ChartMuseum does.
    /// `None` means ChartMuseum would answer 404, so the request is denied.
    pub fn resolve(&self, method: &Method, path: &str) -> Option<Resolved<'_>> {
        // ChartMuseum serves `/metrics` (ignoring the context path) and
        // `/static…` outside this table, with rules of their own; the gateway
        // has no row for them, so it refuses them rather than guess.
        if path == "/metrics" {
            return None;
        }
        let url = match &self.context_path {
            None => path,
            Some(ctx) if path == ctx => "/",
            Some(ctx) => {
                // Upstream strips the prefix as a plain string; we also demand
                // a segment boundary, so `/cmX/...` never loses its `X`.
                let rest = path.strip_prefix(ctx.as_str())?;
                if !rest.starts_with('/') {
                    return None;
                }
                rest
            }
        };

        if url.starts_with("/static") {
            return None;
        }
        // Upstream answers `/health` before trying repository prefixes, so a
        // depth-1 `/health` is never read as the welcome page of repo "health".
        if url == "/health" && method == Method::GET {
            let route = self.rows.iter().find(|r| r.handler == Handler::Health)?;
            return Some(Resolved {
                route,
                repo: String::new(),
            });
        }

        let api = is_api(url);
        let start = if api { 2 } else { 1 };
        // ChartMuseum splits the URL on `/` into parts (`""` first), takes
        // parts `start..start+depth` as the repository and matches the rest
        // ("noRepoPath", re-prefixed with `/api` for API routes). The same
        // split, as byte offsets into `url`, with no allocation: segment `k`
        // begins after the `k`-th slash.
        let repo_end = start + self.depth;
        let slash = |k: usize| slashes(url).nth(k - 1);
        let with_repo = match slash(repo_end) {
            // At least `repo_end + 1` parts: the repository, then the rest.
            Some(end) => {
                let repo = if self.depth == 0 {
                    ""
                } else {
                    slash(start).map_or("", |b| &url[b + 1..end])
                };
                Some((repo, &url[end + 1..]))
            }
            // Exactly `repo_end` parts: the repository ends the URL.
            None if slashes(url).count() + 1 == repo_end => {
                let repo = slash(start).map_or("", |b| &url[b + 1..]);
                Some((repo, ""))
            }
            None => None,
        };
        let tail: Vec<&str> = match with_repo {
            None => Vec::new(),
            Some((_, rest)) => {
                let prefix: &[&str] = if api { &["", "api"] } else { &[""] };
                prefix.iter().copied().chain(rest.split('/')).collect()
            }
        };

        let rows = self.rows.iter().zip(&self.templates);
        for (route, template) in rows.filter(|(r, _)| r.method == *method) {
            if route.path == url {
                return Some(Resolved {
                    route,
                    repo: String::new(),
                });
            }
            let Some((repo, _)) = with_repo else {
                continue;
            };
            if segments_match(template, &tail) {
                return Some(Resolved {
                    route,
                    repo: repo.to_owned(),
                });
            }
        }
        None
    }
}

/// The byte offsets of the slashes in `url`, in order. A byte scan: the
/// `char` pattern searcher costs more per call than these short paths take
/// to scan.
fn slashes(url: &str) -> impl Iterator<Item = usize> + '_ {
    url.bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'/').then_some(i))
}

/// One `/`-separated segment of a route template.
#[derive(Debug)]
enum Segment {
    /// A `:param`, which captures any segment.
    Param,
    /// Text the path's segment must equal.
    Literal(Box<str>),
}

impl Segment {
    fn parse(segment: &str) -> Segment {
        if segment.contains(':') {
            Segment::Param
        } else {
            Segment::Literal(segment.into())
        }
    }
}

/// Segment-wise comparison: equal counts, and every template segment either
/// is a `:param` or equals the path's.
fn segments_match(template: &[Segment], path: &[&str]) -> bool {
    template.len() == path.len()
        && template.iter().zip(path).all(|(t, p)| match t {
            Segment::Param => true,
            Segment::Literal(l) => **l == **p,
        })
}

#[cfg(any(test, feature = "reference"))]
pub mod reference;
#[cfg(test)]
mod tests;
