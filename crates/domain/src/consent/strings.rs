//! Consent signals from IAB consent strings: a TCF v2.2 TC string (`tcString`) and a GPP string
//! (`gppString`, with the ids of the sections that apply, `gppSid`), mapped onto the catalog's
//! purposes through its `[iab]` section. Each signal keeps the string's provenance; a TC string's
//! signals carry its `LastUpdated` as their time, so an older string never overrides a newer word.

use std::collections::BTreeMap;

use sha2::Digest as _;

use super::{ConsentKind, ConsentMethod, ConsentSignal, MalformedConsent, StringProvenance};
use crate::catalog::Catalog;
use crate::catalog::iab::{GppOptOut, IabMapping};
use crate::iab::gpp::{self, Section};
use crate::iab::tcf::{self, TcString, legitimate_interest_allowed};
use crate::iab::us::UsSection;

/// The consent strings a request or an event carries, with the names they go by there (for
/// error messages: `context.consent.tcString` on events, `tc_string` on the API).
#[derive(Debug, Clone, Default)]
pub struct Strings<'a> {
    pub tc: Option<(&'a str, &'a str)>,
    pub gpp: Option<(&'a str, &'a str)>,
    /// The GPP section ids that apply (`gppSid`); `None` means every section in the string.
    pub gpp_sid: Option<Vec<i64>>,
}

/// The signals the strings carry, one per mapped purpose (denial wins where two disagree).
/// A malformed string refuses everything, naming the string, segment and field.
pub fn signals(catalog: &Catalog, strings: &Strings<'_>) -> Result<Vec<ConsentSignal>, MalformedConsent> {
    let mapping = catalog.iab();
    let mut found = Vec::new();
    if let Some((name, text)) = strings.tc {
        let tc = tcf::decode(text, name).map_err(|error| MalformedConsent(error.to_string()))?;
        let provenance = tcf_provenance("tcf", text, &tc);
        found.extend(tcf_signals(mapping, &tc, &provenance));
    }
    if let Some((name, text)) = strings.gpp {
        let decoded = gpp::decode(text, name).map_err(|error| MalformedConsent(error.to_string()))?;
        let applies = |id: u32| strings.gpp_sid.as_ref().is_none_or(|sid| sid.contains(&i64::from(id)));
        let cmp = decoded.tcf();
        let us_provenance = StringProvenance {
            format: "gpp".into(),
            sha256: sha256(text),
            cmp_id: cmp.map(|tc| tc.cmp_id),
            cmp_version: cmp.map(|tc| tc.cmp_version),
            created: None,
            updated: None,
        };
        for (id, section) in decoded.section_ids.iter().zip(&decoded.sections) {
            if !applies(*id) {
                continue;
            }
            match section {
                Section::TcfEuV2(tc) => {
                    found.extend(tcf_signals(mapping, tc, &tcf_provenance("gpp", text, tc)))
                }
                Section::Us(us) => found.extend(us_signals(mapping, us, &us_provenance)),
                Section::Other { .. } => {}
            }
        }
    }
    Ok(denial_wins(found))
}

/// The GPP section ids of `gppSid`: an array of integers, or one string of them separated by
/// commas (as some CMPs pass `applicableSections` on).
pub fn parse_sid(value: &serde_json::Value, name: &str) -> Result<Vec<i64>, MalformedConsent> {
    let refuse = || MalformedConsent(format!("{name} must be an array of GPP section ids (integers)"));
    match value {
        serde_json::Value::Array(ids) => ids.iter().map(|id| id.as_i64().ok_or_else(refuse)).collect(),
        serde_json::Value::String(text) => {
            text.split([',', '_']).map(|id| id.trim().parse::<i64>().map_err(|_| refuse())).collect()
        }
        serde_json::Value::Number(id) => Ok(vec![id.as_i64().ok_or_else(refuse)?]),
        _ => Err(refuse()),
    }
}

