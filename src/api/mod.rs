//! HTTP API: intake (`POST /v1/deliveries/{name}/records`), admin (flush,
//! resume, retry, status, batches) and health. Blocking store work runs on
//! the blocking pool; a record is acknowledged only after its commit.

use crate::engine::{Engine, EngineError};
use crate::intake;
use crate::store::BatchState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn router(engine: Arc<Engine>) -> Router {
    let limit = engine.config.server.max_body.0 as usize;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/deliveries/{name}/records", post(enqueue))
        .route("/v1/deliveries/{name}/flush", post(flush))
        .route("/v1/deliveries/{name}/resume", post(resume))
        .route("/v1/status", get(status))
        .route("/v1/batches", get(list_batches))
        .route("/v1/batches/{id}", get(show_batch))
        .route("/v1/batches/{id}/retry", post(retry))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/scripts", get(scripts))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}

struct ApiError(StatusCode, serde_json::Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::UnknownDelivery(_) | EngineError::UnknownBatch(_) => StatusCode::NOT_FOUND,
            EngineError::NotRetryable { .. } => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(code, json!({ "error": e.to_string() }))
    }
}

/// Reload scripts and plugins; 200 with the report, 422 when something failed
/// to compile (the previous version stays active).
async fn reload(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let r = blocking(move || Ok(engine.reload())).await?;
    let code = if r.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((code, Json(json!(r))).into_response())
}

async fn scripts(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    Json(json!({ "scripts": engine.scripts.status() }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        )
    })?
}

async fn enqueue(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    engine.delivery(&name)?;
    let body = body.map_err(|e| {
        let limit = engine.config.server.max_body.0;
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is over the {limit}-byte limit (server.max_body); split it into smaller requests")
        } else {
            e.body_text()
        };
        ApiError(status, json!({ "error": message, "stored": 0 }))
    })?;
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let ndjson = ctype.contains("ndjson") || ctype.contains("jsonl");
    if !(ctype.is_empty() || ndjson || ctype.contains("json") || ctype.starts_with("text/plain")) {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({ "error": format!("content type {ctype:?} is not accepted: send application/json (object or array) or application/x-ndjson"), "stored": 0 }),
        ));
    }
    let max_record = engine.config.server.max_record.0 as usize;
    let e = engine.clone();
    blocking(move || {
        let records = intake::parse_body(&body, ndjson, max_record).map_err(|err| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": err.to_string(), "record": err.record, "line": err.line, "stored": 0 }),
            )
        })?;
        let ids = e.enqueue(&name, records)?;
        Ok((StatusCode::CREATED, Json(json!({ "accepted": ids.len(), "ids": ids }))).into_response())
    })
    .await
}

async fn flush(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let e = engine.clone();
    blocking(move || {
        let batches = e.flush(&name)?;
        Ok(Json(json!({ "batches": batches })).into_response())
    })
    .await
}

async fn resume(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let e = engine.clone();
    blocking(move || {
        let n = e.resume(&name)?;
        Ok(Json(json!({ "resumed": name, "batches_ready": n })).into_response())
    })
    .await
}

async fn status(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let e = engine.clone();
    blocking(move || {
        Ok(Json(json!({ "deliveries": e.status(chrono::Utc::now())? })).into_response())
    })
    .await
}

#[derive(serde::Deserialize)]
struct ListQuery {
    delivery: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

async fn list_batches(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(BatchState::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("unknown state {s:?}") }),
            )
        })?),
    };
    let e = engine.clone();
    blocking(move || {
        let list = e
            .store
            .list_batches(q.delivery.as_deref(), state, q.limit.unwrap_or(100))
            .map_err(EngineError::from)?;
        Ok(Json(json!({ "batches": list })).into_response())
    })
    .await
}

async fn show_batch(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = engine.clone();
    blocking(move || {
        let b = e.batch(&id)?;
        let files = e.store.files(&b).map_err(EngineError::from)?;
        let attempts = e.store.attempts(&b).map_err(EngineError::from)?;
        let events = e.store.events(&b).map_err(EngineError::from)?;
        Ok(
            Json(json!({ "batch": b, "files": files, "attempts": attempts, "events": events }))
                .into_response(),
        )
    })
    .await
}

async fn retry(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = engine.clone();
    blocking(move || Ok(Json(json!({ "batch": e.retry(&id)? })).into_response())).await
}
