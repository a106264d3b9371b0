//! Gossip validation off the consensus loop (docs/protocol.md, section 12).
//!
//! A worker runs [`check`] on each message against the core's latest [`GossipContext`]:
//! consensus messages are decoded and checked (votes cheaply; certificates and proposals with
//! their signatures) and, if they pass, go to the loop as [`Checked`]; check-ins are verified
//! and recorded in the operator pool right here. A refusal is a [`GossipError`] whose
//! [`GossipError::verdict`] says whose fault it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use avs_consensus::Verdict;
use avs_consensus::gossip::{GossipContext, GossipError, peek_vote_data};
use avs_consensus::types::{MAX_CERTIFICATE_BYTES, MAX_SIGNED_PROPOSAL_BYTES, SIGNED_VOTE_BYTES};
use avs_p2p::{GossipSizeLimits, PeerId, TopicKind, ValidationOutcome};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::avs::AvsTasks;
use crate::core::Checked;
use crate::pool::OperatorPool;

/// Validation slots one peer may hold at once (of the driver's 64): a peer that floods the
/// node gets its share checked and the rest ignored, and the other peers' messages still find
/// free slots (review C1).
pub const MAX_VALIDATIONS_PER_PEER: usize = 16;

/// Validation slots (of the driver's 64) kept for votes and certificates that can move the node
/// on now ([`is_urgent`]).
pub const URGENT_SLOTS: usize = 16;

/// The driver's validation slots. Any message may take a general slot; an urgent one (a vote or
/// certificate of the views around the current one) may also take one of the slots kept for
/// it, so a flood of anything else (other views' votes, check-ins, proposals) can fill the
/// general slots and still not shed the current view's votes. Urgency is read from fixed
/// offsets before any decoding; a forged urgent message costs its sender a Reject and its
/// share ([`PeerShares`]) bounds how many slots it takes.
#[derive(Debug, Clone)]
pub struct ValidationSlots {
    general: Arc<Semaphore>,
    urgent: Arc<Semaphore>,
}

impl ValidationSlots {
    /// `total` slots, `reserved` of them kept for urgent messages.
    pub fn new(total: usize, reserved: usize) -> Self {
        let reserved = reserved.min(total);
        Self {
            general: Arc::new(Semaphore::new(total.saturating_sub(reserved))),
            urgent: Arc::new(Semaphore::new(reserved)),
        }
    }

    /// A slot, or `None` when the message is to be shed.
    pub fn take(&self, urgent: bool) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.general)
            .try_acquire_owned()
            .ok()
            .or_else(|| urgent.then(|| Arc::clone(&self.urgent).try_acquire_owned().ok()).flatten())
    }
}

/// Whether a message of topic `kind` is a vote or certificate that can move the node on now
/// ([`GossipContext::is_urgent`]).
pub fn is_urgent(context: &GossipContext, kind: TopicKind, data: &[u8]) -> bool {
    matches!(kind, TopicKind::Vote { .. } | TopicKind::Certificate)
        && peek_vote_data(data).is_some_and(|(epoch, view)| context.is_urgent(epoch, view))
}

/// How many validation slots each peer holds; shared between the loop, which takes a share
/// before any work is queued, and the workers, which give it back when done.
#[derive(Debug, Clone)]
pub struct PeerShares {
    held: Arc<Mutex<HashMap<PeerId, usize>>>,
    cap: usize,
}

/// One slot held by a peer; given back when dropped.
#[derive(Debug)]
pub struct PeerShare {
    shares: PeerShares,
    peer: PeerId,
}

impl PeerShares {
    pub fn new(cap: usize) -> Self {
        Self { held: Arc::default(), cap }
    }

