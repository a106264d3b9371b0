//! Client automation (docs/protocol.md, 7.5; issue 15): wallet sign-in ([`auth`]), automation
//! definitions ([`spec`]) and their replication through consensus ([`consensus`]): a client's
//! create, cancel or delete becomes a request carried in a block (internal task 10002) by the
//! node it was submitted to, and every node applies it to its table when the block is final, so
//! any node serves the same definitions.
//!
//! Layout of [`Column::Automation`]:
//! - `0x01 ‖ owner (20) ‖ id (32)` → the `AutomationTask` record (protobuf), as finalized;
//! - `0x02 ‖ id (32)` → owner (20): who holds an id, to tell "not yours" from "unknown";
//! - `0x03 token-secret` → the 32-byte HMAC secret of sign-in tokens, drawn once;
//! - `0x04 ‖ owner (20)` → the owner's latest grant to this node (`StoredGrant`);
//! - `0x05 ‖ sha256(request)` → a request this node accepted and that is not final yet;
//! - `0x06 ‖ id` → owner: a deleted automation (its creation is never applied again);
//! - `0x07 ‖ owner` → how many automations the owner holds (u64 BE), kept in the finality's
//!   write, so the bound is the same on every node whatever blocks one write holds;
//! - `0x08 ‖ id ‖ key (u64 BE)` → an `Execution`: a final firing ([`firing`]), its key the
//!   instant, the block number or `number · 2^20 + log index`, and its workflow's result once
//!   final ([`execution`]);
//! - `0x09 ‖ id ‖ key` → (empty): an execution whose result is not final yet;
//! - `0x0a ‖ id ‖ key ‖ step (u8)` → a contract write this node sends (`PendingWrite`: empty
//!   until signed, then the signed transaction, so a restart sends the same one again).
//!
//! - `0x0b ‖ sequence (u64 BE)` → a `SyncMessage`: the table's final changes in order, the
//!   same on every node ([`stream`]); `0x0c next` → the next sequence; `0x0d ‖ address` → the
//!   sequence an operator acknowledged on this node;
//! - `0x0e sender-secret` → the key contract writes are sent with (not the operator's).

mod active;
pub mod auth;
pub mod chain;
pub mod consensus;
pub mod example;
pub mod execution;
pub mod firing;
pub mod runner;
pub mod spec;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use alloy::primitives::Address;
use avs_proto::automation_v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::store::{Column, Durability, Store, StoreError, WriteBatch};
use auth::{Auth, AuthError, Grant, Network};
use chain::ChainWatch;
use spec::SpecError;

const RECORD: u8 = 0x01;
const OWNER_OF: u8 = 0x02;
const TOKEN_SECRET_KEY: &[u8] = b"\x03token-secret";
const SENDER_SECRET_KEY: &[u8] = b"\x0esender-secret";
const GRANT: u8 = 0x04;
const PENDING: u8 = 0x05;
const TOMBSTONE: u8 = 0x06;
const COUNT: u8 = 0x07;
const EXECUTION: u8 = 0x08;
const OPEN: u8 = 0x09;
/// Writes to send, in the format of before the rows carried their call data: migrated at open.
const OLD_SEND: u8 = 0x0a;
const LOG: u8 = 0x0b;
const LOG_NEXT_KEY: &[u8] = b"\x0cnext";
const ACKED: u8 = 0x0d;
const ORDINAL: u8 = 0x0f;
/// Writes to send: a kind byte ([`SEND_UNSIGNED`], [`SEND_SIGNED`]), then the call data or the
/// signed transaction. Node-local.
const SEND: u8 = 0x10;
/// The transaction hash of a write this node sent, per execution and step. Node-local, apart
/// from the replicated execution record so that no write of the runner races finality's.
const TX: u8 = 0x11;
/// Changes the log keeps; older ones leave it (a follower that far behind starts over).
pub const MAX_LOG: u64 = 100_000;
/// Executions an automation keeps; older ones are forgotten (docs/protocol.md, 7.5).
pub const KEEP_EXECUTIONS: u64 = 1000;

/// Largest page of `ListTasks`, and the page size when none is asked for.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;
/// Automations one owner holds at most (any state): the store is bounded per client.
pub const MAX_PER_OWNER: usize = 1000;
/// Requests this node holds before they are final, at most, and per owner.
pub const MAX_PENDING: usize = 4096;
pub const MAX_PENDING_PER_OWNER: usize = 64;
/// Grants read back at a restart, at most (expired ones are dropped then); an owner whose
/// grant was not read signs in again (`NoSession`).
const MAX_GRANTS_READ: usize = 100_000;

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
    #[error("{MAX_PENDING} requests wait for finality on this node; try again shortly")]
    Busy,
    #[error("no sign-in of this owner on this node covers now; call GetKey again")]
    NoSession,
    #[error("{0}")]
    BadRequest(String),
    #[error("this node does not watch chain {0} (--automation-rpc); submit to a node that does")]
    Unwatched(u64),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored automation record does not decode: {0}")]
    Corrupt(String),
}

/// A request this node accepted, until the block holding it is final.
struct Pending {
    bytes: Vec<u8>,
    request: pb::ReplicatedRequest,
    owner: Address,
    /// When this node last put it in a block it proposed.
    proposed_ms: Option<u64>,
}

#[derive(Default)]
struct Inner {
    /// The latest grant per owner, with its session's end.
    grants: HashMap<Address, (Grant, u64)>,
    pending: HashMap<[u8; 32], Pending>,
    /// Firings this node proposed, and when, until they are final or [`firing::REPROPOSE_AFTER_MS`].
    /// Keyed by automation and firing key.
    firing_proposed: HashMap<(TaskId, u64), u64>,
    /// A leader's place in each event automation's logs (see `firing::chain_due`).
    event_places: HashMap<TaskId, (u64, u64)>,
    /// Workflow results this node ran, by automation and execution key, until final.
    prepared: HashMap<(TaskId, u64), execution::Prepared>,
    /// The last finalized height this node applied (what the runner expires against).
    finalized_height: u64,
    /// Where the runner's next scan of pending executions starts (it wraps around).
    open_cursor: Vec<u8>,
    /// The active and executing automations of the table, indexed for proposals and watchers.
    active: active::Active,
}

