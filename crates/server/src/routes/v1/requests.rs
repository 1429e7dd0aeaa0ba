//! Data-subject requests for the brand's privacy team: `POST|GET /v1/requests`,
//! `GET /v1/requests/{id}` (status, deadline, history, each destination's answer, what was kept
//! under legal hold), `POST /v1/requests/{id}/verify` and `…/extend`, and
//! `GET /v1/requests/{id}/package?format=json|html` (the access or export package, streamed).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::identity::IdentifierKind;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_domain::segment::format_time;
use tactful_store::{RequestUpdate, RequestView};
use tactful_vault::Zeroizing;

use super::subjects::query;
use crate::auth::{ApiJson, Caller, identifier, subject};
use crate::error::{ApiError, ErrorCode};
use crate::export::{self, Form, PackageQuery};
use crate::requests::{self, Contact, DOWNLOAD_FOR_MS, NewRequestInput};
use crate::{AppState, now_millis};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/requests", post(create).get(list))
        .route("/v1/requests/{id}", get(show))
        .route("/v1/requests/{id}/verify", post(verify))
        .route("/v1/requests/{id}/extend", post(extend))
        .route("/v1/requests/{id}/package", get(package))
        .route("/v1/requests/{id}/legal-holds", get(legal_holds))
}

#[derive(Debug, Deserialize)]
struct HoldsQuery {
    purpose: Option<String>,
}

