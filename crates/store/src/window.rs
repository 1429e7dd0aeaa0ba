//! Scans of a time window for aggregates and exports: a page of events with every subject, source
//! and event name written once (millions of rows, a few thousand distinct strings), the sealed
//! records only when asked for, and a cursor whose content each backend chooses.

/// What a window scan reads of each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The envelope only (subject, source, event name, time): read from one covering index,
    /// never touching the sealed records.
    Envelopes,
    /// The envelope, the dedupe key and the sealed record, to open properties.
    Records,
}

/// Where a page of a window scan ended: give it back to read the next one. What it holds is the
/// backend's business (SQLite: time and row number; PostgreSQL: time, source and dedupe key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCursor {
    pub(crate) timestamp: i64,
    pub(crate) tie: WindowTie,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WindowTie {
    Seq(i64),
    Key(String, [u8; 16]),
}

/// One event of a window page; its subject, source and name are positions in the page's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEvent {
    pub subject: u32,
    pub source: u32,
    /// The declared event name (`track`), or the type of other events.
    pub name: u32,
    pub timestamp: i64,
    /// The dedupe key and the sealed record (what [`crate::FamilyKeys::open_record`] opens), for
    /// a [`Scan::Records`] scan.
    pub sealed: Option<([u8; 16], Vec<u8>)>,
}

/// A page of a window's events in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowPage {
    /// The subjects of the page's events (the members who sent them, not family roots), each once.
    pub subjects: Vec<String>,
    pub sources: Vec<String>,
    pub names: Vec<String>,
    pub events: Vec<WindowEvent>,
    /// Where the next page starts; `None` once the window is read.
    pub next: Option<WindowCursor>,
}

impl WindowPage {
    pub fn subject(&self, event: &WindowEvent) -> &str {
        self.subjects.get(event.subject as usize).map_or("", String::as_str)
    }

    pub fn source(&self, event: &WindowEvent) -> &str {
        self.sources.get(event.source as usize).map_or("", String::as_str)
    }

    pub fn name(&self, event: &WindowEvent) -> &str {
        self.names.get(event.name as usize).map_or("", String::as_str)
    }
}

/// Builds a page row by row, writing each distinct string once.
#[derive(Default)]
pub(crate) struct PageBuilder {
    page: WindowPage,
    subjects: Positions,
    sources: Positions,
    names: Positions,
}

/// Where each distinct string of a page's list is: positions in the list, found by the string's
/// hash, so a string is copied once (into the list) and never as a map key. The hash is foldhash
/// (hashbrown's default): these tables see every row of a scan, and hold no secret.
#[derive(Default)]
struct Positions {
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

fn position(list: &mut Vec<String>, positions: &mut Positions, text: &str) -> u32 {
    use std::hash::BuildHasher as _;
    let hash = positions.hasher.hash_one(text);
    let found = positions.table.find(hash, |at| list.get(*at as usize).is_some_and(|known| known == text));
    if let Some(at) = found {
        return *at;
    }
    let at = u32::try_from(list.len()).unwrap_or(u32::MAX);
    list.push(text.to_owned());
    let hasher = &positions.hasher;
    positions
        .table
        .insert_unique(hash, at, |at| hasher.hash_one(list.get(*at as usize).map_or("", String::as_str)));
    at
}

impl PageBuilder {
    pub(crate) fn with_capacity(rows: usize) -> PageBuilder {
        let mut builder = PageBuilder::default();
        builder.page.events.reserve(rows);
        builder
    }

    pub(crate) fn push(
        &mut self,
        subject: &str,
        source: &str,
        name: &str,
        timestamp: i64,
        sealed: Option<([u8; 16], Vec<u8>)>,
    ) {
        let page = &mut self.page;
        let event = WindowEvent {
            subject: position(&mut page.subjects, &mut self.subjects, subject),
            source: position(&mut page.sources, &mut self.sources, source),
            name: position(&mut page.names, &mut self.names, name),
            timestamp,
            sealed,
        };
        page.events.push(event);
    }

    pub(crate) fn len(&self) -> usize {
        self.page.events.len()
    }

    /// The page, continuing after `last` when the page came back full (a shorter page is the last).
    pub(crate) fn finish(mut self, full: bool, last: Option<WindowCursor>) -> WindowPage {
        self.page.next = if full { last } else { None };
        self.page
    }
}
