//! Refusals of malformed consent strings, each naming its segment and field (what the IAB's own
//! encoders produce is checked field by field in `tests/iab_strings.rs`).

use super::{gpp, tcf};

fn tcf_error(text: &str) -> String {
    tcf::decode(text, "tcString").expect_err("refused").to_string()
}

fn gpp_error(text: &str) -> String {
    gpp::decode(text, "gppString").expect_err("refused").to_string()
}

#[test]
fn a_tc_string_of_the_wrong_version_or_alphabet_is_refused() {
    // "B…" starts with version 1 (TCF v1.1).
    assert_eq!(
        tcf_error("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"),
        "tcString: core segment, field Version: 1 is not 2 (only TCF v2 strings are read)"
    );
    assert_eq!(tcf_error("CO+FyGB"), "tcString: core segment: character '+' at position 3 is not base64url");
    assert_eq!(tcf_error(""), "tcString: core segment: the segment is empty");
}

#[test]
fn a_truncated_tc_string_names_the_field_it_ends_in() {
    let error = tcf_error("CPXxRfAPXxRfAAfKABENB");
    assert!(error.starts_with("tcString: core segment, field "), "{error}");
    assert!(error.contains("the segment ends before it"), "{error}");
}

#[test]
fn a_gpp_header_must_be_type_3_and_list_its_sections() {
    assert_eq!(gpp_error("CPXxRfA"), "gppString: header segment, field Type: 2 is not 3 (a GPP header)");
    // "DBABM" lists one section (tcfeuv2) and none follows.
    assert_eq!(
        gpp_error("DBABM"),
        "gppString: header segment, field SectionIds: the header lists 1 sections but 0 follow"
    );
}

#[test]
fn fibonacci_codes_read_as_the_gpp_specification_gives_them() {
    // 1 = "11", 2 = "011", 3 = "0011", 4 = "1011", 5 = "00011", 12 = "101011".
    let cases = [("11", 1), ("011", 2), ("0011", 3), ("1011", 4), ("00011", 5), ("101011", 12)];
    for (code, expected) in cases {
        let padded = format!("{code:0<6}");
        let value = u32::from_str_radix(&padded, 2).expect("bits");
        let character =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[value as usize] as char;
        let mut bits =
            super::bits::Bits::decode(&character.to_string(), super::Place::new("t", "t")).expect("bits");
        assert_eq!(bits.fibonacci("f").expect("a number"), expected, "{code}");
    }
}
