//! AVS tasks (docs/protocol.md, 7.3): the genesis's task definitions as engine tasks, the pool
//! of submitted results, their validation and their statuses.
//!
//! Data flow: a performer's [`SignedTaskMessage`] arrives over gRPC `SubmitTask`, JSON-RPC
//! `sendTask` or the gossip `task` topic and goes through [`AvsTasks::submit`] (definition,
//! membership, known task, room, signature: cheapest first; then written to the store before
//! it is acknowledged). A `SERVICE` task's validation is asked of this node's validation service
//! by a worker off the consensus loop ([`AvsTasks::spawn_workers`]); the answer is cached and
//! the loop is woken ([`AvsTasks::changed`]) so a proposal waiting on it is judged at once. The
//! engine calls [`AvsTask::perform`] when this node leads (pending tasks its own validation
//! accepted and that are not in flight) and [`AvsTask::validate`] for every proposal; the
//! driver reports finalized blocks ([`AvsTasks::finalized`]) and epoch switches
//! ([`AvsTasks::set_operators`]). gRPC, HTTP and the finalized-task stream read
//! [`AvsTasks::get`], [`AvsTasks::list`] and [`AvsTasks::subscribe`].

pub mod service;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use avs_consensus::operators::KeyTable;
use avs_consensus::signing::{NetworkDigest, task_id};
use avs_consensus::state::child_base;
use avs_consensus::task::{TaskDefinition, TaskRegistry, task_message, verify_task_signature};
use avs_consensus::types::{
    AvsTaskDefinition, ChainState, GenesisConfig, Height, OperatorIndex, Root, SignedTaskMessage,
    TaskResult, Validation, decode, encode,
};
use avs_consensus::{TaskValidity, Verdict};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::core::FinalizedEvent;
use crate::store::{Column, Durability, Store, StoreError, WriteBatch};

/// Most tasks pending or in flight at once.
pub const MAX_PENDING: usize = 4096;
/// Most bytes of pending or in-flight tasks (their SSZ).
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// Most pending or in-flight tasks of one performer.
pub const MAX_PENDING_PER_PERFORMER: usize = 64;
/// Most finished tasks (finalized or rejected) kept in memory for listing; older ones are
/// still answered by id from the store.
pub const MAX_RECENT: usize = 65_536;
/// A client's task still pending this long after its last publish is published again.
pub const REPUBLISH_MS: u64 = 60_000;
/// Tasks published again at one finality at most.
const REPUBLISH_BATCH: usize = 16;
/// A pending task not included within this long is dropped (reported rejected).
pub const PENDING_TTL_MS: u64 = 10 * 60 * 1000;
/// Payload (hex) one listing page carries at most, past its first task: a page fits a response.
pub const PAGE_BYTES: usize = 4 << 20;
/// Finalized tasks a stream subscriber may lag behind before it is dropped.
pub const FEED_CAPACITY: usize = 1024;
/// Back-off of a service that did not answer clearly: first and longest wait.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(8);
/// Service requests in flight at once.
const SERVICE_WORKERS: usize = 4;
/// Service requests waiting for a worker. Beyond it a request is not queued: the task stays
/// unjudged and the next look at it (a proposal, the leader's choice) asks again.
const REQUEST_QUEUE: usize = MAX_PENDING;

const PENDING_PREFIX: &[u8] = b"p/";
const RECORD_PREFIX: &[u8] = b"r/";

/// A task id (`hash_tree_root(TaskMessage)`).
pub type TaskId = Root;

/// Where a task is (docs/protocol.md, 7.3, "Statuses").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TaskStatus {
    /// Accepted, not in a block this node accepted.
    Pending,
    /// In a block this node accepted at `height`, not finalized yet.
    Included { height: Height },
    /// In the finalized block `block_root` at `height`; `certificate` (SSZ, hex) proves it.
    Finalized { height: Height, block_root: String, certificate: String },
    /// This node's validation refused it.
    Rejected { reason: String },
}

impl TaskStatus {
    pub fn name(&self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Included { .. } => "included",
            TaskStatus::Finalized { .. } => "finalized",
            TaskStatus::Rejected { .. } => "rejected",
        }
    }

    fn is_open(&self) -> bool {
        matches!(self, TaskStatus::Pending | TaskStatus::Included { .. })
    }
}

/// One task as the APIs show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// `0x` hex task id.
    pub task_id: String,
    pub task_definition_id: u16,
    pub task_name: String,
    /// The performer's BLS key and operator address, `0x` hex.
    pub performer: String,
    pub performer_address: String,
    /// `0x` hex.
    pub proof_of_task: String,
    pub data: String,
    pub signature: String,
    /// Unix milliseconds this node first accepted it.
    pub received_ms: u64,
    #[serde(flatten)]
    pub status: TaskStatus,
}

/// Why a submission was refused: nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("malformed task submission: {0}")]
    Malformed(String),
    #[error("task definition {0} is not one of this network's AVS tasks")]
    UnknownDefinition(u16),
    #[error("the performer is not in the current operator set")]
    NotMember,
    #[error("the performer's signature does not verify")]
    BadSignature,
    #[error("the task pool is full ({0}); retry later")]
    Full(String),
    #[error("too many submissions to verify now ({0}); retry later")]
    Busy(String),
    #[error("store error: {0}")]
    Store(String),
}

impl SubmitError {
    /// The gossip verdict (docs/protocol.md, 7.3, "Submission").
    pub fn verdict(&self) -> Verdict {
        match self {
            SubmitError::Malformed(_)
            | SubmitError::UnknownDefinition(_)
            | SubmitError::BadSignature => Verdict::Reject,
            SubmitError::NotMember
            | SubmitError::Full(_)
            | SubmitError::Busy(_)
            | SubmitError::Store(_) => Verdict::Ignore,
        }
    }
}

