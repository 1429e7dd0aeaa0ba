//! What an operator or a newcomer meets first: `--help` that lists only the settings a command
//! uses, read-only commands that refuse a store that is not there, shell completions, progress
//! drawn only on a terminal, and a demo whose first screen is the product's and whose files stay in
//! its own directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::BINARY;

fn run(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command.current_dir(cwd).args(args);
    for name in ["TACTFUL_CATALOG", "TACTFUL_CONFIG", "TACTFUL_MASTER_KEY", "TACTFUL_DATABASE"] {
        command.env_remove(name);
    }
    let output = command.output().expect("run tactful");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"), "{output:?}");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn each_command_lists_only_the_settings_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let serve_only =
        ["--listen", "--max-inflight", "--header-timeout-ms", "--client-address-header", "--log-format"];
    for command in
        [&["api-keys", "create"][..], &["stats"], &["audit", "verify"], &["export-dataset"], &["backup"]]
    {
        let help = text(&run(dir.path(), &[command, &["--help"]].concat()).stdout);
        assert!(help.contains("--database") && help.contains("--master-key-file"), "{command:?}: {help}");
        for flag in serve_only {
            assert!(!help.contains(flag), "{command:?} --help lists {flag}:\n{help}");
        }
    }
    let serve = text(&run(dir.path(), &["serve", "--help"]).stdout);
    for flag in serve_only {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    // Given anyway, a serve-only flag is refused with a reason, not silently ignored.
    let output = run(dir.path(), &["stats", "--listen", "127.0.0.1:9"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--listen is a setting of `tactful serve`"), "{output:?}");
}

#[test]
fn a_command_that_only_reads_refuses_a_missing_store_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tactful.toml"), tactful_domain::catalog::Catalog::example_text())
        .unwrap();
    let database = "sqlite:missing/x.db";
    let reads: [&[&str]; 8] = [
        &["stats"],
        &["dropped"],
        &["audit", "verify"],
        &["api-keys", "list"],
        &["requests", "list"],
        &["consents", "export", "--out", "consents.csv"],
        &["model", "rebuild"],
        &["backup", "--out", "copy.db"],
    ];
    for command in reads {
        let output = run(dir.path(), &[command, &["--database", database]].concat());
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{command:?} succeeded on a missing store");
        assert!(stderr.contains("no database at missing/x.db"), "{command:?}: {stderr}");
        assert!(stderr.contains("--database"), "says what to do: {stderr}");
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["tactful.toml"], "no database, master key or directory was made");

    // A database whose master key is missing: refused too, and no key is made up.
    let made = run(
        dir.path(),
        &["api-keys", "create", "--role", "support", "--name", "setup", "--database", "sqlite:t.db"],
    );
    assert!(made.status.success(), "{made:?}");
    std::fs::rename(dir.path().join("tactful-data/master.key"), dir.path().join("kept.key")).unwrap();
    let output = run(dir.path(), &["stats", "--database", "sqlite:t.db"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("no master key at tactful-data/master.key"), "{output:?}");
    assert!(!dir.path().join("tactful-data/master.key").exists());
    let output = run(dir.path(), &["stats", "--database", "sqlite:t.db", "--master-key-file", "kept.key"]);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef tactful"), ("fish", "complete -c tactful")]
    {
        let output = run(dir.path(), &["completions", shell]);
        let script = text(&output.stdout);
        assert!(output.status.success() && script.contains(marker), "{shell}: {script}");
        assert!(script.contains("api-keys") && script.contains("database"), "{shell}");
    }
}

#[test]
fn progress_is_drawn_on_a_terminal_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["generate", "--people", "300", "--items", "40", "--interactions", "30000", "--out", "data"];
    let output = run(dir.path(), &args);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stderr), "", "no progress in a pipe or a log");
    // The same command on a pseudo-terminal (util-linux `script`), as a person runs it.
    let line = [BINARY, &args.join(" ")].join(" ");
    let output = Command::new("script")
        .current_dir(dir.path())
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .output()
        .expect("util-linux script");
    let screen = text(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("interactions,"), "a bar while writing the interactions:\n{screen}");
    assert!(screen.contains("generated 300 people"), "{screen}");
}

/// The demo's first screen is the product's (no page of log lines before it), and everything it
/// writes stays under `tactful-demo/` where it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_opens_on_its_own_screen_and_keeps_its_files_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["demo", "--customers", "400", "--listen", "127.0.0.1:0"])
        .env_remove("TACTFUL_DATABASE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tactful demo");
    let stderr = child.stderr.take().unwrap();
    let log =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let (mut base, mut email) = (String::new(), String::new());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Tactful is running at ") {
            base = rest.to_owned();
        }
        if let Some((address, _)) = line.split_once("'s privacy settings (a signed link") {
            email = address.to_owned();
        }
        if line == "Press Ctrl-C to stop." {
            break;
        }
    }
    assert!(!base.is_empty() && email.contains('@'), "the demo printed its address and a customer");

    // A customer asks for a sign-in code: the message is written in the demo's directory.
    let client = tactful::client::Client::new(base);
    let (status, _) =
        client.post_form("/me/sign-in", format!("address={}", email.replace('@', "%40"))).await.unwrap();
    assert!(status.is_success() || status.is_redirection(), "{status}");
    let notifications = dir.path().join("tactful-demo/notifications");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&notifications).map_or(0, |entries| entries.count()) == 0 {
        assert!(Instant::now() < deadline, "no sign-in code reached {}", notifications.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap();

    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, ["tactful-demo"], "the demo wrote outside tactful-demo/");
    let retention = log.iter().filter(|line| line.contains("outlived its retention")).count();
    assert!(retention <= 1, "{retention} retention lines before the demo's screen:\n{}", log.join("\n"));
    assert!(log.len() <= 6, "the log before the demo's screen is a few lines:\n{}", log.join("\n"));
}