/// The automations a node holds, its sign-in and the requests it replicates.
pub struct Automation {
    store: Arc<dyn Store>,
    digest: [u8; 4],
    node: Address,
    auth: Mutex<Auth>,
    inner: Mutex<Inner>,
    /// Serializes the read-check-write of submissions.
    writes: Mutex<()>,
    /// The chains this node watches for block and event triggers.
    chains: ChainWatch,
    /// Contract reads re-run for votes.
    reads: Mutex<execution::Reads>,
    /// The aggregator flag (set by the node): only an aggregator proposes contract writes.
    aggregator: std::sync::OnceLock<crate::aggregator::AggregatorController>,
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
        Ok(pb::TaskState::Pending) => "pending",
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

fn grant_key(owner: &Address) -> Vec<u8> {
    [&[GRANT][..], owner.as_slice()].concat()
}

fn pending_key(hash: &[u8; 32]) -> Vec<u8> {
    [&[PENDING][..], hash].concat()
}

fn tombstone_key(id: &TaskId) -> Vec<u8> {
    [&[TOMBSTONE][..], id].concat()
}

fn count_key(owner: &Address) -> Vec<u8> {
    [&[COUNT][..], owner.as_slice()].concat()
}

fn execution_key(id: &TaskId, key: u64) -> Vec<u8> {
    [&[EXECUTION][..], id, &key.to_be_bytes()].concat()
}

fn log_key(sequence: u64) -> Vec<u8> {
    [&[LOG][..], &sequence.to_be_bytes()].concat()
}

fn acked_key(operator: &Address) -> Vec<u8> {
    [&[ACKED][..], operator.as_slice()].concat()
}

fn open_key(id: &TaskId, key: u64) -> Vec<u8> {
    [&[OPEN][..], id, &key.to_be_bytes()].concat()
}

/// The automation id and execution key of an `OPEN` or `SEND` key (`prefix ‖ id ‖ key ‖ …`).
fn execution_of_key(k: &[u8]) -> Option<(TaskId, u64)> {
    let id = parse_id(k.get(1..33)?).ok()?;
    let key = u64::from_be_bytes(k.get(33..41)?.try_into().ok()?);
    Some((id, key))
}

fn ordinal_key(id: &TaskId, ordinal: u64) -> Vec<u8> {
    [&[ORDINAL][..], id, &ordinal.to_be_bytes()].concat()
}

fn tx_key(id: &TaskId, key: u64, step: u8) -> Vec<u8> {
    [&[TX][..], id, &key.to_be_bytes(), &[step]].concat()
}

fn send_key(id: &TaskId, key: u64, step: u8) -> Vec<u8> {
    [&[SEND][..], id, &key.to_be_bytes(), &[step]].concat()
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

/// A stored message; one that does not decode is a corrupt store.
fn decode<M: Message + Default>(raw: &[u8]) -> Result<M, AutomationError> {
    M::decode(raw).map_err(|e| AutomationError::Corrupt(e.to_string()))
}

fn is_state(task: &pb::AutomationTask, states: &[pb::TaskState]) -> bool {
    states.iter().any(|s| i32::from(*s) == task.state)
}

const CANCELLABLE: [pb::TaskState; 2] = [pb::TaskState::Active, pb::TaskState::Executing];
const DELETABLE: [pb::TaskState; 3] =
    [pb::TaskState::Cancelled, pb::TaskState::Completed, pb::TaskState::Failed];

impl Automation {
    /// Opens the automations of `store`: the token secret (drawn on first use), the owners'
    /// grants and the requests not final yet.
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
        let digest = network.digest;
        let node = network.node;
        let mut inner = Inner::default();
        let now = crate::node::now_ms();
        let mut expired = WriteBatch::new();
        for (key, value) in scan(&*store, GRANT, MAX_GRANTS_READ)? {
            let stored = decode::<pb::StoredGrant>(value.as_slice())?;
            let grant = Grant::from(stored);
            let terms = grant.verify(digest)?;
            if terms.session_expires_ms < now {
                expired.delete(Column::Automation, key);
            } else if key.get(1..) == Some(terms.owner.as_slice()) {
                inner.grants.insert(terms.owner, (grant, terms.session_expires_ms));
            }
        }
        if !expired.is_empty() {
            store.write(expired, Durability::Buffered)?;
        }
        for (key, bytes) in scan(&*store, PENDING, MAX_PENDING)? {
            let Ok(hash) = <[u8; 32]>::try_from(key.get(1..).unwrap_or_default()) else { continue };
            let request = decode::<pb::ReplicatedRequest>(bytes.as_slice())?;
            let owner = Grant::of_request(&request).verify(digest)?.owner;
            inner.pending.insert(hash, Pending { bytes, request, owner, proposed_ms: None });
        }
        migrate_send_rows(&*store)?;
        let mut from = vec![RECORD];
        loop {
            let page = scan_from(&*store, RECORD, &from, 1024)?;
            for (_, raw) in &page {
                inner.active.put(&decode::<pb::AutomationTask>(raw)?);
            }
            match page.last() {
                Some((key, _)) if page.len() == 1024 => from = [&key[..], &[0]].concat(),
                _ => break,
            }
        }
        Ok(Self {
            store,
            digest,
            node,
            auth: Mutex::new(Auth::new(network, secret)),
            inner: Mutex::new(inner),
            writes: Mutex::new(()),
            chains: ChainWatch::default(),
            reads: Mutex::default(),
            aggregator: std::sync::OnceLock::new(),
        })
    }

    /// The key this node sends automations' contract writes with: its own, drawn once and
    /// kept in the store, never the operator's key (a client chooses what a write calls; the
    /// operator funds this address with what it is willing to spend on clients' writes).
    pub fn sender_secret(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(raw) = self.store.get(Column::Automation, SENDER_SECRET_KEY)? {
            let secret = <[u8; 32]>::try_from(raw.as_slice())
                .map_err(|_| AutomationError::Corrupt("sender secret is not 32 bytes".into()))?;
            return Ok(zeroize::Zeroizing::new(secret));
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut())
            .map_err(|e| AutomationError::BadRequest(format!("no randomness: {e}")))?;
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, SENDER_SECRET_KEY, secret.to_vec());
        self.store.write(batch, Durability::Sync)?;
        Ok(secret)
    }

    /// The chains this node watches (filled by [`chain::watch`]).
    pub fn chains(&self) -> &ChainWatch {
        &self.chains
    }

    /// This node's address: the grants name it, the executions it runs carry it.
    pub fn node_address(&self) -> Address {
        self.node
    }

    /// Follows the node's aggregator flag (read fresh at each proposal).
    pub fn set_aggregator(&self, aggregator: crate::aggregator::AggregatorController) {
        let _ = self.aggregator.set(aggregator);
    }

