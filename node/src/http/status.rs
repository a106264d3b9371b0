//! `GET /lean/v0/status`: the node's own view, for operators and the devnet's progress display.
//! The node loop publishes a [`crate::status::NodeStatus`] into a watch channel; the handler
//! only reads it.

use super::{ApiState, json_response};
use crate::status::StatusReport;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(crate) async fn get_status(State(state): State<ApiState>) -> Response {
    let report = StatusReport::of(&state.status.borrow(), crate::node::now_ms());
    json_response(StatusCode::OK, serde_json::to_value(&report).unwrap_or_default())
}
