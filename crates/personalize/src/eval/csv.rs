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

    /// Reads every record of a CSV text (RFC 4180: a quoted field may hold commas, quotes and line
    /// breaks), one record at a time, so a large file need not be held whole.
    pub fn read(&mut self, input: impl std::io::Read) -> Result<(), CsvError> {
        let mut records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let mut record = csv::StringRecord::new();
        loop {
            let line = self.line + 1;
            match records.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let fields: Vec<&str> = record.iter().collect();
                    self.line = record.position().map_or(line, |position| position.line() as usize);
                    self.record(&fields)?;
                }
                Err(error) => {
                    let line = error.position().map_or(line, |position| position.line() as usize);
                    return Err(CsvError { line, message: error.to_string() });
                }
            }
        }
    }

    /// Reads the next record, already split into fields.
    fn record(&mut self, fields: &[&str]) -> Result<(), CsvError> {
        if fields.iter().all(|field| field.is_empty()) {
            return Ok(());
        }
        let error = |message: String| CsvError { line: self.line, message };
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
    reader.read(text.as_bytes())?;
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

/// RFC 3339 (`time`'s parser) as Unix milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
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
    fn quoted_fields_may_hold_commas_quotes_and_line_breaks() {
        let text = "user,item,timestamp,event\n\
                    \"u,1\",\"shirt, blue\",1700000000\n\
                    u2,\"a \"\"quoted\"\" item\",1700000001,\"Order Completed\"\n\
                    u2,\"two\nlines\",1700000002\n\
                    u2,\"shirt, blue\",bad\n";
        let error = read_csv(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 6: timestamp `bad` is neither Unix seconds or milliseconds nor RFC 3339"
        );
        let data = read_csv(text.rsplit_once("u2,\"shirt").unwrap().0).unwrap();
        assert_eq!(data.people, 2);
        assert_eq!(
            data.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["shirt, blue", "a \"quoted\" item", "two\nlines"]
        );
        assert_eq!(data.interactions[1].touch.weight, 3);
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
        reader.read("p,item-2,5\np,new,6\n".as_bytes()).unwrap();
        let data = reader.finish();
        assert_eq!(data.interactions[0].touch.item, 2);
        assert_eq!(data.interactions[1].touch.item, 3);
        assert_eq!(data.items[3].categories, Vec::<String>::new());
    }
}
