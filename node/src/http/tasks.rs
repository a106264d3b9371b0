//! AVS tasks over HTTP JSON (docs/protocol.md, 7.3): `GET /tasks`, `GET /tasks/{id}`,
//! `GET /tasks/definitions` and `POST /rpc` with the JSON-RPC 2.0 method `sendTask`, the
//! method Othentic's performers already call, for builders who have one.

use std::sync::Arc;

use avs_consensus::types::{SignedTaskMessage, TaskMessage};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_response;
use crate::avs::{AvsTasks, ListFilter, Origin, SubmitError, TaskStatus, parse_task_id};
use crate::avs::{DEFAULT_PAGE, MAX_PAGE};

/// Largest `POST /rpc` body: a task at the protocol's limits, hex encoded, and the envelope.
pub const RPC_BODY_LIMIT: usize = 2 * crate::gossip::MAX_SIGNED_TASK_BYTES + 4096;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    definition: Option<u16>,
    status: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

pub(crate) async fn list_tasks(
    State(avs): State<Arc<AvsTasks>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let token = q.page_token.as_deref().unwrap_or("");
    let filter = match ListFilter::parse(q.definition, q.status.as_deref(), token, limit) {
        Ok(filter) => filter,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    let (tasks, next) = avs.page(&filter);
    json_response(StatusCode::OK, json!({ "data": tasks, "next_page_token": next }))
}

pub(crate) async fn get_task(State(avs): State<Arc<AvsTasks>>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_task_id(&id) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": "a task id is 32 bytes of 0x hex" }),
        );
    };
    match tokio::task::spawn_blocking(move || avs.get(&id)).await {
        Ok(Some(task)) => json_response(StatusCode::OK, json!({ "data": task })),
        Ok(None) => {
            json_response(StatusCode::NOT_FOUND, json!({ "error": "no such task on this node" }))
        }
        Err(e) => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e.to_string() }))
        }
    }
}

pub(crate) async fn get_definitions(State(avs): State<Arc<AvsTasks>>) -> Response {
    let data: Vec<Value> = avs
        .definitions()
        .into_iter()
        .map(|(id, name, validation)| json!({ "id": id, "name": name, "validation": validation }))
        .collect();
    json_response(StatusCode::OK, json!({ "data": data }))
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Response {
    json_response(
        StatusCode::OK,
        json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } }),
    )
}

fn unhex(value: Option<&Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.and_then(Value::as_str).ok_or(format!("{name} must be a 0x hex string"))?;
    let digits = text.strip_prefix("0x").ok_or(format!("{name} must start with 0x"))?;
    hex::decode(digits).map_err(|e| format!("{name}: {e}"))
}

/// `sendTask` params: `[proofOfTask, data, taskDefinitionId, performer, signature]` (hex
/// strings but the id; `performer` is the 48-byte BLS key, `signature` the 96-byte BLS
/// signature over the TaskMessage, domain TASK).
fn parse_send_task(params: &Value) -> Result<SignedTaskMessage, String> {
    let p = params
        .as_array()
        .filter(|p| p.len() == 5)
        .ok_or("params must be [proofOfTask, data, taskDefinitionId, performer, signature]")?;
    let id = p
        .get(2)
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or("taskDefinitionId must be a number below 65536")?;
    let too_long = |name: &str| format!("{name} is longer than the protocol allows");
    Ok(SignedTaskMessage {
        message: TaskMessage {
            task_definition_id: id,
            performer: unhex(p.get(3), "performer")?
                .try_into()
                .map_err(|_| "performer must be 48 bytes".to_owned())?,
            proof_of_task: unhex(p.first(), "proofOfTask")?
                .try_into()
                .map_err(|_| too_long("proofOfTask"))?,
            data: unhex(p.get(1), "data")?.try_into().map_err(|_| too_long("data"))?,
        },
        signature: unhex(p.get(4), "signature")?
            .try_into()
            .map_err(|_| "signature must be 96 bytes".to_owned())?,
    })
}

pub(crate) async fn post_rpc(
    State(avs): State<Arc<AvsTasks>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(&Value::Null, -32700, "parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return rpc_error(&id, -32600, "not a JSON-RPC 2.0 request");
    }
    if request.get("method").and_then(Value::as_str) != Some("sendTask") {
        return rpc_error(&id, -32601, "method not found (this endpoint serves sendTask)");
    }
    let signed = match parse_send_task(request.get("params").unwrap_or(&Value::Null)) {
        Ok(signed) => signed,
        Err(e) => return rpc_error(&id, -32602, e),
    };
    let submitted = tokio::task::spawn_blocking(move || {
        avs.submit(signed, Origin::Client, crate::node::now_ms())
    })
    .await;
    match submitted {
        Ok(Ok(s)) => {
            let reason = match &s.status {
                TaskStatus::Rejected { reason } => Some(reason.clone()),
                _ => None,
            };
            json_response(
                StatusCode::OK,
                json!({ "jsonrpc": "2.0", "id": id, "result": {
                    "taskId": crate::avs::hex0x(&s.task_id),
                    "new": s.new,
                    "status": s.status.name(),
                    "reason": reason,
                }}),
            )
        }
        Ok(Err(e)) => {
            let code = match e {
                SubmitError::Full(_) | SubmitError::Busy(_) | SubmitError::Store(_) => -32000,
                _ => -32602,
            };
            rpc_error(&id, code, e.to_string())
        }
        Err(e) => rpc_error(&id, -32603, e.to_string()),
    }
}