/// `GET /v1/requests/{id}/legal-holds?purpose=essential.legal_obligation`: what an erasure kept
/// because the law requires it, readable only for that legal obligation, by a role allowed it and
/// the data's categories. Audited like every read.
async fn legal_holds(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<HoldsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let purpose_key = params
        .purpose
        .as_deref()
        .map(str::trim)
        .filter(|purpose| !purpose.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::PurposeRequired))?;
    let purpose = state.catalog.purpose_index(purpose_key).ok_or_else(|| {
        ApiError::with_message(
            ErrorCode::UnknownPurpose,
            format!("the catalog declares no purpose {purpose_key:?}"),
        )
    })?;
    if !tactful_domain::taxonomy::covers("essential.legal_obligation", purpose_key) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "what an erasure kept may be read only for the legal obligation it was kept for",
        ));
    }
    if !state.policy.role_may_use(&caller.role, purpose) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not read for {purpose_key}", caller.role.name),
        ));
    }
    let view = state.store.request(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    let Some(subject) = record.subject.clone().filter(|_| record.kind == RequestKind::Erase) else {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "only an erase request keeps anything",
        ));
    };
    let mut held = Vec::new();
    let mut returned = std::collections::BTreeSet::new();
    let mut withheld = 0u32;
    for hold in state.store.legal_holds(&subject).await? {
        if !hold.categories.iter().all(|category| caller.covers_category(category)) {
            withheld += 1;
            continue;
        }
        let opened = state
            .vault
            .legal_hold_key()
            .open("legal_hold", &[hold.id.as_bytes()], &hold.sealed)
            .map_err(ApiError::internal)?;
        let body: Value = serde_json::from_slice(&opened).map_err(ApiError::internal)?;
        returned.extend(hold.categories.iter().cloned());
        held.push(json!({
            "id": hold.id,
            "source": hold.source,
            "timestamp": format_time(hold.timestamp),
            "categories": hold.categories,
            "kept_until": format_time(hold.retain_until),
            "record": body,
        }));
    }
    let returned: Vec<String> = returned.into_iter().collect();
    let withheld_list = if withheld > 0 {
        vec![tactful_domain::audit::Withheld {
            category: "legal_hold".into(),
            reason: "role_may_not_read".into(),
            count: withheld,
        }]
    } else {
        Vec::new()
    };
    let decision = match (returned.is_empty(), withheld_list.is_empty()) {
        (_, true) => tactful_domain::audit::ReadDecision::Permitted,
        (true, false) => tactful_domain::audit::ReadDecision::Denied,
        (false, false) => tactful_domain::audit::ReadDecision::Partial,
    };
    let read = tactful_domain::audit::AuditEvent::Read {
        actor: caller.key.clone(),
        role: caller.role.name.clone(),
        purpose: purpose_key.to_owned(),
        subject: state.vault.subject_pseudonym(&subject),
        returned,
        withheld: withheld_list,
        decision,
    };
    state.store.audit_append(vec![read], now_millis()).await?;
    Ok(Json(json!({"request": id, "purpose": purpose_key, "kept": held, "withheld": withheld})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `access`, `export`, `rectify`, `restrict`, `unrestrict`, `object`, `erase`, `suppress`,
    /// `unsuppress`.
    #[serde(rename = "type")]
    kind: String,
    /// The person: `sub_…` or `kind:value`. Not for `unsuppress` (give `identifiers`).
    subject: Option<String>,
    /// Self-service: the person's email or phone (`email:ada@example.com`), where the code goes.
    /// The answer is the same whether or not Tactful knows them.
    verify_by: Option<String>,
    /// `erase`: keep a keyed hash of their identifiers so their later events are dropped.
    #[serde(default)]
    suppress: bool,
    /// `rectify`: the profile path and its corrected value.
    path: Option<String>,
    value: Option<Value>,
    /// `object`: the purpose objected to.
    purpose: Option<String>,
    /// `unsuppress`: the identifiers to lift (`["email:ada@example.com"]`).
    #[serde(default)]
    identifiers: Vec<String>,
}

async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_privacy()?;
    let kind = RequestKind::parse(&body.kind).ok_or_else(|| {
        let kinds: Vec<&str> = RequestKind::ALL.iter().map(|kind| kind.as_str()).collect();
        ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("type {:?} is not one of {}", body.kind, kinds.join(", ")),
        )
    })?;
    if kind == RequestKind::Unsuppress && (body.subject.is_some() || body.verify_by.is_some()) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "unsuppress names the identifiers to lift (\"identifiers\"), not a subject",
        ));
    }
    if kind != RequestKind::Unsuppress && !body.identifiers.is_empty() {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "\"identifiers\" is for unsuppress only",
        ));
    }
    let mut verify = None;
    let subject = match (&body.subject, &body.verify_by, kind) {
        (_, _, RequestKind::Unsuppress) => None,
        (Some(reference), None, _) => Some(subject(&state, reference).await?),
        (None, Some(contact), _) => {
            let (contact_kind, value) = identifier(&state, contact)?;
            if !matches!(contact_kind, IdentifierKind::Email | IdentifierKind::Phone) {
                return Err(ApiError::with_message(
                    ErrorCode::InvalidIdentifier,
                    "a code can be sent to an email address or a phone number only",
                ));
            }
            // Known or not, the answer is the same: a request cannot tell who is a customer.
            let known =
                state.store.subject_by_identifier(state.vault.blind(contact_kind.as_str(), &value)).await?;
            let root = match known {
                Some(found) => state.store.subject_state(&found).await?.map(|found| found.subject),
                None => None,
            };
            verify = Some(Contact { kind: contact_kind, value: Zeroizing::new(value) });
            root
        }
        (Some(_), Some(_), _) => {
            return Err(ApiError::with_message(
                ErrorCode::InvalidRequest,
                "give either subject (the brand has verified the person) or verify_by (self-service), not both",
            ));
        }
        (None, None, _) => {
            return Err(ApiError::with_message(
                ErrorCode::InvalidRequest,
                "say who the request is about: subject (sub_… or email:…) or verify_by",
            ));
        }
    };
    let identifiers = body
        .identifiers
        .iter()
        .map(|reference| identifier(&state, reference))
        .collect::<Result<Vec<_>, _>>()?;
    let details = json!({"path": body.path, "purpose": body.purpose, "suppress": body.suppress});
    let input = NewRequestInput {
        kind,
        subject,
        source: if verify.is_some() { "self_service".into() } else { "api".into() },
        details,
        value: body.value,
        identifiers,
        verify,
    };
    let self_service = input.verify.is_some();
    let id = requests::create(&state, input).await?;
    state.wake_requests.notify_one();
    let view = state.store.request(&id).await?.ok_or_else(|| ApiError::internal("a request vanished"))?;
    if self_service {
        // The same answer whether or not the person is known: nothing here may tell.
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "id": id,
                "type": kind.as_str(),
                "status": view.record.status.as_str(),
                "received_at": format_time(view.record.received_at),
            })),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(view_json(&state, &view).await?)))
}

