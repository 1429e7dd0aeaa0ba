//! Pseudonymized exports of events for one purpose (`tactful export-dataset`, issue 7): the window's
//! events of people who permit the purpose now, each person named by a token keyed for that purpose
//! alone (so exports for different purposes cannot be joined), times kept to the day,
//! quasi-identifiers coarsened as the catalog's dataset declares, and nothing sensitive or
//! identifying. Every export is in the audit log before its first row is written.
//!
//! CSV is written with a small RFC 4180 writer; Parquet with the `parquet` crate's low-level column
//! writer, every column an optional UTF-8 string as in the CSV (no Arrow, no compression codecs:
//! measured, that adds 9 small crates and about 40 s of CPU to a cold release build on 2 cores, where
//! Arrow would add dozens). Both stream: rows are read, opened and written a page (or a Parquet row
//! group) at a time.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use serde_json::{Map, Value};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, Dataset, Dimension, Generalize, Property, PropertyId};
use tactful_domain::minimize;
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::covers;
use tactful_store::{FamilyKeys, Scan, StoreError, WindowPage};

use crate::App;
use crate::insights::{Pages, People, family_keys};
use crate::subjects::context as subject_context;
use crate::work::{Late, Stopped};

/// Events read, opened and written per store call.
const PAGE: u32 = 2_000;
/// How far in the future a window may end (clock skew).
const SKEW_MS: i64 = 5 * 60 * 1000;
/// Rows per Parquet row group (each is held in memory until written).
const ROW_GROUP: usize = 20_000;
/// The columns every export starts with, before one column per exported property.
pub const FIXED_COLUMNS: [&str; 4] = ["token", "event", "source", "day"];

/// Categories whose values name or reach a person directly (names, contact details, account and
/// device ids, card numbers). A pseudonymized export carries them only coarsened by a dataset's
/// `generalize` rule (a postcode's prefix, an IP prefix), never whole.
const IDENTIFYING_CATEGORIES: [&str; 14] = [
    "user.name",
    "user.contact",
    "user.unique_id",
    "user.government_id",
    "user.account.username",
    "user.authorization",
    "user.financial",
    "user.payment",
    "user.device.ip_address",
    "user.device.device_id",
    "user.device.cookie_id",
    "user.biometric",
    "user.biometrics",
    "user.content.self_image",
];

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

impl ExportFormat {
    pub fn parse(text: &str) -> Option<ExportFormat> {
        match text {
            "csv" => Some(ExportFormat::Csv),
            "parquet" => Some(ExportFormat::Parquet),
            _ => None,
        }
    }
}

/// What to export, and who asks (for the audit log).
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The purpose the export serves (a declared purpose key): only people who permit it now are
    /// exported, and only properties that serve it.
    pub purpose: String,
    /// A dataset of the catalog's `[analytics]`: its property dimensions, measures and generalized
    /// properties are the columns, coarsened by its `generalize` rules. Without one, every exportable property that
    /// serves the purpose is a column, uncoarsened.
    pub dataset: Option<String>,
    /// The window `[from, to)`, Unix milliseconds; `to` may not be in the future (beyond a few
    /// minutes of clock skew).
    pub from: i64,
    pub to: i64,
    pub format: ExportFormat,
    pub actor: String,
    pub role: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub rows: u64,
    /// Distinct people (tokens) with at least one row.
    pub people: u64,
    /// The header, in order.
    pub columns: Vec<String>,
    /// Events in the window not written: their person does not permit the purpose now (or is
    /// restricted), or permits none of the exported properties.
    pub rows_left_out: u64,
    /// Properties that serve the purpose or were asked for by the dataset but are never exported,
    /// each with why.
    pub properties_left_out: Vec<(String, &'static str)>,
}

