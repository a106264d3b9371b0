//! `GET /operator`: the operator pool as JSON, `{"data": [...]}`, one object per operator of
//! the current set that checked in, with its status and "last seen" derived at request time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use tokio::sync::watch;

use super::json_response;
use crate::pool::OperatorPool;
use crate::status::NodeStatus;

/// What the pool routes read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PoolApi {
    pub pool: Arc<OperatorPool>,
    pub status: watch::Receiver<NodeStatus>,
    /// Prefix (or template with `{address}`) of an address's page on a block explorer.
    pub explorer_url: Arc<str>,
    /// Prefix (or template with `{address}`) of an operator's EigenLayer profile page.
    pub profile_url: Arc<str>,
    /// This node's recent progress, charted on the telemetry page.
    pub history: crate::status::History,
    /// The AVS tasks, served under `/tasks` and `/rpc` when given.
    pub avs: Option<Arc<crate::avs::AvsTasks>>,
}

pub(crate) async fn get_operators(State(api): State<PoolApi>) -> Response {
    let rows = api.pool.rows(crate::node::now_ms());
    json_response(StatusCode::OK, json!({ "data": rows }))
}
