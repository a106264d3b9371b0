//! The node's HTTP API (axum), bound to 127.0.0.1 by default.
//!
//! | route | what |
//! |---|---|
//! | `GET /lean/v0/health` | whether the node follows the chain, in leanSpec's shape (`health.rs`) |
//! | `GET`/`POST /lean/v0/admin/aggregator` | read or switch the aggregator role ([`admin`]) |
//! | `GET /lean/v0/status` | the node's view: epoch, view, finalized head, peers, role, certificate age |
//! | `GET /metrics` | Prometheus text of the node's one registry |
//! | `GET /operator` | the operator pool as `{"data": [...]}` ([`operator`]) |
//! | `GET /telemetry` | the operator pool dashboard, self-contained HTML ([`telemetry`]) |
//!
//! Every JSON response carries exactly `Content-Type: application/json` (leanSpec's wire
//! contract), errors included: `{"error": "..."}`. Another verb on a known route is a 405 with an
//! `Allow` header. Admin routes require `Authorization: Bearer <token>` when `--admin-token` is
//! set; `config.rs` refuses to start with a non-loopback `--http-addr` and no token.
//!
//! What is served ([`app`], [`serve_with`]) is the routes plus these defences, each answered
//! as a JSON error:
//!
//! | refusal | status | where |
//! |---|---|---|
//! | `Host` not a loopback name while bound to loopback (DNS rebinding) | 421 | `guard.rs` |
//! | `Origin` present and not this node's own `http://<Host>` (CSRF) | 403 | `guard.rs` |
//! | state-changing request not labelled `Content-Type: application/json` | 415 | `guard.rs`, [`admin`] |
//! | body over [`BODY_LIMIT`] bytes | 413 | [`router`] |
//! | JSON body repeating a key | 400 | [`admin`] |
//! | request not complete within [`ServeOptions::request_timeout`] | 408 | [`app`] |
//! | connections over [`ConnectionLimits::max_connections`], request head not sent within [`ConnectionLimits::header_read_timeout`] | not accepted / closed | `server.rs` |
//!
//! Every response carries `X-Content-Type-Options: nosniff`; `/telemetry` also carries a
//! Content-Security-Policy that allows nothing but its inline style.

pub mod admin;
mod guard;
mod health;
mod metrics;
pub mod operator;
mod server;
mod status;
pub mod tasks;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use health::HealthPolicy;
pub use operator::PoolApi;
pub use server::ConnectionLimits;

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
    /// The data directory's free space; below its minimum the node is unhealthy.
    pub disk: Option<Arc<crate::disk::DiskWatch>>,
}

/// The largest request body read, on every route. The only body is the admin toggle, a few
/// bytes; axum's default of 2 MB only gives a client more to make the node buffer.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How the API is served: where it is bound (which decides the Host check), the connection
/// and request limits, and the health rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The address the listener is bound to.
    pub bind: SocketAddr,
    pub connections: ConnectionLimits,
    /// The longest a request may take once its head is read, body included; a handler here
    /// answers in microseconds, so only a client trickling its body reaches it.
    pub request_timeout: Duration,
    pub health: HealthPolicy,
}

impl ServeOptions {
    /// The defaults for an API bound to `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            connections: ConnectionLimits::default(),
            request_timeout: Duration::from_secs(10),
            health: HealthPolicy::default(),
        }
    }
}

/// The API's routes with the default [`HealthPolicy`], without the Host/Origin guard and the
/// request timeout of [`app`] (which needs the bound address).
pub fn router(state: ApiState) -> Router {
    routes(state, HealthPolicy::default())
}

fn routes(state: ApiState, policy: HealthPolicy) -> Router {
    let started_ms = crate::node::now_ms();
    let health = move |State(state): State<ApiState>| async move {
        if let Some(reason) = state.disk.as_ref().and_then(|disk| disk.low()) {
            return health::response(health::Health::Unhealthy(reason));
        }
        let status = state.status.borrow().clone();
        health::response(health::assess(&status, crate::node::now_ms(), started_ms, policy))
    };
    Router::new()
        .route("/lean/v0/health", get(health).fallback(|m| not_allowed(m, "GET")))
        .route(
            "/lean/v0/admin/aggregator",
            get(admin::get_aggregator)
                .post(admin::post_aggregator)
                .fallback(|m| not_allowed(m, "GET, POST")),
        )
        .route("/lean/v0/status", get(status::get_status).fallback(|m| not_allowed(m, "GET")))
        .route("/metrics", get(metrics::get_metrics).fallback(|m| not_allowed(m, "GET")))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Everything that is served: the routes, the pool's routes when `pool` is given, and the
/// defences of the module doc.
pub fn app(state: ApiState, pool: Option<PoolApi>, options: &ServeOptions) -> Router {
    let mut app = routes(state, options.health);
    if let Some(pool) = pool {
        app = app.merge(pool_router(pool));
    }
    // Again over the merged pool routes, so that no route reads more.
    app.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(options.request_timeout, with_deadline))
        .layer(middleware::from_fn_with_state(
            guard::HostGuard::for_bind(options.bind.ip()),
            guard::check_host_and_origin,
        ))
        .layer(middleware::map_response(nosniff))
}

/// The operator pool's routes (`/operator`, `/telemetry`), merged into the API by
/// [`serve_with_pool`].
pub fn pool_router(api: PoolApi) -> Router {
    let avs = api.avs.clone();
    let router = Router::new()
        .route("/operator", get(operator::get_operators).fallback(|m| not_allowed(m, "GET")))
        .route("/telemetry", get(telemetry::get_telemetry).fallback(|m| not_allowed(m, "GET")))
        .with_state(api);
    match avs {
        Some(avs) => router.merge(tasks_router(avs)),
        None => router,
    }
}

/// The AVS tasks' routes (`/tasks`, `/tasks/definitions`, `/tasks/{id}`, `POST /rpc`).
pub fn tasks_router(avs: Arc<crate::avs::AvsTasks>) -> Router {
    Router::new()
        .route("/tasks", get(tasks::list_tasks).fallback(|m| not_allowed(m, "GET")))
        .route(
            "/tasks/definitions",
            get(tasks::get_definitions).fallback(|m| not_allowed(m, "GET")),
        )
        .route("/tasks/{id}", get(tasks::get_task).fallback(|m| not_allowed(m, "GET")))
        .route(
            "/rpc",
            axum::routing::post(tasks::post_rpc)
                .fallback(|m| not_allowed(m, "POST"))
                .layer(DefaultBodyLimit::max(tasks::RPC_BODY_LIMIT)),
        )
        .with_state(avs)
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

/// [`serve`], plus the operator pool's routes when `pool` is given, with the default
/// [`ServeOptions`] for the listener's address.
pub async fn serve_with_pool(
    listener: tokio::net::TcpListener,
    state: ApiState,
    pool: Option<PoolApi>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = ServeOptions::new(listener.local_addr()?);
    serve_with(listener, state, pool, options, shutdown).await
}

/// Serves [`app`] with `options` until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    pool: Option<PoolApi>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(
        addr = %options.bind,
        max_connections = options.connections.max_connections,
        "HTTP API listening"
    );
    let app = app(state, pool, &options);
    server::run(listener, app, options.connections, shutdown).await
}

/// A JSON response with exactly `application/json` as its content type.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({ "error": message.into() }))
}

/// Middleware: a request (body included) not answered within `limit` is answered 408.
async fn with_deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => json_error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request was not complete within {} s", limit.as_secs()),
        ),
    }
}

/// Every response: the browser must not guess another type than the one declared.
async fn nosniff(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
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