fn sha256(text: &str) -> String {
    crate::encoding::hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn tcf_provenance(format: &str, text: &str, tc: &TcString) -> StringProvenance {
    StringProvenance {
        format: format.into(),
        sha256: sha256(text),
        cmp_id: Some(tc.cmp_id),
        cmp_version: Some(tc.cmp_version),
        created: Some(tc.created),
        updated: Some(tc.last_updated),
    }
}

fn signal(
    purpose: &str,
    kind: ConsentKind,
    method: ConsentMethod,
    at: Option<i64>,
    provenance: &StringProvenance,
) -> ConsentSignal {
    ConsentSignal { purpose: purpose.to_owned(), kind, method, at, provenance: Some(provenance.clone()) }
}

/// A TC string's word on each mapped purpose: with a vendor id, the vendor's consent or legitimate
/// interest as the TCF allows it (publisher restrictions included); without one, the brand speaks
/// as the publisher (the publisher purposes segment, or the global purpose bits without it).
fn tcf_signals(mapping: &IabMapping, tc: &TcString, provenance: &StringProvenance) -> Vec<ConsentSignal> {
    let mut signals = Vec::new();
    let mut say = |purposes: &[String], granted: bool| {
        let kind = if granted { ConsentKind::Given } else { ConsentKind::Withdrawn };
        for purpose in purposes {
            signals.push(signal(purpose, kind, ConsentMethod::Explicit, Some(tc.last_updated), provenance));
        }
    };
    for (id, purposes) in &mapping.tcf_purposes {
        let granted = match (mapping.vendor_id, &tc.publisher) {
            (Some(vendor), _) => tc.vendor_permitted(vendor, *id),
            (None, Some(publisher)) => {
                publisher.consents.contains(id)
                    || legitimate_interest_allowed(*id) && publisher.legitimate_interests.contains(id)
            }
            (None, None) => {
                tc.purpose_consents.contains(id)
                    || legitimate_interest_allowed(*id) && tc.purpose_legitimate_interests.contains(id)
            }
        };
        say(purposes, granted);
    }
    for (id, purposes) in &mapping.special_features {
        say(purposes, tc.special_feature_opt_ins.contains(id));
    }
    if let Some(publisher) = &tc.publisher {
        for (id, purposes) in &mapping.publisher_purposes {
            if *id <= publisher.custom_purposes {
                say(
                    purposes,
                    publisher.custom_consents.contains(id)
                        || publisher.custom_legitimate_interests.contains(id),
                );
            }
        }
    }
    signals
}

/// A US section's opt-outs: 1 (opted out, or no consent to sensitive data) withdraws; 2 (did
/// not opt out) is recorded as the opt-out regime's default, never as explicit consent; 0 (not
/// applicable) says nothing.
fn us_signals(mapping: &IabMapping, us: &UsSection, provenance: &StringProvenance) -> Vec<ConsentSignal> {
    let mut signals = Vec::new();
    for (kind, purposes) in &mapping.gpp_opt_outs {
        let value = match kind {
            GppOptOut::Sale => us.sale_opt_out,
            GppOptOut::Sharing => us.sharing_opt_out,
            GppOptOut::TargetedAdvertising => us.targeted_advertising_opt_out,
            GppOptOut::SensitiveData if us.sensitive_data_processing.contains(&1) => 1,
            GppOptOut::SensitiveData if us.sensitive_data_processing.contains(&2) => 2,
            GppOptOut::SensitiveData => 0,
        };
        let (kind, method) = match value {
            1 => (ConsentKind::Withdrawn, ConsentMethod::Explicit),
            2 => (ConsentKind::Given, ConsentMethod::OptOutDefault),
            _ => continue,
        };
        for purpose in purposes {
            signals.push(signal(purpose, kind, method, None, provenance));
        }
    }
    signals
}

/// One signal per purpose, in purpose order: a withdrawal beats a grant; among equals, the first.
pub fn denial_wins(signals: Vec<ConsentSignal>) -> Vec<ConsentSignal> {
    let mut by_purpose: BTreeMap<String, ConsentSignal> = BTreeMap::new();
    for signal in signals {
        match by_purpose.get(&signal.purpose) {
            Some(kept) if kept.kind == ConsentKind::Withdrawn || signal.kind != ConsentKind::Withdrawn => {}
            _ => {
                by_purpose.insert(signal.purpose.clone(), signal);
            }
        }
    }
    by_purpose.into_values().collect()
}

#[cfg(test)]
mod tests;
