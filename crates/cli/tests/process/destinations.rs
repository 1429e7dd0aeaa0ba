//! `tactful destinations` as an operator runs it: the status of each destination events flow on to,
//! and a replay, which names an unknown destination plainly and fails.

use super::*;

#[test]
fn destinations_status_lists_the_examples_destinations_and_replay_knows_them() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    // The example ships its forwarding destinations commented out: switch two on, as a brand would.
    let path = dir.path().join("tactful.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, uncommented(&uncommented(&text, "email_tool"), "analytics")).unwrap();
    let database = dir.path().join("tactful.db");
    // The server makes the database and the master key, as a first start does.
    drop(Server::start(dir.path()));

    let (ok, status) = tactful(dir.path(), &database, &["destinations", "status"]);
    assert!(ok, "{status}");
    for key in ["email_tool (webhook)", "analytics (segment)"] {
        assert!(status.contains(key), "{key} missing from: {status}");
    }

    let unknown = Command::new(BINARY)
        .args(["destinations", "replay", "nowhere", "--since", "24h"])
        .arg("--catalog")
        .arg(dir.path().join("tactful.toml"))
        .arg("--database")
        .arg(format!("sqlite:{}", database.display()))
        .arg("--master-key-file")
        .arg(dir.path().join("master.key"))
        .env_remove("TACTFUL_MASTER_KEY")
        .output()
        .expect("run tactful");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{stderr}");
    assert!(stderr.contains("\"nowhere\" is no destination that receives events"), "{stderr}");

    let (ok, replayed) =
        tactful(dir.path(), &database, &["destinations", "replay", "analytics", "--since", "24h"]);
    assert!(ok, "{replayed}");
    assert!(replayed.contains("analytics will be sent again"), "{replayed}");
}

/// `text` with the commented-out `[destinations.KEY]` block switched on.
fn uncommented(text: &str, key: &str) -> String {
    let header = format!("# [destinations.{key}]");
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        inside = line == header || (inside && line.starts_with("# "));
        out.push_str(if inside { &line[2..] } else { line });
        out.push('\n');
    }
    out
}
