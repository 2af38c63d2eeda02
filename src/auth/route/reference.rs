//! A literal, test-only port of ChartMuseum's matcher as docs/PROTOCOL.md §3.3
//! gives it (Go string semantics included: `strings.Replace(url, ctx, "", 1)`
//! removes the first occurrence, `HasPrefix`, `Split`), kept deliberately
//! naive so it can serve as the oracle for [`super::Routes::resolve`]:
//! whatever the gateway matches, this must match the same way.

use hyper::Method;

use super::{enabled_rows, Handler, RouteOptions};

/// `(handler, repo)` as upstream would resolve it, or `None` for its 404.
pub fn resolve(options: &RouteOptions, method: &Method, path: &str) -> Option<(Handler, String)> {
    let rows = enabled_rows(options);
    let mut url = path.to_owned();
    if let Some(ctx) = &options.context_path {
        if url == *ctx {
            url = "/".to_owned();
        } else if url.starts_with(ctx.as_str()) {
            url = url.replacen(ctx.as_str(), "", 1);
        } else {
            return None;
        }
    }
    if url == "/health" && *method == Method::GET {
        return Some((Handler::Health, String::new()));
    }
    let ends_with_ext = [".yaml", ".tgz", ".prov"].iter().any(|e| url.ends_with(e));
    let is_api = url.starts_with("/api/") && !ends_with_ext;
    let start = if is_api { 2 } else { 1 };
    let parts: Vec<&str> = url.split('/').collect();
    let depth = options.depth;
    let mut try_repo = None;
    if parts.len() >= depth + start {
        let repo = parts[start..start + depth].join("/");
        let mut no_repo = format!("/{}", parts[start + depth..].join("/"));
        let mut repo_path = format!("/:repo{no_repo}");
        if is_api {
            repo_path = format!("/api{repo_path}");
            no_repo = format!("/api{no_repo}");
        }
        try_repo = Some((repo, no_repo, repo_path));
    }
    for route in rows.iter().filter(|r| r.method == *method) {
        if route.path == url {
            return Some((route.handler, String::new()));
        }
        if let Some((repo, no_repo, repo_path)) = &try_repo {
            if route.path == *repo_path {
                return Some((route.handler, repo.clone()));
            }
            let p = route.path.replacen("/:repo", "", 1);
            let rs: Vec<&str> = p.split('/').collect();
            let ns: Vec<&str> = no_repo.split('/').collect();
            if rs.len() == ns.len()
                && rs
                    .iter()
                    .zip(&ns)
                    .all(|(r, n)| r.split(':').count() > 1 || r == n)
            {
                return Some((route.handler, repo.clone()));
            }
        }
    }
    None
}
