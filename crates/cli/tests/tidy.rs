//! Tidy checks on the source tree: the house rules of STYLE.md that a compiler cannot enforce.

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
