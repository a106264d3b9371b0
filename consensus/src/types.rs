//! SSZ containers of the protocol (docs/protocol.md, "Containers").
//!
//! Every container here is what goes on the wire and into the store; roots are SSZ
//! `hash_tree_root`. Nothing in this module checks signatures or protocol rules: that is
//! `verify` (signatures) and `engine` (rules). Decoding bounds (list limits) are enforced by
//! `ssz_rs` itself, so a decoded value always respects the limits below.

// The `SimpleSerialize` derive expands to offset arithmetic this crate's lint cannot see
// through; this module holds no hand-written arithmetic.
#![allow(clippy::arithmetic_side_effects)]

use ssz_rs::prelude::*;

use crate::error::ConsensusError;
use crate::ssz_check::{OFFSET, SszShape};

/// A 32-byte SSZ root (block root, state root, signing root).
pub type Root = [u8; 32];
pub use crate::ids::{Epoch, Height, OperatorIndex, View};

/// Upper bound on the operator set size (also the signers bitlist limit).
pub const MAX_OPERATORS: usize = 1024;
/// Upper bound on task results in one block.
pub const MAX_TASKS_PER_BLOCK: usize = 16;
/// Upper bound on `TaskResult::data` (16 of them stay under the 10 MiB gossip limit).
pub const MAX_TASK_DATA_BYTES: usize = 1 << 19;
/// Upper bound on `TaskResult::proof_of_task`.
pub const MAX_PROOF_BYTES: usize = 1 << 16;
/// Upper bound on the certificates carried in `SignedProposal::justification`.
pub const MAX_JUSTIFICATION: usize = 256;
/// Upper bound on the network name in `GenesisConfig`.
pub const MAX_NETWORK_NAME_BYTES: usize = 64;
/// Upper bound on one task's state in `ChainState::task_states`.
pub const MAX_TASK_STATE_BYTES: usize = 256;
/// Upper bound on the tasks that keep state in `ChainState`.
pub const MAX_TASK_STATES: usize = 64;
/// Upper bound on the AVS task definitions of a genesis.
pub const MAX_TASK_DEFINITIONS: usize = 64;
/// Upper bound on an AVS task definition's name.
pub const MAX_TASK_NAME_BYTES: usize = 64;
/// AVS task ids are below this; internal tasks use it and above.
pub const FIRST_INTERNAL_TASK_ID: u16 = 10_000;

/// Encoded size of a `VoteData` (kind, view, epoch, root).
const VOTE_DATA_BYTES: usize = 1 + 8 + 8 + 32;
/// Encoded size of a `SignedVote`: every vote has exactly this size.
pub const SIGNED_VOTE_BYTES: usize = VOTE_DATA_BYTES + 8 + 96;
/// Largest encoded `Certificate` (a full signers bitlist).
pub const MAX_CERTIFICATE_BYTES: usize = VOTE_DATA_BYTES + OFFSET + 96 + MAX_OPERATORS / 8 + 1;
/// Largest encoded `TaskResult`.
const MAX_TASK_RESULT_BYTES: usize =
    2 + 8 + 2 * OFFSET + MAX_PROOF_BYTES + MAX_TASK_DATA_BYTES + 96;
/// Largest encoded `Block`.
const MAX_BLOCK_BYTES: usize =
    8 + 32 + 8 + 32 + OFFSET + OFFSET + MAX_TASKS_PER_BLOCK * (OFFSET + MAX_TASK_RESULT_BYTES);
/// Largest encoded `SignedProposal`: what the block topic must carry (under 10 MiB).
pub const MAX_SIGNED_PROPOSAL_BYTES: usize = OFFSET
    + 96
    + OFFSET
    + (8 + 8 + OFFSET + MAX_BLOCK_BYTES)
    + MAX_JUSTIFICATION * (OFFSET + MAX_CERTIFICATE_BYTES);
/// Where a `SignedProposal`'s message starts: the fixed part is the message's offset, the
/// signature and the justification's offset.
pub const SIGNED_PROPOSAL_FIXED_BYTES: usize = OFFSET + 96 + OFFSET;

