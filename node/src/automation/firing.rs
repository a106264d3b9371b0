//! Firings (docs/protocol.md, 7.5): internal task 10003. A leader proposes the due firings of
//! the active automations of its table; attesters vote for a time firing only if the instant
//! is one of the trigger's and has come on their own clock, for a block or event firing only if
//! their own chain node shows that block (and log) with the trigger's confirmations; finality
//! records it once on every node. The block's votes are the firing's attestations: more than
//! 2/3 of the power saw it happen.

use std::str::FromStr;
use std::sync::Arc;

use avs_consensus::task::{TaskDefinition, TaskValidity};
use avs_consensus::types::{ChainState, FIRST_INTERNAL_TASK_ID, OperatorIndex, TaskResult};
use avs_proto::automation_v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;

use super::chain::{ChainCache, ChainLog, ChainWatch, Header};
use super::{Automation, AutomationError, TaskId, is_state, parse_id};

/// The internal task that carries firings.
pub const FIRING_TASK_ID: u16 = FIRST_INTERNAL_TASK_ID + 3;
/// Firings one block carries at most (with the requests' 4, the workflow results' 2 and
/// VotingPowerSync's one, AVS results keep at least 5 of a block's 16 slots).
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

/// The first instant at which `task`'s time trigger may fire next: its first after the last
/// firing and not before the creation (what [`latest_due`] needs to have come to be `Some`).
pub(crate) fn next_due(task: &pb::AutomationTask) -> Option<u64> {
    let after = task.last_fired_ms.max(task.created_at_ms.saturating_sub(1));
    TimeTrigger::of(task)?.next_after(after)
}

/// The trigger of `task`.
fn trigger_of(task: &pb::AutomationTask) -> Option<&pb::trigger::Kind> {
    task.definition.as_ref()?.trigger.as_ref()?.kind.as_ref()
}

/// A log index takes the low bits of an event firing's key (docs/protocol.md, 7.5).
pub const LOG_INDEX_BITS: u32 = 20;

/// The firing's place among `task`'s executions: the instant of a time trigger, the block
/// number of a block trigger, `number * 2^20 + log index` of an event trigger.
pub fn firing_key(task: &pb::AutomationTask, firing: &pb::Firing) -> Option<u64> {
    match (trigger_of(task)?, &firing.chain) {
        (pb::trigger::Kind::Cron(_) | pb::trigger::Kind::FixedTime(_), None) => {
            Some(firing.instant_ms)
        }
        (pb::trigger::Kind::Block(_), Some(point)) => Some(point.block_number),
        (pb::trigger::Kind::Event(_), Some(point)) => {
            if point.log_index >= 1 << LOG_INDEX_BITS {
                return None;
            }
            point.block_number.checked_mul(1 << LOG_INDEX_BITS)?.checked_add(point.log_index)
        }
        _ => None,
    }
}

/// The vote on `firing` of `task` at time `now`, this node's chains in `chains`
/// (docs/protocol.md, 7.5). What only the definition and the chain decide is Invalid; what
/// depends on this node's table (fired already, no longer active) is a Valid no-op, as
/// finality ignores it: a leader whose table lags must not split the vote.
pub fn vote(
    task: &pb::AutomationTask,
    firing: &pb::Firing,
    now: u64,
    chains: &ChainWatch,
) -> TaskValidity {
    let Some(trigger) = trigger_of(task) else {
        return TaskValidity::Invalid("the automation has no trigger".into());
    };
    if firing_key(task, firing).is_none() {
        return TaskValidity::Invalid("the firing does not fit the automation's trigger".into());
    }
    match (trigger, &firing.chain) {
        (pb::trigger::Kind::Block(block), Some(point)) => {
            vote_block(task, block, point, now, chains)
        }
        (pb::trigger::Kind::Event(event), Some(point)) => vote_event(task, event, point, chains),
        _ => vote_time(task, firing.instant_ms, now),
    }
}