/// A submission accepted (or already known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: TaskId,
    /// False when the task was already known: nothing changed.
    pub new: bool,
    pub status: TaskStatus,
}

/// Where a submission came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client of this node (gRPC, JSON-RPC): fsynced before the answer, then gossiped.
    Client,
    /// A peer, over gossip (already on the mesh).
    Gossip,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub task_definition_id: Option<u16>,
    /// A status name (`pending`, `included`, `finalized`, `rejected`).
    pub status: Option<String>,
    /// Only tasks received strictly before this (unix ms, then id): the page token.
    pub before: Option<(u64, TaskId)>,
    pub limit: usize,
}

/// The statuses a listing may ask for.
pub const STATUS_NAMES: [&str; 4] = ["pending", "included", "finalized", "rejected"];
/// Largest listing page.
pub const MAX_PAGE: usize = 1000;
/// A listing page when the client names no size.
pub const DEFAULT_PAGE: usize = 100;

impl ListFilter {
    /// A listing's filter from what a client sent: a status name, if any, of
    /// [`STATUS_NAMES`], and the page token of a previous page (empty for the first).
    pub fn parse(
        task_definition_id: Option<u16>,
        status: Option<&str>,
        page_token: &str,
        limit: usize,
    ) -> Result<Self, String> {
        if let Some(s) = status
            && !STATUS_NAMES.contains(&s)
        {
            return Err(format!("status {s:?}: expected pending, included, finalized or rejected"));
        }
        let before = match page_token {
            "" => None,
            token => {
                let malformed = || "malformed page token".to_owned();
                let (ms, id) = token.split_once(':').ok_or_else(malformed)?;
                Some((
                    ms.parse().map_err(|_| malformed())?,
                    parse_task_id(id).ok_or_else(malformed)?,
                ))
            }
        };
        Ok(Self { task_definition_id, status: status.map(str::to_owned), before, limit })
    }
}

/// The node's settings for its AVS tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvsSettings {
    /// Each `SERVICE` task's validation service URL, by task id.
    pub services: BTreeMap<u16, String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Definition {
    name: String,
    validation: Validation,
}

struct Entry {
    signed: SignedTaskMessage,
    address: [u8; 20],
    received_ms: u64,
    status: TaskStatus,
    bytes: usize,
    /// When this node last published it, for the tasks it took from its own clients (or read
    /// back at start): those it publishes again while they are pending. `None`: a peer's.
    published_ms: Option<u64>,
}

/// What this node's validation said of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judged {
    Valid,
    Invalid(String),
    /// Asked, no clear answer yet: retried after `retry`.
    Waiting {
        reason: String,
        retry: Duration,
    },
}

#[derive(Default)]
struct Inner {
    table: Option<Arc<KeyTable>>,
    /// Open tasks (pending or in flight) and the recent finished ones.
    entries: HashMap<TaskId, Entry>,
    /// Open tasks in arrival order (the order a leader includes them).
    queue: BTreeMap<(u64, TaskId), ()>,
    /// Finished tasks, oldest first, for the memory bound.
    finished: VecDeque<TaskId>,
    open_bytes: usize,
    per_performer: HashMap<[u8; 48], usize>,
    judged: HashMap<TaskId, Judged>,
    /// Tasks in flight, by the height of the block that holds them.
    in_flight: BTreeMap<Height, Vec<TaskId>>,
}

struct Request {
    id: TaskId,
    url: String,
    body: service::ValidationRequest,
}

/// The AVS tasks of one node.
pub struct AvsTasks {
    digest: NetworkDigest,
    definitions: BTreeMap<u16, Definition>,
    settings: AvsSettings,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    requests: mpsc::Sender<Request>,
    requests_rx: Mutex<Option<mpsc::Receiver<Request>>>,
    gossip: mpsc::Sender<Vec<u8>>,
    gossip_rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    changed: Notify,
    feed: broadcast::Sender<Arc<TaskView>>,
    /// The pairings clients' submissions may cost (gossip is bounded by the validation slots).
    budget: crate::grpc::budget::VerifyBudget,
    metrics: AvsMetrics,
}

/// The task pool's metrics (`avs_node_avs_tasks*`).
#[derive(Clone, Default)]
struct AvsMetrics {
    /// Open tasks by status (`pending`, `included`), set after each change.
    open: prometheus_client::metrics::family::Family<
        StatusLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
    finalized: prometheus_client::metrics::counter::Counter,
    rejected: prometheus_client::metrics::counter::Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

impl AvsTasks {
    /// A node's AVS tasks when its network declares none (tests of other parts).
    pub fn none(store: Arc<dyn Store>) -> Arc<Self> {
        Self::open(&GenesisConfig::default(), [0; 4], AvsSettings::default(), store)
            .expect("an empty genesis has no task definition to refuse")
    }

    /// The AVS tasks of `genesis`, with pending tasks read back from `store`.
    pub fn open(
        genesis: &GenesisConfig,
        digest: NetworkDigest,
        settings: AvsSettings,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut definitions = BTreeMap::new();
        for d in genesis.task_definitions.iter() {
            definitions.insert(d.id, definition(d)?);
        }
        for id in settings.services.keys() {
            anyhow::ensure!(
                definitions.get(id).is_some_and(|d| d.validation == Validation::Service),
                "a validation service is configured for task {id}, which is not a `service` \
                 task of this network's genesis"
            );
        }
        for (id, d) in &definitions {
            if d.validation == Validation::Service && !settings.services.contains_key(id) {
                tracing::warn!(
                    task_id = id,
                    name = %d.name,
                    "no validation service configured for this AVS task (--task-service \
                     {id}=URL): this node withholds its vote on every block that carries one"
                );
            }
        }
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (gossip, gossip_rx) = mpsc::channel(256);
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let tasks = Arc::new(Self {
            digest,
            definitions,
            settings,
            store,
            inner: Mutex::new(Inner::default()),
            requests,
            requests_rx: Mutex::new(Some(requests_rx)),
            gossip,
            gossip_rx: Mutex::new(Some(gossip_rx)),
            changed: Notify::new(),
            feed,
            // About 1 ms a pairing: 64 a second is a few percent of a core; one performer may
            // have 16 a second verified, in bursts of 64 (its pending tasks are capped at 64).
            budget: crate::grpc::budget::VerifyBudget::new(
                crate::grpc::budget::Rate { burst: 128, per_second: 64 },
                crate::grpc::budget::Rate { burst: 64, per_second: 16 },
                std::time::Instant::now(),
            ),
            metrics: AvsMetrics::default(),
        });
        tasks.reload()?;
        Ok(tasks)
    }

