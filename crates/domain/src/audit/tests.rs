//! Tampering of every kind is caught and the first bad entry named; an untouched log verifies.

use super::*;

/// Entries as stored: position, text, recorded leaf hash.
type Stored = Vec<(u64, String, Hash)>;
/// Checkpoints as kept: size, root, where it came from.
type Kept = Vec<(u64, Hash, String)>;

/// A log of `n` entries as stored, and a checkpoint every 10 entries.
fn log(n: u64) -> (Stored, Kept) {
    let mut entries = Vec::new();
    let mut frontier = Frontier::new();
    let mut checkpoints = Vec::new();
    for seq in 1..=n {
        let entry = AuditEntry {
            seq,
            at: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
            event: AuditEvent::KeyRevoked { key: format!("key_{seq}") },
        };
        let text = entry.to_text();
        let leaf = AuditEntry::leaf(&text);
        frontier.push(leaf);
        entries.push((seq, text, leaf));
        if seq % 10 == 0 {
            checkpoints.push((seq, frontier.root(), format!("checkpoint {seq}")));
        }
    }
    (entries, checkpoints)
}

fn verify(entries: &[(u64, String, Hash)], checkpoints: &[(u64, Hash, String)]) -> Report {
    let mut verifier = Verifier::new(checkpoints.to_vec());
    for (seq, text, leaf) in entries {
        verifier.entry(*seq, text, leaf);
    }
    verifier.finish()
}

#[test]
fn an_untouched_log_verifies() {
    let (entries, checkpoints) = log(35);
    let report = verify(&entries, &checkpoints);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 35);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.root, merkle::root_of(&entries.iter().map(|(_, _, leaf)| *leaf).collect::<Vec<_>>()));
}

#[test]
fn an_edited_entry_is_named() {
    let (mut entries, checkpoints) = log(35);
    entries[16].1 = entries[16].1.replace("key_17", "key_99");
    let report = verify(&entries, &checkpoints);
    assert_eq!(report.first_bad_entry(), Some(17));
    assert!(report.problems.contains(&Problem::Altered { seq: 17 }));
}

#[test]
fn an_edit_with_its_hash_rewritten_is_caught_by_the_checkpoint_after_it() {
    let (mut entries, checkpoints) = log(35);
    entries[16].1 = entries[16].1.replace("key_17", "key_99");
    entries[16].2 = AuditEntry::leaf(&entries[16].1);
    let report = verify(&entries, &checkpoints);
    assert!(!report.ok());
    assert_eq!(report.problems[0], Problem::Diverged { after: 10, size: 20, origin: "checkpoint 20".into() });
    assert_eq!(report.first_bad_entry(), Some(11), "the bad entry lies after the last matching checkpoint");
    assert_eq!(report.first_bad_entry_in_words().as_deref(), Some("between 11 and 20"));
}

#[test]
fn a_removed_entry_is_named() {
    let (mut entries, checkpoints) = log(35);
    entries.remove(6);
    let report = verify(&entries, &checkpoints);
    assert_eq!(report.problems[0], Problem::Missing { from: 7, to: 7 });
    assert_eq!(report.first_bad_entry(), Some(7));
}

#[test]
fn swapped_entries_are_named() {
    let (mut entries, checkpoints) = log(35);
    let (first, second) = (entries[3].clone(), entries[4].clone());
    entries[3] = (4, second.1, second.2);
    entries[4] = (5, first.1, first.2);
    let report = verify(&entries, &checkpoints);
    assert_eq!(report.problems[0], Problem::Moved { seq: 4, records: 5 });
    assert_eq!(report.first_bad_entry(), Some(4));
}

#[test]
fn truncation_below_a_kept_checkpoint_is_named() {
    let (entries, checkpoints) = log(35);
    let report = verify(&entries[..23], &checkpoints);
    assert_eq!(report.problems, [Problem::Truncated { have: 23, kept: 30 }]);
    assert_eq!(report.first_bad_entry(), Some(24));
    // Truncation back to a checkpoint the verifier did not keep goes unseen only if the verifier
    // kept none beyond it; keeping the newest checkpoint is what makes truncation visible.
    assert!(verify(&entries[..23], &checkpoints[..2]).ok());
}

#[test]
fn a_checkpoint_with_a_bad_signature_is_reported() {
    let (entries, checkpoints) = log(12);
    let mut verifier = Verifier::new(checkpoints);
    verifier.reject(Problem::BadSignature { size: 10, origin: "kept".into() });
    for (seq, text, leaf) in &entries {
        verifier.entry(*seq, text, leaf);
    }
    assert!(!verifier.finish().ok());
}

#[test]
fn hex_round_trips() {
    let hash = merkle::leaf_hash(b"x");
    assert_eq!(unhex(&hex(&hash)), Some(hash));
    assert_eq!(unhex("zz"), None);
}

