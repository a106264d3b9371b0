//! `GET`/`POST /lean/v0/admin/aggregator`, exactly as leanSpec defines them, plus the refusals
//! an operator-facing admin route needs.
//!
//! `POST` takes `{"enabled": <bool>}` and answers `{"is_aggregator": <new>, "previous": <old>}`.
//! The body is parsed from raw bytes whatever the request's `Content-Type`, and refused with 400
//! when it is empty, not JSON, not an object, lacks `enabled`, or has an `enabled` that is not a
//! JSON boolean (`1`, `0`, `"true"` and `null` are refused). A refused request changes nothing.
//! With no controller wired the routes answer 503.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{ApiState, json_error, json_response};
use crate::aggregator::AggregatorController;

pub(crate) async fn get_aggregator(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let controller = match admit(&state, &headers) {
        Ok(controller) => controller,
        Err(refusal) => return refusal.into_response(),
    };
    json_response(StatusCode::OK, json!({ "is_aggregator": controller.is_enabled() }))
}

pub(crate) async fn post_aggregator(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let controller = match admit(&state, &headers) {
        Ok(controller) => controller,
        Err(refusal) => return refusal.into_response(),
    };
    let enabled = match parse_toggle(&body) {
        Ok(enabled) => enabled,
        Err(reason) => return json_error(StatusCode::BAD_REQUEST, reason),
    };
    let previous = controller.set(enabled);
    if previous != enabled {
        tracing::info!(enabled, previous, "aggregator role switched through the admin API");
    }
    json_response(StatusCode::OK, json!({ "is_aggregator": enabled, "previous": previous }))
}

/// Why an admin request was turned away before its body was looked at.
enum Refusal {
    Unauthorized,
    NoController,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => {
                let mut response = json_error(
                    StatusCode::UNAUTHORIZED,
                    "admin routes need Authorization: Bearer <token> (see --admin-token)",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Refusal::NoController => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no aggregator controller is wired in this node",
            ),
        }
    }
}

/// Checks the bearer token (when one is configured), then that a controller is wired.
fn admit<'a>(
    state: &'a ApiState,
    headers: &HeaderMap,
) -> Result<&'a AggregatorController, Refusal> {
    if let Some(expected) = &state.admin_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(Refusal::Unauthorized);
        }
    }
    state.aggregator.as_ref().ok_or(Refusal::NoController)
}

/// The request body's `enabled`, or why the body is refused.
pub(crate) fn parse_toggle(body: &[u8]) -> Result<bool, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(r#"empty body; send {"enabled": true} or {"enabled": false}"#.into());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("body must be a JSON object, got {value}"));
    };
    match fields.get("enabled") {
        Some(Value::Bool(enabled)) => Ok(*enabled),
        Some(other) => Err(format!("\"enabled\" must be a JSON boolean, got {other}")),
        None => Err(r#"missing field "enabled""#.into()),
    }
}
