//! Entering views (rule 1), the view's deadlines (rules 3 and 5, with back-off), pulls while
//! stalled (section 10) and the next deadline the caller must wake the engine for.

use super::{Action, Engine, EntryCause, MAX_BACKOFF, Request, VOTE_WINDOW_BEHIND, Verdict};
use crate::types::{View, VoteData};

impl Engine {
    /// Everything that depends on time; runs after every input.
    pub(crate) fn on_time(&mut self, out: &mut Vec<Action>) {
        if self.replaying || self.now_ms < self.timing.genesis_ms {
            return;
        }
        if !self.started() {
            self.enter_view(self.ep.view, EntryCause::EpochStart, out);
        }
        self.check_overdue_votes(out);
        self.check_deadlines(out);
        self.try_propose(out);
        self.consider_pending(out);
        self.pull_if_stalled(out);
    }

    pub(crate) fn started(&self) -> bool {
        self.ep.entered_at_ms.is_some()
    }

    /// Back-off multiplier of the current view's deadlines: doubles per consecutive nullified
    /// view before it, up to `MAX_BACKOFF`.
    fn backoff(&self) -> u64 {
        1u64.checked_shl(self.ep.nullified_streak).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
    }

    /// Rule 3: the earliest time the leader of the current view proposes.
    pub(crate) fn pace_at(&self) -> Option<u64> {
        self.ep.pace_ms
    }

    /// Rule 3's pace of a view entered now: one block interval after the previous view's pace,
    /// within `[now, now + block_interval]`; `now` if the previous view was skipped.
    fn pace_of_entry(&self, previous: Option<u64>) -> u64 {
        let slot = self.timing.slot_ms;
        previous.map_or(self.now_ms, |p| {
            p.saturating_add(slot).clamp(self.now_ms, self.now_ms.saturating_add(slot))
        })
    }

    /// Where the view's timers start: one block interval after entering it, which is never
    /// before any honest leader's pace (minus the network delay), whatever views it skipped.
    fn timer_base(&self) -> Option<u64> {
        self.ep.entered_at_ms.map(|e| e.saturating_add(self.timing.slot_ms))
    }

    fn leader_deadline(&self) -> Option<u64> {
        let wait = self.timing.leader_timeout_ms.saturating_mul(self.backoff());
        self.timer_base().map(|p| p.saturating_add(wait))
    }

    fn advance_deadline(&self) -> Option<u64> {
        self.timer_base().map(|p| p.saturating_add(self.advance_period()))
    }

    /// The advance timeout with back-off; also the period of pulls while stalled.
    fn advance_period(&self) -> u64 {
        self.timing.advance_timeout_ms.saturating_mul(self.backoff())
    }

    /// Enter `view` now: start its deadlines, drop what fell out of the window, propose if
    /// leader (at its pace), judge a buffered proposal.
    pub(crate) fn enter_view(&mut self, view: View, cause: EntryCause, out: &mut Vec<Action>) {
        self.ep.nullified_streak = match cause {
            EntryCause::Nullified => self.ep.nullified_streak.saturating_add(1),
            _ => 0,
        };
        let next = self.ep.view.checked_add(1) == Some(view);
        self.ep.pace_ms = Some(self.pace_of_entry(if next { self.ep.pace_ms } else { None }));
        self.ep.view = view;
        self.ep.entered_at_ms = Some(self.now_ms);
        self.ep.last_pull_ms = None;
        let dropped = self.pool.prune_below(view.saturating_sub(VOTE_WINDOW_BEHIND));
        out.extend(
            dropped.into_iter().map(|vote| Action::VoteChecked { vote, verdict: Verdict::Ignore }),
        );
        self.pending_proposals.retain(|v, _| *v >= view);
        self.ep.unpublished.retain(|d, _| d.view.saturating_add(1) >= view);
        out.push(Action::EnteredView { epoch: self.ep.epoch, view, cause });
        self.try_propose(out);
        self.consider_pending(out);
    }