    /// Registers the pool's metrics (open tasks by status, finalized and rejected counts).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("avs_node");
        r.register(
            "avs_tasks_open",
            "AVS tasks in this node's pool, by status (pending, included)",
            self.metrics.open.clone(),
        );
        r.register(
            "avs_tasks_finalized",
            "AVS tasks this node saw finalized",
            self.metrics.finalized.clone(),
        );
        r.register(
            "avs_tasks_rejected",
            "AVS tasks this node's validation refused, or that expired or lost their performer",
            self.metrics.rejected.clone(),
        );
        self.count_open();
    }

    /// Sets the open-task gauges from the pool.
    fn count_open(&self) {
        let (pending, included) = self.open_counts();
        for (status, n) in [("pending", pending), ("included", included)] {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.metrics.open.get_or_create(&StatusLabel { status }).set(n);
        }
    }

    /// Engine tasks, one per definition, registered in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut TaskRegistry) -> anyhow::Result<()> {
        for id in self.definitions.keys() {
            registry
                .register(Arc::new(AvsTask { id: *id, tasks: Arc::clone(self) }))
                .map_err(|e| anyhow::anyhow!("registering AVS task {id}: {e}"))?;
        }
        Ok(())
    }

    /// The definitions, for the APIs: (id, name, validation).
    pub fn definitions(&self) -> Vec<(u16, String, &'static str)> {
        self.definitions.iter().map(|(id, d)| (*id, d.name.clone(), d.validation.name())).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the pending tasks back (after a restart nothing acknowledged is lost).
    fn reload(&self) -> anyhow::Result<()> {
        let mut start = PENDING_PREFIX.to_vec();
        loop {
            let page = self.store.range(Column::Tasks, &start, 256)?;
            let mut last = None;
            for (key, value) in page.iter().take_while(|(k, _)| k.starts_with(PENDING_PREFIX)) {
                last = Some(key.clone());
                let Some((received_ms, signed)) = decode_pending(value) else {
                    tracing::warn!("a stored pending task does not decode; skipped");
                    continue;
                };
                let Ok(id) = task_id(&signed.message) else { continue };
                if self.stored_record(&id).is_some() {
                    // Finished while its submission was being written: not pending.
                    let mut batch = WriteBatch::new();
                    batch.delete(Column::Tasks, key.clone());
                    self.store.write(batch, Durability::Buffered)?;
                    continue;
                }
                let mut inner = self.lock();
                let bytes = value.len();
                // Published again soon: the first publish may not have left before the stop.
                insert_open(&mut inner, id, signed, [0; 20], received_ms, bytes, Some(0));
            }
            match last {
                Some(mut key) if page.len() == 256 => {
                    key.push(0);
                    start = key;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// The current epoch's operator set (at start and at each epoch switch): tasks of
    /// performers no longer in it are dropped and reported rejected.
    pub fn set_operators(&self, table: Arc<KeyTable>) {
        let mut dropped = Vec::new();
        {
            let mut inner = self.lock();
            let ids: Vec<TaskId> = inner.queue.keys().map(|(_, id)| *id).collect();
            for id in ids {
                let Some(entry) = inner.entries.get_mut(&id) else { continue };
                let key: [u8; 48] =
                    entry.signed.message.performer.as_ref().try_into().unwrap_or([0; 48]);
                match table.index_of(&key) {
                    Some(index) => {
                        if let Some(op) = table
                            .operator_set()
                            .operators
                            .get(index.position().unwrap_or(usize::MAX))
                        {
                            entry.address = op.address;
                        }
                    }
                    None if matches!(entry.status, TaskStatus::Pending) => dropped.push(id),
                    None => {}
                }
            }
            inner.table = Some(table);
        }
        for id in dropped {
            self.finish(
                id,
                TaskStatus::Rejected { reason: "performer left the operator set".into() },
            );
        }
    }

    /// Takes a performer's submission (docs/protocol.md, 7.3, "Submission").
    pub fn submit(
        &self,
        signed: SignedTaskMessage,
        origin: Origin,
        now_ms: u64,
    ) -> Result<Submitted, SubmitError> {
        let message = &signed.message;
        let definition = self
            .definitions
            .get(&message.task_definition_id)
            .ok_or(SubmitError::UnknownDefinition(message.task_definition_id))?
            .clone();
        let id = task_id(message).map_err(|e| SubmitError::Malformed(e.to_string()))?;
        let performer: [u8; 48] = message
            .performer
            .as_ref()
            .try_into()
            .map_err(|_| SubmitError::Malformed("key".into()))?;
        let address = {
            let inner = self.lock();
            if let Some(entry) = inner.entries.get(&id) {
                return Ok(Submitted { task_id: id, new: false, status: entry.status.clone() });
            }
            let table = inner.table.clone().ok_or(SubmitError::NotMember)?;
            let index = table.index_of(&performer).ok_or(SubmitError::NotMember)?;
            let address = table
                .operator_set()
                .operators
                .get(index.position().unwrap_or(usize::MAX))
                .map(|op| op.address)
                .ok_or(SubmitError::NotMember)?;
            room(&inner, &performer)?;
            address
        };
        if let Some(record) = self.stored_record(&id) {
            return Ok(Submitted { task_id: id, new: false, status: record.status });
        }
        // Only what passed the cheap checks costs a pairing; a client's share of them is bounded
        // (the performer key's first 20 bytes name its bucket).
        if origin == Origin::Client {
            let bucket: [u8; 20] =
                performer.get(..20).and_then(|k| k.try_into().ok()).unwrap_or([0; 20]);
            self.budget
                .try_take(bucket, std::time::Instant::now())
                .map_err(|e| SubmitError::Busy(e.to_string()))?;
        }
        if !verify_task_signature(self.digest, message, signed.signature.as_ref()) {
            return Err(SubmitError::BadSignature);
        }
        let value = encode_pending(now_ms, &signed).map_err(SubmitError::Malformed)?;
        let bytes = value.len();
        let mut batch = WriteBatch::new();
        batch.put(Column::Tasks, pending_key(&id), value);
        let durability = match origin {
            Origin::Client => Durability::Sync,
            Origin::Gossip => Durability::Buffered,
        };
        // Written before it is acknowledged, outside the pool's lock: the consensus loop takes
        // that lock and must not wait for a client's fsync. If the task finished meanwhile (a
        // proposal carried it), the entry written here is stale and dropped at the next start.
        self.store.write(batch, durability).map_err(|e| SubmitError::Store(e.to_string()))?;
        {
            let mut inner = self.lock();
            if let Some(entry) = inner.entries.get(&id) {
                return Ok(Submitted { task_id: id, new: false, status: entry.status.clone() });
            }
            let published = (origin == Origin::Client).then_some(now_ms);
            insert_open(&mut inner, id, signed.clone(), address, now_ms, bytes, published);
        }
        self.count_open();
        tracing::debug!(task_id = %hex0x(&id), definition = message.task_definition_id, "task accepted");
        if origin == Origin::Client
            && let Ok(bytes) = encode(&signed)
            && self.gossip.try_send(bytes).is_err()
        {
            tracing::warn!(
                "task gossip queue full: the task is kept here and included by this node"
            );
        }
        // Judge it now, so the answer is ready when a proposal carries it.
        if let TaskValidity::Invalid(reason) = self.judge(id, &definition, &signed, address) {
            self.finish(id, TaskStatus::Rejected { reason: reason.clone() });
            return Ok(Submitted {
                task_id: id,
                new: true,
                status: TaskStatus::Rejected { reason },
            });
        }
        Ok(Submitted { task_id: id, new: true, status: TaskStatus::Pending })
    }

    /// A submission received over gossip: its verdict.
    pub fn validate_gossip(&self, data: &[u8], now_ms: u64) -> Result<(), (Verdict, String)> {
        let signed: SignedTaskMessage =
            decode(data).map_err(|e| (Verdict::Reject, e.to_string()))?;
        match self.submit(signed, Origin::Gossip, now_ms) {
            // Refused by this node's validation: not forwarded (the sender is not at fault: its
            // own service may judge otherwise).
            Ok(Submitted { status: TaskStatus::Rejected { reason }, .. }) => {
                Err((Verdict::Ignore, reason))
            }
            Ok(Submitted { new: true, .. }) => Ok(()),
            Ok(Submitted { new: false, .. }) => Err((Verdict::Ignore, "known task".into())),
            Err(e) => Err((e.verdict(), e.to_string())),
        }
    }

    /// This node's validation of a task: cached, computed (SHA256) or asked of the service
    /// (NotYet until it answers).
    fn judge(
        &self,
        id: TaskId,
        definition: &Definition,
        signed: &SignedTaskMessage,
        address: [u8; 20],
    ) -> TaskValidity {
        let message = &signed.message;
        match definition.validation {
            Validation::Sha256 => {
                if message.proof_of_task.as_ref()
                    == Sha256::digest(message.data.as_ref()).as_slice()
                {
                    TaskValidity::Valid
                } else {
                    TaskValidity::Invalid("proof_of_task is not the SHA-256 of data".into())
                }
            }
            Validation::Service => {
                let Some(url) = self.settings.services.get(&message.task_definition_id) else {
                    return TaskValidity::NotYet("no validation service configured".into());
                };
                let mut inner = self.lock();
                match inner.judged.get(&id) {
                    Some(Judged::Valid) => return TaskValidity::Valid,
                    Some(Judged::Invalid(r)) => return TaskValidity::Invalid(r.clone()),
                    Some(Judged::Waiting { reason, .. }) => {
                        return TaskValidity::NotYet(reason.clone());
                    }
                    None => {}
                }
                inner.judged.insert(
                    id,
                    Judged::Waiting {
                        reason: "asking the validation service".into(),
                        retry: RETRY_FIRST,
                    },
                );
                drop(inner);
                let body = service::ValidationRequest {
                    task_definition_id: message.task_definition_id,
                    proof_of_task: hex0x(&message.proof_of_task),
                    data: hex0x(&message.data),
                    performer: hex0x(&address),
                    task_id: hex0x(&id),
                };
                self.ask(Request { id, url: url.clone(), body });
                TaskValidity::NotYet("asking the validation service".into())
            }
        }
    }

    /// Queues a request for the workers; when the queue is full the task is left unjudged, so
    /// the next look at it asks again.
    fn ask(&self, request: Request) {
        let id = request.id;
        if self.requests.try_send(request).is_err() {
            tracing::debug!(task_id = %hex0x(&id), "validation requests queue full");
            self.lock().judged.remove(&id);
        }
    }

    /// Records a service's answer; a NotYet is asked again after a back-off.
    fn answered(&self, request: Request, validity: TaskValidity) -> Option<(Request, Duration)> {
        let mut inner = self.lock();
        // A task that finished meanwhile (or that only a proposal carried and that is gone) is
        // not asked about again.
        if !inner.entries.get(&request.id).is_some_and(|e| e.status.is_open()) {
            inner.judged.remove(&request.id);
            return None;
        }
        let retry = match inner.judged.get(&request.id) {
            Some(Judged::Waiting { retry, .. }) => *retry,
            _ => RETRY_FIRST,
        };
        match validity {
            TaskValidity::Valid => {
                inner.judged.insert(request.id, Judged::Valid);
            }
            TaskValidity::Invalid(reason) => {
                inner.judged.insert(request.id, Judged::Invalid(reason.clone()));
                let open =
                    inner.entries.get(&request.id).is_some_and(|e| e.status == TaskStatus::Pending);
                drop(inner);
                if open {
                    self.finish(request.id, TaskStatus::Rejected { reason });
                }
                self.changed.notify_one();
                return None;
            }
            TaskValidity::NotYet(reason) => {
                tracing::debug!(task_id = %hex0x(&request.id), %reason, "validation service: no answer yet");
                let next = (retry * 2).min(RETRY_MAX);
                inner.judged.insert(request.id, Judged::Waiting { reason, retry: next });
                return Some((request, retry));
            }
        }
        drop(inner);
        self.changed.notify_one();
        None
    }

    /// Wakes when a verdict arrived: the consensus loop re-judges what waited on it.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Starts the validation-service workers and the gossip publisher.
    pub fn spawn_workers(
        self: &Arc<Self>,
        net: avs_p2p::NetworkHandle,
        topic: avs_p2p::GossipTopic,
        shutdown: CancellationToken,
    ) {
        self.spawn_validation(shutdown.clone());
        self.spawn_publisher(net, topic, shutdown);
    }

    /// Starts the workers that ask the validation services (at most [`SERVICE_WORKERS`] at
    /// once), retrying unclear answers with back-off.
    pub fn spawn_validation(self: &Arc<Self>, shutdown: CancellationToken) {
        let rx = self.requests_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut rx) = rx {
            let tasks = Arc::clone(self);
            let timeout = self.settings.timeout.unwrap_or(service::DEFAULT_TIMEOUT);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let permits = Arc::new(tokio::sync::Semaphore::new(SERVICE_WORKERS));
                loop {
                    let request = tokio::select! {
                        () = stop.cancelled() => return,
                        Some(request) = rx.recv() => request,
                        else => return,
                    };
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                    let tasks = Arc::clone(&tasks);
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let url = request.url.clone();
                        let body = request.body.clone();
                        let validity =
                            tokio::task::spawn_blocking(move || service::ask(&url, &body, timeout))
                                .await
                                .unwrap_or_else(|e| TaskValidity::NotYet(e.to_string()));
                        drop(permit);
                        if let Some((request, wait)) = tasks.answered(request, validity) {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = tokio::time::sleep(wait) => tasks.ask(request),
                            }
                        }
                    });
                }
            });
        }
    }

    /// Starts the task that publishes this node's clients' submissions on the `task` topic.
    fn spawn_publisher(
        &self,
        net: avs_p2p::NetworkHandle,
        topic: avs_p2p::GossipTopic,
        shutdown: CancellationToken,
    ) {
        let rx = self.gossip_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut rx) = rx {
            tokio::spawn(async move {
                loop {
                    let bytes = tokio::select! {
                        () = shutdown.cancelled() => return,
                        Some(bytes) = rx.recv() => bytes,
                        else => return,
                    };
                    if let Err(e) = net.publish(topic, bytes).await {
                        // No peers yet: the task is kept here and this node includes it.
                        tracing::debug!(error = %e, "publishing a task failed");
                    }
                }
            });
        }
    }

    /// A block was finalized: its tasks are finalized, tasks in flight at its height or below
    /// that it does not hold are pending again.
    pub fn finalized(&self, event: &FinalizedEvent) {
        let block = &event.block;
        let status = finalized_status(block, &event.root, &event.certificate);
        for (id, signed, address) in self.block_tasks(block, &event.operators) {
            let mut inner = self.lock();
            if !inner.entries.contains_key(&id) {
                // Finalized without this node having seen its submission: keep its record.
                insert_open(&mut inner, id, signed, address, crate::node::now_ms(), 0, None);
            }
            drop(inner);
            self.finish(id, status.clone());
        }
        self.expire(crate::node::now_ms());
        self.republish(crate::node::now_ms());
        let mut inner = self.lock();
        let stale: Vec<Height> = inner.in_flight.range(..=block.height).map(|(h, _)| *h).collect();
        for height in stale {
            for id in inner.in_flight.remove(&height).unwrap_or_default() {
                if let Some(entry) = inner.entries.get_mut(&id)
                    && matches!(entry.status, TaskStatus::Included { .. })
                {
                    entry.status = TaskStatus::Pending;
                }
            }
        }
        drop(inner);
        self.count_open();
    }

    /// Pending tasks not included within [`PENDING_TTL_MS`] are dropped and reported rejected,
    /// so tasks the network does not take (a split verdict, a service that never answers) do
    /// not hold the pool's room for ever.
    fn expire(&self, now_ms: u64) {
        let expired: Vec<TaskId> = {
            let inner = self.lock();
            inner
                .queue
                .keys()
                .take_while(|(received, _)| received.saturating_add(PENDING_TTL_MS) < now_ms)
                .filter(|(_, id)| {
                    inner.entries.get(id).is_some_and(|e| e.status == TaskStatus::Pending)
                })
                .map(|(_, id)| *id)
                .collect()
        };
        for id in expired {
            let reason = format!("not included within {} s", PENDING_TTL_MS / 1000);
            self.finish(id, TaskStatus::Rejected { reason });
        }
    }

    /// Publishes again, at most [`REPUBLISH_BATCH`] at a time, this node's clients' tasks that
    /// are still pending [`REPUBLISH_MS`] after their last publish: a publish that found no
    /// peer, or was lost to a restart, must not leave the task to this node alone (which may
    /// never lead).
    fn republish(&self, now_ms: u64) {
        let mut inner = self.lock();
        let due: Vec<TaskId> = inner
            .queue
            .keys()
            .map(|(_, id)| *id)
            .filter(|id| {
                inner.entries.get(id).is_some_and(|e| {
                    e.status == TaskStatus::Pending
                        && e.published_ms.is_some_and(|t| t.saturating_add(REPUBLISH_MS) < now_ms)
                })
            })
            .take(REPUBLISH_BATCH)
            .collect();
        for id in due {
            let Some(entry) = inner.entries.get_mut(&id) else { continue };
            if let Ok(bytes) = encode(&entry.signed)
                && self.gossip.try_send(bytes).is_ok()
            {
                entry.published_ms = Some(now_ms);
            }
        }
    }

    /// The store operations that record `block`'s AVS tasks as finalized (performers resolved
    /// in `set`, the block's epoch's), for the batch that writes the finality itself: a crash
    /// between the two would otherwise bring a finalized task back as pending.
    pub fn record_finality(
        &self,
        block: &avs_consensus::types::Block,
        root: &Root,
        certificate: &avs_consensus::types::Certificate,
        set: &avs_consensus::types::OperatorSet,
        batch: &mut WriteBatch,
    ) {
        let status = finalized_status(block, root, certificate);
        for (id, signed, address) in self.block_tasks(block, set) {
            let received_ms =
                self.lock().entries.get(&id).map_or_else(crate::node::now_ms, |e| e.received_ms);
            let entry = Entry {
                signed,
                address,
                received_ms,
                status: status.clone(),
                bytes: 0,
                published_ms: None,
            };
            batch.delete(Column::Tasks, pending_key(&id));
            match serde_json::to_vec(&self.view_of(id, &entry)) {
                Ok(json) => batch.put(Column::Tasks, record_key(&id), json),
                Err(e) => tracing::error!(error = %e, "cannot encode a task record"),
            }
        }
    }

    /// The AVS tasks of `block` (performers resolved in `set`, the block's epoch's): id, the
    /// performer's signed message and its address.
    fn block_tasks(
        &self,
        block: &avs_consensus::types::Block,
        set: &avs_consensus::types::OperatorSet,
    ) -> Vec<(TaskId, SignedTaskMessage, [u8; 20])> {
        block
            .body
            .tasks
            .iter()
            .filter(|r| self.definitions.contains_key(&r.task_definition_id))
            .filter_map(|result| {
                let op = set.operators.get(result.performer_index.position()?)?;
                let message = task_message(result, op.pubkey.clone());
                let id = task_id(&message).ok()?;
                Some((
                    id,
                    SignedTaskMessage { message, signature: result.signature.clone() },
                    op.address,
                ))
            })
            .collect()
    }

    /// Moves a task to a finished status: stored, out of the pool, announced if finalized.
    fn finish(&self, id: TaskId, status: TaskStatus) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(&id) else { return };
        if !entry.status.is_open() {
            return;
        }
        let was_open_bytes = entry.bytes;
        entry.status = status.clone();
        let key: [u8; 48] = entry.signed.message.performer.as_ref().try_into().unwrap_or([0; 48]);
        let received = entry.received_ms;
        let view = self.view_of(id, entry);
        // The payload stays in the store only (a finished task is read back from there), so
        // memory holds summaries of the recent ones, not up to 576 KiB each.
        entry.signed.message.proof_of_task = Default::default();
        entry.signed.message.data = Default::default();
        entry.bytes = 0;
        inner.queue.remove(&(received, id));
        inner.open_bytes = inner.open_bytes.saturating_sub(was_open_bytes);
        if let Some(n) = inner.per_performer.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_performer.remove(&key);
            }
        }
        inner.judged.remove(&id);
        inner.finished.push_back(id);
        while inner.finished.len() > MAX_RECENT {
            if let Some(old) = inner.finished.pop_front() {
                inner.entries.remove(&old);
            }
        }
        let mut batch = WriteBatch::new();
        batch.delete(Column::Tasks, pending_key(&id));
        // A refused task's record keeps no payload: refused submissions must not fill the disk.
        let stored = match &status {
            TaskStatus::Rejected { .. } => {
                TaskView { proof_of_task: "0x".into(), data: "0x".into(), ..view.clone() }
            }
            _ => view.clone(),
        };
        match serde_json::to_vec(&stored) {
            Ok(json) => batch.put(Column::Tasks, record_key(&id), json),
            Err(e) => tracing::error!(error = %e, "cannot encode a task record"),
        }
        if let Err(e) = self.store.write(batch, Durability::Buffered) {
            tracing::error!(error = %e, "cannot store a task's status");
        }
        drop(inner);
        self.count_open();
        match &status {
            TaskStatus::Finalized { height, .. } => {
                self.metrics.finalized.inc();
                tracing::info!(task_id = %view.task_id, definition = view.task_definition_id, %height, "AVS task finalized");
                let _ = self.feed.send(Arc::new(view));
            }
            TaskStatus::Rejected { reason } => {
                self.metrics.rejected.inc();
                tracing::info!(task_id = %view.task_id, definition = view.task_definition_id, %reason, "AVS task rejected");
            }
            _ => {}
        }
    }

    fn view_of(&self, id: TaskId, entry: &Entry) -> TaskView {
        let m = &entry.signed.message;
        TaskView {
            task_id: hex0x(&id),
            task_definition_id: m.task_definition_id,
            task_name: self
                .definitions
                .get(&m.task_definition_id)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            performer: hex0x(&m.performer),
            performer_address: hex0x(&entry.address),
            proof_of_task: hex0x(&m.proof_of_task),
            data: hex0x(&m.data),
            signature: hex0x(&entry.signed.signature),
            received_ms: entry.received_ms,
            status: entry.status.clone(),
        }
    }

    fn stored_record(&self, id: &TaskId) -> Option<TaskView> {
        let raw = self.store.get(Column::Tasks, &record_key(id)).ok()??;
        serde_json::from_slice(&raw).ok()
    }

    /// One task by id: an open one from the pool, a finished one from its stored record.
    pub fn get(&self, id: &TaskId) -> Option<TaskView> {
        let summary = {
            let inner = self.lock();
            match inner.entries.get(id) {
                Some(entry) if entry.status.is_open() => return Some(self.view_of(*id, entry)),
                Some(entry) => Some(self.view_of(*id, entry)),
                None => None,
            }
        };
        self.stored_record(id).or(summary)
    }

    /// Tasks held in memory (every open one and the [`MAX_RECENT`] latest finished), newest
    /// first, at most `filter.limit` of them and, past the first, at most [`PAGE_BYTES`] of
    /// payload; true when more tasks match.
    pub fn list(&self, filter: &ListFilter) -> (Vec<TaskView>, bool) {
        let (ids, mut more): (Vec<TaskId>, bool) = {
            let inner = self.lock();
            let mut all: Vec<(u64, TaskId)> = inner
                .entries
                .iter()
                .filter(|(id, e)| {
                    filter
                        .task_definition_id
                        .is_none_or(|d| d == e.signed.message.task_definition_id)
                        && filter.status.as_deref().is_none_or(|s| s == e.status.name())
                        && filter.before.is_none_or(|b| (e.received_ms, **id) < b)
                })
                .map(|(id, e)| (e.received_ms, *id))
                .collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            let more = all.len() > filter.limit;
            (all.into_iter().take(filter.limit).map(|(_, id)| id).collect(), more)
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut bytes = 0usize;
        for id in ids {
            let Some(view) = self.get(&id) else { continue };
            bytes = bytes.saturating_add(view.data.len()).saturating_add(view.proof_of_task.len());
            if bytes > PAGE_BYTES && !out.is_empty() {
                more = true;
                break;
            }
            out.push(view);
        }
        (out, more)
    }

    /// One page of tasks and the token of the next page (empty at the end): the last task's
    /// receipt time and id.
    pub fn page(&self, filter: &ListFilter) -> (Vec<TaskView>, String) {
        let (tasks, more) = self.list(filter);
        let next = match (more, tasks.last()) {
            (true, Some(last)) => format!("{}:{}", last.received_ms, last.task_id),
            _ => String::new(),
        };
        (tasks, next)
    }

    /// Finalized tasks as they are finalized.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TaskView>> {
        self.feed.subscribe()
    }

    /// Counts of open tasks (pending, included).
    pub fn open_counts(&self) -> (usize, usize) {
        let inner = self.lock();
        inner.queue.keys().fold((0, 0), |(p, i), (_, id)| {
            match inner.entries.get(id).map(|e| &e.status) {
                Some(TaskStatus::Pending) => (p + 1, i),
                Some(TaskStatus::Included { .. }) => (p, i + 1),
                _ => (p, i),
            }
        })
    }

    /// The engine's validation of one result (the registry checked its performer already).
    fn validate_result(&self, id: u16, parent: &ChainState, result: &TaskResult) -> TaskValidity {
        let Some(definition) = self.definitions.get(&id) else {
            return TaskValidity::Invalid(format!("unknown task id {id}"));
        };
        let Ok(base) = child_base(parent) else {
            return TaskValidity::Invalid("epoch overflow".into());
        };
        let Some(op) =
            result.performer_index.position().and_then(|i| base.operators.operators.get(i))
        else {
            return TaskValidity::Invalid("performer not in the set".into());
        };
        let message = task_message(result, op.pubkey.clone());
        let Ok(task) = task_id(&message) else { return TaskValidity::Invalid("task id".into()) };
        match self.get(&task).map(|view| view.status) {
            Some(TaskStatus::Finalized { height, .. }) => {
                return TaskValidity::Invalid(format!("task already finalized at height {height}"));
            }
            // This node's validation refused it (the verdict is kept with the record).
            Some(TaskStatus::Rejected { reason }) => return TaskValidity::Invalid(reason),
            _ => {}
        }
        let signed = SignedTaskMessage { message, signature: result.signature.clone() };
        let validity = self.judge(task, definition, &signed, op.address);
        if validity == TaskValidity::Valid {
            let height = parent.height.next();
            let mut inner = self.lock();
            if !inner.entries.contains_key(&task) {
                // Seen first in a proposal: held like a submission from now on.
                let bytes = encode(&signed).map_or(0, |b| b.len());
                let now = crate::node::now_ms();
                insert_open(&mut inner, task, signed, op.address, now, bytes, None);
            }
            if let Some(entry) = inner.entries.get_mut(&task)
                && entry.status == TaskStatus::Pending
            {
                entry.status = TaskStatus::Included { height };
                inner.in_flight.entry(height).or_default().push(task);
            }
            drop(inner);
            self.count_open();
        }
        validity
    }

    /// The leader's choice: pending tasks of `id`, oldest first, that this node's validation
    /// accepts, whose performer is in the block's set.
    fn perform_for(&self, id: u16, parent: &ChainState) -> Vec<TaskResult> {
        let Some(definition) = self.definitions.get(&id) else { return Vec::new() };
        let Ok(base) = child_base(parent) else { return Vec::new() };
        let candidates: Vec<(TaskId, SignedTaskMessage, [u8; 20])> = {
            let inner = self.lock();
            inner
                .queue
                .keys()
                .filter_map(|(_, tid)| inner.entries.get(tid).map(|e| (tid, e)))
                .filter(|(_, e)| {
                    e.status == TaskStatus::Pending && e.signed.message.task_definition_id == id
                })
                .take(avs_consensus::types::MAX_TASKS_PER_BLOCK * 4)
                .map(|(tid, e)| (*tid, e.signed.clone(), e.address))
                .collect()
        };
        let mut out = Vec::new();
        for (tid, signed, address) in candidates {
            if out.len() == avs_consensus::types::MAX_TASKS_PER_BLOCK {
                break;
            }
            let Some(index) = base
                .operators
                .operators
                .iter()
                .position(|op| op.pubkey == signed.message.performer)
            else {
                continue;
            };
            if self.judge(tid, definition, &signed, address) != TaskValidity::Valid {
                continue;
            }
            out.push(TaskResult {
                task_definition_id: id,
                performer_index: OperatorIndex::at(index),
                proof_of_task: signed.message.proof_of_task,
                data: signed.message.data,
                signature: signed.signature,
            });
        }
        out
    }
}