/// Why an export was refused. Nothing was read, written or audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the catalog declares no purpose {purpose:?}; declared: {declared}")]
    UnknownPurpose { purpose: String, declared: String },
    #[error(
        "the catalog declares no [analytics] section, so it has no dataset {0:?}; export without a \
         dataset to get every property that serves the purpose"
    )]
    NoDatasets(String),
    #[error("the catalog declares no dataset {dataset:?}; declared: {declared}")]
    UnknownDataset { dataset: String, declared: String },
    #[error(
        "dataset {dataset} is declared for {serves}, not {purpose}: export it for {serves}, or for \
         {purpose} without a dataset"
    )]
    DatasetPurpose { dataset: String, serves: String, purpose: String },
    #[error("the window is empty: from must be before to")]
    EmptyWindow,
    #[error("{0}")]
    LongWindow(String),
    #[error("the window ends in the future ({to}); it may end now at the latest")]
    FutureWindow { to: String },
    #[error("no declared property serves {0}, so nobody's data may be exported for it")]
    NothingServes(String),
}

/// Why an export failed: the caller's mistake, or a failure of ours (possibly after rows were
/// written, so the output is then incomplete).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the Parquet file: {0}")]
    Parquet(#[from] ParquetError),
    /// Not done within the export deadline; what was written is incomplete.
    #[error(transparent)]
    Late(#[from] Late),
}

impl From<Stopped> for ExportError {
    fn from(stopped: Stopped) -> ExportError {
        match stopped {
            Stopped::Late(late) => ExportError::Late(late),
            failed @ Stopped::Failed(_) => ExportError::Store(StoreError::Internal(failed.to_string())),
        }
    }
}

/// An exported property column.
#[derive(Debug, Clone)]
struct Column {
    property: PropertyId,
    path: String,
    generalize: Option<Generalize>,
}

/// An export checked against the catalog.
#[derive(Debug)]
struct Plan {
    purpose: usize,
    columns: Vec<Column>,
    /// The properties a person's permission is judged on: the columns', or when there are none,
    /// every property serving the purpose (a person counts if one of them is permitted).
    judged: Vec<PropertyId>,
    left_out: Vec<(String, &'static str)>,
}

/// Why a property is never exported, if it is not.
fn never_exported(property: &Property, generalized: bool) -> Option<&'static str> {
    if property.sensitive {
        Some("sensitive")
    } else if property.identifier.is_some() {
        Some("identifies the person")
    } else if !generalized && IDENTIFYING_CATEGORIES.iter().any(|c| covers(c, &property.category)) {
        Some("identifies the person directly (a dataset's generalize rule may coarsen it)")
    } else {
        None
    }
}

fn plan(catalog: &Catalog, request: &ExportRequest, now: i64) -> Result<Plan, Refusal> {
    let purpose = catalog.purpose_index(&request.purpose).ok_or_else(|| Refusal::UnknownPurpose {
        purpose: request.purpose.clone(),
        declared: catalog.purposes().iter().map(|p| p.key.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    if request.from >= request.to {
        return Err(Refusal::EmptyWindow);
    }
    tactful_domain::bounds::window(request.from, request.to).map_err(Refusal::LongWindow)?;
    if request.to > now + SKEW_MS {
        return Err(Refusal::FutureWindow { to: format_time(request.to) });
    }
    // Serving follows the policy: a property collected for a purpose serves it and its children.
    let serves = |property: &Property| property.purposes.iter().any(|p| covers(p, &request.purpose));
    let dataset = match &request.dataset {
        None => None,
        Some(key) => Some(dataset(catalog, key, &request.purpose)?),
    };
    let wanted: Vec<(&Property, Option<Generalize>)> = match dataset {
        Some(dataset) => {
            let mut ids: Vec<PropertyId> = dataset
                .dimensions
                .iter()
                .filter_map(|d| match d {
                    Dimension::Property(p) => Some(*p),
                    _ => None,
                })
                .chain(dataset.measures.iter().map(|m| m.property))
                // A generalize rule says how a property is exported, so its property is exported.
                .chain(dataset.generalize.iter().map(|(p, _)| *p))
                .collect();
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(*id));
            ids.into_iter()
                .map(|id| {
                    let rule = dataset.generalize.iter().find(|(p, _)| *p == id).map(|(_, rule)| *rule);
                    (catalog.property(id), rule)
                })
                .collect()
        }
        None => catalog.properties().iter().filter(|p| serves(p)).map(|p| (p, None)).collect(),
    };
    let mut columns = Vec::new();
    let mut left_out = Vec::new();
    for (property, generalize) in wanted {
        match never_exported(property, generalize.is_some()) {
            Some(reason) => left_out.push((property.path.clone(), reason)),
            None => columns.push(Column { property: property.id, path: property.path.clone(), generalize }),
        }
    }
    let judged: Vec<PropertyId> = if columns.is_empty() {
        catalog.properties().iter().filter(|p| serves(p)).map(|p| p.id).collect()
    } else {
        columns.iter().map(|c| c.property).collect()
    };
    if judged.is_empty() {
        return Err(Refusal::NothingServes(request.purpose.clone()));
    }
    Ok(Plan { purpose, columns, judged, left_out })
}

fn dataset<'a>(catalog: &'a Catalog, key: &str, purpose: &str) -> Result<&'a Dataset, Refusal> {
    let analytics = catalog.analytics().ok_or_else(|| Refusal::NoDatasets(key.to_owned()))?;
    let dataset = analytics.dataset(key).ok_or_else(|| Refusal::UnknownDataset {
        dataset: key.to_owned(),
        declared: analytics.datasets.iter().map(|d| d.key.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    if analytics.purpose != purpose {
        return Err(Refusal::DatasetPurpose {
            dataset: key.to_owned(),
            serves: analytics.purpose.clone(),
            purpose: purpose.to_owned(),
        });
    }
    Ok(dataset)
}

/// A person of the export: their token, which columns they permit, and (once a record of theirs
/// is opened) their family's keys.
struct Person {
    token: String,
    permitted: Vec<bool>,
    written: bool,
    keys: Option<FamilyKeys>,
}

/// Writes the export to `out` (a header, then one row per event, page by page) after recording it
/// in the audit log, within the export deadline, and says what it wrote; `out` is handed back.
/// Store reads are async; each page is written on the blocking pool.
pub async fn export<W: Write + Send + 'static>(
    app: &App,
    request: ExportRequest,
    mut out: W,
) -> Result<(ExportSummary, W), ExportError> {
    let now = app.now();
    let plan = Arc::new(plan(&app.catalog, &request, now)?);
    let mut columns: Vec<String> = FIXED_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    columns.extend(plan.columns.iter().map(|c| c.path.clone()));
    // The entry is written before any row: an export that fails halfway is still on record.
    let entry = AuditEvent::Insights {
        actor: request.actor.clone(),
        role: request.role.clone(),
        purpose: request.purpose.clone(),
        dataset: request.dataset.clone().unwrap_or_default(),
        metric: "export".into(),
        property: None,
        dimensions: columns.clone(),
        epsilon: "0".into(),
        outcome: None,
    };
    app.store.audit_append(vec![entry], now).await?;
    let deadline = app.limits.export();
    let sink = match request.format {
        ExportFormat::Csv => {
            write_row(
                &mut out,
                columns.iter().map(|name| Cell::Text(name.clone())).collect::<Vec<_>>().iter(),
            )?;
            Sink::Csv(out)
        }
        ExportFormat::Parquet => Sink::Parquet(Box::new(ParquetSink::new(out, &columns, &request)?)),
    };
    let summary =
        ExportSummary { columns, properties_left_out: plan.left_out.clone(), ..ExportSummary::default() };
    let cells = Vec::with_capacity(summary.columns.len());
    let writing = Writing { sink, summary, people: People::default(), cells };
    let writing = deadline.run(pages(app, &request, plan, writing, deadline, now)).await?;
    let limits = app.limits.clone();
    let (summary, out) = crate::work::blocking(deadline, move || {
        limits.probe("export");
        writing.sink.finish().map(|out| (writing.summary, out))
    })
    .await??;
    Ok((summary, out))
}

/// What an export has written so far, moved to the blocking pool for each page and back.
struct Writing<W: Write + Send> {
    sink: Sink<W>,
    summary: ExportSummary,
    people: People<Person>,
    cells: Vec<Cell>,
}

/// Reads the window page by page and writes each on the blocking pool.
async fn pages<W: Write + Send + 'static>(
    app: &App,
    request: &ExportRequest,
    plan: Arc<Plan>,
    mut writing: Writing<W>,
    deadline: crate::work::Deadline,
    now: i64,
) -> Result<Writing<W>, ExportError> {
    let mut pages = Pages::new(app, (request.from, request.to), PAGE, Scan::Records);
    while let Some(page) = pages.next().await? {
        let admitted = writing
            .people
            .meet(app, &page, |found| {
                let context = subject_context(app, found);
                let consents = app.policy.consents(&context, now);
                let allowed = |p: PropertyId| app.policy.decide(&context, &consents, p, plan.purpose).is_ok();
                plan.judged.iter().any(|p| allowed(*p)).then(|| Person {
                    token: app.vault.export_token(&request.purpose, &found.subject),
                    permitted: plan.columns.iter().map(|c| allowed(c.property)).collect(),
                    written: false,
                    keys: None,
                })
            })
            .await?;
        let numbers: std::collections::HashMap<String, u32> =
            admitted.iter().map(|n| (writing.people.admitted[*n as usize].0.clone(), *n)).collect();
        if !numbers.is_empty() {
            for (root, keys) in family_keys(app, numbers.keys().cloned().collect()).await? {
                if let Some(number) = numbers.get(&root) {
                    writing.people.admitted[*number as usize].1.keys = Some(keys);
                }
            }
        }
        let (plan, limits) = (plan.clone(), app.limits.clone());
        let (written, result) = crate::work::blocking(deadline, move || {
            limits.probe("export");
            let result = writing.page(&page, &plan);
            (writing, result)
        })
        .await?;
        result?;
        writing = written;
    }
    Ok(writing)
}

impl<W: Write + Send> Writing<W> {
    /// Writes one page's rows of the people admitted.
    fn page(&mut self, page: &WindowPage, plan: &Plan) -> Result<(), ExportError> {
        let (summary, cells) = (&mut self.summary, &mut self.cells);
        let persons = self.people.of_page(page);
        for event in &page.events {
            // Left out: no permission now, restricted, erased, or no longer a family root.
            let Some(number) = persons.get(event.subject as usize).copied().flatten() else {
                summary.rows_left_out += 1;
                continue;
            };
            let person = &mut self.people.admitted[number as usize].1;
            let record = match (&event.sealed, person.permitted.iter().any(|p| *p)) {
                (Some((dedupe, sealed)), true) => {
                    // No keys: the family was erased since it was met.
                    let Some(keys) = &person.keys else {
                        summary.rows_left_out += 1;
                        continue;
                    };
                    match keys.open_record(page.subject(event), page.source(event), dedupe, sealed)? {
                        Value::Object(record) => record,
                        _ => Map::new(),
                    }
                }
                _ => Map::new(),
            };
            cells.clear();
            cells.push(Cell::Text(person.token.clone()));
            cells.push(Cell::Text(page.name(event).to_owned()));
            cells.push(Cell::Text(page.source(event).to_owned()));
            cells.push(Cell::Text(format_time(event.timestamp).get(..10).unwrap_or_default().to_owned()));
            for (column, permitted) in plan.columns.iter().zip(&person.permitted) {
                cells.push(if *permitted { cell(&record, column) } else { Cell::Text(String::new()) });
            }
            self.sink.row(cells)?;
            summary.rows += 1;
            if !person.written {
                person.written = true;
                summary.people += 1;
            }
        }
        Ok(())
    }
}

/// Where rows go, in the requested format.
enum Sink<W: Write + Send> {
    Csv(W),
    Parquet(Box<ParquetSink<W>>),
}

impl<W: Write + Send> Sink<W> {
    fn row(&mut self, cells: &[Cell]) -> Result<(), ExportError> {
        match self {
            Sink::Csv(out) => write_row(out, cells.iter())?,
            Sink::Parquet(sink) => sink.row(cells)?,
        }
        Ok(())
    }

    /// Ends the file and hands back where it went.
    fn finish(self) -> Result<W, ExportError> {
        match self {
            Sink::Csv(mut out) => {
                out.flush()?;
                Ok(out)
            }
            Sink::Parquet(sink) => Ok(sink.finish()?),
        }
    }
}

/// A Parquet file being written: every column an optional UTF-8 string (an empty cell is null),
/// rows buffered by column until a row group is full. The footer names the purpose, dataset and
/// window, so the file says what it is.
struct ParquetSink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Vec<Vec<Option<String>>>,
}

impl<W: Write + Send> ParquetSink<W> {
    fn new(out: W, columns: &[String], request: &ExportRequest) -> Result<ParquetSink<W>, ParquetError> {
        let fields = columns
            .iter()
            .map(|name| {
                Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(Some(LogicalType::String))
                    .build()
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Arc::new(Type::group_type_builder("export").with_fields(fields).build()?);
        let about = [
            ("tactful.purpose", request.purpose.clone()),
            ("tactful.dataset", request.dataset.clone().unwrap_or_default()),
            ("tactful.from", format_time(request.from)),
            ("tactful.to", format_time(request.to)),
        ];
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(
                about.into_iter().map(|(key, value)| KeyValue::new(key.to_owned(), value)).collect(),
            ))
            .build();
        Ok(ParquetSink {
            writer: SerializedFileWriter::new(out, schema, Arc::new(properties))?,
            columns: vec![Vec::new(); columns.len()],
        })
    }

    fn row(&mut self, cells: &[Cell]) -> Result<(), ParquetError> {
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            let text = cell.text();
            column.push((!text.is_empty()).then(|| text.to_owned()));
        }
        if self.columns.first().map_or(0, Vec::len) >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ParquetError> {
        if self.columns.first().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut cells = self.columns.iter_mut();
        while let Some(mut writer) = group.next_column()? {
            let column = cells.next().map(std::mem::take).unwrap_or_default();
            let levels: Vec<i16> = column.iter().map(|cell| i16::from(cell.is_some())).collect();
            let values: Vec<ByteArray> =
                column.into_iter().flatten().map(|text| ByteArray::from(text.into_bytes())).collect();
            writer.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None)?;
            writer.close()?;
        }
        group.close()?;
        Ok(())
    }

    fn finish(mut self) -> Result<W, ParquetError> {
        self.flush()?;
        self.writer.into_inner()
    }
}

/// One cell of an export: text (the person's own words or a name, which a spreadsheet might take
/// for a formula), or a literal the export wrote itself (a number, a boolean, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Text(String),
    Literal(String),
}

