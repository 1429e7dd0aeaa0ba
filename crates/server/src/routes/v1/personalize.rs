//! Recommendations and messages, always for a stated purpose and audited when about a person:
//! `GET /v1/recommendations`, `GET /v1/items/{id}/similar`,
//! `GET /v1/subjects/{id}/next-message`, and the item catalogue (`PUT /v1/items/{id}`,
//! `POST /v1/items`, `GET /v1/items/{id}`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_app::personalize::{self as engine, FilterInput, ItemInput};

use crate::AppState;
use crate::auth::{ApiJson, Caller, query};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/recommendations", get(recommendations))
        .route("/v1/items", post(put_items))
        .route("/v1/items/{id}", get(get_item).put(put_item))
        .route("/v1/items/{id}/similar", get(similar))
        .route("/v1/subjects/{id}/next-message", get(next_message))
}

#[derive(Debug, Deserialize)]
struct RecommendQuery {
    purpose: Option<String>,
    subject: Option<String>,
    placement: Option<String>,
    n: Option<i64>,
    #[serde(default)]
    offset: i64,
    /// The item being looked at.
    item: Option<String>,
    /// Comma-separated categories.
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// Comma-separated item ids not to show.
    exclude: Option<String>,
    #[serde(default)]
    include_unavailable: bool,
}

fn list(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// `GET /v1/recommendations?purpose=P[&subject=S][&placement=K][&n=N][&offset=O][&item=I]…`:
/// items for a person (personalized only when they permit it now), an anonymous visitor or
/// nobody in particular, each with its reason. A read about a person is in their access log.
async fn recommendations(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<RecommendQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let ask = engine::Recommendations {
        purpose: params.purpose,
        subject: params.subject,
        placement: params.placement,
        n: params.n,
        offset: params.offset,
        item: params.item,
        filter: FilterInput {
            categories: list(params.category.as_deref()),
            include_unavailable: params.include_unavailable,
            min_price: params.min_price,
            max_price: params.max_price,
            exclude: list(params.exclude.as_deref()),
        },
    };
    Ok(Json(engine::recommendations(&state, &caller, ask).await?))
}

#[derive(Debug, Deserialize)]
struct SimilarQuery {
    purpose: Option<String>,
    n: Option<i64>,
    #[serde(default)]
    offset: i64,
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    exclude: Option<String>,
    #[serde(default)]
    include_unavailable: bool,
}

/// `GET /v1/items/{id}/similar?purpose=P[&n=N]`: customers who had this also had… (released pairs
/// only), then what is popular in its category. About no one, so not in anyone's access log.
async fn similar(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let ask = engine::Similar {
        purpose: params.purpose,
        n: params.n,
        offset: params.offset,
        filter: FilterInput {
            categories: list(params.category.as_deref()),
            include_unavailable: params.include_unavailable,
            min_price: params.min_price,
            max_price: params.max_price,
            exclude: list(params.exclude.as_deref()),
        },
    };
    Ok(Json(engine::similar(&state, &caller, &id, ask).await?))
}

/// `PUT /v1/items/{id}`: adds or replaces one item.
async fn put_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ItemInput>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(engine::put_item(&state, &caller, &id, input).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsInput {
    items: Vec<ItemInput>,
}

/// `POST /v1/items` `{"items": [...]}`: adds or replaces up to 1,000 items at once (all or none).
async fn put_items(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<ItemsInput>,
) -> Result<Json<Value>, ApiError> {
    let count = engine::put_items(&state, &caller, input.items).await?;
    Ok(Json(json!({ "written": count })))
}

/// `GET /v1/items/{id}`.
async fn get_item(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(engine::item(&state, &id).await?))
}

#[derive(Debug, Deserialize)]
struct MessageQuery {
    channel: Option<String>,
    purpose: Option<String>,
}

/// `GET /v1/subjects/{id}/next-message?channel=C`: the person's lifecycle stage and the first
/// message rule that fits it, only through a channel whose purpose they permit; when none may be
/// sent, `message` is null and `reason` says why. In the person's access log.
async fn next_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<MessageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let ask = engine::Message { channel: params.channel, purpose: params.purpose };
    Ok(Json(engine::next_message(&state, &caller, &reference, ask).await?))
}