    fn is_aggregator(&self) -> bool {
        self.aggregator.get().is_some_and(|a| a.is_enabled())
    }

    fn reads(&self) -> MutexGuard<'_, execution::Reads> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sign-in challenge for `owner` (docs/protocol.md, 7.5).
    pub fn challenge(&self, owner: Address, now_ms: u64) -> Result<(String, u64), AutomationError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| AutomationError::BadRequest(format!("no randomness: {e}")))?;
        Ok(self.auth().challenge(owner, nonce, now_ms)?)
    }

    /// Exchanges a signed challenge for a token, and keeps the owner's grant to this node (the
    /// requests this node replicates for the owner carry it).
    pub fn sign_in(
        &self,
        message: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<(String, u64), AutomationError> {
        let signed = self.auth().exchange(message, signature, now_ms)?;
        let stored = pb::StoredGrant::from(signed.grant.clone());
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, grant_key(&signed.owner), stored.encode_to_vec());
        self.store.write(batch, Durability::Sync)?;
        let mut inner = self.inner();
        // Expired sessions leave memory here (and the store at the next start).
        inner.grants.retain(|_, (_, expires)| *expires >= now_ms);
        inner.grants.insert(signed.owner, (signed.grant, signed.expires_ms));
        Ok((signed.token, signed.expires_ms))
    }

    /// The owner a bearer token names.
    pub fn authenticate(&self, token: &str, now_ms: u64) -> Result<Address, AutomationError> {
        Ok(self.auth().verify(token, now_ms)?)
    }

    /// `key` of the automation column, through `batch`'s writes when given.
    fn read(
        &self,
        batch: Option<&WriteBatch>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, AutomationError> {
        if let Some(pending) = batch.and_then(|b| b.pending(Column::Automation, key)) {
            return Ok(pending.map(<[u8]>::to_vec));
        }
        Ok(self.store.get(Column::Automation, key)?)
    }

    /// The finalized record of `id`, through `batch`'s writes when given.
    fn lookup(
        &self,
        id: &TaskId,
        batch: Option<&WriteBatch>,
    ) -> Result<Option<pb::AutomationTask>, AutomationError> {
        let Some(owner) = self.read(batch, &owner_key(id))? else { return Ok(None) };
        if owner.len() != 20 {
            return Err(AutomationError::Corrupt("owner index entry is not an address".into()));
        }
        let owner = Address::from_slice(&owner);
        self.read(batch, &record_key(&owner, id))?
            .map(|raw| decode::<pb::AutomationTask>(&raw))
            .transpose()
    }

    /// `owner`'s automation `id`: as finalized, or pending on this node.
    pub fn get(&self, owner: &Address, id: &TaskId) -> Result<pb::AutomationTask, AutomationError> {
        match self.lookup(id, None)? {
            Some(task) if task.owner == owner.as_slice() => Ok(task),
            Some(_) => Err(AutomationError::NotYours(id_hex(id))),
            None => {
                self.pending_create(owner, id).ok_or_else(|| AutomationError::NotFound(id_hex(id)))
            }
        }
    }

    /// A create this node holds for `owner` that is not final yet, as a pending record.
    fn pending_create(&self, owner: &Address, id: &TaskId) -> Option<pb::AutomationTask> {
        self.inner().pending.values().find_map(|p| match &p.request.action {
            Some(pb::replicated_request::Action::Create(definition))
                if p.owner == *owner
                    && task_id(owner, p.request.created_at_ms, definition) == *id =>
            {
                Some(pending_record(owner, id, definition, p.request.created_at_ms))
            }
            _ => None,
        })
    }

    /// `owner`'s automations, and those it has pending on this node.
    fn count(&self, owner: &Address) -> Result<(u64, usize), AutomationError> {
        let stored = owner_count(&self.store.get(Column::Automation, &count_key(owner))?);
        let pending = self.inner().pending.values().filter(|p| p.owner == *owner).count();
        Ok((stored, pending))
    }

    /// Keeps `request` (durably) until a block holding it is final.
    fn submit(
        &self,
        owner: Address,
        now_ms: u64,
        action: pb::replicated_request::Action,
    ) -> Result<(), AutomationError> {
        let grant = {
            let inner = self.inner();
            match inner.grants.get(&owner) {
                Some((grant, expires)) if *expires >= now_ms => grant.clone(),
                _ => return Err(AutomationError::NoSession),
            }
        };
        {
            let inner = self.inner();
            let own = inner.pending.values().filter(|p| p.owner == owner).count();
            if inner.pending.len() >= MAX_PENDING || own >= MAX_PENDING_PER_OWNER {
                return Err(AutomationError::Busy);
            }
            let same = |p: &Pending| p.owner == owner && p.request.action.as_ref() == Some(&action);
            let once = matches!(
                action,
                pb::replicated_request::Action::Cancel(_)
                    | pb::replicated_request::Action::Delete(_)
            );
            if once && inner.pending.values().any(same) {
                return Ok(()); // The same cancel or delete waits already.
            }
        }
        let request = pb::ReplicatedRequest {
            grant: grant.message,
            grant_signature: grant.signature,
            created_at_ms: now_ms,
            action: Some(action),
        };
        let bytes = request.encode_to_vec();
        // What attesters will check, checked before it is acknowledged (a clock that stepped
        // back since the sign-in would otherwise leave a request no one accepts).
        consensus::check_request(&bytes, self.digest)?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, pending_key(&hash), bytes.clone());
        // Acknowledged only once durable: a restart proposes it again.
        self.store.write(batch, Durability::Sync)?;
        self.inner().pending.insert(hash, Pending { bytes, request, owner, proposed_ms: None });
        Ok(())
    }

    /// Checks a definition and submits its creation; answers the pending record.
    pub fn create(
        &self,
        owner: Address,
        definition: pb::TaskDefinition,
        now_ms: u64,
    ) -> Result<pb::AutomationTask, AutomationError> {
        spec::check(&definition, now_ms)?;
        // A chain trigger fires only where operators watch its chain: refused here rather
        // than left never firing.
        if let Some(chain_id) = spec::trigger_chain(&definition)
            && !self.chains.watches(chain_id)
        {
            return Err(AutomationError::Unwatched(chain_id));
        }
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let (stored, pending) = self.count(&owner)?;
        if stored.saturating_add(pending as u64) >= MAX_PER_OWNER as u64 {
            return Err(AutomationError::Full);
        }
        let id = task_id(&owner, now_ms, &definition);
        if self.lookup(&id, None)?.is_some() || self.pending_create(&owner, &id).is_some() {
            // The same definition by the same owner in the same millisecond: one automation.
            return self.get(&owner, &id);
        }
        let record = pending_record(&owner, &id, &definition, now_ms);
        self.submit(owner, now_ms, pb::replicated_request::Action::Create(definition))?;
        Ok(record)
    }

    /// Submits the cancellation of an active or executing automation of `owner`; it takes
    /// effect, on every node, when the block holding it is final. Answers the record as it is.
    pub fn cancel(
        &self,
        owner: &Address,
        id: &TaskId,
        now_ms: u64,
    ) -> Result<pb::AutomationTask, AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let task = self.owned(owner, id, "cancelling", "active or executing", &CANCELLABLE)?;
        self.submit(*owner, now_ms, pb::replicated_request::Action::Cancel(id.to_vec()))?;
        Ok(task)
    }

    /// Submits a manual run of an active or executing automation of `owner`: when final, it
    /// is an execution like a firing's.
    pub fn trigger(
        &self,
        owner: &Address,
        id: &TaskId,
        now_ms: u64,
    ) -> Result<pb::AutomationTask, AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let task = self.owned(owner, id, "running", "active or executing", &CANCELLABLE)?;
        self.submit(*owner, now_ms, pb::replicated_request::Action::Trigger(id.to_vec()))?;
        Ok(task)
    }

    /// Submits the removal of a cancelled, completed or failed automation of `owner`.
    pub fn delete(&self, owner: &Address, id: &TaskId, now_ms: u64) -> Result<(), AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        self.owned(owner, id, "deleting", "cancelled, completed or failed", &DELETABLE)?;
        self.submit(*owner, now_ms, pb::replicated_request::Action::Delete(id.to_vec()))
    }

    fn owned(
        &self,
        owner: &Address,
        id: &TaskId,
        action: &'static str,
        needs: &'static str,
        allowed: &[pb::TaskState],
    ) -> Result<pb::AutomationTask, AutomationError> {
        let task = self.get(owner, id)?;
        if !is_state(&task, allowed) {
            return Err(AutomationError::WrongState {
                id: id_hex(id),
                state: state_name(task.state),
                action,
                needs,
            });
        }
        Ok(task)
    }

    /// One page of `owner`'s finalized automations in id order, from `after` (exclusive), and
    /// the id to continue after when there are more.
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
            .map(|(_, v)| decode::<pb::AutomationTask>(v))
            .collect::<Result<Vec<_>, _>>()?;
        let more = tasks.len() > page;
        tasks.truncate(page);
        let next = match (more, tasks.last()) {
            (true, Some(last)) => Some(parse_id(&last.id)?),
            _ => None,
        };
        Ok((tasks, next))
    }

    /// Requests to put in a block this node proposes at `now_ms`: at most `max`, oldest
    /// first, none proposed in the last [`consensus::REPROPOSE_AFTER_MS`]. Requests too old
    /// for attesters to accept ([`consensus::PROPOSE_WITHIN_MS`]) are dropped (and logged):
    /// the client sees them gone and submits again.
    pub(crate) fn take_for_block(&self, now_ms: u64, max: usize) -> Vec<Vec<u8>> {
        let mut inner = self.inner();
        let stale: Vec<[u8; 32]> = inner
            .pending
            .iter()
            .filter(|(_, p)| {
                p.request.created_at_ms.saturating_add(consensus::PROPOSE_WITHIN_MS) < now_ms
            })
            .map(|(hash, _)| *hash)
            .collect();
        if !stale.is_empty() {
            let mut batch = WriteBatch::new();
            for hash in &stale {
                inner.pending.remove(hash);
                batch.delete(Column::Automation, pending_key(hash));
            }
            if let Err(e) = self.store.write(batch, Durability::Buffered) {
                tracing::warn!(error = %e, "cannot drop expired automation requests");
            }
            tracing::warn!(
                dropped = stale.len(),
                "automation requests not final in time dropped; their clients must submit again"
            );
        }
        let mut due: Vec<(&[u8; 32], &mut Pending)> = inner
            .pending
            .iter_mut()
            .filter(|(_, p)| {
                p.proposed_ms
                    .is_none_or(|at| at.saturating_add(consensus::REPROPOSE_AFTER_MS) <= now_ms)
            })
            .collect();
        due.sort_by_key(|(hash, p)| (p.request.created_at_ms, **hash));
        due.into_iter()
            .take(max)
            .map(|(_, p)| {
                p.proposed_ms = Some(now_ms);
                p.bytes.clone()
            })
            .collect()
    }

    /// Applies the automation requests of a finalized block, in block order, into `batch`
    /// (written with the finality). Every node applies the same requests in the same order,
    /// so every node's table is the same; a store error is returned (the finality's write is
    /// not made and the node stops) rather than skipped, which would fork this node's table.
    pub fn record_finality(
        &self,
        block: &avs_consensus::types::Block,
        root: &avs_consensus::types::Root,
        certificate: &avs_consensus::types::Certificate,
        batch: &mut WriteBatch,
    ) -> Result<(), AutomationError> {
        let at = FinalityPoint {
            height: block.height.get(),
            root,
            certificate: avs_consensus::types::encode(certificate).unwrap_or_default(),
        };
        self.inner().finalized_height = at.height;
        let mut applied = 0usize;
        // One firing per automation per block counts (docs/protocol.md, 7.5).
        let mut fired = std::collections::HashSet::new();
        for result in block.body.tasks.iter() {
            if result.task_definition_id == firing::FIRING_TASK_ID {
                if self.record_firing(result.data.as_ref(), &at, &mut fired, batch)? {
                    applied += 1;
                }
                continue;
            }
            if result.task_definition_id == execution::EXECUTION_TASK_ID {
                if self.record_execution(result.data.as_ref(), &at, batch)? {
                    applied += 1;
                }
                continue;
            }
            if result.task_definition_id != consensus::AUTOMATION_TASK_ID {
                continue;
            }
            let bytes: &[u8] = result.data.as_ref();
            let hash: [u8; 32] = Sha256::digest(bytes).into();
            if self.inner().pending.remove(&hash).is_some() {
                batch.delete(Column::Automation, pending_key(&hash));
            }
            match consensus::check_request(bytes, self.digest) {
                Ok((request, terms)) => match self.apply(&request, terms.owner, &at, batch)? {
                    Ok(()) => applied += 1,
                    Err(refusal) => {
                        tracing::info!(%refusal, "an automation request of a final block does nothing")
                    }
                },
                // Validated by a quorum, and the check is stateless: only another version of
                // the rules refuses it here.
                Err(e) => {
                    tracing::warn!(error = %e, "a final block holds an automation request this node refuses")
                }
            }
        }
        if applied > 0 {
            tracing::info!(height = %block.height, requests = applied, "automation requests applied");
        }
        Ok(())
    }

    /// One request's effect on the table: `Ok(Err(refusal))` when it changes nothing (an
    /// unknown or deleted id, another owner's, a wrong state, a full owner), the same on every
    /// node; `Err` only for this node's store.
    fn apply(
        &self,
        request: &pb::ReplicatedRequest,
        owner: Address,
        point: &FinalityPoint<'_>,
        batch: &mut WriteBatch,
    ) -> Result<Result<(), String>, AutomationError> {
        let at = request.created_at_ms;
        let count = owner_count(&self.read(Some(batch), &count_key(&owner))?);
        match &request.action {
            Some(pb::replicated_request::Action::Create(definition)) => {
                let id = task_id(&owner, at, definition);
                if self.read(Some(batch), &owner_key(&id))?.is_some() {
                    return Ok(Err(format!("{} exists (a request included twice)", id_hex(&id))));
                }
                if self.read(Some(batch), &tombstone_key(&id))?.is_some() {
                    return Ok(Err(format!("{} was deleted: never created again", id_hex(&id))));
                }
                if count >= MAX_PER_OWNER as u64 {
                    return Ok(Err(format!("owner holds {MAX_PER_OWNER} automations")));
                }
                let mut task = pending_record(&owner, &id, definition, at);
                task.state = pb::TaskState::Active.into();
                self.log_change(point, pb::sync_message::Kind::Assigned(task.clone()), batch)?;
                self.put_record(&owner, &task, batch);
                batch.put(Column::Automation, owner_key(&id), owner.to_vec());
                batch.put(
                    Column::Automation,
                    count_key(&owner),
                    (count + 1).to_be_bytes().to_vec(),
                );
            }
            Some(pb::replicated_request::Action::Cancel(raw)) => {
                let (id, mut task) = match self.final_in(&owner, raw, &CANCELLABLE, batch)? {
                    Ok(found) => found,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                task.state = pb::TaskState::Cancelled.into();
                task.updated_at_ms = at;
                self.log_change(point, pb::sync_message::Kind::Cancelled(id.to_vec()), batch)?;
                self.put_record(&owner, &task, batch);
            }
            Some(pb::replicated_request::Action::Trigger(raw)) => {
                let (id, mut task) = match self.final_in(&owner, raw, &CANCELLABLE, batch)? {
                    Ok(found) => found,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let key = execution::MANUAL_KEY.saturating_add(at);
                if key < task.manual_kept_from
                    || self.read(Some(batch), &execution_key(&id, key))?.is_some()
                {
                    return Ok(Err("this manual run is recorded already".into()));
                }
                let execution = pb::Execution { instant_ms: at, ..Default::default() };
                self.open_execution(&owner, &id, &mut task, key, execution, point, batch)?;
            }
            Some(pb::replicated_request::Action::Delete(raw)) => {
                let id = match self.final_in(&owner, raw, &DELETABLE, batch)? {
                    Ok((id, _)) => id,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                batch.delete(Column::Automation, record_key(&owner, &id));
                self.inner().active.remove(&id);
                batch.delete(Column::Automation, owner_key(&id));
                // Its executions go with it.
                self.log_change(point, pb::sync_message::Kind::Deleted(id.to_vec()), batch)?;
                for prefix in [EXECUTION, OPEN, SEND, ORDINAL, TX] {
                    let start = [&[prefix][..], &id[..]].concat();
                    let end = [&[prefix][..], &id[..], &[0xff; 10]].concat();
                    batch.delete_range(Column::Automation, start, end);
                }
                // A replayed creation of this id stays a no-op (docs/protocol.md, 7.5).
                batch.put(Column::Automation, tombstone_key(&id), owner.to_vec());
                batch.put(
                    Column::Automation,
                    count_key(&owner),
                    count.saturating_sub(1).to_be_bytes().to_vec(),
                );
            }
            None => return Ok(Err("a request with no action".into())),
        }
        Ok(Ok(()))
    }

    /// `owner`'s automation `raw` (an id) as `batch` leaves it, if it is in one of `allowed`.
    fn final_in(
        &self,
        owner: &Address,
        raw: &[u8],
        allowed: &[pb::TaskState],
        batch: &WriteBatch,
    ) -> Result<Result<(TaskId, pb::AutomationTask), String>, AutomationError> {
        let Ok(id) = parse_id(raw) else { return Ok(Err("not an id".into())) };
        Ok(match self.lookup(&id, Some(batch))? {
            Some(task) if task.owner != owner.as_slice() => {
                Err(format!("{} is another owner's", id_hex(&id)))
            }
            Some(task) if !is_state(&task, allowed) => {
                Err(format!("{} is {}", id_hex(&id), state_name(task.state)))
            }
            Some(task) => Ok((id, task)),
            None => Err(format!("{} is unknown", id_hex(&id))),
        })
    }
}

impl Automation {
    /// A final firing: recorded if it is still one to record (the check of the vote, on the
    /// table as this write leaves it), so a firing included twice counts once.
    fn record_firing(
        &self,
        bytes: &[u8],
        at: &FinalityPoint<'_>,
        fired: &mut std::collections::HashSet<TaskId>,
        batch: &mut WriteBatch,
    ) -> Result<bool, AutomationError> {
        let Ok((id, firing)) = firing::decode_firing(bytes) else { return Ok(false) };
        let Some(mut task) = self.lookup(&id, Some(batch))? else { return Ok(false) };
        let Some(key) = firing::firing_key(&task, &firing) else { return Ok(false) };
        self.inner().firing_proposed.retain(|(of, at), _| *of != id || *at > key);
        if !fired.insert(id) {
            tracing::info!("a second firing of one automation in a block does nothing");
            return Ok(false);
        }
        if let Some(reason) = firing::record_refusal(&task, &firing) {
            tracing::info!(%reason, "a final firing does nothing");
            return Ok(false);
        }
        if key < task.fired_kept_from || self.read(Some(batch), &execution_key(&id, key))?.is_some()
        {
            tracing::info!("a final firing recorded already does nothing");
            return Ok(false);
        }
        let owner = Address::from_slice(&task.owner);
        match &firing.chain {
            None => {
                task.last_fired_ms = firing.instant_ms;
                task.updated_at_ms = firing.instant_ms;
            }
            // No clock here: every node writes the same record.
            Some(point) => task.last_fired_block = task.last_fired_block.max(point.block_number),
        }
        task.firings = task.firings.saturating_add(1);
        let last_fixed = match task.definition.as_ref().and_then(|d| d.trigger.as_ref()) {
            Some(pb::Trigger { kind: Some(pb::trigger::Kind::FixedTime(f)) }) => {
                f.at_unix_ms.last().copied()
            }
            _ => None,
        };
        if firing.chain.is_none() && last_fixed == Some(firing.instant_ms) {
            task.state = pb::TaskState::Completed.into();
        }
        let execution = pb::Execution {
            instant_ms: firing.instant_ms,
            chain: firing.chain,
            ..Default::default()
        };
        self.open_execution(&owner, &id, &mut task, key, execution, at, batch)?;
        Ok(true)
    }

    /// Records a pending execution of `task` (a firing or a manual run) at `key`: the
    /// automation is `executing` until its result is final. It is the automation's
    /// `firings`-th execution; the one [`KEEP_EXECUTIONS`] before it is forgotten if final.
    #[allow(clippy::too_many_arguments)]
    fn open_execution(
        &self,
        owner: &Address,
        id: &TaskId,
        task: &mut pb::AutomationTask,
        key: u64,
        execution: pb::Execution,
        at: &FinalityPoint<'_>,
        batch: &mut WriteBatch,
    ) -> Result<(), AutomationError> {
        if task.state == i32::from(pb::TaskState::Active) {
            task.state = pb::TaskState::Executing.into();
        }
        if key >= execution::MANUAL_KEY {
            task.firings = task.firings.saturating_add(1);
        }
        task.open_executions = task.open_executions.saturating_add(1);
        let ordinal = task.firings;
        if let Some(old) = ordinal.checked_sub(KEEP_EXECUTIONS).filter(|o| *o > 0)
            && let Some(raw) = self.read(Some(batch), &ordinal_key(id, old))?
            && let Ok(old_key) = <[u8; 8]>::try_from(raw.as_slice()).map(u64::from_be_bytes)
            && let Some(row) = self.read(Some(batch), &execution_key(id, old_key))?
        {
            let row = decode::<pb::Execution>(row.as_slice())?;
            if row.status != i32::from(pb::ExecutionStatus::Pending) {
                forget(task, id, old_key, old, batch);
            }
        }
        self.put_record(owner, task, batch);
        let execution = pb::Execution {
            automation_id: id.to_vec(),
            height: at.height,
            block_root: at.root.to_vec(),
            key,
            certificate: at.certificate.clone(),
            status: pb::ExecutionStatus::Pending.into(),
            ordinal,
            ..execution
        };
        batch.put(Column::Automation, execution_key(id, key), execution.encode_to_vec());
        batch.put(Column::Automation, open_key(id, key), Vec::new());
        batch.put(Column::Automation, ordinal_key(id, ordinal), key.to_be_bytes().to_vec());
        Ok(())
    }

    /// A final workflow result: recorded if its execution is still pending (the first result
    /// counts); the automation leaves `executing` with its last open execution. A successful
    /// result with contract writes that this node ran queues them to be sent.
    fn record_execution(
        &self,
        bytes: &[u8],
        at: &FinalityPoint<'_>,
        batch: &mut WriteBatch,
    ) -> Result<bool, AutomationError> {
        let Ok((id, result)) = execution::decode_result(bytes) else { return Ok(false) };
        self.inner().prepared.remove(&(id, result.key));
        let Some(raw) = self.read(Some(batch), &execution_key(&id, result.key))? else {
            return Ok(false);
        };
        let mut row = decode::<pb::Execution>(raw.as_slice())?;
        if row.status != i32::from(pb::ExecutionStatus::Pending) {
            tracing::info!("a second result of one execution does nothing");
            return Ok(false);
        }
        let Some(mut task) = self.lookup(&id, Some(batch))? else { return Ok(false) };
        let owner = Address::from_slice(&task.owner);
        row.status = if result.expired {
            pb::ExecutionStatus::Expired
        } else if result.success {
            pb::ExecutionStatus::Succeeded
        } else {
            pb::ExecutionStatus::Failed
        }
        .into();
        row.steps = result.steps;
        row.result_height = at.height;
        row.result_block_root = at.root.to_vec();
        row.result_certificate = at.certificate.clone();
        if result.runner.as_slice() == self.node.as_slice() && result.success {
            let definition = task.definition.clone().unwrap_or_default();
            for (i, node) in definition.nodes.iter().enumerate() {
                if matches!(node.kind, Some(pb::workflow_node::Kind::ContractWrite(_))) {
                    // The row holds its call data: it is sent even if the execution is forgotten.
                    let calldata =
                        row.steps.get(i).map(|s| s.output.as_slice()).unwrap_or_default();
                    let step = u8::try_from(i).unwrap_or(u8::MAX);
                    let value = [&[SEND_UNSIGNED][..], calldata].concat();
                    batch.put(Column::Automation, send_key(&id, result.key, step), value);
                }
            }
        }
        batch.delete(Column::Automation, open_key(&id, result.key));
        if row.ordinal > 0 && row.ordinal.saturating_add(KEEP_EXECUTIONS) <= task.firings {
            // Past the kept executions while it was pending.
            forget(&mut task, &id, result.key, row.ordinal, batch);
        } else {
            batch.put(Column::Automation, execution_key(&id, result.key), row.encode_to_vec());
        }
        task.open_executions = task.open_executions.saturating_sub(1);
        if task.open_executions == 0 && task.state == i32::from(pb::TaskState::Executing) {
            task.state = pb::TaskState::Active.into();
        }
        self.put_record(&owner, &task, batch);
        Ok(true)
    }

    /// Execution `key` of automation `id`, as stored, with the hashes of the writes this node
    /// sent.
    pub(crate) fn execution(
        &self,
        id: &TaskId,
        key: u64,
    ) -> Result<Option<pb::Execution>, AutomationError> {
        self.store
            .get(Column::Automation, &execution_key(id, key))?
            .map(|raw| self.decode_execution(&raw))
            .transpose()
    }

    /// A stored execution, with the hashes of the writes this node sent filled in.
    fn decode_execution(&self, raw: &[u8]) -> Result<pb::Execution, AutomationError> {
        let mut execution = decode::<pb::Execution>(raw)?;
        let Ok(id) = parse_id(&execution.automation_id) else { return Ok(execution) };
        let from = tx_key(&id, execution.key, 0);
        let prefix = &from[..from.len() - 1];
        for (k, hash) in self.store.range(Column::Automation, &from, 256)? {
            if !k.starts_with(prefix) {
                break;
            }
            let step = k.last().copied().map(usize::from);
            if let Some(step) = step.and_then(|i| execution.steps.get_mut(i)) {
                step.tx_hash = hash;
            }
        }
        Ok(execution)
    }

    /// Records that this node sent the write of `step` of execution `key` of `id` as `hash`,
    /// and that it is no longer to send.
    pub(crate) fn write_sent(
        &self,
        id: &TaskId,
        key: u64,
        step: u8,
        hash: [u8; 32],
    ) -> Result<(), AutomationError> {
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, tx_key(id, key, step), hash.to_vec());
        batch.delete(Column::Automation, send_key(id, key, step));
        Ok(self.store.write(batch, Durability::Sync)?)
    }

    /// Is execution `key` of `id` still pending here?
    pub(crate) fn is_open(&self, id: &TaskId, key: u64) -> bool {
        self.store.get(Column::Automation, &open_key(id, key)).ok().flatten().is_some()
    }

    /// Does this node hold a result for `execution` prepared less than
    /// [`execution::PREPARED_FOR_MS`] before `now_ms`?
    pub(crate) fn is_prepared(&self, execution: &(TaskId, u64), now_ms: u64) -> bool {
        self.inner()
            .prepared
            .get(execution)
            .is_some_and(|p| p.at_ms.saturating_add(execution::PREPARED_FOR_MS) > now_ms)
    }

    /// The last finalized height this node applied.
    pub(crate) fn finalized_height(&self) -> u64 {
        self.inner().finalized_height
    }

    /// Up to `limit` executions whose result is not final, from where the last call stopped
    /// (wrapping around), so no set of executions can hold the runner's attention for good.
    pub(crate) fn open_executions(
        &self,
        limit: usize,
    ) -> Result<Vec<(TaskId, pb::AutomationTask, pb::Execution)>, AutomationError> {
        let mut cursor = self.inner().open_cursor.clone();
        let rows = scan_wrapping(&*self.store, OPEN, &mut cursor, limit)?;
        self.inner().open_cursor = cursor;
        let mut out = Vec::new();
        for (k, _) in rows {
            let Some((id, key)) = execution_of_key(&k) else { continue };
            if let (Some(task), Some(execution)) =
                (self.lookup(&id, None)?, self.execution(&id, key)?)
            {
                out.push((id, task, execution));
            }
        }
        Ok(out)
    }

    /// Appends a change to the log, numbered from the count this write leaves (so every node
    /// numbers the same changes the same), dropping the one [`MAX_LOG`] before it.
    fn log_change(
        &self,
        at: &FinalityPoint<'_>,
        kind: pb::sync_message::Kind,
        batch: &mut WriteBatch,
    ) -> Result<(), AutomationError> {
        let next = owner_count(&self.read(Some(batch), LOG_NEXT_KEY)?).max(1);
        let message = pb::SyncMessage { sequence: next, height: at.height, kind: Some(kind) };
        batch.put(Column::Automation, log_key(next), message.encode_to_vec());
        if let Some(old) = next.checked_sub(MAX_LOG) {
            batch.delete(Column::Automation, log_key(old));
        }
        batch.put(Column::Automation, LOG_NEXT_KEY, (next + 1).to_be_bytes().to_vec());
        Ok(())
    }

    /// Up to `limit` logged changes from `from` on.
    pub fn changes(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<pb::SyncMessage>, AutomationError> {
        let rows = self.store.range(Column::Automation, &log_key(from), limit)?;
        rows.iter()
            .take_while(|(k, _)| k.first() == Some(&LOG))
            .map(|(_, v)| decode::<pb::SyncMessage>(v.as_slice()))
            .collect()
    }

    /// The oldest sequence the log still holds, and the next one it will number.
    pub fn log_bounds(&self) -> Result<(u64, u64), AutomationError> {
        let next = owner_count(&self.store.get(Column::Automation, LOG_NEXT_KEY)?).max(1);
        Ok((next.saturating_sub(MAX_LOG).max(1), next))
    }

    /// The sequence `operator` acknowledged on this node (0: none).
    pub fn acked(&self, operator: &Address) -> Result<u64, AutomationError> {
        Ok(owner_count(&self.store.get(Column::Automation, &acked_key(operator))?))
    }

    /// Records that `operator` handled every change up to `sequence` (never moves back).
    pub fn ack(&self, operator: &Address, sequence: u64) -> Result<u64, AutomationError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let (_, next) = self.log_bounds()?;
        if sequence >= next {
            return Err(AutomationError::BadRequest(format!(
                "sequence {sequence} is not logged yet (next is {next})"
            )));
        }
        let acked = self.acked(operator)?.max(sequence);
        let mut batch = WriteBatch::new();
        batch.put(Column::Automation, acked_key(operator), acked.to_be_bytes().to_vec());
        self.store.write(batch, Durability::Sync)?;
        Ok(acked)
    }

    /// Writes `owner`'s automation record `task` into `batch`, and holds it in the index of
    /// active automations. The index moves before the batch is written: a finality whose write
    /// fails stops the node (see `Core`), so the index never runs ahead of a live table.
    fn put_record(&self, owner: &Address, task: &pb::AutomationTask, batch: &mut WriteBatch) {
        let Ok(id) = parse_id(&task.id) else { return };
        batch.put(Column::Automation, record_key(owner, &id), task.encode_to_vec());
        self.inner().active.put(task);
    }

    /// Is there an execution of automation `id` with `key`?
    pub(crate) fn has_execution(&self, id: &TaskId, key: u64) -> bool {
        self.store.get(Column::Automation, &execution_key(id, key)).ok().flatten().is_some()
    }

    /// The contracts the active event automations on `chain_id` watch.
    pub(crate) fn watched_contracts(&self, chain_id: u64) -> Vec<[u8; 20]> {
        self.inner().active.contracts(chain_id)
    }

    /// Was automation `id` deleted (a tombstone)?
    pub(crate) fn is_deleted(&self, id: &TaskId) -> Result<bool, AutomationError> {
        Ok(self.store.get(Column::Automation, &tombstone_key(id))?.is_some())
    }

    /// How many automations are active or executing.
    #[cfg(test)]
    pub(crate) fn active_count(&self) -> usize {
        self.inner().active.len()
    }

    /// Execution `key` of `owner`'s automation `id`.
    pub fn get_execution(
        &self,
        owner: &Address,
        id: &TaskId,
        key: u64,
    ) -> Result<pb::Execution, AutomationError> {
        self.get(owner, id)?;
        self.execution(id, key)?
            .ok_or_else(|| AutomationError::NotFound(format!("{} execution {key}", id_hex(id))))
    }

    /// How many final automations `owner` holds.
    pub fn workflow_count(&self, owner: &Address) -> Result<u64, AutomationError> {
        Ok(owner_count(&self.store.get(Column::Automation, &count_key(owner))?))
    }

    /// One page of the firings of `owner`'s automation `id`, oldest first, after the instant
    /// `after`; and the instant to continue after when there are more.
    pub fn list_executions(
        &self,
        owner: &Address,
        id: &TaskId,
        after: Option<u64>,
        page: usize,
    ) -> Result<(Vec<pb::Execution>, Option<u64>), AutomationError> {
        self.get(owner, id)?;
        let page = match page {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let prefix = [&[EXECUTION][..], id].concat();
        let start = match after {
            Some(instant) => execution_key(id, instant.saturating_add(1)),
            None => prefix.clone(),
        };
        let rows = self.store.range(Column::Automation, &start, page + 1)?;
        let mut executions = rows
            .iter()
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| self.decode_execution(v))
            .collect::<Result<Vec<_>, _>>()?;
        let more = executions.len() > page;
        executions.truncate(page);
        let next = if more { executions.last().map(|e| e.key) } else { None };
        Ok((executions, next))
    }
}

/// Moves the send rows of the format before [`SEND`] (empty: not signed yet, the call data in
/// the execution; else the signed transaction) to [`SEND`].
fn migrate_send_rows(store: &dyn Store) -> Result<(), AutomationError> {
    let old = scan(store, OLD_SEND, usize::from(u16::MAX))?;
    if old.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    for (k, value) in &old {
        batch.delete(Column::Automation, k.clone());
        let (Some((id, key)), Some(&step)) = (execution_of_key(k), k.get(41)) else { continue };
        let row = if value.is_empty() {
            let Some(raw) = store.get(Column::Automation, &execution_key(&id, key))? else {
                continue;
            };
            let execution = decode::<pb::Execution>(raw.as_slice())?;
            let calldata = execution.steps.get(usize::from(step)).map(|s| s.output.clone());
            [vec![SEND_UNSIGNED], calldata.unwrap_or_default()].concat()
        } else {
            [&[SEND_SIGNED][..], value].concat()
        };
        batch.put(Column::Automation, send_key(&id, key, step), row);
    }
    store.write(batch, Durability::Sync)?;
    tracing::info!(rows = old.len(), "automation writes to send moved to their new format");
    Ok(())
}

/// A send row's first byte: the call data follows, not signed yet.
pub(crate) const SEND_UNSIGNED: u8 = 0;
/// A send row's first byte: the signed transaction follows.
pub(crate) const SEND_SIGNED: u8 = 1;

/// Forgets execution `key` (the automation's `ordinal`-th) of `task` into `batch`: its record
/// goes, and keys below it are not recorded again (docs/protocol.md, 7.5).
fn forget(
    task: &mut pb::AutomationTask,
    id: &TaskId,
    key: u64,
    ordinal: u64,
    batch: &mut WriteBatch,
) {
    batch.delete(Column::Automation, execution_key(id, key));
    batch.delete(Column::Automation, ordinal_key(id, ordinal));
    let steps_end = [&tx_key(id, key, u8::MAX)[..], &[0]].concat();
    batch.delete_range(Column::Automation, tx_key(id, key, 0), steps_end);
    task.forgotten_executions = task.forgotten_executions.saturating_add(1);
    let kept_from = if key >= execution::MANUAL_KEY {
        &mut task.manual_kept_from
    } else {
        &mut task.fired_kept_from
    };
    *kept_from = (*kept_from).max(key.saturating_add(1));
}

/// The finalized block a firing is recorded from.
struct FinalityPoint<'a> {
    height: u64,
    root: &'a avs_consensus::types::Root,
    /// Its finalization certificate, SSZ.
    certificate: Vec<u8>,
}

