//! Time triggers (docs/protocol.md, 7.5): internal task 10003. A leader proposes the due
//! firings of the active cron and fixed-time automations of its table; attesters vote for a
//! firing only if the instant is one of the trigger's, has come on their own clock and is
//! later than the last one; finality records it on every node. The block's votes are the
//! firing's attestations: more than 2/3 of the power saw the instant come.

use std::str::FromStr;
use std::sync::Arc;

use avs_consensus::task::{TaskDefinition, TaskRegistry, TaskValidity};
use avs_consensus::types::{ChainState, FIRST_INTERNAL_TASK_ID, OperatorIndex, TaskResult};
use avs_proto::automation_v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;

use super::{Automation, AutomationError, TaskId, is_state, parse_id};

/// The internal task that carries firings.
pub const FIRING_TASK_ID: u16 = FIRST_INTERNAL_TASK_ID + 3;
/// Firings one block carries at most.
pub const MAX_FIRINGS_PER_BLOCK: usize = 8;
/// A firing is accepted this far ahead of an attester's clock, at most (skew).
pub const MAX_FIRING_SKEW_MS: u64 = 30_000;
/// A firing this node proposed is proposed again after this long if it is not final.
pub const REPROPOSE_AFTER_MS: u64 = 30_000;
/// Schedule steps a leader walks at most to find the latest due instant of one automation.
const MAX_SCHEDULE_STEPS: usize = 100_000;

fn datetime(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn cron(expression: &str) -> Option<cron::Schedule> {
    cron::Schedule::from_str(expression).ok()
}

/// Is `instant` one of the time trigger's instants, not before `created_at_ms`?
pub fn is_instant(trigger: &pb::trigger::Kind, instant: u64, created_at_ms: u64) -> bool {
    if instant < created_at_ms || instant >= super::auth::LAST_TIME_MS {
        return false;
    }
    match trigger {
        pb::trigger::Kind::Cron(c) => {
            instant.is_multiple_of(1000)
                && cron(&c.expression)
                    .zip(datetime(instant))
                    .is_some_and(|(schedule, at)| schedule.includes(at))
        }
        pb::trigger::Kind::FixedTime(f) => f.at_unix_ms.contains(&instant),
        pb::trigger::Kind::Block(_) | pb::trigger::Kind::Event(_) => false,
    }
}

/// The latest instant of a time trigger in `(after, now]`, not before `created_at_ms`.
pub fn latest_due(
    trigger: &pb::trigger::Kind,
    created_at_ms: u64,
    after: u64,
    now: u64,
) -> Option<u64> {
    let from = after.max(created_at_ms.saturating_sub(1));
    if now >= super::auth::LAST_TIME_MS {
        return None;
    }
    match trigger {
        pb::trigger::Kind::Cron(c) => {
            let schedule = cron(&c.expression)?;
            let start = datetime(from)?;
            schedule
                .after(&start)
                .take(MAX_SCHEDULE_STEPS)
                .map(|at| u64::try_from(at.timestamp_millis()).unwrap_or(u64::MAX))
                .take_while(|at| *at <= now)
                .last()
        }
        pb::trigger::Kind::FixedTime(f) => {
            f.at_unix_ms.iter().copied().filter(|at| *at > from && *at <= now).max()
        }
        pb::trigger::Kind::Block(_) | pb::trigger::Kind::Event(_) => None,
    }
}

fn time_trigger(task: &pb::AutomationTask) -> Option<&pb::trigger::Kind> {
    let kind = task.definition.as_ref()?.trigger.as_ref()?.kind.as_ref()?;
    matches!(kind, pb::trigger::Kind::Cron(_) | pb::trigger::Kind::FixedTime(_)).then_some(kind)
}

/// Why a firing of `task` at `instant` is not one to record, if it is not: the same check at
/// vote and at finality (docs/protocol.md, 7.5).
pub fn refusal(task: &pb::AutomationTask, instant: u64) -> Option<String> {
    if !is_state(task, &[pb::TaskState::Active]) {
        return Some("the automation is not active".into());
    }
    let Some(trigger) = time_trigger(task) else {
        return Some("not a time trigger".into());
    };
    if !is_instant(trigger, instant, task.created_at_ms) {
        return Some(format!("{instant} is not one of the trigger's instants"));
    }
    if instant <= task.last_fired_ms {
        return Some(format!("fired already up to {}", task.last_fired_ms));
    }
    None
}

pub fn decode_firing(bytes: &[u8]) -> Result<(TaskId, u64), AutomationError> {
    let firing = pb::Firing::decode(bytes)
        .map_err(|e| AutomationError::BadRequest(format!("firing does not decode: {e}")))?;
    Ok((parse_id(&firing.automation_id)?, firing.instant_ms))
}

/// The engine's view of firings.
pub struct AutomationFirings {
    automation: Arc<Automation>,
}

impl AutomationFirings {
    pub fn new(automation: Arc<Automation>) -> Self {
        Self { automation }
    }
}

impl Automation {
    /// Registers internal task 10003 with the engine.
    pub fn register_firings(self: &Arc<Self>, registry: &mut TaskRegistry) -> anyhow::Result<()> {
        registry
            .register(Arc::new(AutomationFirings::new(Arc::clone(self))))
            .map_err(|e| anyhow::anyhow!("registering the firing task: {e}"))
    }

    /// Firings due at `now_ms` for a block this node proposes: the latest due instant of each
    /// active time-triggered automation, at most `max`, none proposed in the last
    /// [`REPROPOSE_AFTER_MS`].
    pub(crate) fn due_firings(&self, now_ms: u64, max: usize) -> Vec<Vec<u8>> {
        let tasks = match self.active_time_triggered() {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the automations to fire");
                return Vec::new();
            }
        };
        let mut inner = self.inner();
        inner.firing_proposed.retain(|_, at| at.saturating_add(REPROPOSE_AFTER_MS) > now_ms);
        let mut out = Vec::new();
        for task in tasks {
            if out.len() >= max {
                break;
            }
            let Some(trigger) = time_trigger(&task) else { continue };
            let Some(instant) = latest_due(trigger, task.created_at_ms, task.last_fired_ms, now_ms)
            else {
                continue;
            };
            let Ok(id) = parse_id(&task.id) else { continue };
            if inner.firing_proposed.contains_key(&(id, instant)) {
                continue;
            }
            inner.firing_proposed.insert((id, instant), now_ms);
            out.push(pb::Firing { automation_id: task.id, instant_ms: instant }.encode_to_vec());
        }
        out
    }
}