impl Cell {
    fn text(&self) -> &str {
        match self {
            Cell::Text(text) | Cell::Literal(text) => text,
        }
    }
}

/// A property's value in a row: text as is, numbers and booleans as written, objects as JSON; the
/// elements of an array path (`products[].price`) as a JSON array. With a generalize rule, each
/// value is coarsened, and a value the rule does not fit is left out.
fn cell(record: &Map<String, Value>, column: &Column) -> Cell {
    let values: Vec<Value> = minimize::values_at(record, &column.path)
        .into_iter()
        .filter_map(|value| match column.generalize {
            Some(rule) => rule.apply(value),
            None => Some(value.clone()),
        })
        .filter(|value| !value.is_null())
        .collect();
    if column.path.contains("[]") {
        return Cell::Literal(if values.is_empty() {
            String::new()
        } else {
            Value::Array(values).to_string()
        });
    }
    match values.first() {
        None => Cell::Literal(String::new()),
        Some(Value::String(text)) => Cell::Text(text.clone()),
        Some(Value::Number(number)) => Cell::Literal(match number.as_f64() {
            // Whole numbers print without a fraction, also after rounding (`50`, not `50.0`).
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() < 9.0e15 => {
                format!("{}", float as i64)
            }
            _ => number.to_string(),
        }),
        Some(other) => Cell::Literal(other.to_string()),
    }
}

