//! The IAB TCF v2.2 TC string: a core segment, then optional segments (disclosed vendors, allowed
//! vendors, publisher purposes) separated by `.`, each base64url. Vendor sections come as a bit
//! field or as ranges; publisher restrictions name a purpose, a restriction type and vendor ranges.

use std::collections::BTreeSet;

use super::bits::Bits;
use super::{Place, StringError};

/// Highest vendor id a TC string can name (16 bits).
const MAX_VENDOR: u64 = u16::MAX as u64;

/// A decoded TC string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcString {
    pub version: u8,
    /// Unix milliseconds (the string holds deciseconds; CMPs round them to the day).
    pub created: i64,
    pub last_updated: i64,
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_screen: u8,
    pub consent_language: String,
    pub vendor_list_version: u16,
    pub policy_version: u8,
    pub is_service_specific: bool,
    pub use_non_standard_texts: bool,
    /// Special features (1–12) opted in.
    pub special_feature_opt_ins: BTreeSet<u32>,
    /// Purposes (1–24) consented to.
    pub purpose_consents: BTreeSet<u32>,
    /// Purposes (1–24) whose legitimate interest was disclosed and not objected to.
    pub purpose_legitimate_interests: BTreeSet<u32>,
    pub purpose_one_treatment: bool,
    pub publisher_country_code: String,
    pub vendor_consents: BTreeSet<u32>,
    pub vendor_legitimate_interests: BTreeSet<u32>,
    pub publisher_restrictions: Vec<PublisherRestriction>,
    /// The disclosed vendors segment, if present.
    pub disclosed_vendors: Option<BTreeSet<u32>>,
    /// The allowed vendors segment (out-of-band), if present.
    pub allowed_vendors: Option<BTreeSet<u32>>,
    /// The publisher purposes segment, if present.
    pub publisher: Option<PublisherPurposes>,
}

/// What a publisher restricts for a purpose, for the vendors it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherRestriction {
    pub purpose: u32,
    pub kind: RestrictionKind,
    pub vendors: BTreeSet<u32>,
}

/// The restriction types of the TCF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictionKind {
    /// 0: the purpose is not allowed for these vendors.
    NotAllowed,
    /// 1: these vendors may use the purpose only with consent.
    RequireConsent,
    /// 2: these vendors may use the purpose only on legitimate interest.
    RequireLegitimateInterest,
}

impl RestrictionKind {
    pub fn code(self) -> u8 {
        match self {
            RestrictionKind::NotAllowed => 0,
            RestrictionKind::RequireConsent => 1,
            RestrictionKind::RequireLegitimateInterest => 2,
        }
    }
}

/// The publisher purposes segment: the publisher's own consent and legitimate interest per
/// standard purpose, and its custom purposes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublisherPurposes {
    pub consents: BTreeSet<u32>,
    pub legitimate_interests: BTreeSet<u32>,
    pub custom_purposes: u32,
    pub custom_consents: BTreeSet<u32>,
    pub custom_legitimate_interests: BTreeSet<u32>,
}

impl TcString {
    /// Whether `vendor` may process for `purpose` as the TCF says: on consent (the purpose's and the
    /// vendor's consent bits) or, where the purpose allows it, on legitimate interest (both
    /// legitimate-interest bits); a publisher restriction on the vendor and purpose narrows that.
    pub fn vendor_permitted(&self, vendor: u32, purpose: u32) -> bool {
        let restriction = self
            .publisher_restrictions
            .iter()
            .find(|restriction| restriction.purpose == purpose && restriction.vendors.contains(&vendor))
            .map(|restriction| restriction.kind);
        let consent = self.purpose_consents.contains(&purpose) && self.vendor_consents.contains(&vendor);
        let interest = legitimate_interest_allowed(purpose)
            && self.purpose_legitimate_interests.contains(&purpose)
            && self.vendor_legitimate_interests.contains(&vendor);
        match restriction {
            Some(RestrictionKind::NotAllowed) => false,
            Some(RestrictionKind::RequireConsent) => consent,
            Some(RestrictionKind::RequireLegitimateInterest) => interest,
            None => consent || interest,
        }
    }
}

