//! The client side of an AVS validation service (docs/protocol.md, 7.3, "Service protocol").
//!
//! One `POST` per task result with the body Othentic's validation services read; the answer
//! maps to Valid, Invalid (with the service's message) or NotYet. Everything that is not a
//! clear answer (no connection, a timeout, a non-2xx status, `error: true`, a body that does
//! not parse or is larger than [`MAX_ANSWER_BYTES`]) is NotYet: a result is never valid because
//! its service could not be asked.

use std::time::Duration;

use avs_consensus::TaskValidity;
use serde::{Deserialize, Serialize};

/// Largest answer read from a service.
pub const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Default time a service has to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the node sends to a validation service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRequest {
    pub task_definition_id: u16,
    /// `0x` hex of `proof_of_task`.
    pub proof_of_task: String,
    /// `0x` hex of `data`.
    pub data: String,
    /// The performer's operator address, `0x` hex.
    pub performer: String,
    /// The task id (`hash_tree_root(TaskMessage)`), `0x` hex.
    pub task_id: String,
}

/// What a validation service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationAnswer {
    pub data: bool,
    #[serde(default)]
    pub error: bool,
    #[serde(default)]
    pub message: Option<String>,
}

impl ValidationAnswer {
    /// The verdict this answer gives.
    pub fn validity(&self) -> TaskValidity {
        match (self.error, self.data) {
            (false, true) => TaskValidity::Valid,
            (false, false) => TaskValidity::Invalid(format!(
                "the validation service refused it: {}",
                self.message.as_deref().unwrap_or("no reason given")
            )),
            (true, _) => TaskValidity::NotYet(format!(
                "the validation service reported an error: {}",
                self.message.as_deref().unwrap_or("no message")
            )),
        }
    }
}

/// The verdict of an answer with HTTP `status` and `body` (at most [`MAX_ANSWER_BYTES`]).
pub fn validity_of(status: u16, body: &[u8]) -> TaskValidity {
    if !(200..300).contains(&status) {
        return TaskValidity::NotYet(format!("validation service answered HTTP {status}"));
    }
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return TaskValidity::NotYet("validation service answer too large".into());
    }
    match serde_json::from_slice::<ValidationAnswer>(body) {
        Ok(answer) => answer.validity(),
        Err(e) => TaskValidity::NotYet(format!("validation service answer not understood: {e}")),
    }
}

/// Asks the service at `url` (blocking: run it on the blocking pool).
pub fn ask(url: &str, request: &ValidationRequest, timeout: Duration) -> TaskValidity {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut response = match agent.post(url).send_json(request) {
        Ok(response) => response,
        Err(e) => return TaskValidity::NotYet(format!("validation service unreachable: {e}")),
    };
    let status = response.status().as_u16();
    match response.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_vec() {
        Ok(body) => validity_of(status, &body),
        Err(e) => TaskValidity::NotYet(format!("validation service answer not read: {e}")),
    }
}