/// 48-byte compressed BLS12-381 G1 public key.
pub type PublicKeyBytes = Vector<u8, 48>;
/// 96-byte compressed BLS12-381 G2 signature.
pub type SignatureBytes = Vector<u8, 96>;
/// Signers of a certificate: bit `i` is operator `i` of the epoch's set.
pub type Signers = Bitlist<MAX_OPERATORS>;

/// The vote kinds (`VoteData::kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    /// "I accept this proposal for this view."
    Notarize = 0,
    /// "This view produced nothing I could notarize in time."
    Nullify = 1,
    /// "I saw a notarization for this view and did not nullify it."
    Finalize = 2,
}

impl VoteKind {
    /// Decode the wire byte; unknown values are a protocol violation.
    pub fn from_u8(kind: u8) -> Option<Self> {
        match kind {
            0 => Some(Self::Notarize),
            1 => Some(Self::Nullify),
            2 => Some(Self::Finalize),
            _ => None,
        }
    }
}

/// One task output carried in a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct TaskResult {
    pub task_definition_id: u16,
    pub performer_index: OperatorIndex,
    pub proof_of_task: List<u8, MAX_PROOF_BYTES>,
    pub data: List<u8, MAX_TASK_DATA_BYTES>,
    /// The performer's signature over the result's `TaskMessage` (AVS tasks); all zero for
    /// internal tasks, which the proposal's signature covers (docs/protocol.md, 7.3).
    pub signature: SignatureBytes,
}

/// What an AVS task's performer signs; its root is the task id (docs/protocol.md, 7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct TaskMessage {
    pub task_definition_id: u16,
    pub performer: PublicKeyBytes,
    pub proof_of_task: List<u8, MAX_PROOF_BYTES>,
    pub data: List<u8, MAX_TASK_DATA_BYTES>,
}

/// A performer's submission: gossiped on the `task` topic and taken by `SubmitTask`.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SignedTaskMessage {
    pub message: TaskMessage,
    pub signature: SignatureBytes,
}

/// How an AVS task's results are validated (`AvsTaskDefinition::validation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validation {
    /// Each attester asks its own AVS validation service.
    Service,
    /// Built in: `proof_of_task` is the SHA-256 of `data`.
    Sha256,
}