impl std::fmt::Debug for AvsTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pending, included) = self.open_counts();
        f.debug_struct("AvsTasks")
            .field("definitions", &self.definitions.keys().collect::<Vec<_>>())
            .field("pending", &pending)
            .field("included", &included)
            .finish_non_exhaustive()
    }
}

/// One AVS task definition as the engine sees it.
pub struct AvsTask {
    id: u16,
    tasks: Arc<AvsTasks>,
}

impl TaskDefinition for AvsTask {
    fn id(&self) -> u16 {
        self.id
    }
    fn validate(&self, parent: &ChainState, result: &TaskResult, _now_ms: u64) -> TaskValidity {
        self.tasks.validate_result(self.id, parent, result)
    }
    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        // No effect on the state (docs/protocol.md, 7.3): the block root commits to it.
        Ok(())
    }
    fn perform(&self, parent: &ChainState, _: OperatorIndex, _: u64) -> Vec<TaskResult> {
        self.tasks.perform_for(self.id, parent)
    }
}

fn definition(d: &AvsTaskDefinition) -> anyhow::Result<Definition> {
    Ok(Definition {
        name: String::from_utf8(d.name.to_vec()).map_err(|_| anyhow::anyhow!("task name"))?,
        validation: Validation::from_u8(d.validation)
            .ok_or_else(|| anyhow::anyhow!("task {}: unknown validation {}", d.id, d.validation))?,
    })
}

