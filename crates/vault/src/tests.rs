//! The vault's promises: round-trips, binding to place, wrong keys refused, blind indexes stable and
//! keyed.

use super::*;
use proptest::prelude::*;

fn vault() -> Vault {
    let master = MasterKey::generate();
    let root = master.new_index_root();
    Vault::open(master, &root).unwrap()
}

proptest! {
    #[test]
    fn sealing_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), path in "[a-z.]{1,40}") {
        let vault = vault();
        let subject = vault.new_subject();
        let sealed = subject.key.seal("profile", &[subject.id.as_bytes(), path.as_bytes()], &plaintext);
        let opened = subject.key.open("profile", &[subject.id.as_bytes(), path.as_bytes()], &sealed).unwrap();
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        // Unwrapping the stored key gives a key that opens it too.
        let key = vault.subject_key(&subject.id, &subject.wrapped).unwrap();
        prop_assert!(key.open("profile", &[subject.id.as_bytes(), path.as_bytes()], &sealed).is_ok());
    }

    #[test]
    fn any_flipped_bit_is_detected(index in 0usize..64, bit in 0u8..8) {
        let subject = vault().new_subject();
        let mut sealed = subject.key.seal("event", &[b"s", b"e"], b"ada@example.com and some more bytes here");
        let index = index % sealed.len();
        sealed[index] ^= 1 << bit;
        prop_assert!(subject.key.open("event", &[b"s", b"e"], &sealed).is_err());
    }
}

#[test]
fn sealed_values_do_not_move_between_places() {
    let subject = vault().new_subject();
    let sealed = subject.key.seal("profile", &[b"sub_a", b"traits.email"], b"ada@example.com");
    assert_eq!(
        subject.key.open("profile", &[b"sub_a", b"traits.name"], &sealed).unwrap_err(),
        VaultError::Unauthentic
    );
    assert_eq!(
        subject.key.open("profile", &[b"sub_b", b"traits.email"], &sealed).unwrap_err(),
        VaultError::Unauthentic
    );
    assert_eq!(
        subject.key.open("event", &[b"sub_a", b"traits.email"], &sealed).unwrap_err(),
        VaultError::Unauthentic
    );
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    let sealed = subject.key.seal("profile", &[b"ab", b"c"], b"x");
    assert!(subject.key.open("profile", &[b"a", b"bc"], &sealed).is_err());
}

#[test]
fn sealing_twice_gives_different_ciphertexts() {
    let subject = vault().new_subject();
    let first = subject.key.seal("profile", &[b"s"], b"same");
    let second = subject.key.seal("profile", &[b"s"], b"same");
    assert_ne!(first, second);
    assert!(!first.windows(4).any(|window| window == b"same"));
}

#[test]
fn another_persons_key_opens_nothing() {
    let vault = vault();
    let ada = vault.new_subject();
    let bob = vault.new_subject();
    let sealed = ada.key.seal("event", &[ada.id.as_bytes()], b"ada's purchase");
    assert!(bob.key.open("event", &[ada.id.as_bytes()], &sealed).is_err());
    // A wrapped key moved to another subject does not unwrap.
    assert_eq!(vault.subject_key(&bob.id, &ada.wrapped).unwrap_err(), VaultError::Unauthentic);
}

