//! Entering views, the nullify timeout, re-broadcast on stall and wake-up scheduling
//! (docs/protocol.md, rules 1 and 5, "Re-broadcast").

use super::{Action, Engine, VOTE_WINDOW_BEHIND};
use crate::types::{Certificate, View, VoteData};

impl Engine {
    pub(crate) fn on_tick(&mut self, now_ms: u64, is_aggregator: bool, out: &mut Vec<Action>) {
        // Time never goes backwards inside the engine, whatever the caller's clock does.
        self.now_ms = self.now_ms.max(now_ms);
        self.is_aggregator = is_aggregator;
        if self.now_ms < self.timing.genesis_ms {
            return;
        }
        if self.ep.entered_at_ms.is_none() {
            self.enter_view(self.ep.view, out);
        }
        self.try_advance(out);
        self.check_timeout(out);
        self.try_propose(out);
        self.consider_pending(out);
        if is_aggregator {
            self.flush_pool(out);
        }
        self.maybe_rebroadcast(out);
    }

    pub(crate) fn started(&self) -> bool {
        self.ep.entered_at_ms.is_some()
    }

    /// Enter `view` now: reset its timer, propose if leader, judge a buffered proposal.
    pub(crate) fn enter_view(&mut self, view: View, out: &mut Vec<Action>) {
        self.ep.view = view;
        self.ep.entered_at_ms = Some(self.now_ms);
        self.last_rebroadcast_ms = self.now_ms;
        self.pool.prune_below(view.saturating_sub(VOTE_WINDOW_BEHIND));
        self.pending_proposals.retain(|v, _| *v >= view);
        self.try_propose(out);
        self.consider_pending(out);
    }

    /// Rule 1 with pacing: leave the current view once it holds a certificate and at least
    /// one slot has passed since entering it.
    pub(crate) fn try_advance(&mut self, out: &mut Vec<Action>) {
        while let Some(entered) = self.ep.entered_at_ms {
            let certified = self.ep.views.get(&self.ep.view).is_some_and(|vs| vs.has_certificate());
            if !certified || self.now_ms < entered.saturating_add(self.timing.slot_ms) {
                return;
            }
            let Some(next) = self.ep.view.checked_add(1) else { return };
            self.enter_view(next, out);
        }
    }

    /// A certificate for `view` arrived: a view ahead of ours is a catch-up (jump straight
    /// past it); our own view advances with pacing.
    pub(crate) fn on_view_certified(&mut self, view: View, out: &mut Vec<Action>) {
        if !self.started() {
            return;
        }
        if let (true, Some(next)) = (view > self.ep.view, view.checked_add(1)) {
            self.enter_view(next, out);
        }
        self.try_advance(out);
    }

    /// Rule 5: NULLIFY the current view when no notarization is held `nullify_timeout` after
    /// entering it.
    fn check_timeout(&mut self, out: &mut Vec<Action>) {
        let Some(entered) = self.ep.entered_at_ms else { return };
        if self.now_ms < entered.saturating_add(self.timing.nullify_ms) {
            return;
        }
        let view = self.ep.view;
        let notarized = self.ep.views.get(&view).is_some_and(|vs| vs.notarized_root().is_some());
        if !notarized {
            self.cast_vote(VoteData::nullify(self.ep.epoch, view), out);
        }
    }

    /// While stuck in a view past its timeout, re-send (every `nullify_timeout`) our votes of
    /// the view, the certificates that justify being in it and outstanding block requests.
    /// Without this a single lost message could stall the view forever.
    fn maybe_rebroadcast(&mut self, out: &mut Vec<Action>) {
        let Some(entered) = self.ep.entered_at_ms else { return };
        let stalled_since = entered.saturating_add(self.timing.nullify_ms);
        let next_due = self.last_rebroadcast_ms.saturating_add(self.timing.nullify_ms);
        if self.now_ms < stalled_since || self.now_ms < next_due {
            return;
        }
        self.last_rebroadcast_ms = self.now_ms;
        let view = self.ep.view;
        let epoch = self.ep.epoch;
        if let Some(vs) = self.ep.views.get(&view).cloned() {
            if let Some(root) = vs.voted_notarize {
                self.resend_vote(VoteData::notarize(epoch, view, root), out);
            }
            if vs.voted_nullify {
                self.resend_vote(VoteData::nullify(epoch, view), out);
            }
        }
        let mut certs: Vec<Certificate> = Vec::new();
        if let Some(prev) = view.checked_sub(1).and_then(|p| self.ep.views.get(&p)) {
            certs.extend(prev.notarization.iter().chain(prev.nullification.iter()).cloned());
        }
        if let Some(latest) = self.ep.views.values().rev().find_map(|vs| vs.finalization.clone()) {
            certs.push(latest);
        } else if let Some(start) = &self.ep.start_certificate {
            certs.push(start.clone());
        }
        out.extend(certs.into_iter().map(Action::BroadcastCertificate));
        out.extend(self.wanted.iter().map(|r| Action::FetchBlock(*r)));
    }

    /// Emit a wake-up for the next deadline, once per distinct deadline.
    pub(crate) fn after_event(&mut self, out: &mut Vec<Action>) {
        let next = match self.ep.entered_at_ms {
            None => Some(self.timing.genesis_ms.max(self.now_ms)),
            Some(entered) => {
                let vs = self.ep.views.get(&self.ep.view);
                let certified = vs.is_some_and(|v| v.has_certificate());
                let nullified = vs.is_some_and(|v| v.voted_nullify);
                let candidates = [
                    (!certified && !nullified)
                        .then(|| entered.saturating_add(self.timing.nullify_ms)),
                    certified.then(|| entered.saturating_add(self.timing.slot_ms)),
                    (!certified && nullified)
                        .then(|| self.last_rebroadcast_ms.saturating_add(self.timing.nullify_ms)),
                ];
                candidates.into_iter().flatten().filter(|t| *t > self.now_ms).min()
            }
        };
        if let Some(at_ms) = next.filter(|t| self.last_wakeup != Some(*t)) {
            self.last_wakeup = Some(at_ms);
            out.push(Action::ScheduleWakeup { at_ms });
        }
    }
}