fn vote_time(task: &pb::AutomationTask, instant: u64, now: u64) -> TaskValidity {
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

/// The checks every chain firing passes: the point's block is held here with `confirmations`
/// after it, with the point's hash, and did not end before the automation's creation.
fn seen<'a>(
    task: &pb::AutomationTask,
    chain_id: u64,
    confirmations: u32,
    point: &pb::ChainPoint,
    cache: Option<&'a ChainCache>,
) -> Result<&'a ChainCache, TaskValidity> {
    let number = point.block_number;
    if point.chain_id != chain_id {
        return Err(TaskValidity::Invalid(format!(
            "chain {} is not the trigger's",
            point.chain_id
        )));
    }
    let Some(cache) = cache else {
        return Err(TaskValidity::NotYet(format!("this node does not watch chain {chain_id}")));
    };
    match cache.head() {
        Some(head) if number.saturating_add(u64::from(confirmations)) <= head => {}
        _ => return Err(TaskValidity::NotYet(format!("block {number} not confirmed here yet"))),
    }
    let Some(header) = cache.header(number) else {
        return Err(TaskValidity::NotYet(format!("block {number} is outside this node's window")));
    };
    if header.hash.as_slice() != point.block_hash.as_slice() {
        return Err(TaskValidity::Invalid(format!(
            "block {number} is 0x{} on this node's chain",
            hex::encode(header.hash)
        )));
    }
    // The block's second ended before the automation existed.
    if header.timestamp.saturating_mul(1000).saturating_add(999) < task.created_at_ms {
        return Err(TaskValidity::Invalid(format!("block {number} is older than the automation")));
    }
    Ok(cache)
}

fn vote_block(
    task: &pb::AutomationTask,
    trigger: &pb::BlockTrigger,
    point: &pb::ChainPoint,
    now: u64,
    chains: &ChainWatch,
) -> TaskValidity {
    let number = point.block_number;
    // A block firing carries no log: its trigger data is the block number, nothing a leader
    // could add.
    if point.log_index != 0
        || !point.tx_hash.is_empty()
        || !point.topics.is_empty()
        || !point.data.is_empty()
    {
        return TaskValidity::Invalid("a block firing carries a log".into());
    }
    if trigger.interval == 0 || !number.is_multiple_of(trigger.interval) {
        return TaskValidity::Invalid(format!("block {number} is not a multiple of the interval"));
    }
    let confirmations = trigger.confirmations;
    chains
        .read(trigger.chain_id, |cache| {
            let cache = match seen(task, trigger.chain_id, confirmations, point, Some(cache)) {
                Ok(cache) => cache,
                Err(vote) => return vote,
            };
            // Stale: the next block of the trigger is confirmed here and came 30 s ago.
            let next = number.saturating_add(trigger.interval);
            let next_confirmed = cache
                .head()
                .is_some_and(|head| next.saturating_add(u64::from(confirmations)) <= head);
            if let Some(header) = cache.header(next).filter(|_| next_confirmed)
                && header.timestamp.saturating_mul(1000).saturating_add(STALE_AFTER_MS) <= now
            {
                return TaskValidity::Invalid(format!("block {number} is stale: {next} came"));
            }
            TaskValidity::Valid
        })
        .unwrap_or_else(|| {
            TaskValidity::NotYet(format!("this node does not watch chain {}", trigger.chain_id))
        })
}

/// Does `log` match `trigger`'s contract and topics (each given topic equal, in order)?
fn matches(trigger: &pb::EventTrigger, log: &ChainLog) -> bool {
    log.address.as_slice() == trigger.address.as_slice()
        && trigger.topics.len() <= log.topics.len()
        && trigger.topics.iter().zip(&log.topics).all(|(want, got)| want.as_slice() == got)
}

fn vote_event(
    task: &pb::AutomationTask,
    trigger: &pb::EventTrigger,
    point: &pb::ChainPoint,
    chains: &ChainWatch,
) -> TaskValidity {
    let Ok(address) = <[u8; 20]>::try_from(trigger.address.as_slice()) else {
        return TaskValidity::Invalid("the trigger's address is not 20 bytes".into());
    };
    chains
        .read(trigger.chain_id, |cache| {
            let cache =
                match seen(task, trigger.chain_id, trigger.confirmations, point, Some(cache)) {
                    Ok(cache) => cache,
                    Err(vote) => return vote,
                };
            let (number, index) = (point.block_number, point.log_index);
            if !cache.covers(&address, number) {
                return TaskValidity::NotYet(format!("logs of block {number} not read here yet"));
            }
            let Some(log) = cache.log(number, index) else {
                return TaskValidity::Invalid(format!(
                    "no log {index} of the contract in block {number}"
                ));
            };
            let same = matches(trigger, log)
                && log.tx_hash.as_slice() == point.tx_hash.as_slice()
                && log.data == point.data
                && log.topics.len() == point.topics.len()
                && log.topics.iter().zip(&point.topics).all(|(a, b)| a.as_slice() == b.as_slice());
            if !same {
                return TaskValidity::Invalid(format!(
                    "log {index} of block {number} differs from this node's chain"
                ));
            }
            TaskValidity::Valid
        })
        .unwrap_or_else(|| {
            TaskValidity::NotYet(format!("this node does not watch chain {}", trigger.chain_id))
        })
}

