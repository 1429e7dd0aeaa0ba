//! The IAB GPP string: a header (type 3, version 1, the section ids in Fibonacci-coded ranges)
//! then one `~`-separated section per id, in the header's order. `tcfeuv2` is a TC string; the US
//! sections are read by [`super::us`]; other sections are kept as text, not read.

use super::bits::Bits;
use super::tcf::{self, TcString};
use super::us::{self, UsSection};
use super::{Place, StringError};

/// The GPP section id of the EU TCF v2 section.
pub const TCF_EU_V2: u32 = 2;

/// A decoded GPP string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GppString {
    /// The header's section ids, in order.
    pub section_ids: Vec<u32>,
    pub sections: Vec<Section>,
}

/// One section of a GPP string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    TcfEuV2(Box<TcString>),
    Us(UsSection),
    /// A section this decoder does not read (Canada's TCF, the retired `uspv1`, newer states).
    Other {
        id: u32,
        text: String,
    },
}

impl GppString {
    /// The EU TCF section, if present.
    pub fn tcf(&self) -> Option<&TcString> {
        self.sections.iter().find_map(|section| match section {
            Section::TcfEuV2(tc) => Some(tc.as_ref()),
            _ => None,
        })
    }

    /// The section with this id, if present.
    pub fn section(&self, id: u32) -> Option<&Section> {
        self.section_ids.iter().position(|known| *known == id).and_then(|index| self.sections.get(index))
    }
}

/// Decodes a GPP string, header and every section it lists. `name` says where it came from
/// (`gppString`, `gpp_string`).
pub fn decode(text: &str, name: &str) -> Result<GppString, StringError> {
    let mut parts = text.trim().split('~');
    let place = Place::new(name, "header");
    let mut bits = Bits::decode(parts.next().unwrap_or_default(), place.clone())?;
    let kind = bits.int(6, "Type")?;
    if kind != 3 {
        return Err(bits.error("Type", format!("{kind} is not 3 (a GPP header)")));
    }
    let version = bits.int(6, "Version")?;
    if version != 1 {
        return Err(bits.error("Version", format!("{version} is not 1 (only GPP v1 is read)")));
    }
    let section_ids = section_ids(&mut bits)?;
    let texts: Vec<&str> = parts.collect();
    if texts.len() != section_ids.len() {
        return Err(place.error(
            Some("SectionIds"),
            format!("the header lists {} sections but {} follow", section_ids.len(), texts.len()),
        ));
    }
    let mut sections = Vec::with_capacity(texts.len());
    for (&id, text) in section_ids.iter().zip(texts) {
        let section = if id == TCF_EU_V2 {
            Section::TcfEuV2(Box::new(tcf::decode(text, &format!("{name} section tcfeuv2"))?))
        } else if let Some(decoded) = us::decode(id, text, name) {
            Section::Us(decoded?)
        } else {
            Section::Other { id, text: text.to_owned() }
        };
        sections.push(section);
    }
    Ok(GppString { section_ids, sections })
}

/// `SectionIds`: `NumEntries` (12 bits), then per entry `IsRange`, and Fibonacci-coded offsets
/// from the previous id (for a range, its start, then its end from the start).
fn section_ids(bits: &mut Bits) -> Result<Vec<u32>, StringError> {
    const FIELD: &str = "SectionIds";
    let count = bits.int(12, FIELD)?;
    let (mut ids, mut last) = (Vec::new(), 0u64);
    for _ in 0..count {
        let is_range = bits.bool(FIELD)?;
        let start = last + bits.fibonacci(FIELD)?;
        let end = if is_range { start + bits.fibonacci(FIELD)? } else { start };
        if end > 64 {
            return Err(bits.error(FIELD, format!("section id {end} is not one GPP defines")));
        }
        if ids.len() + (end - start) as usize >= 64 {
            return Err(bits.error(FIELD, "more than 64 sections"));
        }
        ids.extend(start as u32..=end as u32);
        last = end;
    }
    if ids.windows(2).any(|pair| pair[0] >= pair[1]) || ids.first() == Some(&0) {
        return Err(bits.error(FIELD, "section ids must be distinct, above 0 and ascending"));
    }
    Ok(ids)
}
