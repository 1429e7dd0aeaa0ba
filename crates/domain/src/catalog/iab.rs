//! How the consent strings of IAB consent platforms map onto the catalog's purposes (`[iab]`):
//! TCF purposes, special features and the publisher's custom purposes, the brand's own vendor id,
//! and the opt-outs of GPP's US sections.

/// An opt-out that GPP's US sections carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GppOptOut {
    /// `SaleOptOut`.
    Sale,
    /// `SharingOptOut`.
    Sharing,
    /// `TargetedAdvertisingOptOut`.
    TargetedAdvertising,
    /// `SensitiveDataProcessing` (any category).
    SensitiveData,
}

impl GppOptOut {
    pub const ALL: [GppOptOut; 4] =
        [GppOptOut::Sale, GppOptOut::Sharing, GppOptOut::TargetedAdvertising, GppOptOut::SensitiveData];

    /// The key in `[iab.gpp_opt_outs]`.
    pub fn key(self) -> &'static str {
        match self {
            GppOptOut::Sale => "sale",
            GppOptOut::Sharing => "sharing",
            GppOptOut::TargetedAdvertising => "targeted_advertising",
            GppOptOut::SensitiveData => "sensitive_data",
        }
    }
}

/// The `[iab]` section, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IabMapping {
    /// The brand's vendor id in the IAB Global Vendor List, if it has one: then a TCF purpose
    /// counts for the brand only with this vendor's own consent (or legitimate interest) bit.
    pub vendor_id: Option<u32>,
    /// TCF purposes (1–11) and the catalog purposes each means.
    pub tcf_purposes: Vec<(u32, Vec<String>)>,
    /// TCF special features (1–2).
    pub special_features: Vec<(u32, Vec<String>)>,
    /// The publisher's custom purposes (publisher purposes segment, 1–63).
    pub publisher_purposes: Vec<(u32, Vec<String>)>,
    pub gpp_opt_outs: Vec<(GppOptOut, Vec<String>)>,
}

impl IabMapping {
    /// Whether the catalog maps anything at all (a string then still has to be well formed).
    pub fn is_empty(&self) -> bool {
        self.tcf_purposes.is_empty()
            && self.special_features.is_empty()
            && self.publisher_purposes.is_empty()
            && self.gpp_opt_outs.is_empty()
    }
}