/// An owner's stored automation count (absent: none).
fn owner_count(raw: &Option<Vec<u8>>) -> u64 {
    raw.as_deref().and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes)
}

/// A record for a creation (pending until final).
fn pending_record(
    owner: &Address,
    id: &TaskId,
    definition: &pb::TaskDefinition,
    created_at_ms: u64,
) -> pb::AutomationTask {
    pb::AutomationTask {
        id: id.to_vec(),
        owner: owner.to_vec(),
        definition: Some(definition.clone()),
        state: pb::TaskState::Pending.into(),
        created_at_ms,
        updated_at_ms: created_at_ms,
        last_fired_ms: 0,
        firings: 0,
        last_fired_block: 0,
        open_executions: 0,
        ..Default::default()
    }
}

/// The first `limit` entries of [`Column::Automation`] under the one-byte `prefix`.
fn scan(
    store: &dyn Store,
    prefix: u8,
    limit: usize,
) -> Result<Vec<crate::store::Entry>, AutomationError> {
    scan_from(store, prefix, &[prefix], limit)
}

/// Up to `limit` entries under `prefix` from `cursor` on, wrapping around to the first, and
/// `cursor` moved past the last one: repeated calls visit every entry, so no set of entries
/// holds a reader's attention for good.
pub(crate) fn scan_wrapping(
    store: &dyn Store,
    prefix: u8,
    cursor: &mut Vec<u8>,
    limit: usize,
) -> Result<Vec<crate::store::Entry>, AutomationError> {
    let start = if cursor.first() == Some(&prefix) { cursor.clone() } else { vec![prefix] };
    let mut rows = scan_from(store, prefix, &start, limit)?;
    if rows.len() < limit && start != [prefix] {
        let wrapped = scan(store, prefix, limit - rows.len())?;
        rows.extend(wrapped.into_iter().filter(|(k, _)| *k < start));
    }
    *cursor = rows.last().map(|(k, _)| [&k[..], &[0]].concat()).unwrap_or_default();
    Ok(rows)
}

/// The first `limit` entries of [`Column::Automation`] under `prefix` from key `from` on.
fn scan_from(
    store: &dyn Store,
    prefix: u8,
    from: &[u8],
    limit: usize,
) -> Result<Vec<crate::store::Entry>, AutomationError> {
    let rows = store.range(Column::Automation, from, limit)?;
    Ok(rows.into_iter().take_while(|(k, _)| k.first() == Some(&prefix)).collect())
}

#[cfg(test)]
mod tests;