impl Validation {
    pub fn from_u8(kind: u8) -> Option<Self> {
        match kind {
            0 => Some(Self::Service),
            1 => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Service => 0,
            Self::Sha256 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Sha256 => "sha256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "service" => Some(Self::Service),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// An AVS builder's task, declared in the genesis (docs/protocol.md, 7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct AvsTaskDefinition {
    pub id: u16,
    pub name: List<u8, MAX_TASK_NAME_BYTES>,
    pub validation: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct BlockBody {
    pub tasks: List<TaskResult, MAX_TASKS_PER_BLOCK>,
}

/// A block. Its root does not include the view, so the same block can be re-proposed later.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct Block {
    pub height: Height,
    pub parent_root: Root,
    pub proposer_index: OperatorIndex,
    /// `hash_tree_root` of the `ChainState` after applying this block to its parent's state.
    pub state_root: Root,
    pub body: BlockBody,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct Proposal {
    pub view: View,
    pub epoch: Epoch,
    pub block: Block,
}

/// A proposal signed by `leader(epoch, view)`, with the certificates that justify its parent.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SignedProposal {
    pub message: Proposal,
    pub signature: SignatureBytes,
    pub justification: List<Certificate, MAX_JUSTIFICATION>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, SimpleSerialize)]
pub struct VoteData {
    pub kind: u8,
    pub view: View,
    pub epoch: Epoch,
    /// Zero for NULLIFY.
    pub block_root: Root,
}

impl VoteData {
    pub fn notarize(epoch: Epoch, view: View, block_root: Root) -> Self {
        Self { kind: VoteKind::Notarize as u8, view, epoch, block_root }
    }
    pub fn nullify(epoch: Epoch, view: View) -> Self {
        Self { kind: VoteKind::Nullify as u8, view, epoch, block_root: [0; 32] }
    }
    pub fn finalize(epoch: Epoch, view: View, block_root: Root) -> Self {
        Self { kind: VoteKind::Finalize as u8, view, epoch, block_root }
    }
    /// The decoded kind, or `None` for an unknown kind byte.
    pub fn vote_kind(&self) -> Option<VoteKind> {
        VoteKind::from_u8(self.kind)
    }
    /// Well-formed: known kind, and a zero root exactly for NULLIFY.
    pub fn is_well_formed(&self) -> bool {
        match self.vote_kind() {
            Some(VoteKind::Nullify) => self.block_root == [0; 32],
            Some(VoteKind::Notarize | VoteKind::Finalize) => self.block_root != [0; 32],
            None => false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SignedVote {
    pub data: VoteData,
    pub operator_index: OperatorIndex,
    pub signature: SignatureBytes,
}

/// An aggregate of votes on one `VoteData` whose signers hold a quorum of the epoch's power.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct Certificate {
    pub data: VoteData,
    pub signers: Signers,
    pub signature: SignatureBytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct Operator {
    /// Execution-layer address identifying the operator across epochs.
    pub address: [u8; 20],
    pub pubkey: PublicKeyBytes,
    /// Proof of possession of `pubkey` (docs/protocol.md, "Cryptography").
    pub pop: SignatureBytes,
    pub power: u64,
}

/// The operator set of one epoch; an operator's index is its position in `operators`.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct OperatorSet {
    pub operators: List<Operator, MAX_OPERATORS>,
}

/// Everything that identifies one network. Its root's first 4 bytes are the network digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct GenesisConfig {
    pub network_name: List<u8, MAX_NETWORK_NAME_BYTES>,
    /// Unix seconds of epoch 0, view 0.
    pub genesis_time: u64,
    pub slot_duration_ms: u64,
    pub intervals_per_slot: u64,
    pub operators: OperatorSet,
    /// The AVS tasks of this network, sorted by id (docs/protocol.md, 7.3).
    pub task_definitions: List<AvsTaskDefinition, MAX_TASK_DEFINITIONS>,
}

/// The replicated state after a block. `state_root` of a block commits to this.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct ChainState {
    /// Epoch whose operator set is `operators`: blocks built on this state belong to it
    /// unless `next_operators` differs (then the next block belongs to `epoch + 1`).
    pub epoch: Epoch,
    /// Height of the block this state follows.
    pub height: Height,
    /// Parent root of the block this state follows (zero for the genesis state). A block's
    /// own root cannot be in its state: the block commits to the state root.
    pub parent_root: Root,
    /// Operator set of `epoch`.
    pub operators: OperatorSet,
    /// Operator set after task effects; differs from `operators` iff this block ends the epoch.
    pub next_operators: OperatorSet,
    /// Each task's own state (docs/protocol.md, "Task state"), sorted by task id, one entry
    /// per task at most: what a task's next result is judged against, so that every node
    /// judges it against the same history.
    pub task_states: List<TaskState, MAX_TASK_STATES>,
}

/// A task's state as the chain holds it: the task's own SSZ, opaque to the consensus.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct TaskState {
    pub task_definition_id: u16,
    pub data: List<u8, MAX_TASK_STATE_BYTES>,
}

impl ChainState {
    /// True when the block that produced this state changed the operator set, which ends the
    /// epoch (docs/protocol.md, "Epochs").
    pub fn ends_epoch(&self) -> bool {
        self.operators != self.next_operators
    }

    /// The state task `task_definition_id` keeps, if it keeps any.
    pub fn task_state(&self, task_definition_id: u16) -> Option<&[u8]> {
        self.task_states
            .iter()
            .find(|s| s.task_definition_id == task_definition_id)
            .map(|s| s.data.as_ref())
    }

    /// Sets task `task_definition_id`'s state, keeping the list sorted by task id.
    pub fn set_task_state(
        &mut self,
        task_definition_id: u16,
        data: &[u8],
    ) -> Result<(), ConsensusError> {
        let data = byte_list(data)?;
        let mut states: Vec<TaskState> = self.task_states.to_vec();
        let entry = TaskState { task_definition_id, data };
        match states.binary_search_by_key(&task_definition_id, |s| s.task_definition_id) {
            Ok(i) => states.splice(i..=i, [entry]).for_each(drop),
            Err(i) => states.insert(i, entry),
        }
        self.task_states =
            List::try_from(states).map_err(|_| ConsensusError::Overflow("task states"))?;
        Ok(())
    }
}

