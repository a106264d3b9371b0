//! Client automation (docs/protocol.md, 7.5; issue 15): wallet sign-in ([`auth`]) and
//! automation definitions ([`spec`]) kept in the store's `automation` column family, one owner's
//! automations apart from another's.
//!
//! Layout of [`Column::Automation`]:
//! - `0x01 ‖ owner (20) ‖ id (32)` → the `AutomationTask` record (protobuf);
//! - `0x02 ‖ id (32)` → owner (20): who holds an id, to tell "not yours" from "unknown";
//! - `0x03 token-secret` → the 32-byte HMAC secret of sign-in tokens, drawn once.
//!
//! Not here yet (issue 15): replication of definitions through consensus, trigger watching and
//! attestation, executions. A definition lives on the node it was created on.

pub mod auth;
pub mod spec;

use std::sync::{Arc, Mutex, MutexGuard};

use alloy::primitives::Address;
use avs_proto::automation_v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::store::{Column, Durability, Store, StoreError, WriteBatch};
use auth::{Auth, AuthError, Network};
use spec::SpecError;

const RECORD: u8 = 0x01;
const OWNER_OF: u8 = 0x02;
const TOKEN_SECRET_KEY: &[u8] = b"\x03token-secret";

/// Largest page of `ListTasks`, and the page size when none is asked for.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;
/// Automations one owner holds at most (any state): the store is bounded per client.
pub const MAX_PER_OWNER: usize = 1000;

pub type TaskId = [u8; 32];

#[derive(Debug, Error)]
pub enum AutomationError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("invalid definition: {0}")]
    Invalid(#[from] SpecError),
    #[error("no automation {0}")]
    NotFound(String),
    #[error("automation {0} belongs to another owner")]
    NotYours(String),
    #[error("automation {id} is {state}: {action} needs {needs}")]
    WrongState { id: String, state: &'static str, action: &'static str, needs: &'static str },
    #[error("this owner holds {MAX_PER_OWNER} automations; delete some first")]
    Full,
    #[error("{0}")]
    BadRequest(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored automation record does not decode: {0}")]
    Corrupt(String),
}

/// The automations a node holds and its sign-in.
pub struct Automation {
    store: Arc<dyn Store>,
    auth: Mutex<Auth>,
    /// Serializes the read-check-write of creations, cancellations and deletions.
    writes: Mutex<()>,
}

impl std::fmt::Debug for Automation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automation").finish_non_exhaustive()
    }
}

fn state_name(state: i32) -> &'static str {
    match pb::TaskState::try_from(state) {
        Ok(pb::TaskState::Active) => "active",
        Ok(pb::TaskState::Executing) => "executing",
        Ok(pb::TaskState::Completed) => "completed",
        Ok(pb::TaskState::Failed) => "failed",
        Ok(pb::TaskState::Cancelled) => "cancelled",
        Ok(pb::TaskState::Unspecified) | Err(_) => "unknown",
    }
}

fn id_hex(id: &TaskId) -> String {
    format!("0x{}", hex::encode(id))
}

fn record_key(owner: &Address, id: &TaskId) -> Vec<u8> {
    [&[RECORD][..], owner.as_slice(), id].concat()
}

fn owner_key(id: &TaskId) -> Vec<u8> {
    [&[OWNER_OF][..], id].concat()
}

/// `sha256(owner ‖ created_at_ms (u64 BE) ‖ encoded definition)` (docs/protocol.md, 7.5).
pub fn task_id(owner: &Address, created_at_ms: u64, definition: &pb::TaskDefinition) -> TaskId {
    Sha256::new()
        .chain_update(owner.as_slice())
        .chain_update(created_at_ms.to_be_bytes())
        .chain_update(definition.encode_to_vec())
        .finalize()
        .into()
}

/// A 32-byte id from a request.
pub fn parse_id(raw: &[u8]) -> Result<TaskId, AutomationError> {
    raw.try_into()
        .map_err(|_| AutomationError::BadRequest(format!("id has {} bytes, need 32", raw.len())))
}

