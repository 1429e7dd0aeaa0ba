//! The pages in a real browser: `tactful demo` runs as a newcomer runs it, and headless Chromium,
//! driven by Playwright (`tests/browser/suite.mjs`), opens the preference-center link the demo
//! prints, switches a purpose off, tells an interest, downloads the data, asks for deletion, signs
//! in to the console — and checks that no page asks any host but the server for anything.
//! Screenshots land in `target/browser-screenshots/`. `scripts/test` installs Chromium and
//! Playwright; without them this test says it was skipped (and fails under CI, which must run it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

/// What the demo printed that the browser needs.
#[derive(Debug, Default)]
struct Printed {
    base: String,
    link: String,
    email: String,
    console_key: String,
}

/// The demo process; killed when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("TACTFUL_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    path.exists().then_some(path)
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Reads the demo's output until it is ready, keeping what the browser needs.
fn read_demo(child: &mut Child) -> Printed {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Printed::default();
    let mut seen = Vec::new();
    let mut next_is_key = false;
    loop {
        let line = receiver
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("the demo never got ready; it printed:\n{}", seen.join("\n")));
        seen.push(line.clone());
        let trimmed = line.trim();
        if let Some(base) = trimmed.strip_prefix("Tactful is running at ") {
            printed.base = base.to_owned();
        }
        if trimmed.contains("/me?t=") {
            printed.link = trimmed.to_owned();
        }
        if let Some((email, _)) = trimmed.split_once("'s privacy settings (a signed link") {
            printed.email = email.to_owned();
        }
        if next_is_key {
            printed.console_key = trimmed.trim_end_matches(')').to_owned();
            next_is_key = false;
        }
        if trimmed.starts_with("the brand console:") {
            next_is_key = true;
        }
        if trimmed == "Press Ctrl-C to stop." {
            break;
        }
    }
    // Keep draining so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in receiver {});
    assert!(
        !printed.base.is_empty() && !printed.link.is_empty() && !printed.console_key.is_empty(),
        "{printed:?}"
    );
    assert!(printed.email.contains('@'), "{printed:?}");
    printed
}

#[test]
fn the_pages_work_in_a_real_browser_and_ask_no_other_host_for_anything() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser suite: run scripts/test, which installs Chromium"
        );
        eprintln!("skipped: no Chromium at /usr/bin/chromium (scripts/test installs it)");
        return;
    };
    if !suite_dir().join("node_modules/playwright-core").exists()
        || !suite_dir().join("node_modules/axe-core").exists()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser suite: run scripts/test, which installs Playwright and axe-core"
        );
        eprintln!(
            "skipped: Playwright or axe-core is not installed (scripts/test runs npm ci in {})",
            suite_dir().display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BINARY)
        .args(["demo", "--customers", "120", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("TACTFUL_DATABASE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tactful demo");
    let mut demo = Demo(child);
    let printed = read_demo(&mut demo.0);

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = Command::new("node")
        .arg(suite_dir().join("suite.mjs"))
        .env("TACTFUL_BASE", &printed.base)
        .env("TACTFUL_LINK", &printed.link)
        .env("TACTFUL_EMAIL", &printed.email)
        .env("TACTFUL_CONSOLE_KEY", &printed.console_key)
        .env("TACTFUL_SCREENSHOTS", &screenshots)
        .env("TACTFUL_CHROMIUM", &chromium)
        .output()
        .expect("run node (Node.js 20 or newer)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "the browser suite failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all browser checks passed"), "{stdout}");
}
