//! The US sections of a GPP string (`usnat` and the state sections): a core segment of 2-bit
//! fields in an order each section fixes, and for some an optional GPC subsection. One table per
//! section drives the same reader; the values mean 0 not applicable, 1 yes / opted out, 2 no /
//! did not opt out (for consents: 1 no consent, 2 consent).

use super::bits::Bits;
use super::{Place, StringError};

/// A decoded US section. Fields a section does not have are 0 (not applicable).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsSection {
    /// The section's name (`usnat`, `usca`, …).
    pub name: &'static str,
    pub version: u8,
    pub sharing_notice: u8,
    pub sale_opt_out_notice: u8,
    pub sharing_opt_out_notice: u8,
    pub targeted_advertising_opt_out_notice: u8,
    pub sensitive_data_processing_opt_out_notice: u8,
    pub sensitive_data_limit_use_notice: u8,
    pub sale_opt_out: u8,
    pub sharing_opt_out: u8,
    pub targeted_advertising_opt_out: u8,
    /// One value per category of sensitive data the section lists.
    pub sensitive_data_processing: Vec<u8>,
    pub known_child_sensitive_data_consents: Vec<u8>,
    pub personal_data_consents: u8,
    pub mspa_covered_transaction: u8,
    pub mspa_opt_out_option_mode: u8,
    pub mspa_service_provider_mode: u8,
    /// The GPC subsection's flag, when the subsection is present.
    pub gpc: Option<bool>,
}

/// One field of a section's core segment.
#[derive(Clone, Copy)]
enum Field {
    SharingNotice,
    SaleOptOutNotice,
    SharingOptOutNotice,
    TargetedAdvertisingOptOutNotice,
    SensitiveDataProcessingOptOutNotice,
    SensitiveDataLimitUseNotice,
    SaleOptOut,
    SharingOptOut,
    TargetedAdvertisingOptOut,
    /// A list of this many 2-bit values.
    SensitiveDataProcessing(usize),
    KnownChildSensitiveDataConsents(usize),
    PersonalDataConsents,
}

use Field::*;

/// A section's layout after `Version` and before the three MSPA fields.
struct Layout {
    id: u32,
    name: &'static str,
    fields: &'static [Field],
    gpc: bool,
}

/// `usnat`'s fields; version 1 lists 12 sensitive-data categories and 2 known-child consents,
/// version 2 lists 16 and 3.
const fn usnat(sensitive: usize, known_child: usize) -> [Field; 12] {
    [
        SharingNotice,
        SaleOptOutNotice,
        SharingOptOutNotice,
        TargetedAdvertisingOptOutNotice,
        SensitiveDataProcessingOptOutNotice,
        SensitiveDataLimitUseNotice,
        SaleOptOut,
        SharingOptOut,
        TargetedAdvertisingOptOut,
        SensitiveDataProcessing(sensitive),
        KnownChildSensitiveDataConsents(known_child),
        PersonalDataConsents,
    ]
}

const USNAT_V1: &[Field] = &usnat(12, 2);
const USNAT_V2: &[Field] = &usnat(16, 3);

/// The sections read here, by GPP section id. `usnat` has two versions (see [`USNAT_V1`]).
const LAYOUTS: &[Layout] = &[
    Layout { id: 7, name: "usnat", fields: USNAT_V2, gpc: true },
    Layout {
        id: 8,
        name: "usca",
        fields: &[
            SaleOptOutNotice,
            SharingOptOutNotice,
            SensitiveDataLimitUseNotice,
            SaleOptOut,
            SharingOptOut,
            SensitiveDataProcessing(9),
            KnownChildSensitiveDataConsents(2),
            PersonalDataConsents,
        ],
        gpc: true,
    },
    Layout {
        id: 9,
        name: "usva",
        fields: &[
            SharingNotice,
            SaleOptOutNotice,
            TargetedAdvertisingOptOutNotice,
            SaleOptOut,
            TargetedAdvertisingOptOut,
            SensitiveDataProcessing(8),
            KnownChildSensitiveDataConsents(1),
        ],
        gpc: false,
    },
    Layout {
        id: 10,
        name: "usco",
        fields: &[
            SharingNotice,
            SaleOptOutNotice,
            TargetedAdvertisingOptOutNotice,
            SaleOptOut,
            TargetedAdvertisingOptOut,
            SensitiveDataProcessing(7),
            KnownChildSensitiveDataConsents(1),
        ],
        gpc: true,
    },
    Layout {
        id: 11,
        name: "usut",
        fields: &[
            SharingNotice,
            SaleOptOutNotice,
            TargetedAdvertisingOptOutNotice,
            SensitiveDataProcessingOptOutNotice,
            SaleOptOut,
            TargetedAdvertisingOptOut,
            SensitiveDataProcessing(8),
            KnownChildSensitiveDataConsents(1),
        ],
        gpc: false,
    },
    Layout {
        id: 12,
        name: "usct",
        fields: &[
            SharingNotice,
            SaleOptOutNotice,
            TargetedAdvertisingOptOutNotice,
            SaleOptOut,
            TargetedAdvertisingOptOut,
            SensitiveDataProcessing(8),
            KnownChildSensitiveDataConsents(3),
        ],
        gpc: true,
    },
];

