//! Table-driven tests: every row of docs/PROTOCOL.md §3.2 and every consequence
//! listed in §3.3, at the depths and context paths where they apply.

use super::*;
use crate::auth::access::Action::{Pull, Push};
use crate::auth::path;
use Handler::*;

fn routes(depth: usize, ctx: Option<&str>) -> Routes {
    Routes::new(&RouteOptions {
        depth,
        context_path: ctx.map(str::to_owned),
        ..RouteOptions::default()
    })
}

/// Expected outcome: `None` is a 404 from upstream, so the gateway denies.
type Want = Option<(Handler, Option<(&'static str, Action)>)>;

fn check(r: &Routes, method: Method, url: &str, want: Want) {
    let got = r.resolve(&method, url).map(|m| {
        let handler = m.route.handler;
        (handler, m.scope().map(|s| (s.namespace, s.action)))
    });
    let want = want.map(|(h, s)| (h, s.map(|(ns, a)| (ns.to_owned(), a))));
    assert_eq!(got, want, "{method} {url} at depth {}", r.depth);
}

#[test]
fn every_route_at_depth_two() {
    let r = routes(2, None);
    let ns = "org1/repo1";
    let cases: Vec<(Method, &str, Want)> = vec![
        (Method::GET, "/", Some((Welcome, Some(("repo", Pull))))),
        (Method::GET, "/info", Some((Info, None))),
        (Method::GET, "/health", Some((Health, None))),
        (
            Method::GET,
            "/org1/repo1/index.yaml",
            Some((Index, Some((ns, Pull)))),
        ),
        (
            Method::HEAD,
            "/org1/repo1/index.yaml",
            Some((Index, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/org1/repo1/charts/mychart-0.1.0.tgz",
            Some((Chart, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/org1/repo1/charts/mychart-0.1.0.tgz.prov",
            Some((Chart, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts",
            Some((ApiList, Some((ns, Pull)))),
        ),
        (
            Method::HEAD,
            "/api/org1/repo1/charts/mychart",
            Some((ApiChart, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts/mychart",
            Some((ApiChart, Some((ns, Pull)))),
        ),
        (
            Method::HEAD,
            "/api/org1/repo1/charts/mychart/0.1.0",
            Some((ApiVersion, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts/mychart/0.1.0",
            Some((ApiVersion, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts/mychart/latest",
            Some((ApiVersion, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts/mychart/0.1.0/templates",
            Some((ApiTemplates, Some((ns, Pull)))),
        ),
        (
            Method::GET,
            "/api/org1/repo1/charts/mychart/0.1.0/values",
            Some((ApiValues, Some((ns, Pull)))),
        ),
        (
            Method::POST,
            "/api/org1/repo1/charts",
            Some((ApiUpload, Some((ns, Push)))),
        ),
        (
            Method::POST,
            "/api/org1/repo1/prov",
            Some((ApiProvenance, Some((ns, Push)))),
        ),
        (
            Method::DELETE,
            "/api/org1/repo1/charts/mychart/0.1.0",
            Some((ApiDelete, Some((ns, Push)))),
        ),
        // Not in the table: upstream 404s, so do we.
        (Method::HEAD, "/org1/repo1/charts/mychart-0.1.0.tgz", None),
        (Method::OPTIONS, "/org1/repo1/index.yaml", None),
        (Method::PUT, "/api/org1/repo1/charts", None),
        (Method::PATCH, "/api/org1/repo1/charts/mychart/0.1.0", None),
        (Method::DELETE, "/api/org1/repo1/charts/mychart", None),
        (Method::POST, "/org1/repo1/index.yaml", None),
        (Method::GET, "/metrics", None),
        (Method::GET, "/artifacthub-repo.yml", None),
        // ChartMuseum routes /static and /metrics outside its table: refused.
        (Method::GET, "/static/x.css", None),
        (Method::GET, "/staticfoo/index.yaml", None),
        (Method::GET, "/index.yaml", None),
        (Method::GET, "/org1/repo1/charts", None),
        (Method::GET, "/org1/repo1/x/index.yaml", None),
        (
            Method::from_bytes(b"get").unwrap(),
            "/org1/repo1/index.yaml",
            None,
        ),
    ];
    for (m, url, want) in cases {
        check(&r, m, url, want);
    }
}

#[test]
fn repo_less_routes_match_under_a_repo_prefix() {
    let r = routes(2, None);
    check(&r, Method::GET, "/org1/repo1/info", Some((Info, None)));
    check(&r, Method::GET, "/org1/repo1/health", Some((Health, None)));
    // docs/PROTOCOL.md §3.3: `/org1/index.yaml` at depth 2 is the welcome page of
    // a repository named `org1/index.yaml`.
    check(
        &r,
        Method::GET,
        "/org1/index.yaml",
        Some((Welcome, Some(("org1/index.yaml", Pull)))),
    );
    // An API path spelled after the repository still names that repository.
    check(
        &r,
        Method::GET,
        "/org1/repo1/api/charts",
        Some((ApiList, Some(("org1/repo1", Pull)))),
    );
    check(
        &r,
        Method::POST,
        "/org1/repo1/api/charts",
        Some((ApiUpload, Some(("org1/repo1", Push)))),
    );
}

#[test]
fn depth_zero_uses_the_default_namespace() {
    let r = routes(0, None);
    check(
        &r,
        Method::GET,
        "/index.yaml",
        Some((Index, Some(("repo", Pull)))),
    );
    check(
        &r,
        Method::GET,
        "/charts/x-1.0.0.tgz",
        Some((Chart, Some(("repo", Pull)))),
    );
    check(
        &r,
        Method::POST,
        "/api/charts",
        Some((ApiUpload, Some(("repo", Push)))),
    );
    check(&r, Method::GET, "/info", Some((Info, None)));
    // §3.3: `/api/charts/x-1.0.0.tgz` ends in .tgz, so it is parsed as a
    // non-API path, and its tail then matches GET /api/:repo/charts/:name.
    check(
        &r,
        Method::GET,
        "/api/charts/x-1.0.0.tgz",
        Some((ApiChart, Some(("repo", Pull)))),
    );
    check(&r, Method::GET, "/org1/index.yaml", None);
}

#[test]
fn metrics_is_refused_at_every_depth() {
    for depth in 0..=3 {
        check(&routes(depth, None), Method::GET, "/metrics", None);
    }
    check(&routes(1, Some("/cm")), Method::GET, "/metrics", None);
}

#[test]
fn depth_one_quirks() {
    let r = routes(1, None);
    check(
        &r,
        Method::GET,
        "/myrepo/index.yaml",
        Some((Index, Some(("myrepo", Pull)))),
    );
    // §3.3: `/index.yaml` at depth 1 is the welcome page of repo "index.yaml".
    check(
        &r,
        Method::GET,
        "/index.yaml",
        Some((Welcome, Some(("index.yaml", Pull)))),
    );
    // `/api/...` ending in .yaml/.tgz is served from the repository named "api".
    check(
        &r,
        Method::GET,
        "/api/index.yaml",
        Some((Index, Some(("api", Pull)))),
    );
    check(
        &r,
        Method::GET,
        "/api/charts/x.tgz",
        Some((Chart, Some(("api", Pull)))),
    );
    // `/health` is answered before repository prefixes; `/info` is not.
    check(&r, Method::GET, "/health", Some((Health, None)));
    check(
        &r,
        Method::GET,
        "/info",
        Some((Welcome, Some(("info", Pull)))),
    );
}

#[test]
fn depth_three() {
    let r = routes(3, None);
    check(
        &r,
        Method::GET,
        "/a/b/c/index.yaml",
        Some((Index, Some(("a/b/c", Pull)))),
    );
    check(
        &r,
        Method::POST,
        "/api/a/b/c/charts",
        Some((ApiUpload, Some(("a/b/c", Push)))),
    );
    check(
        &r,
        Method::GET,
        "/a/b/index.yaml",
        Some((Welcome, Some(("a/b/index.yaml", Pull)))),
    );
    check(&r, Method::POST, "/api/a/b/charts", None);
}

#[test]
fn context_path() {
    let r = routes(2, Some("/cm"));
    check(
        &r,
        Method::GET,
        "/cm",
        Some((Welcome, Some(("repo", Pull)))),
    );
    check(
        &r,
        Method::GET,
        "/cm/org1/repo1/index.yaml",
        Some((Index, Some(("org1/repo1", Pull)))),
    );
    check(
        &r,
        Method::POST,
        "/cm/api/org1/repo1/charts",
        Some((ApiUpload, Some(("org1/repo1", Push)))),
    );
    check(&r, Method::GET, "/cm/health", Some((Health, None)));
    // Outside the context path upstream answers 404.
    check(&r, Method::GET, "/org1/repo1/index.yaml", None);
    check(&r, Method::GET, "/health", None);
    // §3.3: upstream would drop the glued `X` and serve another path; we refuse.
    check(&r, Method::GET, "/cmX/org1/repo1/index.yaml", None);
    check(&r, Method::GET, "/cmorg1/repo1/index.yaml", None);
}

#[test]
fn disabled_routes_are_denied() {
    let no_api = Routes::new(&RouteOptions {
        depth: 2,
        api: false,
        ..RouteOptions::default()
    });
    check(&no_api, Method::GET, "/api/org1/repo1/charts", None);
    check(&no_api, Method::POST, "/api/org1/repo1/charts", None);
    check(
        &no_api,
        Method::GET,
        "/org1/repo1/index.yaml",
        Some((Index, Some(("org1/repo1", Pull)))),
    );

    let no_delete = Routes::new(&RouteOptions {
        depth: 2,
        delete: false,
        ..RouteOptions::default()
    });
    check(
        &no_delete,
        Method::DELETE,
        "/api/org1/repo1/charts/a/1.0.0",
        None,
    );

    let hub = Routes::new(&RouteOptions {
        depth: 2,
        artifact_hub: true,
        ..RouteOptions::default()
    });
    check(
        &hub,
        Method::GET,
        "/artifacthub-repo.yml",
        Some((ArtifactHub, Some(("repo", Pull)))),
    );
}

/// The §3.3 rows whose upstream outcome is dangerous never reach the
/// matcher: the canonical-path gate refuses them first.
#[test]
fn dangerous_rows_are_refused_before_matching() {
    for url in [
        "/org1//index.yaml",
        "/org1/../charts/x.tgz",
        "/../../charts/x.tgz",
        "/org1%2Frepo1/index.yaml",
        "/api/org1/repo1/charts/",
        "/org1/repo1/charts/..",
        "/org1/repo1/",
    ] {
        assert!(path::check(url).is_err(), "{url}");
    }
}

/// A small deterministic PRNG (xorshift64*), so the generated corpus is the
/// same on every run and a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Differential test against the literal port of upstream's matcher: over
/// a generated corpus of canonical paths (route-shaped segments, repository
/// names, `api`, `charts`, suffixes, context-path prefixes), every match the
/// gateway makes is the match ChartMuseum would make, with the same
/// repository. Where the gateway refuses and upstream would not, the
/// gateway is the stricter one, which is allowed.
#[test]
fn the_gateway_never_matches_differently_from_chartmuseum() {
    let words = [
        "",
        "api",
        "charts",
        "index.yaml",
        "health",
        "info",
        "org1",
        "repo1",
        "a",
        "b.tgz",
        "x.prov",
        "mychart",
        "0.1.0",
        "latest",
        "templates",
        "values",
        "prov",
        "metrics",
        "static",
        "cm",
        "cmX",
        "artifacthub-repo.yml",
        "index.yaml.tgz",
        "api.yaml",
        "..x",
        "-",
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::DELETE,
        Method::PUT,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut matched, mut stricter) = (0u32, 0u32, 0u32);
    for _ in 0..200_000 {
        let depth = (rng.next() % 4) as usize;
        let ctx = match rng.next() % 3 {
            0 => Some("/cm".to_owned()),
            _ => None,
        };
        let options = RouteOptions {
            depth,
            context_path: ctx.clone(),
            api: !rng.next().is_multiple_of(5),
            delete: !rng.next().is_multiple_of(5),
            artifact_hub: rng.next().is_multiple_of(4),
        };
        let segments = (rng.next() % 7) as usize;
        let mut path = String::new();
        if ctx.is_some() && !rng.next().is_multiple_of(4) {
            path.push_str("/cm");
        }
        for _ in 0..segments {
            path.push('/');
            let word: &&str = rng.pick(&words);
            path.push_str(word);
        }
        if path.is_empty() {
            path.push('/');
        }
        if path::check(&path).is_err() {
            continue;
        }
        let method = rng.pick(&methods).clone();
        let ours = Routes::new(&options)
            .resolve(&method, &path)
            .map(|r| (r.route.handler, r.repo));
        let theirs = reference::resolve(&options, &method, &path);
        compared += 1;
        match (&ours, &theirs) {
            (Some(o), Some(t)) => {
                assert_eq!(o, t, "{method} {path} depth {depth} ctx {ctx:?}");
                matched += 1;
            }
            (Some(o), None) => panic!("gateway matched {o:?} where upstream 404s: {method} {path} depth {depth} ctx {ctx:?}"),
            (None, Some(_)) => stricter += 1,
            (None, None) => {}
        }
    }
    // The corpus must exercise real matches, not only refusals.
    assert!(
        compared > 50_000 && matched > 5_000,
        "compared {compared}, matched {matched}"
    );
    eprintln!("route parity: {compared} canonical requests, {matched} matched alike, {stricter} refused only by the gateway");
}