/// Signing container: `signing_root = hash_tree_root(SigningData{object_root, domain})`.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SigningData {
    pub object_root: Root,
    pub domain: Root,
}

/// `hash_tree_root` of any SSZ value, without needing a mutable borrow at the call site.
pub fn root_of<T: SimpleSerialize + Clone>(value: &T) -> Result<Root, ConsensusError> {
    let mut copy = value.clone();
    let node = copy.hash_tree_root().map_err(|e| ConsensusError::Ssz(e.to_string()))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(node.as_ref());
    Ok(out)
}

/// SSZ-encode a value.
pub fn encode<T: SimpleSerialize>(value: &T) -> Result<Vec<u8>, ConsensusError> {
    let mut buf = Vec::new();
    value.serialize(&mut buf).map_err(|e| ConsensusError::Ssz(e.to_string()))?;
    Ok(buf)
}

/// SSZ-decode a value; any malformed or non-canonical input is an error, never a panic
/// (the bytes are checked against the type's shape first, see `ssz_check`).
pub fn decode<T: SimpleSerialize + SszShape>(bytes: &[u8]) -> Result<T, ConsensusError> {
    T::shape().check(bytes).map_err(ConsensusError::Ssz)?;
    let value = T::deserialize(bytes).map_err(|e| ConsensusError::Ssz(e.to_string()))?;
    if encode(&value)? != bytes {
        return Err(ConsensusError::Ssz("non-canonical encoding".into()));
    }
    Ok(value)
}

/// Build a byte list, refusing input over its limit.
pub fn byte_list<const N: usize>(bytes: &[u8]) -> Result<List<u8, N>, ConsensusError> {
    List::try_from(bytes.to_vec()).map_err(|(_, e)| ConsensusError::Ssz(e.to_string()))
}

