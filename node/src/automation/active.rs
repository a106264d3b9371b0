//! The active and executing automations, held in memory in step with the table
//! (docs/protocol.md, 7.5, "What a node keeps"): leaders' proposals and the chain watchers
//! read this index instead of decoding every stored record, so their work grows with what is
//! due, not with what is stored.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use avs_proto::automation_v1 as pb;

use super::{CANCELLABLE, TaskId, firing, is_state, parse_id};

#[derive(Debug, Default)]
pub(crate) struct Active {
    tasks: HashMap<TaskId, Arc<pb::AutomationTask>>,
    /// Time-triggered automations by the next instant they may fire at.
    by_due: BTreeSet<(u64, TaskId)>,
    /// Block- and event-triggered automations.
    chain: BTreeSet<TaskId>,
    /// Per chain, the contracts event automations watch, and how many watch each.
    contracts: HashMap<u64, HashMap<[u8; 20], usize>>,
}

impl Active {
    /// Holds `task` as the table now has it: indexed if it is active or executing, dropped
    /// otherwise.
    pub(crate) fn put(&mut self, task: &pb::AutomationTask) {
        let Ok(id) = parse_id(&task.id) else { return };
        self.remove(&id);
        if !is_state(task, &CANCELLABLE) {
            return;
        }
        match task.definition.as_ref().and_then(|d| d.trigger.as_ref()?.kind.as_ref()) {
            Some(pb::trigger::Kind::Cron(_) | pb::trigger::Kind::FixedTime(_)) => {
                if let Some(due) = firing::next_due(task) {
                    self.by_due.insert((due, id));
                }
            }
            Some(pb::trigger::Kind::Event(event)) => {
                if let Ok(address) = <[u8; 20]>::try_from(event.address.as_slice()) {
                    *self
                        .contracts
                        .entry(event.chain_id)
                        .or_default()
                        .entry(address)
                        .or_default() += 1;
                }
                self.chain.insert(id);
            }
            Some(pb::trigger::Kind::Block(_)) => {
                self.chain.insert(id);
            }
            None => {}
        }
        self.tasks.insert(id, Arc::new(task.clone()));
    }

    /// Stops holding automation `id`.
    pub(crate) fn remove(&mut self, id: &TaskId) {
        let Some(old) = self.tasks.remove(id) else { return };
        self.chain.remove(id);
        if let Some(due) = firing::next_due(&old) {
            self.by_due.remove(&(due, *id));
        }
        if let Some(pb::trigger::Kind::Event(event)) =
            old.definition.as_ref().and_then(|d| d.trigger.as_ref()?.kind.as_ref())
            && let Ok(address) = <[u8; 20]>::try_from(event.address.as_slice())
            && let Some(contracts) = self.contracts.get_mut(&event.chain_id)
        {
            if let Some(count) = contracts.get_mut(&address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    contracts.remove(&address);
                }
            }
            if contracts.is_empty() {
                self.contracts.remove(&event.chain_id);
            }
        }
    }

    /// The automations a leader may fire at `now_ms`: the time-triggered ones whose next
    /// instant has come, and every chain-triggered one.
    pub(crate) fn candidates(&self, now_ms: u64) -> Vec<Arc<pb::AutomationTask>> {
        self.by_due
            .range(..=(now_ms, [0xff; 32]))
            .map(|(_, id)| id)
            .chain(self.chain.iter())
            .filter_map(|id| self.tasks.get(id).cloned())
            .collect()
    }

    /// The contracts the active event automations on `chain_id` watch.
    pub(crate) fn contracts(&self, chain_id: u64) -> Vec<[u8; 20]> {
        let mut out: Vec<[u8; 20]> =
            self.contracts.get(&chain_id).map(|c| c.keys().copied().collect()).unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// How many automations are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }
}
