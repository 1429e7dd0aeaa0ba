//! Reading the bits of an IAB consent string segment: base64url text (no padding) to bits, then
//! fixed-width integers, bit fields, dates, letters and Fibonacci-coded integers, each read naming
//! the field it is for so a short or odd segment is refused with a clear reason.

use super::{Place, StringError};

/// Bits of one segment, read front to back.
pub(crate) struct Bits {
    bits: Vec<bool>,
    at: usize,
    place: Place,
}

impl Bits {
    /// Decodes base64url text (the alphabet `A–Z a–z 0–9 - _`; trailing `=` padding is tolerated).
    pub(crate) fn decode(text: &str, place: Place) -> Result<Bits, StringError> {
        let trimmed = text.trim_end_matches('=');
        if trimmed.is_empty() {
            return Err(place.error(None, "the segment is empty"));
        }
        let mut bits = Vec::with_capacity(trimmed.len() * 6);
        for (index, character) in trimmed.chars().enumerate() {
            let value = match character {
                'A'..='Z' => character as u32 - 'A' as u32,
                'a'..='z' => character as u32 - 'a' as u32 + 26,
                '0'..='9' => character as u32 - '0' as u32 + 52,
                '-' => 62,
                '_' => 63,
                other => {
                    return Err(place.error(
                        None,
                        format!("character {other:?} at position {} is not base64url", index + 1),
                    ));
                }
            };
            bits.extend((0..6).rev().map(|shift| value >> shift & 1 == 1));
        }
        Ok(Bits { bits, at: 0, place })
    }

    /// Bits not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bits.len() - self.at
    }

    pub(crate) fn error(&self, field: &str, problem: impl Into<String>) -> StringError {
        self.place.error(Some(field), problem)
    }

    fn take(&mut self, count: usize, field: &str) -> Result<&[bool], StringError> {
        if self.remaining() < count {
            return Err(self.error(
                field,
                format!("the segment ends before it ({count} bits needed, {} left)", self.remaining()),
            ));
        }
        let start = self.at;
        self.at += count;
        Ok(&self.bits[start..self.at])
    }

    /// An unsigned integer of `width` bits (at most 64).
    pub(crate) fn int(&mut self, width: usize, field: &str) -> Result<u64, StringError> {
        Ok(self.take(width, field)?.iter().fold(0u64, |value, &bit| value << 1 | u64::from(bit)))
    }

    pub(crate) fn bool(&mut self, field: &str) -> Result<bool, StringError> {
        Ok(self.take(1, field)?[0])
    }

    /// A bit field of `count` bits: the 1-based ids whose bit is set.
    pub(crate) fn bitfield(&mut self, count: usize, field: &str) -> Result<Vec<u32>, StringError> {
        Ok(self
            .take(count, field)?
            .iter()
            .enumerate()
            .filter(|(_, set)| **set)
            .map(|(index, _)| index as u32 + 1)
            .collect())
    }

    /// Deciseconds since the Unix epoch in 36 bits, as Unix milliseconds.
    pub(crate) fn deciseconds(&mut self, field: &str) -> Result<i64, StringError> {
        Ok(self.int(36, field)? as i64 * 100)
    }

    /// Two letters of 6 bits each (0 is `A`), such as a language or country code.
    pub(crate) fn letters(&mut self, field: &str) -> Result<String, StringError> {
        let mut text = String::with_capacity(2);
        for _ in 0..2 {
            let value = self.int(6, field)?;
            if value > 25 {
                return Err(self.error(field, format!("{value} is not a letter (0–25)")));
            }
            text.push(char::from(b'A' + value as u8));
        }
        Ok(text)
    }

    /// A Fibonacci-coded integer (Zeckendorf bits, lowest first, ended by `11`).
    pub(crate) fn fibonacci(&mut self, field: &str) -> Result<u64, StringError> {
        let (mut value, mut previous_bit) = (0u64, false);
        let (mut low, mut high) = (1u64, 2u64);
        loop {
            let bit = self.bool(field)?;
            if bit && previous_bit {
                return Ok(value);
            }
            if bit {
                value = value
                    .checked_add(low)
                    .ok_or_else(|| self.error(field, "the Fibonacci-coded number is too large"))?;
            }
            previous_bit = bit;
            (low, high) = (high, low.saturating_add(high));
        }
    }
}

impl Bits {
    /// The same bits, past what was read, now named for another segment (once its type is known).
    pub(crate) fn renamed(self, place: Place) -> Bits {
        Bits { place, ..self }
    }
}