/// TCF v2.2 allows no legitimate interest for purpose 1 (storage) nor for purposes 3–6
/// (personalised advertising and content profiles and their use).
pub fn legitimate_interest_allowed(purpose: u32) -> bool {
    !matches!(purpose, 1 | 3..=6)
}

/// Decodes a TC string. `name` says where it came from (`tcString`, `gpp section tcfeuv2`).
pub fn decode(text: &str, name: &str) -> Result<TcString, StringError> {
    let mut segments = text.trim().split('.');
    let core = segments.next().unwrap_or_default();
    let mut tc = core_segment(Bits::decode(core, Place::new(name, "core"))?)?;
    let mut seen = BTreeSet::new();
    for (index, segment) in segments.enumerate() {
        let place = Place::new(name, format!("segment {}", index + 2));
        let mut bits = Bits::decode(segment, place.clone())?;
        let kind = bits.int(3, "SegmentType")?;
        if !seen.insert(kind) {
            return Err(place.error(Some("SegmentType"), format!("segment type {kind} appears twice")));
        }
        match kind {
            1 => {
                let mut bits = bits.renamed(place.segment("disclosed vendors"));
                tc.disclosed_vendors = Some(vendor_section(&mut bits, "DisclosedVendors")?);
            }
            2 => {
                let mut bits = bits.renamed(place.segment("allowed vendors"));
                tc.allowed_vendors = Some(vendor_section(&mut bits, "AllowedVendors")?);
            }
            3 => {
                let mut bits = bits.renamed(place.segment("publisher purposes"));
                tc.publisher = Some(publisher_purposes(&mut bits)?);
            }
            0 => {
                return Err(place.error(Some("SegmentType"), "a second core segment (type 0) is not allowed"));
            }
            other => {
                return Err(place.error(
                    Some("SegmentType"),
                    format!("{other} is not a segment type (1 disclosed vendors, 2 allowed vendors, 3 publisher purposes)"),
                ));
            }
        }
    }
    Ok(tc)
}

fn core_segment(mut bits: Bits) -> Result<TcString, StringError> {
    let version = bits.int(6, "Version")?;
    if version != 2 {
        return Err(bits.error("Version", format!("{version} is not 2 (only TCF v2 strings are read)")));
    }
    let mut tc = TcString {
        version: 2,
        created: bits.deciseconds("Created")?,
        last_updated: bits.deciseconds("LastUpdated")?,
        cmp_id: bits.int(12, "CmpId")? as u16,
        cmp_version: bits.int(12, "CmpVersion")? as u16,
        consent_screen: bits.int(6, "ConsentScreen")? as u8,
        consent_language: bits.letters("ConsentLanguage")?,
        vendor_list_version: bits.int(12, "VendorListVersion")? as u16,
        policy_version: bits.int(6, "TcfPolicyVersion")? as u8,
        is_service_specific: bits.bool("IsServiceSpecific")?,
        use_non_standard_texts: bits.bool("UseNonStandardTexts")?,
        special_feature_opt_ins: bits.bitfield(12, "SpecialFeatureOptIns")?.into_iter().collect(),
        purpose_consents: bits.bitfield(24, "PurposesConsent")?.into_iter().collect(),
        purpose_legitimate_interests: bits.bitfield(24, "PurposesLITransparency")?.into_iter().collect(),
        purpose_one_treatment: bits.bool("PurposeOneTreatment")?,
        publisher_country_code: bits.letters("PublisherCC")?,
        ..TcString::default()
    };
    if tc.cmp_id < 2 {
        return Err(bits.error("CmpId", format!("{} is not a registered CMP id (2 or more)", tc.cmp_id)));
    }
    if tc.last_updated < tc.created {
        return Err(bits.error("LastUpdated", "it comes before Created"));
    }
    tc.vendor_consents = vendor_section(&mut bits, "VendorConsents")?;
    tc.vendor_legitimate_interests = vendor_section(&mut bits, "VendorLegitimateInterests")?;
    let count = bits.int(12, "NumPubRestrictions")?;
    for _ in 0..count {
        let purpose = bits.int(6, "PubRestrictionEntry.PurposeId")? as u32;
        if !(1..=24).contains(&purpose) {
            return Err(
                bits.error("PubRestrictionEntry.PurposeId", format!("{purpose} is not a purpose (1–24)"))
            );
        }
        let kind = match bits.int(2, "PubRestrictionEntry.RestrictionType")? {
            0 => RestrictionKind::NotAllowed,
            1 => RestrictionKind::RequireConsent,
            2 => RestrictionKind::RequireLegitimateInterest,
            other => {
                return Err(bits.error(
                    "PubRestrictionEntry.RestrictionType",
                    format!("{other} is reserved (0 not allowed, 1 require consent, 2 require legitimate interest)"),
                ));
            }
        };
        let vendors = ranges(&mut bits, "PubRestrictionEntry", MAX_VENDOR)?;
        tc.publisher_restrictions.push(PublisherRestriction { purpose, kind, vendors });
    }
    Ok(tc)
}

