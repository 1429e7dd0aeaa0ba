//! Reading `[iab]`: the brand's IAB vendor id and which catalog purposes the TCF purposes, special
//! features, publisher custom purposes and GPP opt-outs stand for.

use std::collections::BTreeMap;

use super::purposes::mapped_purposes;
use super::{Checker, S};
use crate::catalog::Purpose;
use crate::catalog::iab::{GppOptOut, IabMapping};
use serde::Deserialize;

type Mapped = BTreeMap<S<String>, Vec<S<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIab {
    vendor_id: Option<S<i64>>,
    #[serde(default)]
    tcf_purposes: Mapped,
    #[serde(default)]
    special_features: Mapped,
    #[serde(default)]
    publisher_purposes: Mapped,
    #[serde(default)]
    gpp_opt_outs: Mapped,
}

pub(super) fn check(checker: &mut Checker<'_>, raw: Option<RawIab>, purposes: &[Purpose]) -> IabMapping {
    let Some(raw) = raw else { return IabMapping::default() };
    let vendor_id = raw.vendor_id.and_then(|id| match u32::try_from(*id.get_ref()) {
        Ok(value @ 1..=65_535) => Some(value),
        _ => {
            checker.at(id.span(), "vendor_id must be a Global Vendor List id (1–65535)");
            None
        }
    });
    let numbered = |checker: &mut Checker<'_>, table: Mapped, what: &str, max: u32| {
        mapped_purposes(checker, table, purposes, &format!("a {what}"))
            .into_iter()
            .filter_map(|(key, purposes)| match key.get_ref().parse::<u32>() {
                Ok(id) if (1..=max).contains(&id) => Some((id, purposes)),
                _ => {
                    checker.at(key.span(), format!("{:?} is not a {what} (1–{max})", key.get_ref()));
                    None
                }
            })
            .collect()
    };
    let tcf_purposes = numbered(checker, raw.tcf_purposes, "TCF purpose", 11);
    let special_features = numbered(checker, raw.special_features, "TCF special feature", 2);
    let publisher_purposes = numbered(checker, raw.publisher_purposes, "publisher custom purpose", 63);
    let gpp_opt_outs = mapped_purposes(checker, raw.gpp_opt_outs, purposes, "a GPP opt-out")
        .into_iter()
        .filter_map(|(key, purposes)| {
            match GppOptOut::ALL.into_iter().find(|kind| kind.key() == key.get_ref()) {
                Some(kind) => Some((kind, purposes)),
                None => {
                    checker.at(
                        key.span(),
                        format!(
                            "{:?} is not a GPP opt-out (sale, sharing, targeted_advertising, sensitive_data)",
                            key.get_ref()
                        ),
                    );
                    None
                }
            }
        })
        .collect();
    IabMapping { vendor_id, tcf_purposes, special_features, publisher_purposes, gpp_opt_outs }
}
