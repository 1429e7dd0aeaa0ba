//! Reading `user,item,timestamp[,event]` CSV into a dataset, so the evaluation runs on public data.

use hashbrown::HashMap;

use crate::generate::{Dataset, Event};
use crate::recommend::ItemInfo;
use crate::{Interaction, ItemIx, PersonIx, Touch, Weights};

/// A line of a CSV file that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

/// Reads `user,item,timestamp[,event]` lines into a dataset, one line at a time (so a large file
/// need not be held whole). The first line may be a header. Timestamps are Unix seconds or
/// milliseconds (told apart by size: below 10^11 is seconds, which covers dates up to the year 5138,
/// while 10^11 ms is in 1973) or RFC 3339. The optional event is a Segment e-commerce name
/// (`Product Viewed`, `Product Added`, `Order Completed`) and sets the weight; without it every row
/// weighs as a view. Items not in a given catalogue are added with no category.
#[derive(Debug, Default)]
pub struct CsvReader {
    people: HashMap<String, PersonIx>,
    items: HashMap<String, ItemIx>,
    dataset: Dataset,
    line: usize,
    weights: Weights,
}

impl CsvReader {
    pub fn new() -> CsvReader {
        CsvReader::default()
    }

    /// A reader whose item ids name these items (the index of each is its place in the list).
    pub fn with_items(items: Vec<ItemInfo>) -> CsvReader {
        let mut reader = CsvReader::new();
        reader.items = items.iter().enumerate().map(|(i, info)| (info.id.clone(), i as ItemIx)).collect();
        reader.dataset.items = items;
        reader
    }

    /// Reads the next line.
    pub fn line(&mut self, text: &str) -> Result<(), CsvError> {
        self.line += 1;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return Ok(());
        }
        let error = |message: String| CsvError { line: self.line, message };
        let fields: Vec<&str> = text.split(',').map(|f| f.trim().trim_matches('"')).collect();
        if !(3..=4).contains(&fields.len()) {
            return Err(error(format!(
                "expected user,item,timestamp[,event], found {} fields",
                fields.len()
            )));
        }
        let Some(at) = parse_time(fields[2]) else {
            if self.line == 1 {
                return Ok(()); // The header.
            }
            return Err(error(format!(
                "timestamp `{}` is neither Unix seconds or milliseconds nor RFC 3339",
                fields[2]
            )));
        };
        let weight = match fields.get(3) {
            None | Some(&"") => self.weights.view,
            Some(name) => match Event::from_name(name) {
                Some(event) => event.weight(&self.weights),
                None => {
                    return Err(error(format!(
                        "unknown event `{name}` (expected Product Viewed, Product Added or Order Completed)"
                    )));
                }
            },
        };
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(error("the user and the item must not be empty".into()));
        }
        let person = match self.people.get(fields[0]) {
            Some(person) => *person,
            None => {
                let person = self.people.len() as PersonIx;
                self.people.insert(fields[0].to_owned(), person);
                person
            }
        };
        let item = match self.items.get(fields[1]) {
            Some(item) => *item,
            None => {
                let item = self.dataset.items.len() as ItemIx;
                self.items.insert(fields[1].to_owned(), item);
                self.dataset.items.push(ItemInfo {
                    id: fields[1].to_owned(),
                    categories: Vec::new(),
                    sensitive: false,
                    available: true,
                    price: None,
                    known: true,
                });
                item
            }
        };
        self.dataset.interactions.push(Interaction { person, touch: Touch { item, weight, at } });
        Ok(())
    }

    /// The dataset read.
    pub fn finish(mut self) -> Dataset {
        self.dataset.people = self.people.len() as u32;
        self.dataset
    }
}

/// Reads a whole CSV text.
pub fn read_csv(text: &str) -> Result<Dataset, CsvError> {
    let mut reader = CsvReader::new();
    for line in text.lines() {
        reader.line(line)?;
    }
    Ok(reader.finish())
}