/// Writes one CSV line (RFC 4180 quoting: a field with a comma, quote, CR or LF is quoted, its
/// quotes doubled), ended by LF. A text cell a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a CR: OWASP's CSV injection) gets a leading `'`, which spreadsheets
/// show as text; numbers the export wrote stay numbers, negative ones included.
fn write_row<'a>(out: &mut impl Write, cells: impl Iterator<Item = &'a Cell>) -> std::io::Result<()> {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.write_all(b",")?;
        }
        let field = match cell {
            Cell::Text(text) if text.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{text}"),
            other => other.text().to_owned(),
        };
        if field.contains([',', '"', '\r', '\n']) {
            out.write_all(b"\"")?;
            out.write_all(field.replace('"', "\"\"").as_bytes())?;
            out.write_all(b"\"")?;
        } else {
            out.write_all(field.as_bytes())?;
        }
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(fields: &[&str]) -> String {
        let cells: Vec<Cell> = fields.iter().map(|f| Cell::Text((*f).to_owned())).collect();
        written(&cells)
    }

    fn written(cells: &[Cell]) -> String {
        let mut out = Vec::new();
        write_row(&mut out, cells.iter()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let check = |fields: &[&str], expected: &str| assert_eq!(row(fields), expected, "{fields:?}");
        check(&["a", "b"], "a,b\n");
        check(&["", ""], ",\n");
        check(&["a,b", "c"], "\"a,b\",c\n");
        check(&["say \"hi\""], "\"say \"\"hi\"\"\"\n");
        check(&["two\nlines", "cr\r"], "\"two\nlines\",\"cr\r\"\n");
        check(&["ünïcode ✓"], "ünïcode ✓\n");
    }

    #[test]
    fn csv_text_that_a_spreadsheet_would_run_is_neutralized_but_numbers_stay_numbers() {
        let text = |t: &str| Cell::Text(t.to_owned());
        let literal = |t: &str| Cell::Literal(t.to_owned());
        let check = |cells: &[Cell], expected: &str| assert_eq!(written(cells), expected, "{cells:?}");
        check(&[text("=HYPERLINK(\"http://x\")")], "\"'=HYPERLINK(\"\"http://x\"\")\"\n");
        check(&[text("+1+cmd|' /C calc'!A0"), text("@SUM(A1)")], "'+1+cmd|' /C calc'!A0,'@SUM(A1)\n");
        check(&[text("-2+3"), text("\tx"), text("\rx")], "'-2+3,'\tx,\"'\rx\"\n");
        check(&[text("shoes"), text("a=b"), text(""), text("'quoted")], "shoes,a=b,,'quoted\n");
        // What the export wrote as a number is a number, negative or not; a text that looks like
        // one is still the person's text.
        check(
            &[literal("-12.5"), literal("-3"), literal("[-1,2]"), text("-12.5")],
            "-12.5,-3,\"[-1,2]\",'-12.5\n",
        );
    }

    #[test]
    fn cells_render_scalars_arrays_and_generalized_values() {
        let record = json!({
            "properties": {
                "category": "shoes", "price": 47.5, "quantity": 2, "gift": true, "note": null,
                "products": [{"price": 12.0}, {"price": 19.99}, {"name": "no price"}],
                "page": {"path": "/a"}
            }
        });
        let record = record.as_object().unwrap();
        let catalog = Catalog::parse(Catalog::example_text()).unwrap();
        let property = catalog.property_by_path("properties.price").unwrap().id;
        let check = |path: &str, generalize: Option<&str>, expected: &str| {
            let column = Column {
                property,
                path: path.into(),
                generalize: generalize.map(|rule| Generalize::parse(rule).unwrap()),
            };
            assert_eq!(cell(record, &column).text(), expected, "{path} {generalize:?}");
        };
        check("properties.category", None, "shoes");
        check("properties.category", Some("prefix:2"), "sh");
        check("properties.price", None, "47.5");
        check("properties.price", Some("round:10"), "50");
        check("properties.quantity", None, "2");
        check("properties.gift", None, "true");
        check("properties.note", None, "");
        check("properties.missing", None, "");
        check("properties.page", None, r#"{"path":"/a"}"#);
        // A rule that does not fit the value leaves it out.
        check("properties.category", Some("round:10"), "");
        check("properties.products[].price", None, "[12.0,19.99]");
        check("properties.products[].price", Some("round:10"), "[10.0,20.0]");
        // Which cells are text (neutralized in CSV) and which are literals.
        let column = |path: &str| Column { property, path: path.into(), generalize: None };
        assert!(matches!(cell(record, &column("properties.category")), Cell::Text(_)));
        for path in ["properties.price", "properties.gift", "properties.page", "properties.products[].price"]
        {
            assert!(matches!(cell(record, &column(path)), Cell::Literal(_)), "{path}");
        }
    }
}
