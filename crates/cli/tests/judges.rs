//! Outside judges, none written by this project: Schemathesis runs against the demo's own API
//! document with every check on and must find nothing; openapi-spec-validator accepts that
//! document; fideslang's own models parse what `tactful catalog export --format fides` writes, and
//! a data map written by fideslang becomes a skeleton that `tactful catalog check` explains.
//! `scripts/judges` (which `scripts/test` runs) installs them into `target/judges-venv`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A program of the judges' virtual environment; without it the test fails, saying how to make it.
fn judge(program: &str) -> PathBuf {
    let path = workspace().join("target/judges-venv/bin").join(program);
    assert!(
        path.exists(),
        "{} is missing: run scripts/judges (scripts/test runs it) to install the Python judges",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn tactful(args: &[&str]) -> Output {
    run(Command::new(BINARY).args(args).env_remove("TACTFUL_CATALOG"))
}

#[test]
fn fideslang_parses_the_exported_catalog_with_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fernhill.yml");
    let catalog = workspace().join("examples/tactful.toml");
    let exported = tactful(&[
        "catalog",
        "export",
        "--format",
        "fides",
        catalog.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(exported.status.success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judges/fides.py");
    let checked = run(Command::new(judge("python")).arg(&script).arg("check").arg(&out));
    assert!(checked.status.success(), "fideslang refused the export");
    let summary: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("a JSON summary");
    // Every purpose is a privacy declaration, every property a dataset field.
    assert_eq!(summary["organizations"], 1, "{summary}");
    assert_eq!(summary["systems"], 1, "{summary}");
    let catalog =
        tactful_domain::catalog::Catalog::parse(tactful_domain::catalog::Catalog::example_text()).unwrap();
    assert_eq!(summary["declarations"], catalog.purposes().len(), "{summary}");
    assert_eq!(summary["fields"], catalog.properties().len(), "{summary}");
}

#[test]
fn a_data_map_written_by_fideslang_becomes_a_skeleton_that_catalog_check_explains() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("acme.yml");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judges/fides.py");
    assert!(run(Command::new(judge("python")).arg(&script).arg("sample").arg(&sample)).status.success());
    let skeleton = dir.path().join("acme.toml");
    let imported =
        tactful(&["catalog", "import", sample.to_str().unwrap(), "--out", skeleton.to_str().unwrap()]);
    assert!(imported.status.success());
    let warnings = String::from_utf8_lossy(&imported.stderr);
    assert!(
        warnings.contains("warning: personalize.profiling is deprecated since fideslang 2.1.1: written as personalize.content.profiling"),
        "{warnings}"
    );
    let text = std::fs::read_to_string(&skeleton).unwrap();
    assert!(text.contains("[properties.\"traits.email\"]\ncategory = \"user.contact.email\"\npurposes = [\"personalize.content.profiling\", \"essential.service\"]\nretention = \"2y\"\nidentifier = \"email\""), "{text}");
    let checked = tactful(&["catalog", "check", skeleton.to_str().unwrap()]);
    assert!(!checked.status.success(), "a skeleton is not a whole catalog");
    let problems = String::from_utf8_lossy(&checked.stderr);
    let line_of = |needle: &str| text.lines().position(|line| line.starts_with(needle)).expect(needle) + 1;
    let shown = skeleton.display().to_string();
    for (line, words) in [
        (line_of("benefit = \"\""), "purpose benefit (what the customer gets from it) must not be empty"),
        (line_of("[properties.\"orders.order_id\"]"), "must start with traits., properties. or context."),
        (line_of("retention = \"\""), "retention must look like"),
    ] {
        assert!(
            problems.contains(&format!("{shown}:{line}:")) && problems.contains(words),
            "{line} {words}:\n{problems}"
        );
    }
    assert!(problems.contains("no [sources.*] declared"), "{problems}");
}

#[test]
fn openapi_spec_validator_accepts_the_api_document() {
    let document = workspace().join("crates/server/openapi.json");
    let output = run(Command::new(judge("openapi-spec-validator")).arg(&document));
    assert!(output.status.success(), "openapi-spec-validator refused crates/server/openapi.json");
}

/// The demo process; killed when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tactful demo` as a newcomer does and returns its address and the API key it prints for
/// the requests team, whose role may do the most (every request, packages, links, codes).
fn start_demo(dir: &Path) -> (Demo, String, String) {
    let mut child = Command::new(BINARY)
        .args(["demo", "--customers", "120", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .current_dir(dir)
        .env_remove("TACTFUL_DATABASE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tactful demo");
    let stdout = child.stdout.take().expect("stdout is piped");
    let demo = Demo(child);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut base = String::new();
    let mut key = String::new();
    let mut seen = Vec::new();
    loop {
        let line = receiver
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("the demo never got ready; it printed:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if let Some(rest) = line.trim().strip_prefix("Tactful is running at ") {
            rest.clone_into(&mut base);
        }
        if let (true, Some((_, rest))) = (line.contains("/v1/requests -H"), line.split_once("Bearer ")) {
            key = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        }
        if line.trim() == "Press Ctrl-C to stop." {
            break;
        }
    }
    std::thread::spawn(move || for _ in receiver {});
    assert!(!base.is_empty() && !key.is_empty(), "{}", seen.join("\n"));
    (demo, base, key)
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_api_as_documented() {
    let st = judge("st");
    let dir = tempfile::tempdir().unwrap();
    let (_demo, base, requests_key) = start_demo(dir.path());
    let report = dir.path().join("report");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judges/schemathesis.toml");
    let output = run(Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", "all", "--max-examples", "12", "--seed", "20261203", "--workers", "1"])
        // Deterministic generation keeps no example database: each run starts from the seed alone,
        // not from what earlier runs found.
        .args(["--request-timeout", "20", "--no-shrink", "--generation-deterministic"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {requests_key}"))
        .arg("--report-dir")
        .arg(&report)
        .current_dir(dir.path())
        .env("NO_COLOR", "1"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "Schemathesis found failures (above)");
    assert!(stdout.contains(" passed") || stdout.contains("No issues found"), "{stdout}");
}
