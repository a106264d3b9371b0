//! The node's internal tasks: the task registry handed to the engine, the stake source behind
//! it, and the logs and metrics of scheduling, execution and validation.
//!
//! [`NodeTasks::build`] reads the task settings (`--stake-schedule` for the embedded source,
//! or `--l1-rpc`/`--l2-rpc` with registry addresses for real chains) and registers
//! VotingPowerSyncTask (id 10001) in every node, since every node must validate it; only a
//! node started with `--internal-tasks` performs it. The engine calls the task synchronously
//! and must not block, so [`NodeTasks::spawn_refresher`] polls the source in a background task
//! and fills the cache the task reads; missing data makes the task answer `NotYet`.
//!
//! Logs carry stable fields: `task_id`, `view`, `height`, `verdict`, `reason`. Metrics:
//! `avs_node_task_performed_total{task_id}`, `avs_node_task_validations_total{task_id,verdict}`
//! (each distinct result and verdict counted once, not every re-judgement) and
//! `avs_node_task_applied_total{task_id}` (results in finalized blocks).

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use avs_consensus::task::{TaskRegistry, TaskValidity};
use avs_consensus::types::{Block, GenesisConfig, Height, Root, SignedProposal};
use avs_internal_tasks::VOTING_POWER_SYNC_TASK_ID;
use avs_internal_tasks::embedded::{EmbeddedSource, StakeSchedule};
use avs_internal_tasks::rpc::{RpcConfig, RpcSource};
use avs_internal_tasks::source::{SourceCache, StakeSource, refresh};
use avs_internal_tasks::voting_power::{
    Performer, TaskObserver, VotingPowerSyncTask, decode_update, summarize,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;

/// Default confirmation depth: blocks this close to a chain's head are not read.
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// How often the embedded source is polled: it is a pure function of time, so often is cheap,
/// and attesters should hold the block a leader names within a fraction of a view.
const EMBEDDED_POLL: Duration = Duration::from_millis(100);
const RPC_POLL: Duration = Duration::from_millis(500);
/// Distinct (task, height, result, verdict) entries remembered to log and count each once.
const SEEN_VERDICTS: usize = 256;

/// Where VotingPowerSyncTask reads stake: one source, complete, or none.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StakeSourceConfig {
    /// No source: the node can never attest a VotingPowerSync update (warned at start).
    #[default]
    None,
    /// The embedded scripted L1/L2 schedule (JSON file).
    Schedule(PathBuf),
    /// The registry contracts on two EVM chains, over JSON-RPC.
    JsonRpc {
        l1_rpc: String,
        l2_rpc: String,
        /// `StakeRegistry` on L1.
        l1_registry: [u8; 20],
        /// `PowerRegistry` on L2.
        l2_registry: [u8; 20],
    },
}

/// Task settings of `avs-node run`, checked ([`TaskSettings::resolve`]). Its `Debug` (and the
/// source's) shows the RPC endpoints as their origin only: providers put API keys in the path
/// or query.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TaskConfig {
    pub source: StakeSourceConfig,
    pub confirmations: u64,
    /// The AVS tasks' validation services.
    pub avs: crate::avs::AvsSettings,
    /// Where finalized AVS tasks are settled, if anywhere.
    pub settlement: Option<crate::settlement::SettlementConfig>,
    /// The chains watched for automations' block and event triggers.
    pub automation_rpc: Vec<String>,
}

impl fmt::Debug for StakeSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StakeSourceConfig::None => f.write_str("None"),
            StakeSourceConfig::Schedule(path) => f.debug_tuple("Schedule").field(path).finish(),
            StakeSourceConfig::JsonRpc { l1_rpc, l2_rpc, l1_registry, l2_registry } => f
                .debug_struct("JsonRpc")
                .field("l1_rpc", &crate::config::url_origin(l1_rpc))
                .field("l2_rpc", &crate::config::url_origin(l2_rpc))
                .field("l1_registry", &format!("0x{}", hex::encode(l1_registry)))
                .field("l2_registry", &format!("0x{}", hex::encode(l2_registry)))
                .finish(),
        }
    }
}