impl Block {
    pub fn root(&self) -> Result<Root, ConsensusError> {
        root_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_certificate() -> Certificate {
        let signers = Signers::try_from(vec![true; MAX_OPERATORS].as_slice()).unwrap();
        Certificate {
            data: VoteData::nullify(Epoch::new(1), View::new(2)),
            signers,
            ..Default::default()
        }
    }

    #[test]
    fn size_bounds_are_the_sizes_of_the_largest_encodings() {
        assert_eq!(encode(&SignedVote::default()).unwrap().len(), SIGNED_VOTE_BYTES);
        assert_eq!(encode(&full_certificate()).unwrap().len(), MAX_CERTIFICATE_BYTES);
        let task = TaskResult {
            task_definition_id: 1,
            performer_index: OperatorIndex::new(2),
            proof_of_task: List::try_from(vec![1u8; MAX_PROOF_BYTES]).unwrap(),
            data: List::try_from(vec![2u8; MAX_TASK_DATA_BYTES]).unwrap(),
            signature: Default::default(),
        };
        let body = BlockBody { tasks: List::try_from(vec![task; MAX_TASKS_PER_BLOCK]).unwrap() };
        let proposal = SignedProposal {
            message: Proposal {
                view: View::new(1),
                epoch: Epoch::new(2),
                block: Block { body, ..Default::default() },
            },
            justification: List::try_from(vec![full_certificate(); MAX_JUSTIFICATION]).unwrap(),
            ..Default::default()
        };
        let bytes = encode(&proposal).unwrap();
        assert_eq!(bytes.len(), MAX_SIGNED_PROPOSAL_BYTES);
        const { assert!(MAX_SIGNED_PROPOSAL_BYTES <= 10 * 1024 * 1024) };
        // The message (view, then epoch) starts right after the fixed part.
        let at = SIGNED_PROPOSAL_FIXED_BYTES;
        assert_eq!(bytes[..4], u32::try_from(at).unwrap().to_le_bytes());
        assert_eq!(bytes[at..at + 16], [1u64.to_le_bytes(), 2u64.to_le_bytes()].concat());
    }

    #[test]
    fn block_roundtrip_and_root_excludes_view() {
        let block = Block {
            height: Height::new(3),
            parent_root: [7; 32],
            proposer_index: OperatorIndex::new(1),
            ..Default::default()
        };
        let bytes = encode(&block).unwrap();
        let back: Block = decode(&bytes).unwrap();
        assert_eq!(back, block);
        let p1 = Proposal { view: View::new(1), epoch: Epoch::ZERO, block: block.clone() };
        let p2 = Proposal { view: View::new(9), epoch: Epoch::ZERO, block: block.clone() };
        assert_ne!(root_of(&p1).unwrap(), root_of(&p2).unwrap());
        assert_eq!(root_of(&p1.block).unwrap(), root_of(&p2.block).unwrap());
    }

    #[test]
    fn malformed_bytes_are_errors() {
        assert!(decode::<SignedVote>(&[1, 2, 3]).is_err());
        assert!(decode::<Block>(&[]).is_err());
        let mut cert = encode(&Certificate::default()).unwrap();
        cert.truncate(cert.len() - 1);
        assert!(decode::<Certificate>(&cert).is_err());
    }

    #[test]
    fn vote_data_well_formed() {
        assert!(VoteData::nullify(Epoch::new(0), View::new(1)).is_well_formed());
        assert!(VoteData::notarize(Epoch::new(0), View::new(1), [1; 32]).is_well_formed());
        assert!(!VoteData::notarize(Epoch::new(0), View::new(1), [0; 32]).is_well_formed());
        assert!(
            !VoteData { kind: 7, ..VoteData::nullify(Epoch::new(0), View::new(1)) }
                .is_well_formed()
        );
        assert!(
            !VoteData { block_root: [1; 32], ..VoteData::nullify(Epoch::new(0), View::new(1)) }
                .is_well_formed()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(3),
            ..Default::default()
        })]
        /// Arbitrary bytes never panic the decoders, and whatever decodes re-encodes to the
        /// same bytes (SSZ is canonical for these containers).
        #[test]
        fn decoders_are_total_and_canonical(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(v) = decode::<SignedVote>(&bytes) {
                proptest::prop_assert_eq!(encode(&v).unwrap(), bytes.clone());
            }
            if let Ok(c) = decode::<Certificate>(&bytes) {
                proptest::prop_assert_eq!(encode(&c).unwrap(), bytes.clone());
            }
            let _ = decode::<SignedProposal>(&bytes);
            let _ = decode::<Block>(&bytes);
        }

        #[test]
        fn vote_roundtrip(kind in 0u8..3, view in proptest::prelude::any::<u64>(), epoch in proptest::prelude::any::<u64>(), root in proptest::prelude::any::<[u8; 32]>(), op in proptest::prelude::any::<u64>()) {
            let vote = SignedVote { data: VoteData { kind, view: View::new(view), epoch: Epoch::new(epoch), block_root: root }, operator_index: OperatorIndex::new(op), signature: Default::default() };
            let back: SignedVote = decode(&encode(&vote).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, vote);
        }
    }

    #[test]
    fn task_states_stay_sorted_one_per_task_and_round_trip() {
        let mut state = ChainState::default();
        assert_eq!(state.task_state(7), None);
        state.set_task_state(10001, &[1, 2]).unwrap();
        state.set_task_state(7, &[3]).unwrap();
        state.set_task_state(10001, &[4, 5, 6]).unwrap();
        let ids: Vec<u16> = state.task_states.iter().map(|s| s.task_definition_id).collect();
        assert_eq!(ids, vec![7, 10001]);
        assert_eq!(state.task_state(10001), Some(&[4, 5, 6][..]));
        assert!(state.set_task_state(1, &[0; MAX_TASK_STATE_BYTES + 1]).is_err());
        assert_eq!(state.task_states.len(), 2, "a refused state changes nothing");
        let bytes = encode(&state).unwrap();
        assert_eq!(decode::<ChainState>(&bytes).unwrap(), state);
    }

    #[test]
    fn byte_list_limit() {
        assert!(byte_list::<4>(&[1, 2, 3, 4]).is_ok());
        assert!(byte_list::<4>(&[1, 2, 3, 4, 5]).is_err());
    }
}