/// Why a final firing of `task` with `key` records nothing, if it does not: it is no longer
/// active, or not later than its last firing (time and block triggers; an event's log fires
/// once, checked by the caller against the executions). Only the table decides (the vote
/// judged the firing), so every node records the same.
pub fn record_refusal(task: &pb::AutomationTask, firing: &pb::Firing) -> Option<String> {
    if !is_state(task, &[pb::TaskState::Active, pb::TaskState::Executing]) {
        return Some("the automation is not active".into());
    }
    match (trigger_of(task), &firing.chain) {
        (Some(pb::trigger::Kind::Block(_)), Some(point)) => (point.block_number
            <= task.last_fired_block)
            .then(|| format!("fired already up to block {}", task.last_fired_block)),
        (Some(pb::trigger::Kind::Event(_)), Some(_)) => None,
        _ => (firing.instant_ms <= task.last_fired_ms)
            .then(|| format!("fired already up to {}", task.last_fired_ms)),
    }
}

pub fn decode_firing(bytes: &[u8]) -> Result<(TaskId, pb::Firing), AutomationError> {
    let firing = pb::Firing::decode(bytes)
        .map_err(|e| AutomationError::BadRequest(format!("firing does not decode: {e}")))?;
    Ok((parse_id(&firing.automation_id)?, firing))
}

