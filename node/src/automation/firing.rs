//! Time triggers (docs/protocol.md, 7.5): internal task 10003. A leader proposes the due
//! firings of the active cron and fixed-time automations of its table; attesters vote for a
//! firing only if the instant is one of the trigger's, has come on their own clock and is
//! later than the last one; finality records it on every node. The block's votes are the
//! firing's attestations: more than 2/3 of the power saw the instant come.

use std::str::FromStr;
use std::sync::Arc;

use avs_consensus::task::{TaskDefinition, TaskValidity};
use avs_consensus::types::{ChainState, FIRST_INTERNAL_TASK_ID, OperatorIndex, TaskResult};
use avs_proto::automation_v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;

use super::{Automation, AutomationError, TaskId, is_state, parse_id};

/// The internal task that carries firings.
pub const FIRING_TASK_ID: u16 = FIRST_INTERNAL_TASK_ID + 3;
/// Firings one block carries at most (with the requests' 4 and VotingPowerSync's one, AVS
/// results keep at least 7 of a block's 16 slots).
pub const MAX_FIRINGS_PER_BLOCK: usize = 4;
/// Firings of one owner's automations a leader puts in one block at most.
pub const MAX_FIRINGS_PER_OWNER: usize = 1;
/// A firing is stale once the trigger's next instant after it came this long ago: only the
/// latest due instant fires, missed ones are skipped.
pub const STALE_AFTER_MS: u64 = 30_000;
/// A firing this node proposed is proposed again after this long if it is not final.
pub const REPROPOSE_AFTER_MS: u64 = 30_000;

