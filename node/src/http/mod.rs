//! The node's HTTP API (axum), bound to 127.0.0.1 by default.
//!
//! | route | what |
//! |---|---|
//! | `GET /lean/v0/health` | liveness, in leanSpec's exact shape |
//! | `GET`/`POST /lean/v0/admin/aggregator` | read or switch the aggregator role ([`admin`]) |
//! | `GET /lean/v0/status` | the node's view: epoch, view, finalized head, peers, role, certificate age |
//! | `GET /metrics` | Prometheus text of the node's one registry |
//! | `GET /operator` | the operator pool as `{"data": [...]}` ([`operator`]) |
//! | `GET /telemetry` | the operator pool dashboard, self-contained HTML ([`telemetry`]) |
//!
//! Every JSON response carries exactly `Content-Type: application/json` (leanSpec's wire
//! contract), errors included: `{"error": "..."}`. Another verb on a known route is a 405 with an
//! `Allow` header. Admin routes require `Authorization: Bearer <token>` when `--admin-token` is
//! set.

pub mod admin;
pub mod operator;
mod status;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use operator::PoolApi;

use crate::aggregator::AggregatorController;
use crate::status::NodeStatus;

/// What the handlers read. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// `None` until a controller is wired; the admin routes answer 503 meanwhile.
    pub aggregator: Option<AggregatorController>,
    pub admin_token: Option<Arc<str>>,
    pub registry: Arc<Registry>,
    pub status: watch::Receiver<NodeStatus>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/lean/v0/health", get(health).fallback(|m| not_allowed(m, "GET")))
        .route(
            "/lean/v0/admin/aggregator",
            get(admin::get_aggregator)
                .post(admin::post_aggregator)
                .fallback(|m| not_allowed(m, "GET, POST")),
        )
        .route("/lean/v0/status", get(status::get_status).fallback(|m| not_allowed(m, "GET")))
        .route("/metrics", get(metrics).fallback(|m| not_allowed(m, "GET")))
        .fallback(not_found)
        .with_state(state)
}

/// The operator pool's routes (`/operator`, `/telemetry`), merged into the API by
/// [`serve_with_pool`].
pub fn pool_router(api: PoolApi) -> Router {
    Router::new()
        .route("/operator", get(operator::get_operators).fallback(|m| not_allowed(m, "GET")))
        .route("/telemetry", get(telemetry::get_telemetry).fallback(|m| not_allowed(m, "GET")))
        .with_state(api)
}

/// Binds the API's listener; a clear error names the flag to change.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot bind the HTTP API to {addr}: {e}; choose another --http-port")
    })
}

/// Serves the API until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with_pool(listener, state, None, shutdown).await
}

/// [`serve`], plus the operator pool's routes when `pool` is given.
pub async fn serve_with_pool(
    listener: tokio::net::TcpListener,
    state: ApiState,
    pool: Option<PoolApi>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let mut app = router(state);
    if let Some(pool) = pool {
        app = app.merge(pool_router(pool));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// A JSON response with exactly `application/json` as its content type.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({ "error": message.into() }))
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({ "status": "healthy", "service": "lean-rpc-api" }))
}

async fn metrics(axum::extract::State(state): axum::extract::State<ApiState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}"));
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], text).into_response()
}

async fn not_allowed(method: Method, allow: &'static str) -> Response {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed here; use {allow}"),
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such route")
}

#[cfg(test)]
mod tests;