#[test]
fn a_different_master_key_is_named_not_mistaken_for_damage() {
    let master = MasterKey::generate();
    let root = master.new_index_root();
    let other = MasterKey::generate();
    let other_id = other.id();
    match Vault::open(other, &root) {
        Err(VaultError::WrongMasterKey { found, expected }) => {
            assert_eq!(found, master.id());
            assert_eq!(expected, other_id);
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
}

#[test]
fn master_keys_read_from_hex_and_base64() {
    let key = MasterKey::generate();
    let hex = key.to_hex();
    assert_eq!(MasterKey::from_text(&hex).unwrap().id(), key.id());
    assert_eq!(MasterKey::from_text(&format!("  {}\n", hex.as_str())).unwrap().id(), key.id());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    assert_eq!(MasterKey::from_text(&b64).unwrap().id(), MasterKey::from_bytes([7u8; 32]).id());
    assert_eq!(MasterKey::from_text("too short").unwrap_err(), VaultError::MalformedMasterKey);
    assert_eq!(MasterKey::from_text(&"zz".repeat(32)).unwrap_err(), VaultError::MalformedMasterKey);
    assert!(!format!("{key:?}").contains(hex.as_str()));
}

#[test]
fn blind_indexes_are_stable_keyed_and_kind_separated() {
    let master = MasterKey::from_bytes([1u8; 32]);
    let root = master.new_index_root();
    let vault = Vault::open(master, &root).unwrap();
    assert_eq!(vault.blind("email", "ada@example.com"), vault.blind("email", "ada@example.com"));
    assert_ne!(vault.blind("email", "ada@example.com"), vault.blind("user_id", "ada@example.com"));
    // Reopening with the same root gives the same index; another root (another database) does not.
    let reopened = Vault::open(MasterKey::from_bytes([1u8; 32]), &root).unwrap();
    assert_eq!(reopened.blind("email", "ada@example.com"), vault.blind("email", "ada@example.com"));
    let other_root = MasterKey::from_bytes([1u8; 32]).new_index_root();
    let other = Vault::open(MasterKey::from_bytes([1u8; 32]), &other_root).unwrap();
    assert_ne!(other.blind("email", "ada@example.com"), vault.blind("email", "ada@example.com"));
    assert_eq!(vault.dedupe_key("web", "m1"), vault.dedupe_key("web", "m1"));
    assert_ne!(vault.dedupe_key("web", "m1"), vault.dedupe_key("app", "m1"));
}

#[test]
fn subject_ids_are_random_and_well_formed() {
    let a = new_subject_id();
    let b = new_subject_id();
    assert_ne!(a, b);
    assert_eq!(a.len(), 30);
    assert!(
        a.starts_with("sub_") && a[4..].chars().all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
    );
}

#[test]
fn ids_are_rfc_4648_base32_in_lower_case() {
    // RFC 4648's test vectors, without padding.
    for (bytes, text) in [("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foobar", "mzxw6ytboi")] {
        assert_eq!(base32(bytes.as_bytes()), text);
    }
}

#[test]
fn rotation_rewraps_keys_without_changing_them() {
    let old = MasterKey::from_bytes([3u8; 32]);
    let root = old.new_index_root();
    let before = Vault::open(MasterKey::from_bytes([3u8; 32]), &root).unwrap();
    let subject = before.new_subject();
    let sealed = subject.key.seal("event", &[subject.id.as_bytes()], b"kept across the rotation");
    let blind = before.blind("email", "ada@example.com");

    // During the rotation: the new key is current, the old one still opens what it wrapped.
    let during = Vault::open(
        MasterKeys {
            current: MasterKey::from_bytes([4u8; 32]),
            previous: vec![MasterKey::from_bytes([3u8; 32])],
        },
        &root,
    )
    .unwrap();
    assert_eq!(during.blind("email", "ada@example.com"), blind, "blind indexes survive rotation");
    let rewrapped = during.rewrap_subject_key(&subject.id, &subject.wrapped).unwrap().expect("re-wrapped");
    let new_root = during.rewrap_index_root(&root).unwrap().expect("re-wrapped");
    assert_eq!(during.rewrap_subject_key(&subject.id, &rewrapped).unwrap(), None, "already current");
    let key = during.subject_key(&subject.id, &subject.wrapped).unwrap();
    assert!(key.open("event", &[subject.id.as_bytes()], &sealed).is_ok());

    // After: the new key alone opens everything; the old key alone opens nothing.
    let after = Vault::open(MasterKey::from_bytes([4u8; 32]), &new_root).unwrap();
    let key = after.subject_key(&subject.id, &rewrapped).unwrap();
    assert_eq!(
        key.open("event", &[subject.id.as_bytes()], &sealed).unwrap().as_slice(),
        b"kept across the rotation"
    );
    assert_eq!(after.blind("email", "ada@example.com"), blind);
    assert!(matches!(
        Vault::open(MasterKey::from_bytes([3u8; 32]), &new_root),
        Err(VaultError::WrongMasterKey { .. })
    ));
}

#[test]
fn signatures_verify_only_for_their_context_and_message() {
    let vault = vault();
    let public = vault.public_key();
    let signature = vault.sign("receipt", b"ada gave consent");
    assert!(public.verify("receipt", b"ada gave consent", &signature));
    assert!(!public.verify("checkpoint", b"ada gave consent", &signature), "contexts are separate");
    assert!(!public.verify("receipt", b"ada gave consent!", &signature));
    let mut forged = signature;
    forged[10] ^= 1;
    assert!(!public.verify("receipt", b"ada gave consent", &forged));
    let other = super::tests::vault();
    assert!(!other.public_key().verify("receipt", b"ada gave consent", &signature), "another brand's key");
    assert_eq!(PublicKey::from_base64(&public.to_base64()), Some(public));
    assert_eq!(public.id().len(), 16);
}

#[test]
fn the_signing_key_and_pseudonyms_survive_master_key_rotation() {
    let old = MasterKey::from_bytes([5u8; 32]);
    let root = old.new_index_root();
    let before = Vault::open(old, &root).unwrap();
    let during = Vault::open(
        MasterKeys {
            current: MasterKey::from_bytes([6u8; 32]),
            previous: vec![MasterKey::from_bytes([5u8; 32])],
        },
        &root,
    )
    .unwrap();
    let after =
        Vault::open(MasterKey::from_bytes([6u8; 32]), &during.rewrap_index_root(&root).unwrap().unwrap())
            .unwrap();
    assert_eq!(before.public_key(), after.public_key());
    assert_eq!(before.subject_pseudonym("sub_x"), after.subject_pseudonym("sub_x"));
    assert_ne!(before.subject_pseudonym("sub_x"), before.subject_pseudonym("sub_y"));
}

#[test]
fn api_keys_are_random_hashed_and_carry_their_public_id() {
    let (id, key, hash) = new_api_key();
    assert!(key.starts_with("tk_") && id.starts_with("key_"));
    assert_eq!(api_key_id(&key).as_deref(), Some(id.as_str()));
    assert_eq!(api_key_hash(&key), hash);
    assert_eq!(api_key_hash(&format!(" {} ", key.as_str())), hash, "surrounding whitespace is ignored");
    let (other_id, other, other_hash) = new_api_key();
    assert_ne!(id, other_id);
    assert_ne!(hash, other_hash);
    assert_ne!(key.as_str(), other.as_str());
    assert!(key.len() > 60);
    assert_eq!(api_key_id("Bearer nonsense"), None);
    assert_eq!(api_key_id("tk_onlyid"), None);
}

#[test]
fn legal_hold_and_outbox_keys_belong_to_the_deployment_not_to_a_person() {
    let master = MasterKey::from_bytes([9u8; 32]);
    let root = master.new_index_root();
    let vault = Vault::open(master, &root).unwrap();
    let subject = vault.new_subject();
    let held = vault.legal_hold_key().seal("legal_hold", &[b"h1"], b"invoice FH-1");
    assert!(subject.key.open("legal_hold", &[b"h1"], &held).is_err(), "no person's key opens it");
    assert!(vault.outbox_key().open("legal_hold", &[b"h1"], &held).is_err(), "nor the outbox key");
    // The same deployment (same index root), reopened, still opens it: it outlives any person's key.
    let reopened = Vault::open(MasterKey::from_bytes([9u8; 32]), &root).unwrap();
    assert_eq!(
        reopened.legal_hold_key().open("legal_hold", &[b"h1"], &held).unwrap().as_slice(),
        b"invoice FH-1"
    );
}

#[test]
fn verification_codes_are_eight_digits_hashed_per_request() {
    let vault = vault();
    let (code, hash) = vault.new_verification_code("req_1");
    assert_eq!(code.len(), 8);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(vault.verification_code_hash("req_1", &code), hash);
    let spaced = format!("{} {}", &code[..4], &code[4..]);
    assert_eq!(vault.verification_code_hash("req_1", &spaced), hash, "typed with a space");
    assert_ne!(vault.verification_code_hash("req_2", &code), hash, "bound to its request");
    let other = self::vault();
    assert_ne!(other.verification_code_hash("req_1", &code), hash, "keyed per deployment");
}

#[test]
fn webhook_signatures_match_the_stripe_convention() {
    // Computed independently: HMAC-SHA256("whsec_0123456789abcdef", "1700000000.{\"type\":\"erase\"}").
    assert_eq!(
        webhook_signature("whsec_0123456789abcdef", 1_700_000_000, br#"{"type":"erase"}"#),
        "13b920565d587f4a44d5702f0f76957361dfb1c65e5c071ff9a73c746781f51d"
    );
}

#[test]
fn web_tokens_verify_only_in_their_context_and_deployment() {
    let vault = vault();
    let tag = vault.web_token_mac("link", b"sub_a|1700000000000");
    assert!(vault.web_token_verify("link", b"sub_a|1700000000000", &tag));
    assert!(!vault.web_token_verify("session", b"sub_a|1700000000000", &tag), "a link is not a session");
    assert!(!vault.web_token_verify("link", b"sub_b|1700000000000", &tag), "bound to its payload");
    assert!(!vault.web_token_verify("link", b"sub_a|1700000000000", &tag[..31]), "a truncated tag fails");
    assert!(!self::vault().web_token_verify("link", b"sub_a|1700000000000", &tag), "keyed per deployment");
}