/// The status of a task in the finalized `block` (`root`), proved by `certificate`.
fn finalized_status(
    block: &avs_consensus::types::Block,
    root: &Root,
    certificate: &avs_consensus::types::Certificate,
) -> TaskStatus {
    TaskStatus::Finalized {
        height: block.height,
        block_root: hex0x(root),
        certificate: encode(certificate).map(|b| hex0x(&b)).unwrap_or_default(),
    }
}

/// Refused unless there is room for one more task of `performer`.
fn room(inner: &Inner, performer: &[u8; 48]) -> Result<(), SubmitError> {
    if inner.queue.len() >= MAX_PENDING {
        return Err(SubmitError::Full(format!("{MAX_PENDING} tasks pending")));
    }
    if inner.open_bytes >= MAX_PENDING_BYTES {
        return Err(SubmitError::Full(format!("{} MiB pending", MAX_PENDING_BYTES >> 20)));
    }
    if inner.per_performer.get(performer).copied().unwrap_or(0) >= MAX_PENDING_PER_PERFORMER {
        return Err(SubmitError::Full(format!(
            "this performer has {MAX_PENDING_PER_PERFORMER} tasks pending"
        )));
    }
    Ok(())
}

fn insert_open(
    inner: &mut Inner,
    id: TaskId,
    signed: SignedTaskMessage,
    address: [u8; 20],
    received_ms: u64,
    bytes: usize,
    published_ms: Option<u64>,
) {
    let key: [u8; 48] = signed.message.performer.as_ref().try_into().unwrap_or([0; 48]);
    *inner.per_performer.entry(key).or_default() += 1;
    inner.open_bytes = inner.open_bytes.saturating_add(bytes);
    inner.queue.insert((received_ms, id), ());
    let status = TaskStatus::Pending;
    inner.entries.insert(id, Entry { signed, address, received_ms, status, bytes, published_ms });
}

fn pending_key(id: &TaskId) -> Vec<u8> {
    [PENDING_PREFIX, id.as_slice()].concat()
}

fn record_key(id: &TaskId) -> Vec<u8> {
    [RECORD_PREFIX, id.as_slice()].concat()
}

fn encode_pending(received_ms: u64, signed: &SignedTaskMessage) -> Result<Vec<u8>, String> {
    let ssz = encode(signed).map_err(|e| e.to_string())?;
    Ok([received_ms.to_be_bytes().as_slice(), &ssz].concat())
}

fn decode_pending(value: &[u8]) -> Option<(u64, SignedTaskMessage)> {
    let (time, ssz) = value.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*time), decode(ssz).ok()?))
}

/// `0x` and lowercase hex.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A task id from `0x` hex.
pub fn parse_task_id(text: &str) -> Option<TaskId> {
    let raw = hex::decode(text.strip_prefix("0x").unwrap_or(text)).ok()?;
    raw.try_into().ok()
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Store(e.to_string())
    }
}

#[cfg(test)]
mod tests;
