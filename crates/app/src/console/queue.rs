//! The request queue as the console shows it: open requests by soonest deadline, each with its
//! destinations' answers, in words.

use super::*;

// ---- Requests ------------------------------------------------------------------------------------

/// A request as the queue lists it.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub status_code: &'static str,
    /// `sub_…`, or a dash when the person is not known (self-service from an unknown address).
    pub subject: String,
    pub source: String,
    pub received_at: String,
    pub due_at: String,
    /// `in 12 days`, `today`, `3 days overdue`.
    pub due_in_words: String,
    pub overdue: bool,
    pub extended: Option<String>,
    pub completed_at: Option<String>,
    /// Finished by its deadline.
    pub on_time: bool,
    pub deliveries: Vec<DeliveryCell>,
}

/// Where one destination stands with a request.
#[derive(Debug, Clone)]
pub struct DeliveryCell {
    pub destination: String,
    pub message: String,
    pub status: &'static str,
    pub status_code: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub acknowledged_at: Option<String>,
}

pub fn kind_in_words(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Access => "Access",
        RequestKind::Export => "Export (portability)",
        RequestKind::Rectify => "Rectification",
        RequestKind::Restrict => "Restriction",
        RequestKind::Unrestrict => "Lift a restriction",
        RequestKind::Object => "Objection",
        RequestKind::Erase => "Erasure",
        RequestKind::Suppress => "Suppression",
        RequestKind::Unsuppress => "Lift a suppression",
    }
}

pub fn status_in_words(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Received => "Received",
        RequestStatus::Verifying => "Waiting for the person's code",
        RequestStatus::Running => "Running",
        RequestStatus::WaitingOnDestinations => "Waiting on destinations",
        RequestStatus::Completed => "Completed",
        RequestStatus::PartiallyCompleted => "Partially completed (a destination never confirmed)",
        RequestStatus::Failed => "Failed",
    }
}

fn source_in_words(source: &str) -> String {
    match source {
        "api" => "API".into(),
        "cli" => "CLI".into(),
        "self_service" => "Self-service (verified by code)".into(),
        "preference_center" => "Preference center".into(),
        other => other.to_owned(),
    }
}

fn delivery_status_in_words(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Acknowledged => "acknowledged",
        DeliveryStatus::GaveUp => "gave up (never confirmed)",
    }
}

/// Days until `due` in words, from `now`.
pub fn due_in_words(due: i64, now: i64) -> String {
    if due < now {
        // Late by part of a day is late by a day.
        let late = (now - due).saturating_add(DAY_MS - 1) / DAY_MS;
        return if late == 1 { "1 day overdue".into() } else { format!("{late} days overdue") };
    }
    // Part of a day left is a day left: a deadline 30 days out reads "in 30 days".
    match (due - now).saturating_add(DAY_MS - 1) / DAY_MS {
        0 => "due now".into(),
        1 => "in 1 day".into(),
        days => format!("in {days} days"),
    }
}

pub fn delivery_cell(catalog: &Catalog, delivery: &DeliveryRecord) -> DeliveryCell {
    DeliveryCell {
        destination: catalog
            .destination(&delivery.destination)
            .map_or_else(|| delivery.destination.clone(), |d| d.name.clone()),
        message: delivery.message.clone(),
        status: delivery_status_in_words(delivery.status),
        status_code: delivery.status.as_str(),
        attempts: delivery.attempts,
        last_error: delivery.last_error.clone(),
        acknowledged_at: delivery.acknowledged_at.map(format_time),
    }
}

pub fn queue_row(
    catalog: &Catalog,
    record: &RequestRecord,
    deliveries: &[DeliveryRecord],
    now: i64,
) -> QueueRow {
    let finished = record.status.is_final();
    QueueRow {
        id: record.id.clone(),
        kind: kind_in_words(record.kind),
        status: status_in_words(record.status),
        status_code: record.status.as_str(),
        subject: record.subject.clone().unwrap_or_else(|| "—".to_owned()),
        source: source_in_words(&record.source),
        received_at: format_time(record.received_at),
        due_at: format_time(record.due_at),
        due_in_words: due_in_words(record.due_at, now),
        overdue: !finished && record.due_at < now,
        extended: record.extension_reason.clone(),
        completed_at: record.completed_at.map(format_time),
        on_time: record.completed_at.is_some_and(|done| done <= record.due_at),
        deliveries: deliveries.iter().map(|delivery| delivery_cell(catalog, delivery)).collect(),
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub open: Vec<QueueRow>,
    pub overdue: usize,
    /// More open requests exist than shown.
    pub more_open: bool,
    pub finished: Vec<QueueRow>,
}

/// Open requests, soonest deadline first, with each destination's answer; then recent finished ones.
pub async fn queue(app: &App, now: i64) -> Result<Queue, StoreError> {
    let open_records = app.store.open_requests(QUEUE_LIMIT + 1).await?;
    let more_open = open_records.len() > QUEUE_LIMIT as usize;
    let mut open = Vec::new();
    for record in open_records.iter().take(QUEUE_LIMIT as usize) {
        let deliveries = app.store.deliveries(&record.id).await?;
        open.push(queue_row(&app.catalog, record, &deliveries, now));
    }
    let mut finished = Vec::new();
    for record in
        app.store.requests(None, 100).await?.iter().filter(|r| r.status.is_final()).take(FINISHED_SHOWN)
    {
        let deliveries = app.store.deliveries(&record.id).await?;
        finished.push(queue_row(&app.catalog, record, &deliveries, now));
    }
    Ok(Queue { overdue: open.iter().filter(|row| row.overdue).count(), open, more_open, finished })
}
