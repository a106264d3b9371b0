//! `GET /lean/v0/status`: the node's own view, for operators and the devnet's progress display.
//! The node loop publishes a [`crate::status::NodeStatus`] into a watch channel; the handler
//! only reads it.

use super::{ApiState, json_response};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(crate) async fn get_status(State(state): State<ApiState>) -> Response {
    let status = state.status.borrow().clone();
    let now_ms = crate::node::now_ms();
    let since = status.last_certificate_ms.map(|at| now_ms.saturating_sub(at) / 1000);
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("seconds_since_last_certificate".into(), since.into());
    }
    json_response(StatusCode::OK, body)
}