/// A request as the API shows it.
pub async fn view_json(state: &AppState, view: &RequestView) -> Result<Value, ApiError> {
    let record = &view.record;
    let mut deliveries = Vec::new();
    for delivery in &view.deliveries {
        let attempts = state.store.delivery_attempts(&delivery.request, &delivery.destination).await?;
        deliveries.push(json!({
            "destination": delivery.destination,
            "message": delivery.message,
            "status": delivery.status.as_str(),
            "attempts": attempts.iter().map(|attempt| json!({
                "at": format_time(attempt.at),
                "status_code": attempt.status_code,
                "error": attempt.error,
            })).collect::<Vec<_>>(),
            "acknowledged_at": delivery.acknowledged_at.map(format_time),
        }));
    }
    let kept = match (&record.subject, record.kind) {
        (Some(subject), RequestKind::Erase) => state
            .store
            .legal_holds(subject)
            .await?
            .into_iter()
            .map(|held| {
                json!({
                    "categories": held.categories,
                    "why": "the law requires us to keep it (legal obligation)",
                    "until": format_time(held.retain_until),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let package = downloadable(record, now_millis())
        && match &record.subject {
            Some(subject) => state.store.subject_summary(subject).await?.is_some(),
            None => false,
        };
    Ok(json!({
        "id": record.id,
        "type": record.kind.as_str(),
        "status": record.status.as_str(),
        "subject": record.subject,
        "source": record.source,
        "received_at": format_time(record.received_at),
        "due_at": format_time(record.due_at),
        "extension_reason": record.extension_reason,
        "completed_at": record.completed_at.map(format_time),
        "details": record.details,
        "history": view.history.iter().map(|entry| json!({
            "at": format_time(entry.at),
            "status": entry.status.as_str(),
            "note": entry.note,
        })).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "kept_under_legal_hold": kept,
        "package": package.then(|| format!("/v1/requests/{}/package", record.id)),
    }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    subject: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let params = query(params)?;
    if !(1..=1000).contains(&params.limit) {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "limit must be between 1 and 1000"));
    }
    // An erased person's requests outlive them: their `sub_…` id still lists them.
    let subject = match &params.subject {
        Some(reference) if reference.starts_with("sub_") => Some(reference.clone()),
        Some(reference) => Some(subject(&state, reference).await?),
        None => None,
    };
    let now = now_millis();
    let requests: Vec<Value> = state
        .store
        .requests(subject.as_deref(), params.limit)
        .await?
        .into_iter()
        .map(|record| {
            json!({
                "id": record.id,
                "type": record.kind.as_str(),
                "status": record.status.as_str(),
                "subject": record.subject,
                "received_at": format_time(record.received_at),
                "due_at": format_time(record.due_at),
                "overdue": !record.status.is_final() && record.due_at < now,
            })
        })
        .collect();
    Ok(Json(json!({"requests": requests})))
}

async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let view = state.store.request(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    Ok(Json(view_json(&state, &view).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    code: String,
}

async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let status = requests::verify(&state, &id, &body.code).await?;
    state.wake_requests.notify_one();
    Ok(Json(json!({"id": id, "status": status.as_str()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    days: u32,
    reason: String,
}

async fn extend(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let due = requests::extend(&state, &id, body.days, &body.reason).await?;
    Ok(Json(json!({"id": id, "due_at": format_time(due)})))
}

/// Whether a request's package may be downloaded now (a completed access or export, for 7 days).
pub(crate) fn downloadable(record: &tactful_store::RequestRecord, now: i64) -> bool {
    matches!(record.kind, RequestKind::Access | RequestKind::Export)
        && record.status == RequestStatus::Completed
        && record.completed_at.is_some_and(|done| now < done + DOWNLOAD_FOR_MS)
}

/// How long a download may hold off an erasure of the same person.
const DOWNLOAD_LEASE_MS: i64 = 30 * 60_000;

async fn package(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_privacy()?;
    let form = query(params)?.form(Form::Json)?;
    let view = state.store.request(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    download(state, view.record, form).await
}

/// Streams the package of a finished access or export request, holding off an erasure of the
/// same person while it runs. Used by the brand API and by the person's own preference center.
pub(crate) async fn download(
    state: Arc<AppState>,
    record: tactful_store::RequestRecord,
    form: Form,
) -> Result<Response, ApiError> {
    let id = record.id.clone();
    let now = now_millis();
    let Some(subject) = record.subject.clone().filter(|_| downloadable(&record, now)) else {
        return Err(ApiError::new(ErrorCode::PackageUnavailable));
    };
    if state.store.subject_summary(&subject).await?.is_none() {
        return Err(ApiError::new(ErrorCode::PackageUnavailable));
    }
    // While the download runs, an erasure of the same person waits (it checks this lease).
    let hold = RequestUpdate { lease_until: Some(Some(now + DOWNLOAD_LEASE_MS)), ..RequestUpdate::default() };
    state.store.update_request(&id, hold).await?;
    let guard = LeaseGuard { state: state.clone(), request: id.clone() };
    let stream = export::stream(state.clone(), subject, id.clone(), form);
    let stream = futures_util::StreamExt::map(stream, move |chunk| {
        let _held = &guard;
        chunk
    });
    let (content_type, extension) = match form {
        Form::Json => ("application/json", "json"),
        Form::Html => ("text/html; charset=utf-8", "html"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.{extension}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Releases a download's lease when the download ends, finished or abandoned.
struct LeaseGuard {
    state: Arc<AppState>,
    request: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (state, request) = (self.state.clone(), self.request.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let release = RequestUpdate { lease_until: Some(None), ..RequestUpdate::default() };
                if let Err(error) = state.store.update_request(&request, release).await {
                    tracing::warn!(%error, %request, "cannot release a download's lease; it ends by itself");
                }
                state.wake_requests.notify_one();
            });
        }
    }
}
