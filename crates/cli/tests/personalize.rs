//! `tactful generate`, `tactful eval` and `bench personalize --csv` as a user runs them: files written,
//! read back, the table printed, a bad CSV named by file and line, and training timed on a CSV.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BINARY).args(args).output().expect("run tactful");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The HR@10 printed on the first row of `model` whose setting starts with `setting`.
fn hit_rate(table: &str, model: &str, setting: &str) -> f64 {
    let line = table
        .lines()
        .find(|line| line.trim_start().starts_with(model) && line.contains(setting))
        .unwrap_or_else(|| panic!("no {model} {setting} row in:\n{table}"));
    let after = &line[line.find(setting).unwrap() + setting.len()..];
    // The first decimal after the setting's words.
    after.split_whitespace().find(|word| word.contains('.')).and_then(|word| word.parse().ok()).unwrap()
}

#[test]
fn generated_files_evaluate_and_item_to_item_beats_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let size = ["--people", "3000", "--items", "400", "--interactions", "60000", "--clusters", "8"];
    let (ok, stdout, stderr) = run(&[&["generate", "--out", out][..], &size].concat());
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("generated 3,000 people, 400 items (8 sensitive), 60,000 interactions"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(dir.path().join("interactions.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("user,item,timestamp,event"));
    assert_eq!(csv.lines().count(), 60_001);
    assert!(csv.lines().nth(1).unwrap().starts_with("user-000000,item-"), "{}", &csv[..200]);
    let items = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(items.lines().next().unwrap()).unwrap();
    for key in ["id", "name", "categories", "sensitive", "available", "price"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }

    let csv_path = dir.path().join("interactions.csv");
    let items_path = dir.path().join("items.jsonl");
    let (ok, table, stderr) = run(&[
        "eval",
        "--csv",
        csv_path.to_str().unwrap(),
        "--catalogue",
        items_path.to_str().unwrap(),
        "--users",
        "1000",
    ]);
    assert!(ok, "{stderr}");
    let item_to_item = hit_rate(&table, "item-to-item", "k=1, no noise");
    let popular = hit_rate(&table, "most popular", "popular list only");
    assert!(item_to_item >= 1.5 * popular, "{table}");
    assert!(table.contains("k=5, DP ε=1, cap 20") && table.contains("1.00, 1e-7"), "{table}");
    assert!(table.contains("touches of sensitive items excluded"), "{table}");

    // The same data generated in memory gives the same figures (the noisy rows aside).
    let (ok, direct, stderr) = run(&[&["eval", "--users", "1000"][..], &size].concat());
    assert!(ok, "{stderr}");
    assert_eq!(hit_rate(&direct, "item-to-item", "k=1, no noise"), item_to_item);
}

#[test]
fn a_bad_csv_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratings.csv");
    std::fs::write(&path, "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n").unwrap();
    let (ok, _, stderr) = run(&["eval", "--csv", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "ratings.csv: line 2: timestamp `2.5` is neither Unix seconds or milliseconds nor RFC 3339"
        ),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["eval", "--csv", dir.path().join("missing.csv").to_str().unwrap()]);
    assert!(!ok && stderr.contains("missing.csv"), "{stderr}");
}

#[test]
fn planted_light_customers_are_generated_and_the_gaussian_release_is_reported_beside_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let size = [
        "--people",
        "2000",
        "--items",
        "100",
        "--clusters",
        "3",
        "--items-per-person",
        "20",
        "--zipf",
        "1.2",
    ];
    let (ok, stdout, stderr) = run(&[&["generate", "--out", out][..], &size].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("generated 2,000 people, 100 items (2 sensitive)"), "{stdout}");

    let (ok, table, stderr) = run(&[&["eval", "--users", "500"][..], &size].concat());
    assert!(ok, "{stderr}");
    assert!(table.contains("3 taste clusters, Zipf 1.2, about 20 items each"), "{table}");
    assert!(table.contains("k=5, Gaussian ε=1 δ=1e-7, cap 20"), "{table}");
    let gaussian = hit_rate(&table, "item-to-item", "Gaussian ε=1 δ=1e-7, cap 20");
    let threshold = hit_rate(&table, "item-to-item", "DP ε=1, cap 20");
    assert!(gaussian > threshold, "{table}");
    assert!(table.contains("ε = 1: the Gaussian release over the catalogue's pairs keeps"), "{table}");
    assert!(
        table.contains("(1.000, 1e-7)-differential privacy for one person and all their events"),
        "{table}"
    );

    let (ok, _, stderr) = run(&["eval", "--items", "10", "--items-per-person", "11"]);
    assert!(!ok && stderr.contains("--items-per-person must be between 1 and --items (10)"), "{stderr}");
}

#[test]
fn the_benchmark_trains_on_a_csv_and_writes_what_it_learned_from() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("views.csv");
    // Three people; the third had item a twice and eleven items in all.
    let mut text = String::from("user,item,timestamp\nu1,a,1700000000\nu1,b,1700000001\nu2,a,1700000002\n");
    text.push_str("u2,b,1700000003\nu3,a,1700000004\nu3,a,1700000005\n");
    for item in 0..10 {
        text.push_str(&format!("u3,x{item},{}\n", 1_700_000_010 + item));
    }
    std::fs::write(&csv, text).unwrap();
    let matrix = dir.path().join("matrix");
    let (ok, stdout, stderr) = run(&[
        "bench",
        "personalize",
        "--csv",
        csv.to_str().unwrap(),
        "--requests",
        "20",
        "--runs",
        "2",
        "--matrix",
        matrix.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("3 people, 12 items, 16 interactions"), "{stdout}");
    assert!(stdout.contains("fastest of 2 runs"), "{stdout}");
    let total = stdout.lines().find(|line| line.trim_start().starts_with("total")).expect("a total");
    assert!(total.contains(" s "), "{total}");
    let triples = |name: &str| -> Vec<[u32; 3]> {
        let bytes = std::fs::read(matrix.join(name)).unwrap();
        let words: Vec<u32> = bytes.chunks(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
        words.chunks(3).map(|t| [t[0], t[1], t[2]]).collect()
    };
    // Every distinct pair once (u3's repeat of a folded), weight 1 for a view.
    let every = triples("all.u32");
    assert_eq!(every.len(), 15);
    assert!(every.iter().all(|t| t[2] == 1));
    // Within the cap (20 by default) everyone lends everything here.
    assert_eq!(triples("shared.u32").len(), 15);
    // No pair has k = 5 people: nothing released.
    assert!(triples("neighbours.u32").is_empty());
}