#[test]
fn insights_entries_written_before_refusals_were_recorded_read_and_write_back_unchanged() {
    // An answered query's entry as every earlier release wrote it: no `outcome`.
    let old = r#"{"seq":7,"at":1700000000000,"kind":"insights","actor":"key_a","role":"analyst","purpose":"analytics.reporting","dataset":"shop","metric":"events","property":null,"dimensions":["event"],"epsilon":"0.5"}"#;
    let entry: AuditEntry = serde_json::from_str(old).unwrap();
    assert!(matches!(&entry.event, AuditEvent::Insights { outcome: None, .. }));
    assert_eq!(entry.to_text(), old, "the same text, so the same leaf hash");
    let refused = AuditEntry {
        seq: 8,
        at: 1_700_000_000_001,
        event: AuditEvent::Insights {
            actor: "key_a".into(),
            role: "analyst".into(),
            purpose: "analytics.reporting".into(),
            dataset: "shop".into(),
            metric: "events".into(),
            property: None,
            dimensions: vec!["event".into()],
            epsilon: "0".into(),
            outcome: Some("refused: budget_exhausted".into()),
        },
    };
    let text = refused.to_text();
    assert!(text.ends_with(r#""epsilon":"0","outcome":"refused: budget_exhausted"}"#), "{text}");
    assert_eq!(serde_json::from_str::<AuditEntry>(&text).unwrap(), refused);
}

#[test]
fn an_unnumbered_entry_gets_the_text_of_the_entry_at_its_position() {
    let events = [
        AuditEvent::KeyRevoked { key: "key_1".into() },
        AuditEvent::Read {
            actor: "key_a".into(),
            role: "marketing".into(),
            purpose: "marketing.email".into(),
            subject: "p_1".into(),
            returned: vec!["user.contact.email".into()],
            withheld: vec![Withheld { category: "user.name".into(), reason: "\"quoted\"".into(), count: 2 }],
            decision: ReadDecision::Partial,
        },
        AuditEvent::Retention {
            events_deleted: 1,
            events_trimmed: 2,
            profile_values_deleted: 3,
            legal_holds_deleted: 4,
        },
    ];
    for event in events {
        for seq in [1, 9, 10, 12_345, u64::MAX] {
            let unnumbered = Unnumbered::new(-7, event.clone());
            assert_eq!(unnumbered.text(seq), AuditEntry { seq, at: -7, event: event.clone() }.to_text());
            assert_eq!((unnumbered.kind(), unnumbered.subject()), (event.kind(), event.subject()));
        }
    }
}

/// Verifies in chunks of `chunk` entries, each on its own thread.
fn verify_in_chunks(
    entries: &[(u64, String, Hash)],
    checkpoints: &[(u64, Hash, String)],
    chunk: usize,
) -> Report {
    let mut verifier = Verifier::new(checkpoints.to_vec());
    verifier.entries_in_chunks(entries, |(seq, text, leaf)| (*seq, text.as_str(), leaf), chunk);
    verifier.finish()
}

#[test]
fn checking_in_parallel_chunks_gives_the_same_root_and_finds_tampering_in_any_chunk() {
    let (entries, checkpoints) = log(1_000);
    let whole = verify(&entries, &checkpoints);
    assert!(whole.ok());
    for chunk in [1, 7, 100, 333, 1_000, 5_000] {
        assert_eq!(verify_in_chunks(&entries, &checkpoints, chunk), whole, "chunks of {chunk}");
    }
    let mut verifier = Verifier::new(checkpoints.clone());
    verifier.entries(&entries, |(seq, text, leaf)| (*seq, text.as_str(), leaf));
    assert_eq!(verifier.finish(), whole);
    // Chunks of 100: the first, a middle and the last one, at their edges and inside.
    for index in [0, 99, 100, 455, 899, 900, 999] {
        let seq = index as u64 + 1;
        let mut altered = entries.clone();
        altered[index].1 = altered[index].1.replace(&format!("key_{seq}\""), "key_x\"");
        let report = verify_in_chunks(&altered, &checkpoints, 100);
        assert_eq!(report.first_bad_entry(), Some(seq), "entry {seq} altered");
        assert!(report.problems.contains(&Problem::Altered { seq }), "entry {seq}: {:?}", report.problems);
        let mut moved = entries.clone();
        let other = if index == 0 { 1 } else { index - 1 };
        moved[index] = (seq, entries[other].1.clone(), entries[other].2);
        let report = verify_in_chunks(&moved, &checkpoints, 100);
        assert!(
            report.problems.contains(&Problem::Moved { seq, records: other as u64 + 1 }),
            "entry {seq} moved"
        );
        let mut removed = entries.clone();
        removed.remove(index);
        if index < 999 {
            let report = verify_in_chunks(&removed, &checkpoints, 100);
            assert_eq!(report.problems[0], Problem::Missing { from: seq, to: seq }, "entry {seq} removed");
        }
    }
}