/// Unix seconds or milliseconds (by size), or RFC 3339, as Unix milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(number) = text.parse::<i64>() {
        return Some(if number.unsigned_abs() < 100_000_000_000 {
            number.checked_mul(1000)?
        } else {
            number
        });
    }
    parse_rfc3339(text)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes.get(4) != Some(&b'-')
        || bytes.get(7) != Some(&b'-')
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = number_of(&[*h1, *h2])?;
            let minutes = number_of(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second.min(59) * 1000 + millis - offset)
}

fn number_of(digits: &[u8]) -> Option<i64> {
    digits
        .iter()
        .all(u8::is_ascii_digit)
        .then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DAY_MS;
    use crate::generate::rfc3339;

    #[test]
    fn csv_with_a_header_seconds_milliseconds_and_rfc3339() {
        let text = "user,item,timestamp\n\
                    u1,a,1700000000\n\
                    u1,b,1700000000500\r\n\
                    \n\
                    u2,a,2023-11-14T22:13:20.25Z,Order Completed\n\
                    u2,c,2023-11-14T23:13:20+01:00,\n";
        let data = read_csv(text).unwrap();
        assert_eq!(data.people, 2);
        assert_eq!(data.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        let got: Vec<(PersonIx, ItemIx, u8, i64)> =
            data.interactions.iter().map(|i| (i.person, i.touch.item, i.touch.weight, i.touch.at)).collect();
        assert_eq!(
            got,
            [
                (0, 0, 1, 1_700_000_000_000),
                (0, 1, 1, 1_700_000_000_500),
                (1, 0, 3, 1_700_000_000_250),
                (1, 2, 1, 1_700_000_000_000)
            ]
        );
        let no_header = read_csv("7,42,1\n").unwrap();
        assert_eq!(no_header.interactions[0].touch.at, 1000);
    }

    #[test]
    fn a_bad_csv_line_is_named() {
        let check = |text: &str, expected: &str| {
            assert_eq!(read_csv(text).unwrap_err().to_string(), expected, "{text:?}");
        };
        check(
            "user,item,timestamp\nu,a,1\nu,b,yesterday\n",
            "line 3: timestamp `yesterday` is neither Unix seconds or milliseconds nor RFC 3339",
        );
        check("u,a,1\nu,b\n", "line 2: expected user,item,timestamp[,event], found 2 fields");
        check(
            "u,a,1\nu,a,2,Product Clicked\n",
            "line 2: unknown event `Product Clicked` (expected Product Viewed, Product Added or Order Completed)",
        );
        check("u,a,1\n,a,2\n", "line 2: the user and the item must not be empty");
        check(
            "u,a,1\nu,a,2024-02-30T00:00:00Z\n",
            "line 2: timestamp `2024-02-30T00:00:00Z` is neither Unix seconds or milliseconds nor RFC 3339",
        );
        check("u,a,1,2,3,4\n", "line 1: expected user,item,timestamp[,event], found 6 fields");
    }

    #[test]
    fn rfc3339_reads_what_the_generator_writes() {
        for at in [0, 1, 999, DAY_MS - 1, 951_782_400_123, 1_775_001_599_999, -86_400_001, 4_102_444_800_000]
        {
            let text = rfc3339(at);
            assert_eq!(parse_time(&text), Some(at), "{text}");
        }
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00-02:30"), parse_rfc3339("2024-02-29T14:30:00Z"));
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_catalogue_given_keeps_its_indices() {
        let items: Vec<ItemInfo> = (0..3)
            .map(|i| ItemInfo {
                id: format!("item-{i}"),
                categories: Vec::new(),
                sensitive: false,
                available: true,
                price: None,
                known: true,
            })
            .collect();
        let mut reader = CsvReader::with_items(items);
        reader.line("p,item-2,5").unwrap();
        reader.line("p,new,6").unwrap();
        let data = reader.finish();
        assert_eq!(data.interactions[0].touch.item, 2);
        assert_eq!(data.interactions[1].touch.item, 3);
        assert_eq!(data.items[3].categories, Vec::<String>::new());
    }
}
