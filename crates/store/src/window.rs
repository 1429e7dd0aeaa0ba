//! Scans of a time window for aggregates and exports: a page of events with every subject, source
//! and event name written once (millions of rows, a few thousand distinct strings), the sealed
//! records only when asked for, and a cursor whose content each backend chooses.

// foldhash (hashbrown's default): these maps see every row of a scan, and hold no secret.
use hashbrown::HashMap;

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
    subjects: HashMap<String, u32>,
    sources: HashMap<String, u32>,
    names: HashMap<String, u32>,
}

fn position(list: &mut Vec<String>, index: &mut HashMap<String, u32>, text: &str) -> u32 {
    if let Some(found) = index.get(text) {
        return *found;
    }
    let at = u32::try_from(list.len()).unwrap_or(u32::MAX);
    list.push(text.to_owned());
    index.insert(text.to_owned(), at);
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
