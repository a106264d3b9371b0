//! Invariants of a simulated run, written apart from the engine: they read only what nodes
//! sent and reported (published votes, finalized blocks with their certificates, verdicts on
//! peers) and check them with their own arithmetic.
//!
//! - **Agreement**: no two nodes ever finalize different blocks at one height.
//! - **Chain**: each finalized block's parent is the block finalized at the height below.
//! - **No gaps**: each node reports heights in order, each once, with no height skipped
//!   (across its restarts too: it goes on from where its store left it).
//! - **Proof**: every finalization certificate is a FINALIZE of the block or of a descendant
//!   reported by the same node, signed by more than 2/3 of the power of its epoch's set,
//!   with a valid aggregate signature of the signers' keys.
//! - **Honest votes never conflict** (over restarts): per operator and view at most one
//!   NOTARIZE root, never NULLIFY and FINALIZE together, FINALIZE only for the root it
//!   notarized.
//! - **Honest peers are never punished**: no gossip Reject and no req/resp misbehaviour
//!   report names an honest node.

use std::collections::{BTreeMap, HashMap};

use avs_consensus::Verdict;
use avs_consensus::bls::{PublicKey, Signature, fast_aggregate_verify};
use avs_consensus::signing::{NetworkDigest, network_digest, vote_signing_root};
use avs_consensus::types::{
    Epoch, GenesisConfig, Height, OperatorSet, Root, SignedVote, View, VoteKind,
};

use crate::core::FinalizedEvent;

#[derive(Debug, Default, Clone)]
struct OwnVotes {
    notarize: Option<Root>,
    nullify: bool,
    finalize: Option<Root>,
}

pub(crate) struct Checker {
    honest: Vec<bool>,
    digest: NetworkDigest,
    /// Operator sets by epoch, as the finalized chain announces them (epoch 0: genesis).
    sets: BTreeMap<Epoch, OperatorSet>,
    /// height -> (root, parent root), the first report.
    chain: BTreeMap<Height, (Root, Root)>,
    /// node -> last finalized height reported (or restored from the store).
    last: HashMap<usize, Height>,
    /// (pubkey, epoch, view) -> what that operator signed.
    votes: HashMap<(Vec<u8>, Epoch, View), OwnVotes>,
    /// Time (ms after genesis) each height was first finalized anywhere.
    pub(crate) first_finalized_ms: BTreeMap<Height, u64>,
    pub(crate) violations: Vec<String>,
}