/// A vendor section: `MaxVendorId`, `IsRangeEncoding`, then a bit field or range entries.
fn vendor_section(bits: &mut Bits, section: &str) -> Result<BTreeSet<u32>, StringError> {
    let max = bits.int(16, &format!("{section}.MaxVendorId"))?;
    if bits.bool(&format!("{section}.IsRangeEncoding"))? {
        ranges(bits, section, max)
    } else {
        Ok(bits.bitfield(max as usize, &format!("{section}.BitField"))?.into_iter().collect())
    }
}

/// Range entries: `NumEntries`, then per entry `IsARange`, a start id and, for a range, an end id.
fn ranges(bits: &mut Bits, section: &str, max: u64) -> Result<BTreeSet<u32>, StringError> {
    let count = bits.int(12, &format!("{section}.NumEntries"))?;
    let mut ids = BTreeSet::new();
    for _ in 0..count {
        let is_range = bits.bool(&format!("{section}.IsARange"))?;
        let field = format!("{section}.StartOrOnlyVendorId");
        let start = bits.int(16, &field)?;
        let end = if is_range { bits.int(16, &format!("{section}.EndVendorId"))? } else { start };
        if start == 0 {
            return Err(bits.error(&field, "vendor ids start at 1"));
        }
        if end < start {
            return Err(bits.error(&format!("{section}.EndVendorId"), format!("{end} comes before {start}")));
        }
        if end > max {
            return Err(bits.error(&field, format!("vendor {end} is above MaxVendorId {max}")));
        }
        ids.extend(start as u32..=end as u32);
    }
    Ok(ids)
}

fn publisher_purposes(bits: &mut Bits) -> Result<PublisherPurposes, StringError> {
    let consents = bits.bitfield(24, "PubPurposesConsent")?.into_iter().collect();
    let legitimate_interests = bits.bitfield(24, "PubPurposesLITransparency")?.into_iter().collect();
    let custom_purposes = bits.int(6, "NumCustomPurposes")? as u32;
    let custom_consents =
        bits.bitfield(custom_purposes as usize, "CustomPurposesConsent")?.into_iter().collect();
    let custom_legitimate_interests =
        bits.bitfield(custom_purposes as usize, "CustomPurposesLITransparency")?.into_iter().collect();
    Ok(PublisherPurposes {
        consents,
        legitimate_interests,
        custom_purposes,
        custom_consents,
        custom_legitimate_interests,
    })
}