impl Automation {
    /// Opens the automations of `store`, drawing the token secret on first use.
    pub fn open(store: Arc<dyn Store>, network: Network) -> Result<Self, AutomationError> {
        let secret = match store.get(Column::Automation, TOKEN_SECRET_KEY)? {
            Some(raw) => <[u8; 32]>::try_from(raw.as_slice())
                .map_err(|_| AutomationError::Corrupt("token secret is not 32 bytes".into()))?,
            None => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| AutomationError::BadRequest(format!("no randomness: {e}")))?;
                let mut batch = WriteBatch::new();
                batch.put(Column::Automation, TOKEN_SECRET_KEY, secret.to_vec());
                store.write(batch, Durability::Sync)?;
                secret
            }
        };
        Ok(Self { store, auth: Mutex::new(Auth::new(network, secret)), writes: Mutex::new(()) })
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sign-in challenge for `owner` (docs/protocol.md, 7.5).
    pub fn challenge(&self, owner: Address, now_ms: u64) -> Result<(String, u64), AutomationError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| AutomationError::BadRequest(format!("no randomness: {e}")))?;
        Ok(self.auth().challenge(owner, nonce, now_ms)?)
    }

    /// Exchanges a signed challenge for a token.
    pub fn sign_in(
        &self,
        message: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<(String, u64), AutomationError> {
        Ok(self.auth().exchange(message, signature, now_ms)?)
    }

    /// The owner a bearer token names.
    pub fn authenticate(&self, token: &str, now_ms: u64) -> Result<Address, AutomationError> {
        Ok(self.auth().verify(token, now_ms)?)
    }

    fn read(&self, owner: &Address, id: &TaskId) -> Result<pb::AutomationTask, AutomationError> {
        if let Some(raw) = self.store.get(Column::Automation, &record_key(owner, id))? {
            return pb::AutomationTask::decode(raw.as_slice())
                .map_err(|e| AutomationError::Corrupt(e.to_string()));
        }
        match self.store.get(Column::Automation, &owner_key(id))? {
            Some(_) => Err(AutomationError::NotYours(id_hex(id))),
            None => Err(AutomationError::NotFound(id_hex(id))),
        }
    }

    fn count(&self, owner: &Address) -> Result<usize, AutomationError> {
        let start = [&[RECORD][..], owner.as_slice()].concat();
        let rows = self.store.range(Column::Automation, &start, MAX_PER_OWNER + 1)?;
        Ok(rows.iter().take_while(|(k, _)| k.starts_with(&start)).count())
    }

    /// Checks and stores a definition for `owner`; nothing is stored if it is refused.
    pub fn create(
        &self,
        owner: Address,
        definition: pb::TaskDefinition,
        now_ms: u64,
    ) -> Result<pb::AutomationTask, AutomationError> {
        spec::check(&definition, now_ms)?;
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if self.count(&owner)? >= MAX_PER_OWNER {
            return Err(AutomationError::Full);
        }
        let id = task_id(&owner, now_ms, &definition);
        if self.store.get(Column::Automation, &owner_key(&id))?.is_some() {
            // The same definition by the same owner in the same millisecond: one automation.
            return self.read(&owner, &id);
        }
        let task = pb::AutomationTask {
            id: id.to_vec(),
            owner: owner.to_vec(),
            definition: Some(definition),
            state: pb::TaskState::Active.into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, record_key(&owner, &id), task.encode_to_vec());
        batch.put(Column::Automation, owner_key(&id), owner.to_vec());
        // Acknowledged only once durable.
        self.store.write(batch, Durability::Sync)?;
        Ok(task)
    }

    pub fn get(&self, owner: &Address, id: &TaskId) -> Result<pb::AutomationTask, AutomationError> {
        self.read(owner, id)
    }

    /// One page of `owner`'s automations in id order, from `after` (exclusive), and the id
    /// to continue after when there are more.
    pub fn list(
        &self,
        owner: &Address,
        after: Option<TaskId>,
        page: usize,
    ) -> Result<(Vec<pb::AutomationTask>, Option<TaskId>), AutomationError> {
        let page = match page {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let prefix = [&[RECORD][..], owner.as_slice()].concat();
        let start = match after {
            // The key right after `after`'s: `after` with one more byte.
            Some(id) => [&record_key(owner, &id)[..], &[0]].concat(),
            None => prefix.clone(),
        };
        let rows = self.store.range(Column::Automation, &start, page + 1)?;
        let mut tasks = rows
            .iter()
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| {
                pb::AutomationTask::decode(v.as_slice())
                    .map_err(|e| AutomationError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let more = tasks.len() > page;
        tasks.truncate(page);
        let next = match (more, tasks.last()) {
            (true, Some(last)) => Some(parse_id(&last.id)?),
            _ => None,
        };
        Ok((tasks, next))
    }

    fn update(
        &self,
        owner: &Address,
        id: &TaskId,
        action: &'static str,
        needs: &'static str,
        allowed: &[pb::TaskState],
        change: impl FnOnce(&mut WriteBatch, pb::AutomationTask),
    ) -> Result<pb::AutomationTask, AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let task = self.read(owner, id)?;
        if !allowed.iter().any(|s| i32::from(*s) == task.state) {
            return Err(AutomationError::WrongState {
                id: id_hex(id),
                state: state_name(task.state),
                action,
                needs,
            });
        }
        let mut batch = WriteBatch::new();
        change(&mut batch, task.clone());
        self.store.write(batch, Durability::Sync)?;
        Ok(task)
    }

    /// An active or executing automation of `owner` becomes cancelled: it never fires again.
    pub fn cancel(
        &self,
        owner: &Address,
        id: &TaskId,
        now_ms: u64,
    ) -> Result<pb::AutomationTask, AutomationError> {
        let mut cancelled = None;
        self.update(
            owner,
            id,
            "cancelling",
            "active or executing",
            &[pb::TaskState::Active, pb::TaskState::Executing],
            |batch, mut task| {
                task.state = pb::TaskState::Cancelled.into();
                task.updated_at_ms = now_ms;
                batch.put(Column::Automation, record_key(owner, id), task.encode_to_vec());
                cancelled = Some(task);
            },
        )?;
        cancelled.ok_or_else(|| AutomationError::NotFound(id_hex(id)))
    }

    /// Removes a cancelled, completed or failed automation of `owner`.
    pub fn delete(&self, owner: &Address, id: &TaskId) -> Result<(), AutomationError> {
        self.update(
            owner,
            id,
            "deleting",
            "cancelled, completed or failed",
            &[pb::TaskState::Cancelled, pb::TaskState::Completed, pb::TaskState::Failed],
            |batch, _| {
                batch.delete(Column::Automation, record_key(owner, id));
                batch.delete(Column::Automation, owner_key(id));
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