impl Checker {
    pub(crate) fn new(genesis: &GenesisConfig, honest: Vec<bool>) -> Self {
        let digest = network_digest(genesis).expect("genesis digest");
        let mut sets = BTreeMap::new();
        sets.insert(Epoch::ZERO, genesis.operators.clone());
        Self {
            honest,
            digest,
            sets,
            chain: BTreeMap::new(),
            last: HashMap::new(),
            votes: HashMap::new(),
            first_finalized_ms: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < 50 {
            self.violations.push(text);
        }
    }

    /// Node `i` (re)started; its store says it finalized up to `height`.
    pub(crate) fn started(&mut self, i: usize, height: Option<Height>) {
        let height = height.unwrap_or(Height::ZERO);
        if let Some(&last) = self.last.get(&i)
            && height < last
        {
            self.violation(format!(
                "node {i} restarted at height {height} below {last}, acknowledged before"
            ));
        }
        self.last.insert(i, height);
    }

    pub(crate) fn verdict(&mut self, sender: usize, verdict: Verdict, why: &str) {
        if verdict == Verdict::Reject && self.honest.get(sender).copied().unwrap_or(false) {
            self.violation(format!("honest node {sender} was punished: {why}"));
        }
    }

    pub(crate) fn vote_sent(&mut self, i: usize, vote: &SignedVote) {
        if !self.honest.get(i).copied().unwrap_or(false) {
            return;
        }
        let Some(kind) = VoteKind::from_u8(vote.data.kind) else {
            self.violation(format!("node {i} sent a vote of unknown kind {}", vote.data.kind));
            return;
        };
        let Some(set) = self.sets.get(&vote.data.epoch) else { return };
        let Some(op) = vote.operator_index.position().and_then(|x| set.operators.get(x)) else {
            self.violation(format!(
                "node {i} voted as operator {} outside its set",
                vote.operator_index
            ));
            return;
        };
        let key = (op.pubkey.to_vec(), vote.data.epoch, vote.data.view);
        let root = vote.data.block_root;
        let mut own = self.votes.get(&key).cloned().unwrap_or_default();
        let conflict = match kind {
            VoteKind::Notarize => {
                let bad = own.notarize.is_some_and(|r| r != root);
                own.notarize = Some(root);
                bad.then(|| "two NOTARIZE roots".to_string())
            }
            VoteKind::Nullify => {
                own.nullify = true;
                own.finalize.is_some().then(|| "NULLIFY after FINALIZE".to_string())
            }
            VoteKind::Finalize => {
                let bad = if own.nullify {
                    Some("FINALIZE after NULLIFY".to_string())
                } else if own.notarize.is_some_and(|r| r != root)
                    || own.finalize.is_some_and(|r| r != root)
                {
                    Some("FINALIZE of a root it did not notarize".to_string())
                } else {
                    None
                };
                own.finalize = Some(root);
                bad
            }
        };
        if let Some(what) = conflict {
            self.violation(format!(
                "node {i} signed conflicting votes in epoch {} view {}: {what}",
                vote.data.epoch, vote.data.view
            ));
        }
        self.votes.insert(key, own);
    }

    pub(crate) fn finalized(&mut self, i: usize, at_ms: u64, event: &FinalizedEvent) {
        let height = event.block.height;
        let expected = self.last.get(&i).copied().unwrap_or(Height::ZERO).next();
        if height != expected {
            self.violation(format!("node {i} finalized height {height}, expected {expected} next"));
        }
        self.last.insert(i, height);
        match self.chain.get(&height) {
            Some((root, _)) if *root != event.root => self.violation(format!(
                "disagreement at height {height}: node {i} finalized {} but {} was finalized before",
                hex::encode(&event.root[..4]),
                hex::encode(&root[..4])
            )),
            Some(_) => {}
            None => {
                self.chain.insert(height, (event.root, event.block.parent_root));
                self.first_finalized_ms.insert(height, at_ms);
            }
        }
        if let Some(below_height) = height.previous().filter(|h| *h > Height::ZERO)
            && let Some((below, _)) = self.chain.get(&below_height)
            && *below != event.block.parent_root
        {
            self.violation(format!(
                "height {height}'s parent is not the block finalized at {}",
                below_height
            ));
        }
        self.check_certificate(i, event);
    }

    /// A node announced the operator set of a new epoch; the first announcement is kept, and a
    /// different one from another node is a disagreement.
    pub(crate) fn epoch_changed(&mut self, i: usize, epoch: Epoch, set: &OperatorSet) {
        match self.sets.get(&epoch) {
            Some(known) if known != set => {
                self.violation(format!("node {i} entered epoch {epoch} with another operator set"))
            }
            Some(_) => {}
            None => {
                self.sets.insert(epoch, set.clone());
            }
        }
    }

    fn check_certificate(&mut self, i: usize, event: &FinalizedEvent) {
        let cert = &event.certificate;
        if cert.data.vote_kind() != Some(VoteKind::Finalize) {
            self.violation(format!(
                "node {i} finalized height {} on a non-FINALIZE certificate",
                event.block.height
            ));
            return;
        }
        let Some(set) = self.sets.get(&cert.data.epoch).cloned() else {
            self.violation(format!("a certificate of unknown epoch {}", cert.data.epoch));
            return;
        };
        let total: u128 = set.operators.iter().map(|o| u128::from(o.power)).sum();
        let mut signed: u128 = 0;
        let mut keys = Vec::new();
        if cert.signers.len() != set.operators.len() {
            self.violation(format!(
                "certificate signers list has {} bits for {} operators",
                cert.signers.len(),
                set.operators.len()
            ));
            return;
        }
        for (bit, op) in cert.signers.iter().zip(set.operators.iter()) {
            if *bit {
                signed += u128::from(op.power);
                match PublicKey::from_bytes(op.pubkey.as_ref()) {
                    Ok(k) => keys.push(k),
                    Err(_) => self.violation("operator key does not decode".into()),
                }
            }
        }
        if signed * 3 <= total * 2 {
            self.violation(format!(
                "height {} finalized with {signed} of {total} power",
                event.block.height
            ));
        }
        let message = vote_signing_root(&cert.data, self.digest).expect("signing root");
        let ok = Signature::from_bytes(cert.signature.as_ref())
            .map(|sig| fast_aggregate_verify(&keys.iter().collect::<Vec<_>>(), &message, &sig))
            .unwrap_or(false);
        if !ok {
            self.violation(format!(
                "height {}'s finalization signature does not verify",
                event.block.height
            ));
        }
    }

    /// The last height node `i` reported (or restored), alive or not.
    pub(crate) fn height_of(&self, i: usize) -> u64 {
        self.last.get(&i).copied().unwrap_or(Height::ZERO).get()
    }

    pub(crate) fn assert_clean(&self) {
        assert!(self.violations.is_empty(), "invariants violated:\n{}", self.violations.join("\n"));
    }
}
