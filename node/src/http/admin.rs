//! `GET`/`POST /lean/v0/admin/aggregator`, exactly as leanSpec defines them, plus the refusals
//! an operator-facing admin route needs.
//!
//! `POST` takes `{"enabled": <bool>}` and answers `{"is_aggregator": <new>, "previous": <old>}`.
//! The checks run in this order, and a refused request changes nothing:
//!
//! 1. the bearer token, when `--admin-token` is set (401);
//! 2. a controller is wired (503);
//! 3. `Content-Type: application/json` (415, see `guard.rs`: the CSRF defence);
//! 4. the body is at most [`super::BODY_LIMIT`] bytes (413);
//! 5. the body is a JSON object with no repeated key anywhere and a JSON boolean `enabled`
//!    (400 otherwise: empty, not JSON, not an object, no `enabled`, `1`, `"true"`, `null`).
//!
//! The token is compared as SHA-256 digests with [`subtle`], so neither the position of the
//! first wrong byte nor the token's length shows in the time taken.

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiState, BODY_LIMIT, guard, json_error, json_response};
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let controller = match admit(&state, &headers) {
        Ok(controller) => controller,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = guard::require_json(&headers) {
        return *refusal;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(&rejection),
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
    if let Some(expected) = &state.admin_token
        && !bearer_matches(headers, expected)
    {
        return Err(Refusal::Unauthorized);
    }
    state.aggregator.as_ref().ok_or(Refusal::NoController)
}

/// True when the request has exactly one `Authorization: Bearer <token>` and the token is
/// `expected`. `subtle`'s slice comparison returns at once on a length mismatch, so the
/// fixed-size digests are compared instead: the time taken says nothing about the length.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let presented = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    bool::from(token_digest(presented)[..].ct_eq(&token_digest(expected)[..]))
}

/// A token's SHA-256, the fixed-size form both sides are compared in.
fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The JSON answer to a body that could not be read (413 when it is over the limit).
fn body_refused(rejection: &BytesRejection) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return json_error(status, format!("request body is over the {BODY_LIMIT}-byte limit"));
    }
    json_error(status, rejection.body_text())
}

/// The request body's `enabled`, or why the body is refused.
pub(crate) fn parse_toggle(body: &[u8]) -> Result<bool, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(r#"empty body; send {"enabled": true} or {"enabled": false}"#.into());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    serde_json::from_slice::<UniqueKeys>(body).map_err(|e| format!("body is refused: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("body must be a JSON object, got {value}"));
    };
    match fields.get("enabled") {
        Some(Value::Bool(enabled)) => Ok(*enabled),
        Some(other) => Err(format!("\"enabled\" must be a JSON boolean, got {other}")),
        None => Err(r#"missing field "enabled""#.into()),
    }
}

/// Deserializes only to check that no JSON object, at any depth, repeats a key.
/// `serde_json` keeps the last of repeated keys while other parsers (a proxy, an audit log)
/// may keep the first, so `{"enabled":true,"enabled":false}` could mean "on" to one reader and
/// "off" to this node: such a body is refused instead.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}
