//! Tidy checks on the source tree: the house rules of STYLE.md that a compiler cannot enforce.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("node_modules") && !path.ends_with("fixtures") {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_source_file_says_why_it_exists() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 20, "found the sources");
    let missing: Vec<String> = files
        .iter()
        .filter(|file| !std::fs::read_to_string(file).unwrap().starts_with("//!"))
        .map(|file| file.strip_prefix(workspace()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying why they exist: {missing:#?}"
    );
}

#[test]
fn the_domain_crate_does_no_io() {
    let manifest = std::fs::read_to_string(workspace().join("crates/domain/Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for forbidden in
        ["axum", "hyper", "tokio", "rusqlite", "sqlx", "reqwest", "tactful-store", "tactful-server"]
    {
        assert!(
            !dependencies.lines().any(|line| line.trim_start().starts_with(forbidden)),
            "the domain crate must not depend on {forbidden}"
        );
    }
}

/// A crate's top-level modules (`src/x.rs` with `src/x/`), each with the other top-level modules
/// its files name through `crate::x` or `crate::{x, …}`, comments aside. Modules name each other
/// only by `crate::` paths (never `super::super::`), so this is every import between them.
fn module_imports(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("crates").join(krate).join("src");
    let mut code: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let module = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if module != "lib" && path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        } else {
            continue;
        }
        let text = code.entry(module).or_default();
        for file in files {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                text.push_str(line.split("//").next().unwrap_or_default());
                text.push('\n');
            }
        }
    }
    let modules: BTreeSet<String> = code.keys().cloned().collect();
    code.into_iter()
        .map(|(module, text)| {
            let named = crate_paths(&text)
                .into_iter()
                .filter(|other| *other != module && modules.contains(other))
                .collect();
            (module, named)
        })
        .collect()
}

/// The first segment of every `crate::` path in some code: `a` in `crate::a::b`, `a` and `b` in
/// `crate::{a::X, b}`.
fn crate_paths(code: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let first_segment = |item: &str| item.trim().chars().take_while(|&c| is_ident(c)).collect::<String>();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(is_ident) {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push(first_segment(rest));
            continue;
        };
        // Only the items at the group's own level: `c` of `c::{self, Y}`, not `self` or `Y`.
        let (mut depth, mut item) = (0, String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => found.push(first_segment(&std::mem::take(&mut item))),
                _ if depth == 0 => item.push(c),
                _ => {}
            }
        }
        found.push(first_segment(&item));
    }
    found.retain(|name| !name.is_empty());
    found
}

/// Every circle in a graph, once each, as the path that closes it ("a → b → a").
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found: BTreeMap<Vec<&str>, String> = BTreeMap::new();
    for start in graph.keys().map(String::as_str) {
        // Breadth first from `start`, remembering how each module was reached, until back at it.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(module) = queue.pop_front() {
            for next in graph.get(module).into_iter().flatten().map(String::as_str) {
                if !came_from.contains_key(next) {
                    came_from.insert(next, module);
                    queue.push_back(next);
                }
            }
        }
        let Some(&last) = came_from.get(start) else { continue };
        let mut path = vec![start, last];
        while let Some(&before) =
            path.last().filter(|&&module| module != start).map(|module| &came_from[module])
        {
            path.push(before);
        }
        path.reverse();
        let mut members = path[1..].to_vec();
        members.sort_unstable();
        found.entry(members).or_insert_with(|| path.join(" → "));
    }
    found.into_values().collect()
}

#[test]
fn a_circle_between_modules_is_found() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert_eq!(circles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])), ["a → b → c → a"]);
    assert_eq!(circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), Vec::<String>::new());
    assert_eq!(crate_paths("use crate::{a::X, b,\n    c::{self, Y}};"), ["a", "b", "c"]);
    assert_eq!(crate_paths("pub(crate) fn f() { crate::d::g(my_crate::e) }"), ["d"]);
}