impl TaskDefinition for AutomationFirings {
    fn id(&self) -> u16 {
        FIRING_TASK_ID
    }

    fn max_per_block(&self) -> usize {
        MAX_FIRINGS_PER_BLOCK
    }

    fn validate(&self, _: &ChainState, result: &TaskResult, now_ms: u64) -> TaskValidity {
        let (id, instant) = match decode_firing(result.data.as_ref()) {
            Ok(firing) => firing,
            Err(e) => return TaskValidity::Invalid(e.to_string()),
        };
        let task = match self.automation.lookup(&id, None) {
            Ok(Some(task)) => task,
            Ok(None) => return TaskValidity::NotYet("automation not final here yet".into()),
            Err(e) => return TaskValidity::NotYet(format!("cannot read the automation: {e}")),
        };
        if let Some(reason) = refusal(&task, instant) {
            return TaskValidity::Invalid(reason);
        }
        if instant > now_ms.saturating_add(MAX_FIRING_SKEW_MS) {
            return TaskValidity::NotYet(format!("{instant} has not come at {now_ms}"));
        }
        TaskValidity::Valid
    }

    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        // Recorded in the nodes' tables at finality, not in the chain state.
        Ok(())
    }

    fn perform(&self, _: &ChainState, proposer: OperatorIndex, now_ms: u64) -> Vec<TaskResult> {
        self.automation
            .due_firings(now_ms, MAX_FIRINGS_PER_BLOCK)
            .into_iter()
            .filter_map(|bytes| {
                Some(TaskResult {
                    task_definition_id: FIRING_TASK_ID,
                    performer_index: proposer,
                    proof_of_task: Default::default(),
                    data: avs_consensus::types::byte_list(&bytes).ok()?,
                    signature: Default::default(),
                })
            })
            .collect()
    }
}
