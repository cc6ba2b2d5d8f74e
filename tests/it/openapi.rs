//! `openapi/dvsigner.yaml` documents every route the Web3Signer face, node, combiner, metrics
//! and DKG ceremony routers register: the routes are read from the router source
//! (`.route("PATH", get(..))`, or `.route(some::CONST, ..)` with the constant's
//! `const CONST: &str = "PATH"` looked up under `src/`), so a route added without a spec entry
//! fails here. Spec paths with no route fail too.

use std::collections::BTreeSet;
use std::path::Path;

const ROUTER_SOURCES: [&str; 5] = [
    "src/http/web3signer.rs",
    "src/api/mod.rs",
    "src/combiner/mod.rs",
    "src/metrics.rs",
    "src/dkg/ceremony.rs",
];

/// (path, method) pairs registered with `.route(...)` in `source`; a path given as a constant
/// is resolved with `constant` (its last `::` segment), and panics when it cannot be.
fn routes_in(
    source: &str,
    constant: &dyn Fn(&str) -> Option<String>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let chunk = chunk.trim_start();
        let (path, rest) = match chunk.strip_prefix('"') {
            Some(rest) => {
                let Some((path, rest)) = rest.split_once('"') else {
                    continue;
                };
                (path.to_owned(), rest)
            }
            None => {
                let Some((expr, rest)) = chunk.split_once(',') else {
                    continue;
                };
                let name = expr.trim().rsplit("::").next().unwrap_or_default();
                let path = constant(name)
                    .unwrap_or_else(|| panic!("route path constant {expr} not found under src/"));
                (path, rest)
            }
        };
        // The handler expression ends where the next builder call starts.
        let expr = rest
            .split("\n        .")
            .next()
            .unwrap_or(rest)
            .split(";\n")
            .next()
            .unwrap_or(rest);
        for method in ["get", "post", "put", "delete", "patch"] {
            let hits = expr.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !expr.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && expr.as_bytes()[i - 1] != b'_'
            });
            if hits {
                out.insert((path.clone(), method.to_owned()));
            }
        }
    }
    out
}

/// The value of `const NAME: &str = "...";` in any `.rs` file under `dir`.
fn find_str_const(dir: &Path, name: &str) -> Option<String> {
    let needle = format!("const {name}: &str = \"");
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            find_str_const(&path, name)
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).ok()?;
            text.split_once(&needle)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(value, _)| value.to_owned())
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn spec_routes() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("openapi/dvsigner.yaml")).expect("spec");
    let spec: yaml_serde::Value = yaml_serde::from_str(&text).expect("spec is YAML");
    assert_eq!(spec["openapi"].as_str(), Some("3.0.3"));
    let paths = spec["paths"].as_mapping().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path string");
        for (method, op) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            assert!(
                op["responses"].as_mapping().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            out.insert((path.to_owned(), method.to_owned()));
        }
    }
    out
}

#[test]
fn every_router_route_is_in_the_spec_and_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut routes = BTreeSet::new();
    let constant = |name: &str| find_str_const(&root.join("src"), name);
    for file in ROUTER_SOURCES {
        let source = std::fs::read_to_string(root.join(file)).expect("router source");
        let found = routes_in(&source, &constant);
        assert!(!found.is_empty(), "no routes found in {file}");
        routes.extend(found);
    }
    // The extractor must see the well-known routes, or it is broken.
    for known in [
        ("/api/v1/eth2/sign/{identifier}", "post"),
        ("/reload", "get"),
        ("/reload", "post"),
        ("/metrics", "get"),
        ("/api/v1/cluster/history", "get"),
        ("/dkg/v1/round/{round}", "get"),
    ] {
        assert!(
            routes.contains(&(known.0.to_owned(), known.1.to_owned())),
            "{known:?} not extracted from the routers: {routes:?}"
        );
    }
    let spec = spec_routes();
    let missing: Vec<_> = routes.difference(&spec).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi/dvsigner.yaml: {missing:?}"
    );
    let stale: Vec<_> = spec.difference(&routes).collect();
    assert!(stale.is_empty(), "spec paths no router serves: {stale:?}");
}

#[test]
fn extractor_reads_chained_methods() {
    let src = r#"Router::new()
        .route("/a", get(h::a))
        .route("/b/{x}", post(b).get(c))
        .route(crate::x::C_PATH, get(c))
        .layer(x)"#;
    let constant = |name: &str| (name == "C_PATH").then(|| "/c".to_owned());
    let got = routes_in(src, &constant);
    let want: BTreeSet<(String, String)> = [
        ("/a", "get"),
        ("/b/{x}", "post"),
        ("/b/{x}", "get"),
        ("/c", "get"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn path_constants_resolve_from_the_source_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        find_str_const(&root.join("src"), "HISTORY_PATH").as_deref(),
        Some(dvsigner::cluster::protocol::HISTORY_PATH)
    );
    assert_eq!(
        find_str_const(&root.join("src"), "NO_SUCH_PATH_CONST"),
        None
    );
}