#[test]
fn domain_modules_depend_on_each_other_one_way() {
    let imports = module_imports("domain");
    assert!(
        imports.get("policy").is_some_and(|named| named.contains("catalog") && named.contains("consent")),
        "the imports were read: {imports:#?}"
    );
    let circles = circles(&imports);
    assert!(
        circles.is_empty(),
        "domain modules import each other in a circle; move what both need into a module that \
         depends on neither: {circles:#?}"
    );
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let mut found = Vec::new();
    for krate in ["domain", "vault", "store", "personalize", "insights", "app", "server", "cli"] {
        let imports = module_imports(krate);
        assert!(!imports.is_empty(), "read the modules of {krate}");
        found.extend(circles(&imports).into_iter().map(|circle| format!("{krate}: {circle}")));
    }
    assert!(
        found.is_empty(),
        "modules import each other in a circle; move what both need into a module that depends on \
         neither, or let one tell the other through a trait: {found:#?}"
    );
}

/// The `[dependencies]` a crate's manifest names (not its dev-dependencies).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let section = manifest.split("\n[dependencies]").nth(1).unwrap_or_default().split("\n[").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.split(['=', '.']).next())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect()
}

#[test]
fn the_use_cases_know_no_http_framework() {
    let below_the_server = ["app", "domain", "vault", "store", "personalize", "insights"];
    for krate in below_the_server {
        let named = dependencies(krate);
        assert!(!named.is_empty() || krate == "domain", "read the dependencies of {krate}");
        for forbidden in ["axum", "askama", "tower", "tower-http", "tactful-server", "tactful"] {
            assert!(
                !named.iter().any(|name| name == forbidden),
                "{krate} must not depend on {forbidden}: only the server speaks HTTP and renders pages"
            );
        }
    }
    let app = dependencies("app");
    assert!(app.iter().any(|name| name == "tactful-store"), "the dependencies were read: {app:?}");
}

#[test]
fn the_server_holds_routes_pages_and_their_plumbing_only() {
    let src = workspace().join("crates/server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let plumbing = [
        "lib.rs",
        "error.rs",
        "auth.rs",
        "session.rs",
        "web.rs",
        "metrics.rs",
        "connections.rs",
        "limits.rs",
        "metrics/process.rs",
        "metrics/classic.rs",
    ];
    let mut lines = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(file).unwrap();
        lines += text.lines().count();
        let in_routes = relative.starts_with("routes/");
        assert!(
            in_routes || plumbing.contains(&relative.as_str()),
            "crates/server/src/{relative}: a use case belongs in crates/app; the server keeps routes \
             (mirroring URLs), pages and the HTTP plumbing ({plumbing:?})"
        );
        // The store is the application's: a handler calls one `tactful_app` function instead.
        let code: String = text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect();
        let store_calls = code.matches(".store.").count();
        let allowed = usize::from(relative == "routes/ops.rs") * 2;
        assert!(
            store_calls <= allowed,
            "crates/server/src/{relative} calls the store {store_calls} times; call a tactful_app use case"
        );
        assert!(
            relative == "error.rs" || !code.contains("tactful_store::"),
            "crates/server/src/{relative} uses the store's types; the application's are the server's"
        );
    }
    assert!(lines < 6_000, "the server has grown to {lines} lines: what is not HTTP belongs in crates/app");
}

#[test]
fn no_source_file_passes_800_lines() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > 800)
                .then(|| format!("{} ({lines} lines)", file.strip_prefix(workspace()).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by what their parts do: {long:#?}");
}

#[test]
fn the_newcomers_pages_stay_short() {
    let lines = |name: &str| std::fs::read_to_string(workspace().join(name)).unwrap().lines().count();
    assert!(lines("README.md") <= 250, "README.md is a newcomer's page: at most 250 lines");
    assert!(
        lines("ARCHITECTURE.md") <= 130,
        "ARCHITECTURE.md is the map, at most two pages: {} lines",
        lines("ARCHITECTURE.md")
    );
    assert!(workspace().join("docs/benchmarks.md").exists(), "the figures live in docs/benchmarks.md");
}