impl fmt::Debug for TaskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskConfig")
            .field("source", &self.source)
            .field("confirmations", &self.confirmations)
            .field(
                "settlement",
                &self.settlement.as_ref().map(|s| {
                    (crate::config::url_origin(&s.rpc), format!("0x{}", hex::encode(s.contract)))
                }),
            )
            .field(
                "task_services",
                &self
                    .avs
                    .services
                    .iter()
                    .map(|(id, url)| (id, crate::config::url_origin(url)))
                    .collect::<Vec<_>>(),
            )
            .field(
                "automation_rpc",
                &self
                    .automation_rpc
                    .iter()
                    .map(|u| crate::config::url_origin(u))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The task settings as given (command line over file), before [`Self::resolve`] checks them.
/// No `Debug`: the URLs may carry API keys.
#[derive(Clone, Default)]
pub struct TaskSettings {
    pub stake_schedule: Option<PathBuf>,
    pub l1_rpc: Option<String>,
    pub l2_rpc: Option<String>,
    pub l1_registry: Option<String>,
    pub l2_registry: Option<String>,
    pub confirmations: u64,
    /// `TASK_ID=URL` entries.
    pub task_services: Vec<String>,
    pub task_service_timeout_ms: Option<u64>,
    pub settlement_rpc: Option<String>,
    pub settlement_contract: Option<String>,
    pub automation_rpc: Vec<String>,
}

impl TaskSettings {
    /// At most one source, completely, with valid addresses; `internal_tasks` needs one.
    pub fn resolve(self, internal_tasks: bool) -> Result<TaskConfig, String> {
        let Self {
            stake_schedule,
            l1_rpc,
            l2_rpc,
            l1_registry,
            l2_registry,
            confirmations,
            task_services,
            task_service_timeout_ms,
            settlement_rpc,
            settlement_contract,
            automation_rpc,
        } = self;
        for url in &automation_rpc {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--automation-rpc {url:?}: the URL must be http:// or https://"
                ));
            }
        }
        let settlement = match (settlement_rpc, settlement_contract) {
            (None, None) => None,
            (Some(rpc), Some(contract)) => Some(crate::settlement::SettlementConfig {
                rpc,
                contract: parse_address(&contract)
                    .map_err(|e| format!("--settlement-contract {contract:?}: {e}"))?,
            }),
            _ => {
                return Err(
                    "settlement needs both --settlement-rpc and --settlement-contract".into()
                );
            }
        };
        let mut services = std::collections::BTreeMap::new();
        for entry in &task_services {
            let (id, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("--task-service {entry:?}: expected TASK_ID=URL"))?;
            let id: u16 =
                id.parse().map_err(|_| format!("--task-service {entry:?}: bad task id"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--task-service {entry:?}: the URL must be http:// or https://"
                ));
            }
            if services.insert(id, url.to_owned()).is_some() {
                return Err(format!("--task-service: task {id} given twice"));
            }
        }
        if task_service_timeout_ms == Some(0) {
            return Err("--task-service-timeout-ms must be at least 1".into());
        }
        let avs = crate::avs::AvsSettings {
            services,
            timeout: task_service_timeout_ms.map(std::time::Duration::from_millis),
        };
        let source = match (stake_schedule, l1_rpc, l2_rpc, l1_registry, l2_registry) {
            (None, None, None, None, None) if internal_tasks => {
                return Err("--internal-tasks needs a stake source: --stake-schedule FILE, or \
                            --l1-rpc, --l2-rpc, --l1-registry and --l2-registry"
                    .into());
            }
            (None, None, None, None, None) => StakeSourceConfig::None,
            (Some(path), None, None, None, None) => StakeSourceConfig::Schedule(path),
            (None, Some(l1_rpc), Some(l2_rpc), Some(l1), Some(l2)) => StakeSourceConfig::JsonRpc {
                l1_rpc,
                l2_rpc,
                l1_registry: parse_address(&l1)
                    .map_err(|e| format!("--l1-registry {l1:?}: {e}"))?,
                l2_registry: parse_address(&l2)
                    .map_err(|e| format!("--l2-registry {l2:?}: {e}"))?,
            },
            (Some(_), ..) => {
                return Err(
                    "--stake-schedule and --l1-rpc/--l2-rpc are two stake sources; give one".into(),
                );
            }
            _ => {
                return Err("the JSON-RPC stake source needs all of --l1-rpc, --l2-rpc, \
                            --l1-registry and --l2-registry"
                    .into());
            }
        };
        Ok(TaskConfig { source, confirmations, avs, settlement, automation_rpc })
    }
}

/// `[tasks]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTasks {
    pub stake_schedule: Option<PathBuf>,
    pub l1_rpc: Option<String>,
    pub l2_rpc: Option<String>,
    pub l1_registry: Option<String>,
    pub l2_registry: Option<String>,
    pub confirmations: Option<u64>,
    /// `TASK_ID=URL` entries, as `--task-service`.
    pub task_services: Option<Vec<String>>,
    pub task_service_timeout_ms: Option<u64>,
    pub settlement_rpc: Option<String>,
    pub settlement_contract: Option<String>,
    pub automation_rpc: Option<Vec<String>>,
}

