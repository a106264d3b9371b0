//! Gossip validation off the consensus loop (docs/protocol.md, section 12).
//!
//! A worker runs [`check`] on each message against the core's latest [`GossipContext`]:
//! consensus messages are decoded and checked (votes cheaply; certificates and proposals with
//! their signatures) and, if they pass, go to the loop as [`Checked`]; check-ins are verified
//! and recorded in the operator pool right here. A refusal is a [`GossipError`] whose
//! [`GossipError::verdict`] says whose fault it is.

use avs_consensus::Verdict;
use avs_consensus::gossip::{GossipContext, GossipError};
use avs_p2p::{PeerId, TopicKind, ValidationOutcome};

use crate::core::Checked;
use crate::pool::OperatorPool;

/// What the worker concluded about one message.
#[derive(Debug)]
pub enum Outcome {
    /// Passed: hand it to the consensus loop (which reports the verdict).
    Consensus(Checked),
    /// Refused: report its verdict now.
    Refused(GossipError),
    /// A check-in, judged and (if valid) recorded here: report this verdict now.
    Checkin(Result<(), (Verdict, String)>),
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
pub fn check(
    context: &GossipContext,
    pool: &OperatorPool,
    kind: TopicKind,
    data: &[u8],
    peer: &PeerId,
    now_ms: u64,
) -> Outcome {
    let checked = match kind {
        TopicKind::Vote { .. } => context.check_vote(data).map(Checked::Vote),
        TopicKind::Certificate => context.check_certificate(data).map(Checked::Certificate),
        TopicKind::Block => context.check_proposal(data).map(Checked::Proposal),
        TopicKind::Checkin => {
            return Outcome::Checkin(pool.validate_gossip(data, &peer.to_string(), now_ms));
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