fn datetime(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn millis(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(u64::MAX)
}

/// A time trigger, its cron expression parsed once.
enum TimeTrigger<'a> {
    Cron(Box<cron::Schedule>),
    Fixed(&'a [u64]),
}

impl<'a> TimeTrigger<'a> {
    /// The time trigger of `task`, if it has one that parses.
    fn of(task: &'a pb::AutomationTask) -> Option<Self> {
        match task.definition.as_ref()?.trigger.as_ref()?.kind.as_ref()? {
            pb::trigger::Kind::Cron(c) => {
                cron::Schedule::from_str(&c.expression).ok().map(|s| TimeTrigger::Cron(Box::new(s)))
            }
            pb::trigger::Kind::FixedTime(f) => Some(TimeTrigger::Fixed(&f.at_unix_ms)),
            pb::trigger::Kind::Block(_) | pb::trigger::Kind::Event(_) => None,
        }
    }

    /// Is `instant` one of the trigger's instants (before 2100)?
    fn is_instant(&self, instant: u64) -> bool {
        if instant >= super::auth::LAST_TIME_MS {
            return false;
        }
        match self {
            TimeTrigger::Cron(schedule) => {
                instant.is_multiple_of(1000)
                    && datetime(instant).is_some_and(|at| schedule.includes(at))
            }
            TimeTrigger::Fixed(at) => at.contains(&instant),
        }
    }

    /// The trigger's first instant after `instant`, if any (before 2100).
    fn next_after(&self, instant: u64) -> Option<u64> {
        match self {
            TimeTrigger::Cron(schedule) => {
                let next = schedule.after(&datetime(instant)?).next().map(millis)?;
                (next < super::auth::LAST_TIME_MS).then_some(next)
            }
            TimeTrigger::Fixed(at) => at.iter().copied().find(|t| *t > instant),
        }
    }

    /// The trigger's latest instant at or before `now` (a cron schedule walked back one step).
    fn latest_at(&self, now: u64) -> Option<u64> {
        if now >= super::auth::LAST_TIME_MS {
            return None;
        }
        match self {
            // `after(x).next_back()` is the instant before x: here the latest at or before now.
            TimeTrigger::Cron(schedule) => {
                schedule.after(&datetime(now.saturating_add(1))?).next_back().map(millis)
            }
            TimeTrigger::Fixed(at) => at.iter().copied().filter(|t| *t <= now).max(),
        }
    }
}

/// The instant a leader proposes for `task` at `now`: the trigger's latest at or before
/// `now`, if it is later than the last firing and not before the creation.
fn latest_due(task: &pb::AutomationTask, now: u64) -> Option<u64> {
    let latest = TimeTrigger::of(task)?.latest_at(now)?;
    (latest > task.last_fired_ms && latest >= task.created_at_ms).then_some(latest)
}

/// The vote on a firing of `task` at `instant` at time `now` (docs/protocol.md, 7.5). What
/// only the definition decides is Invalid (not an instant of the trigger, or a stale one);
/// what depends on this node's table (fired already, no longer active) is a Valid no-op, as
/// finality ignores it: a leader whose table lags must not split the vote.
pub fn vote(task: &pb::AutomationTask, instant: u64, now: u64) -> TaskValidity {
    let Some(trigger) = TimeTrigger::of(task) else {
        return TaskValidity::Invalid("not a time trigger".into());
    };
    if instant < task.created_at_ms || !trigger.is_instant(instant) {
        return TaskValidity::Invalid(format!("{instant} is not one of the trigger's instants"));
    }
    if instant > now {
        return TaskValidity::NotYet(format!("{instant} has not come at {now}"));
    }
    if trigger.next_after(instant).is_some_and(|next| next.saturating_add(STALE_AFTER_MS) <= now) {
        return TaskValidity::Invalid(format!("{instant} is stale: a later instant came"));
    }
    TaskValidity::Valid
}

/// Why a final firing of `task` at `instant` records nothing, if it does not: it is no longer
/// active, or not later than its last firing. Only the table decides (the vote judged the
/// instant), so every node records the same.
pub fn record_refusal(task: &pb::AutomationTask, instant: u64) -> Option<String> {
    if !is_state(task, &[pb::TaskState::Active]) {
        return Some("the automation is not active".into());
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
    /// Firings due at `now_ms` for a block this node proposes: the latest due instant of each
    /// active time-triggered automation, at most `max`, none proposed in the last
    /// [`REPROPOSE_AFTER_MS`].
    pub(crate) fn due_firings(&self, now_ms: u64, max: usize) -> Vec<Vec<u8>> {
        let tasks = match self.active_automations() {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the automations to fire");
                return Vec::new();
            }
        };
        // Computed before the lock: one schedule step per automation.
        let mut due: Vec<(u64, TaskId, Vec<u8>)> = tasks
            .into_iter()
            .filter_map(|task| {
                let instant = latest_due(&task, now_ms)?;
                Some((instant, parse_id(&task.id).ok()?, task.owner))
            })
            .collect();
        // The most overdue first; an owner's automations take one slot per block.
        due.sort();
        let mut inner = self.inner();
        inner.firing_proposed.retain(|_, at| at.saturating_add(REPROPOSE_AFTER_MS) > now_ms);
        let mut per_owner: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut out = Vec::new();
        for (instant, id, owner) in due {
            if out.len() >= max {
                break;
            }
            let taken = per_owner.entry(owner).or_default();
            if *taken >= MAX_FIRINGS_PER_OWNER || inner.firing_proposed.contains_key(&(id, instant))
            {
                continue;
            }
            *taken += 1;
            inner.firing_proposed.insert((id, instant), now_ms);
            out.push(
                pb::Firing { automation_id: id.to_vec(), instant_ms: instant }.encode_to_vec(),
            );
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
        match self.automation.lookup(&id, None) {
            Ok(Some(task)) => vote(&task, instant, now_ms),
            // Deleted here: a no-op at finality, whatever the leader's table said.
            Ok(None) if self.automation.is_deleted(&id).unwrap_or(false) => TaskValidity::Valid,
            Ok(None) => TaskValidity::NotYet("automation not final here yet".into()),
            Err(e) => TaskValidity::NotYet(format!("cannot read the automation: {e}")),
        }
    }

    fn apply(&self, _: &mut ChainState, _: &TaskResult) -> Result<(), String> {
        // Recorded in the nodes' tables at finality, not in the chain state.
        Ok(())
    }

    fn perform(&self, _: &ChainState, proposer: OperatorIndex, now_ms: u64) -> Vec<TaskResult> {
        let firings = self.automation.due_firings(now_ms, MAX_FIRINGS_PER_BLOCK);
        super::consensus::internal_results(FIRING_TASK_ID, proposer, firings)
    }
}