fn parse_address(text: &str) -> Result<[u8; 20], String> {
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text)).map_err(|e| e.to_string())?;
    bytes.try_into().map_err(|_| "expected 20 bytes".to_owned())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task_id: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    task_id: u16,
    verdict: &'static str,
}

#[derive(Clone, Debug, Default)]
struct TaskMetrics {
    performed: Family<TaskLabels, Counter>,
    validations: Family<VerdictLabels, Counter>,
    applied: Family<TaskLabels, Counter>,
}

/// Logs and counts what the task definitions report, with the node's current view.
struct NodeObserver {
    metrics: TaskMetrics,
    view: Arc<AtomicU64>,
    seen: Mutex<VecDeque<(u16, Height, Root, &'static str)>>,
}

fn verdict_label(verdict: &TaskValidity) -> (&'static str, &str) {
    match verdict {
        TaskValidity::Valid => ("valid", ""),
        TaskValidity::Invalid(r) => ("invalid", r),
        TaskValidity::NotYet(r) => ("not_yet", r),
    }
}

impl TaskObserver for NodeObserver {
    fn performed(&self, task_id: u16, height: Height, summary: &str) {
        self.metrics.performed.get_or_create(&TaskLabels { task_id }).inc();
        tracing::info!(
            task_id,
            view = self.view.load(Ordering::Relaxed),
            %height,
            update = summary,
            "task performed: proposing its result"
        );
    }

    fn validated(&self, task_id: u16, height: Height, data_root: Root, verdict: &TaskValidity) {
        let (label, reason) = verdict_label(verdict);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let key = (task_id, height, data_root, label);
            if seen.contains(&key) {
                return;
            }
            if seen.len() >= SEEN_VERDICTS {
                seen.pop_front();
            }
            seen.push_back(key);
        }
        self.metrics.validations.get_or_create(&VerdictLabels { task_id, verdict: label }).inc();
        let view = self.view.load(Ordering::Relaxed);
        match verdict {
            TaskValidity::Valid => {
                tracing::info!(task_id, view, %height, verdict = label, "task validated")
            }
            TaskValidity::Invalid(_) => {
                tracing::warn!(task_id, view, %height, verdict = label, reason, "task refused")
            }
            TaskValidity::NotYet(_) => {
                tracing::info!(
                    task_id,
                    view,
                    %height,
                    verdict = label,
                    reason,
                    "task cannot be judged yet"
                )
            }
        }
    }
}

/// The internal tasks of one node.
pub struct NodeTasks {
    registry: TaskRegistry,
    cache: SourceCache,
    source: Option<Arc<dyn StakeSource>>,
    poll: Duration,
    metrics: TaskMetrics,
    view: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    crate::node::now_ms()
}

impl NodeTasks {
    pub fn build(config: &NodeConfig, genesis: &GenesisConfig) -> anyhow::Result<Self> {
        let tasks = &config.tasks;
        let (source, poll): (Option<Arc<dyn StakeSource>>, Duration) = match &tasks.source {
            StakeSourceConfig::Schedule(path) => {
                let schedule = StakeSchedule::load(path)?;
                let source = EmbeddedSource::new(&schedule, tasks.confirmations, Arc::new(now_ms))?;
                (Some(Arc::new(source)), EMBEDDED_POLL)
            }
            StakeSourceConfig::JsonRpc { l1_rpc, l2_rpc, l1_registry, l2_registry } => {
                let source = RpcSource::new(&RpcConfig {
                    l1_url: l1_rpc.clone(),
                    l2_url: l2_rpc.clone(),
                    l1_registry: *l1_registry,
                    l2_registry: *l2_registry,
                    confirmations: tasks.confirmations,
                    timeout: avs_internal_tasks::rpc::DEFAULT_RPC_TIMEOUT,
                })?;
                (Some(Arc::new(source)), RPC_POLL)
            }
            StakeSourceConfig::None => {
                tracing::warn!(
                    "no stake source (--stake-schedule, or --l1-rpc/--l2-rpc with both registry \
                     addresses): this node can never attest a VotingPowerSync update (task \
                     10001) and withholds its vote on every block that carries one"
                );
                (None, RPC_POLL)
            }
        };
        let metrics = TaskMetrics::default();
        let view = Arc::new(AtomicU64::new(0));
        let observer = Arc::new(NodeObserver {
            metrics: metrics.clone(),
            view: view.clone(),
            seen: Mutex::new(VecDeque::new()),
        });
        let cache = SourceCache::new();
        let performer = config.roles.internal_tasks.then(|| {
            let first_due = genesis
                .genesis_time
                .saturating_mul(1000)
                .saturating_add(config.roles.sync_interval_ms);
            Performer::new(config.roles.sync_interval_ms, first_due)
        });
        let sync = VotingPowerSyncTask::new(cache.clone(), performer, observer);
        let registry = avs_internal_tasks::internal_registry(vec![Arc::new(sync)])
            .context("building the task registry")?;
        tracing::info!(
            task_id = VOTING_POWER_SYNC_TASK_ID,
            performs = config.roles.internal_tasks,
            sync_interval_ms = config.roles.sync_interval_ms,
            source = source.as_ref().map_or("none", |s| s.kind()),
            "internal tasks registered"
        );
        Ok(Self { registry, cache, source, poll, metrics, view })
    }