    /// A slot for `peer`, or `None` if it holds its whole share already.
    pub fn try_take(&self, peer: PeerId) -> Option<PeerShare> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(peer).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count = count.saturating_add(1);
        Some(PeerShare { shares: self.clone(), peer })
    }

    /// Slots `peer` holds now.
    pub fn held_by(&self, peer: &PeerId) -> usize {
        let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(peer).copied().unwrap_or(0)
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// Largest encoded `SignedCheckin`: the fixed part (the message's offset and the signature),
/// the check-in's fixed fields and the longest version string.
pub const MAX_SIGNED_CHECKIN_BYTES: usize =
    4 + 96 + (20 + 4 + 2 + 8 + 8 + 1 + 8) + crate::pool::checkin::MAX_VERSION_BYTES;

/// Largest encoded `SignedTaskMessage`: the message's offset, the signature, the message's
/// fixed part (id, performer key, two offsets) and the two byte lists at their limits.
pub const MAX_SIGNED_TASK_BYTES: usize = 4
    + 96
    + (2 + 48 + 4 + 4)
    + avs_consensus::types::MAX_PROOF_BYTES
    + avs_consensus::types::MAX_TASK_DATA_BYTES;

/// The largest payload of each topic, which the network checks before decompressing: a vote
/// has one size, a certificate and a check-in a small maximum, a proposal up to 10 MiB.
pub fn size_limits() -> GossipSizeLimits {
    GossipSizeLimits {
        block: MAX_SIGNED_PROPOSAL_BYTES,
        vote: SIGNED_VOTE_BYTES,
        certificate: MAX_CERTIFICATE_BYTES,
        checkin: MAX_SIGNED_CHECKIN_BYTES,
        task: MAX_SIGNED_TASK_BYTES,
    }
}

/// What the worker concluded about one message.
#[derive(Debug)]
pub enum Outcome {
    /// Passed: hand it to the consensus loop (which reports the verdict).
    Consensus(Checked),
    /// Refused: report its verdict now.
    Refused(GossipError),
    /// A check-in, judged and (if valid) recorded here: report this verdict now.
    Checkin(Result<(), (Verdict, String)>),
    /// An AVS task submission, judged and (if new and valid) taken into the task pool here.
    Task(Result<(), (Verdict, String)>),
}

/// The gossip verdict for a consensus verdict.
pub fn outcome(verdict: Verdict) -> ValidationOutcome {
    match verdict {
        Verdict::Accept => ValidationOutcome::Accept,
        Verdict::Ignore => ValidationOutcome::Ignore,
        Verdict::Reject => ValidationOutcome::Reject,
    }
}

/// Checks one message of topic `kind`.
#[allow(clippy::too_many_arguments)]
pub fn check(
    context: &GossipContext,
    pool: &OperatorPool,
    avs: &AvsTasks,
    kind: TopicKind,
    data: &[u8],
    peer: &PeerId,
    peer_addr: Option<&avs_p2p::Multiaddr>,
    now_ms: u64,
) -> Outcome {
    let checked = match kind {
        TopicKind::Vote { .. } => context.check_vote(data).map(Checked::Vote),
        TopicKind::Certificate => context.check_certificate(data).map(Checked::Certificate),
        TopicKind::Block => context.check_proposal(data).map(Checked::Proposal),
        TopicKind::Task => return Outcome::Task(avs.validate_gossip(data, now_ms)),
        TopicKind::Checkin => {
            return Outcome::Checkin(pool.validate_gossip(
                data,
                &peer.to_string(),
                peer_addr.and_then(avs_p2p::ip_of),
                now_ms,
            ));
        }
    };
    match checked {
        Ok(checked) => {
            pool.count_event();
            Outcome::Consensus(checked)
        }
        Err(e) => Outcome::Refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_and_others_still_get_theirs() {
        let shares = PeerShares::new(2);
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let first = shares.try_take(flooder).unwrap();
        let _second = shares.try_take(flooder).unwrap();
        assert!(shares.try_take(flooder).is_none(), "beyond its share");
        assert!(shares.try_take(honest).is_some(), "another peer is not crowded out");
        drop(first);
        assert_eq!(shares.held_by(&flooder), 1);
        assert!(shares.try_take(flooder).is_some(), "a slot given back can be taken again");
    }
    use crate::pool::checkin::{Checkin, MAX_VERSION_BYTES, SignedCheckin};

    /// Issue 13, item 1: with the general slots full (a flood of other views' votes), a vote
    /// of the current view still finds a slot, and a stale one does not.
    #[test]
    fn the_current_views_votes_get_slots_a_flood_of_other_messages_cannot_take() {
        use avs_consensus::engine::{Engine, EngineConfig};
        use avs_consensus::task::TaskRegistry;
        use avs_consensus::types::{Certificate, SignedVote, VoteData, encode};

        let (keys, genesis) = avs_consensus::testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap();
        let engine =
            Engine::new(EngineConfig::new(genesis), keys[0].clone(), TaskRegistry::new()).unwrap();
        let context = engine.gossip_context();
        let (epoch, view) = (context.epoch, context.view);
        let vote = |epoch, view| {
            let data = VoteData::nullify(epoch, view);
            encode(&SignedVote { data, ..SignedVote::default() }).unwrap()
        };
        let vote_topic = TopicKind::Vote { subnet: 0 };
        let current = vote(epoch, view);
        let stale = vote(epoch, view.saturating_add(5));
        let certificate =
            encode(&Certificate { data: VoteData::nullify(epoch, view), ..Default::default() })
                .unwrap();
        assert!(is_urgent(&context, vote_topic, &current));
        assert!(is_urgent(&context, TopicKind::Certificate, &certificate));
        assert!(!is_urgent(&context, vote_topic, &stale));
        assert!(!is_urgent(&context, vote_topic, &vote(epoch.next(), view)));
        assert!(!is_urgent(&context, TopicKind::Checkin, &current), "only votes and certificates");
        assert!(!is_urgent(&context, vote_topic, &[0; 4]), "garbage is not urgent");

        let slots = ValidationSlots::new(4, 2);
        let flood: Vec<_> = (0..2).map_while(|_| slots.take(false)).collect();
        assert_eq!(flood.len(), 2, "the general slots");
        assert!(slots.take(false).is_none(), "the flood's next message is shed");
        let first = slots.take(true).expect("an urgent message finds a kept slot");
        let _second = slots.take(true).expect("and another");
        assert!(slots.take(true).is_none(), "every slot is taken");
        drop(first);
        assert!(slots.take(false).is_none(), "a kept slot is never given to the flood");
        assert!(slots.take(true).is_some());
    }

    #[test]
    fn the_checkin_limit_is_the_size_of_the_largest_checkin() {
        let checkin = SignedCheckin {
            message: Checkin {
                version: vec![b'v'; MAX_VERSION_BYTES].try_into().unwrap(),
                ..Default::default()
            },
            ..Default::default()
        };
        let bytes = avs_consensus::types::encode(&checkin).unwrap();
        assert_eq!(bytes.len(), MAX_SIGNED_CHECKIN_BYTES);
        assert_eq!(size_limits().of(TopicKind::Checkin), MAX_SIGNED_CHECKIN_BYTES);
    }
}