/// The chain firing a leader proposes for `task`, if one is due: a block trigger's latest
/// confirmed multiple of its interval later than its last firing; an event trigger's oldest
/// confirmed matching log not fired yet (`fired` tells). With its block's time (unix ms), for
/// the order of firings.
///
/// `place` is this node's place in an event automation's logs: `(generation, key)`, every
/// matching log below `key` fired (or older than the automation) while the chain's cache was
/// in that generation. The walk starts there, and at the first key kept, and leaves `place` at
/// the log it found (or past the last confirmed block): a leader does not walk the same fired
/// logs at each proposal.
fn chain_due(
    task: &pb::AutomationTask,
    chains: &ChainWatch,
    fired: impl Fn(u64) -> bool,
    place: &mut Option<(u64, u64)>,
) -> Option<(u64, pb::ChainPoint)> {
    let not_before = |header: &Header| {
        header.timestamp.saturating_mul(1000).saturating_add(999) >= task.created_at_ms
    };
    match trigger_of(task)? {
        pb::trigger::Kind::Block(trigger) => chains.read(trigger.chain_id, |cache| {
            let confirmed = cache.head()?.checked_sub(u64::from(trigger.confirmations))?;
            let number = confirmed - confirmed % trigger.interval.max(1);
            let header = cache.header(number).filter(|h| not_before(h))?;
            (number > task.last_fired_block).then(|| {
                let point = pb::ChainPoint {
                    chain_id: trigger.chain_id,
                    block_number: number,
                    block_hash: header.hash.to_vec(),
                    ..Default::default()
                };
                (header.timestamp.saturating_mul(1000), point)
            })
        })?,
        pb::trigger::Kind::Event(trigger) => chains.read(trigger.chain_id, |cache| {
            let confirmed = cache.head()?.checked_sub(u64::from(trigger.confirmations))?;
            let address = <[u8; 20]>::try_from(trigger.address.as_slice()).ok()?;
            // From the first key kept: below it every log counts as fired. Above it, each fired
            // log has its execution kept, so the walk to the oldest unfired log passes at most
            // KEEP_EXECUTIONS fired ones (docs/protocol.md, 7.5); and from this node's place.
            let generation = cache.generation();
            let from = match *place {
                Some((g, key)) if g == generation => key.max(task.fired_kept_from),
                _ => task.fired_kept_from,
            };
            let found = cache
                .logs_of(&address, from >> LOG_INDEX_BITS)
                .filter(|((number, index), _)| (number << LOG_INDEX_BITS) | index >= from)
                .take_while(|((number, _), _)| *number <= confirmed)
                .filter(|(_, log)| matches(trigger, log))
                .find_map(|((number, index), log)| {
                    let header = cache.header(number).filter(|h| not_before(h))?;
                    let key = (number << LOG_INDEX_BITS) | index;
                    (index < 1 << LOG_INDEX_BITS && !fired(key)).then(|| {
                        let point = pb::ChainPoint {
                            chain_id: trigger.chain_id,
                            block_number: number,
                            block_hash: header.hash.to_vec(),
                            log_index: index,
                            tx_hash: log.tx_hash.to_vec(),
                            topics: log.topics.iter().map(|t| t.to_vec()).collect(),
                            data: log.data.clone(),
                        };
                        (header.timestamp.saturating_mul(1000), point)
                    })
                });
            let next = match &found {
                Some((_, point)) => (point.block_number << LOG_INDEX_BITS) | point.log_index,
                None => confirmed.saturating_add(1) << LOG_INDEX_BITS,
            };
            *place = Some((generation, next));
            found
        })?,
        pb::trigger::Kind::Cron(_) | pb::trigger::Kind::FixedTime(_) => None,
    }
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
        let (tasks, mut places) = {
            let mut inner = self.inner();
            (inner.active.candidates(now_ms), std::mem::take(&mut inner.event_places))
        };
        let mut next_places = std::collections::HashMap::new();
        // Computed before the lock: one schedule step or cache look-up per automation.
        let mut due: Vec<(u64, TaskId, u64, Vec<u8>, pb::Firing)> = tasks
            .into_iter()
            .filter_map(|task| {
                let id = parse_id(&task.id).ok()?;
                let (at, firing) = match latest_due(&task, now_ms) {
                    Some(instant) => (
                        instant,
                        pb::Firing { automation_id: id.to_vec(), instant_ms: instant, chain: None },
                    ),
                    None => {
                        let fired =
                            |key| key < task.fired_kept_from || self.has_execution(&id, key);
                        let mut place = places.remove(&id);
                        let due = chain_due(&task, &self.chains, fired, &mut place);
                        if let Some(place) = place {
                            next_places.insert(id, place);
                        }
                        let (at, point) = due?;
                        (
                            at,
                            pb::Firing {
                                automation_id: id.to_vec(),
                                instant_ms: 0,
                                chain: Some(point),
                            },
                        )
                    }
                };
                let key = firing_key(&task, &firing)?;
                Some((at, id, key, task.owner.clone(), firing))
            })
            .collect();
        // The most overdue first; an owner's automations take one slot per block.
        due.sort_by_key(|(at, id, key, ..)| (*at, *id, *key));
        let mut inner = self.inner();
        // The places of automations no longer active go.
        inner.event_places = next_places;
        inner.firing_proposed.retain(|_, at| at.saturating_add(REPROPOSE_AFTER_MS) > now_ms);
        let mut per_owner: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut out = Vec::new();
        for (_, id, key, owner, firing) in due {
            if out.len() >= max {
                break;
            }
            let taken = per_owner.entry(owner).or_default();
            if *taken >= MAX_FIRINGS_PER_OWNER || inner.firing_proposed.contains_key(&(id, key)) {
                continue;
            }
            *taken += 1;
            inner.firing_proposed.insert((id, key), now_ms);
            out.push(firing.encode_to_vec());
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
        let (id, firing) = match decode_firing(result.data.as_ref()) {
            Ok(firing) => firing,
            Err(e) => return TaskValidity::Invalid(e.to_string()),
        };
        match self.automation.lookup(&id, None) {
            Ok(Some(task)) => {
                let verdict = vote(&task, &firing, now_ms, &self.automation.chains);
                if let TaskValidity::Invalid(reason) = &verdict {
                    // Once per proposal: an invalid one is not judged again.
                    tracing::info!(%reason, "a firing in a proposal is refused");
                }
                verdict
            }
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