    /// The registry for the engine (cheap clone: tasks are shared).
    pub fn registry(&self) -> TaskRegistry {
        self.registry.clone()
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("avs_node");
        r.register(
            "task_performed",
            "Task results this node proposed",
            self.metrics.performed.clone(),
        );
        r.register(
            "task_validations",
            "Task results judged, by task and verdict (each result and verdict once)",
            self.metrics.validations.clone(),
        );
        r.register(
            "task_applied",
            "Task results in finalized blocks",
            self.metrics.applied.clone(),
        );
    }

    /// Polls the stake source into the cache until `shutdown`.
    pub fn spawn_refresher(&self, shutdown: CancellationToken) {
        let Some(source) = self.source.clone() else { return };
        let cache = self.cache.clone();
        let poll = self.poll;
        tokio::spawn(async move {
            let mut last_error: Option<String> = None;
            loop {
                match refresh(source.as_ref(), &cache).await {
                    Ok(_) => {
                        if last_error.take().is_some() {
                            tracing::info!(source = source.kind(), "stake source reachable again");
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if last_error.as_deref() != Some(text.as_str()) {
                            tracing::warn!(source = source.kind(), error = %text, "stake source refresh failed");
                        }
                        last_error = Some(text);
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }

    /// The view the engine is in, for the task logs.
    pub fn set_view(&self, view: u64) {
        self.view.store(view, Ordering::Relaxed);
    }

    /// Logs the task results of a proposal this node publishes.
    pub fn proposed(&self, proposal: &SignedProposal) {
        for result in proposal.message.block.body.tasks.iter() {
            tracing::info!(
                task_id = result.task_definition_id,
                view = %proposal.message.view,
                epoch = %proposal.message.epoch,
                height = %proposal.message.block.height,
                "task scheduled: result in this node's proposal"
            );
        }
    }

    /// Logs and counts the task results of a finalized block: their effects are now final.
    pub fn finalized(&self, block: &Block) {
        for result in block.body.tasks.iter() {
            let task_id = result.task_definition_id;
            self.metrics.applied.get_or_create(&TaskLabels { task_id }).inc();
            let update = (task_id == VOTING_POWER_SYNC_TASK_ID)
                .then(|| decode_update(result))
                .flatten()
                .map(|u| summarize(&u))
                .unwrap_or_default();
            tracing::info!(
                task_id,
                view = self.view.load(Ordering::Relaxed),
                height = %block.height,
                update,
                "task applied: its block is final"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_settings_name_one_complete_source() {
        let none = TaskSettings::default();
        assert_eq!(none.clone().resolve(false).unwrap().source, StakeSourceConfig::None);
        assert!(none.resolve(true).unwrap_err().contains("needs a stake source"));
        let schedule =
            TaskSettings { stake_schedule: Some("s.json".into()), ..TaskSettings::default() };
        assert_eq!(
            schedule.resolve(true).unwrap().source,
            StakeSourceConfig::Schedule("s.json".into())
        );
        let partial = TaskSettings {
            l1_rpc: Some("http://127.0.0.1:8545".into()),
            ..TaskSettings::default()
        };
        assert!(partial.resolve(false).unwrap_err().contains("needs all of"));
        let full = TaskSettings {
            l1_rpc: Some("http://127.0.0.1:8545".into()),
            l2_rpc: Some("http://127.0.0.1:8546".into()),
            l1_registry: Some(format!("0x{}", "11".repeat(20))),
            l2_registry: Some(format!("0x{}", "22".repeat(20))),
            ..TaskSettings::default()
        };
        let StakeSourceConfig::JsonRpc { l1_registry, l2_registry, .. } =
            full.clone().resolve(true).unwrap().source
        else {
            panic!("not the JSON-RPC source");
        };
        assert_eq!((l1_registry, l2_registry), ([0x11; 20], [0x22; 20]));
        let both = TaskSettings { stake_schedule: Some("s.json".into()), ..full.clone() };
        assert!(both.resolve(true).unwrap_err().contains("two stake sources"));
        let bad = TaskSettings { l1_registry: Some("0x1234".into()), ..full };
        assert!(bad.resolve(true).unwrap_err().contains("--l1-registry"));
    }
}