    /// Rule 1: a certificate for `view` is held. A view at or ahead of ours is left at once
    /// (ahead: catch-up). During replay only the highest such view is remembered.
    pub(crate) fn on_view_certified(
        &mut self,
        view: View,
        cause: EntryCause,
        out: &mut Vec<Action>,
    ) {
        if !self.started() {
            if self.replaying {
                self.replayed_view = Some(self.replayed_view.map_or(view, |v| v.max(view)));
            } else if view >= self.ep.view {
                // Certified before the node's first input of the epoch: start after it.
                self.ep.view = view.saturating_add(1);
            }
            return;
        }
        if view < self.ep.view {
            return;
        }
        let Some(next) = view.checked_add(1) else { return };
        let cause = if view > self.ep.view { EntryCause::CatchUp } else { cause };
        self.enter_view(next, cause, out);
    }

    /// Rule 5: NULLIFY when the leader deadline passes without a proposal judged valid, or the
    /// advance deadline passes without a certificate (we would have left the view otherwise).
    fn check_deadlines(&mut self, out: &mut Vec<Action>) {
        let (Some(leader_deadline), Some(advance_deadline)) =
            (self.leader_deadline(), self.advance_deadline())
        else {
            return;
        };
        let view = self.ep.view;
        let vs = self.ep.views.get(&view);
        if vs.is_some_and(|vs| vs.has_certificate() || vs.voted_nullify) {
            return;
        }
        let proposal_valid = vs.is_some_and(|vs| vs.proposal_valid);
        if (self.now_ms >= leader_deadline && !proposal_valid) || self.now_ms >= advance_deadline {
            self.cast_vote(VoteData::nullify(self.ep.epoch, view), out);
        }
    }

    /// Section 10: stalled past the advance deadline, pull the view's votes and the missing
    /// certificates from peers (and re-ask for blocks still wanted), once per advance period.
    fn pull_if_stalled(&mut self, out: &mut Vec<Action>) {
        let Some(advance_deadline) = self.advance_deadline() else { return };
        if self.now_ms < advance_deadline {
            return;
        }
        let period = self.advance_period();
        if self.ep.last_pull_ms.is_some_and(|t| self.now_ms < t.saturating_add(period)) {
            return;
        }
        self.ep.last_pull_ms = Some(self.now_ms);
        let (epoch, view) = (self.ep.epoch, self.ep.view);
        out.push(Action::Request(Request::Votes { epoch, view }));
        out.push(Action::Request(Request::Certificates { epoch, from_view: self.first_gap() }));
        if !self.wanted.is_empty() {
            out.push(Action::Request(Request::BlocksByRoot(self.wanted.iter().copied().collect())));
        }
    }

    /// The lowest view in `[floor, view]` for which no certificate is held.
    pub fn first_gap(&self) -> View {
        let mut w = self.ep.floor;
        while w < self.ep.view {
            if !self.ep.views.get(&w).is_some_and(|vs| vs.has_certificate()) {
                return w;
            }
            w = w.saturating_add(1);
        }
        self.ep.view
    }

    /// Publish the certificates built here but not published yet (aggregator flag on).
    pub(crate) fn publish_unpublished(&mut self, out: &mut Vec<Action>) {
        let certs = std::mem::take(&mut self.ep.unpublished);
        out.extend(certs.into_values().map(Action::BroadcastCertificate));
    }

    /// When the caller must deliver the next `Tick` (besides the slot clock's own ticks):
    /// the earliest future deadline of the current view, of a pull, or of a lazy vote check.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.now_ms < self.timing.genesis_ms {
            return Some(self.timing.genesis_ms);
        }
        let Some(entered) = self.ep.entered_at_ms else { return Some(self.now_ms) };
        let vs = self.ep.views.get(&self.ep.view);
        let certified = vs.is_some_and(|vs| vs.has_certificate());
        let nullified = vs.is_some_and(|vs| vs.voted_nullify);
        let proposed = vs.is_some_and(|vs| vs.proposed || vs.proposal.is_some());
        let leads = self.ep.me.is_some() && self.ep.table.leader(self.ep.view) == self.ep.me;
        let advance = self.advance_deadline();
        let next_pull = match (self.ep.last_pull_ms, advance) {
            (Some(t), _) => Some(t.saturating_add(self.advance_period())),
            (None, a) => a,
        };
        let candidates = [
            (leads && !proposed).then(|| self.pace_at().unwrap_or(entered)),
            (!certified && !nullified).then(|| self.leader_deadline()).flatten(),
            (!certified && !nullified).then_some(advance).flatten(),
            (!certified).then_some(next_pull).flatten(),
            self.pool.next_overdue(self.timing.interval_ms),
        ];
        candidates.into_iter().flatten().filter(|t| *t > self.now_ms).min()
    }
}