/// The name of a US section this module reads, by GPP section id.
pub fn section_name(id: u32) -> Option<&'static str> {
    LAYOUTS.iter().find(|layout| layout.id == id).map(|layout| layout.name)
}

/// Decodes the US section with GPP id `id` (see [`section_name`]).
pub fn decode(id: u32, text: &str, name: &str) -> Option<Result<UsSection, StringError>> {
    let layout = LAYOUTS.iter().find(|layout| layout.id == id)?;
    Some(decode_layout(layout, text, name))
}

fn decode_layout(layout: &Layout, text: &str, name: &str) -> Result<UsSection, StringError> {
    let place = Place::new(format!("{name} section {}", layout.name), "core");
    let mut segments = text.split('.');
    let mut bits = Bits::decode(segments.next().unwrap_or_default(), place.clone())?;
    let version = bits.int(6, "Version")? as u8;
    let fields = match (layout.id, version) {
        (7, 1) => USNAT_V1,
        (7, 2) | (_, 1) => layout.fields,
        _ => return Err(bits.error("Version", format!("version {version} of {} is not known", layout.name))),
    };
    let mut section = UsSection { name: layout.name, version, ..UsSection::default() };
    for field in fields {
        read_field(&mut bits, *field, &mut section)?;
    }
    section.mspa_covered_transaction = value(&mut bits, "MspaCoveredTransaction")?;
    section.mspa_opt_out_option_mode = value(&mut bits, "MspaOptOutOptionMode")?;
    section.mspa_service_provider_mode = value(&mut bits, "MspaServiceProviderMode")?;
    if section.mspa_covered_transaction == 0 {
        return Err(bits.error("MspaCoveredTransaction", "0 is not allowed (1 yes, 2 no)"));
    }
    if let Some(gpc) = segments.next() {
        if !layout.gpc {
            return Err(place.segment("gpc").error(None, format!("{} has no GPC subsection", layout.name)));
        }
        let mut bits = Bits::decode(gpc, place.segment("gpc"))?;
        let kind = bits.int(2, "SubsectionType")?;
        if kind != 1 {
            return Err(bits.error("SubsectionType", format!("{kind} is not 1 (GPC)")));
        }
        section.gpc = Some(bits.bool("Gpc")?);
    }
    if segments.next().is_some() {
        return Err(place.segment("after gpc").error(None, "a section has at most two segments"));
    }
    Ok(section)
}

/// One 2-bit value: 0, 1 or 2 (3 is not defined).
fn value(bits: &mut Bits, field: &str) -> Result<u8, StringError> {
    let value = bits.int(2, field)? as u8;
    if value == 3 {
        return Err(bits.error(field, "3 is not a value (0 not applicable, 1 and 2)"));
    }
    Ok(value)
}

fn list(bits: &mut Bits, field: &str, count: usize) -> Result<Vec<u8>, StringError> {
    (0..count).map(|index| value(bits, &format!("{field}[{}]", index + 1))).collect()
}

fn read_field(bits: &mut Bits, field: Field, section: &mut UsSection) -> Result<(), StringError> {
    match field {
        SharingNotice => section.sharing_notice = value(bits, "SharingNotice")?,
        SaleOptOutNotice => section.sale_opt_out_notice = value(bits, "SaleOptOutNotice")?,
        SharingOptOutNotice => section.sharing_opt_out_notice = value(bits, "SharingOptOutNotice")?,
        TargetedAdvertisingOptOutNotice => {
            section.targeted_advertising_opt_out_notice = value(bits, "TargetedAdvertisingOptOutNotice")?
        }
        SensitiveDataProcessingOptOutNotice => {
            section.sensitive_data_processing_opt_out_notice =
                value(bits, "SensitiveDataProcessingOptOutNotice")?
        }
        SensitiveDataLimitUseNotice => {
            section.sensitive_data_limit_use_notice = value(bits, "SensitiveDataLimitUseNotice")?
        }
        SaleOptOut => section.sale_opt_out = value(bits, "SaleOptOut")?,
        SharingOptOut => section.sharing_opt_out = value(bits, "SharingOptOut")?,
        TargetedAdvertisingOptOut => {
            section.targeted_advertising_opt_out = value(bits, "TargetedAdvertisingOptOut")?
        }
        SensitiveDataProcessing(count) => {
            section.sensitive_data_processing = list(bits, "SensitiveDataProcessing", count)?
        }
        KnownChildSensitiveDataConsents(count) => {
            section.known_child_sensitive_data_consents =
                list(bits, "KnownChildSensitiveDataConsents", count)?
        }
        PersonalDataConsents => section.personal_data_consents = value(bits, "PersonalDataConsents")?,
    }
    Ok(())
}
