//! Strict structural check of SSZ bytes before `ssz_rs` decodes them.
//!
//! `ssz_rs` 0.9's derived container decoder does unchecked offset arithmetic: bytes with an
//! offset past the end make it overflow (a panic in debug builds, a wrong error in release),
//! and an offset pointing back into the fixed part is accepted (a non-canonical encoding of a
//! valid value). Gossip bytes are attacker-controlled, so every decode in this crate first
//! walks the bytes against the container's shape: lengths, list limits, offsets (first offset
//! equals the fixed-part size, offsets never decrease, never past the end), bitlist marker.
//! Only bytes that pass are handed to `ssz_rs`, and the result is re-encoded and compared.

use crate::types::{
    AvsTaskDefinition, Block, BlockBody, Certificate, ChainState, GenesisConfig, MAX_JUSTIFICATION,
    MAX_NETWORK_NAME_BYTES, MAX_OPERATORS, MAX_PROOF_BYTES, MAX_TASK_DATA_BYTES,
    MAX_TASK_DEFINITIONS, MAX_TASK_NAME_BYTES, MAX_TASK_STATE_BYTES, MAX_TASK_STATES,
    MAX_TASKS_PER_BLOCK, Operator, OperatorSet, Proposal, SignedProposal, SignedTaskMessage,
    SignedVote, TaskMessage, TaskResult, TaskState, VoteData,
};

/// Bytes of an SSZ offset.
pub(crate) const OFFSET: usize = 4;

/// The SSZ shape of a type, as far as validation needs it.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A fixed-size value of this many bytes.
    Fixed(usize),
    /// `ByteList[max]`.
    Bytes(usize),
    /// `Bitlist[max]`.
    Bits(usize),
    /// `List[elem, max]`.
    List(Box<Shape>, usize),
    /// A container with these fields, in order.
    Container(Vec<Shape>),
}

impl Shape {
    fn fixed_size(&self) -> Option<usize> {
        match self {
            Shape::Fixed(n) => Some(*n),
            Shape::Container(fields) => {
                fields.iter().try_fold(0usize, |acc, f| acc.checked_add(f.fixed_size()?))
            }
            _ => None,
        }
    }

    /// Check `bytes` against this shape.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Shape::Fixed(n) => {
                (bytes.len() == *n).then_some(()).ok_or_else(|| format!("expected {n} bytes"))
            }
            Shape::Bytes(max) => {
                (bytes.len() <= *max).then_some(()).ok_or_else(|| "byte list too long".into())
            }
            Shape::Bits(max) => check_bitlist(bytes, *max),
            Shape::List(elem, max) => check_list(elem, *max, bytes),
            Shape::Container(fields) => check_container(fields, bytes),
        }
    }
}

fn read_offset(bytes: &[u8], at: usize) -> Result<usize, String> {
    let end = at.checked_add(OFFSET).ok_or("offset overflow")?;
    let raw: [u8; 4] =
        bytes.get(at..end).and_then(|s| s.try_into().ok()).ok_or("truncated offset")?;
    usize::try_from(u32::from_le_bytes(raw)).map_err(|_| "offset too large".into())
}

fn check_bitlist(bytes: &[u8], max: usize) -> Result<(), String> {
    let last = *bytes.last().ok_or("empty bitlist")?;
    if last == 0 {
        return Err("bitlist without marker bit".into());
    }
    let marker = usize::try_from(7u32.saturating_sub(last.leading_zeros())).map_err(|_| "bits")?;
    let bits = bytes
        .len()
        .saturating_sub(1)
        .checked_mul(8)
        .and_then(|b| b.checked_add(marker))
        .ok_or("bitlist too long")?;
    (bits <= max).then_some(()).ok_or_else(|| "bitlist too long".into())
}

/// Offsets `[first, ...]` at the start of `bytes` (a variable-size list), validated.
fn check_offsets(offsets: &[usize], fixed_end: usize, len: usize) -> Result<(), String> {
    let mut prev = fixed_end;
    for (i, o) in offsets.iter().enumerate() {
        if i == 0 && *o != fixed_end {
            return Err("first offset does not end the fixed part".into());
        }
        if *o < prev || *o > len {
            return Err("offsets out of order or past the end".into());
        }
        prev = *o;
    }
    Ok(())
}

fn check_spans(shapes: &[&Shape], offsets: &[usize], bytes: &[u8]) -> Result<(), String> {
    for (i, shape) in shapes.iter().enumerate() {
        let start = *offsets.get(i).ok_or("missing offset")?;
        let end = match offsets.get(i.checked_add(1).ok_or("index")?) {
            Some(o) => *o,
            None => bytes.len(),
        };
        shape.check(bytes.get(start..end).ok_or("offset span out of range")?)?;
    }
    Ok(())
}

fn check_list(elem: &Shape, max: usize, bytes: &[u8]) -> Result<(), String> {
    if let Some(size) = elem.fixed_size() {
        if size == 0 || !bytes.len().is_multiple_of(size) {
            return Err("list length is not a multiple of the element size".into());
        }
        if bytes.len().checked_div(size).is_none_or(|count| count > max) {
            return Err("list too long".into());
        }
        return bytes.chunks_exact(size).try_for_each(|chunk| elem.check(chunk));
    }
    if bytes.is_empty() {
        return Ok(());
    }
    let first = read_offset(bytes, 0)?;
    if first == 0 || !first.is_multiple_of(OFFSET) || first > bytes.len() {
        return Err("bad first offset in list".into());
    }
    let count = first / OFFSET;
    if count > max {
        return Err("list too long".into());
    }
    let offsets = (0..count)
        .map(|i| {
            i.checked_mul(OFFSET)
                .ok_or_else(|| "offset index".to_string())
                .and_then(|at| read_offset(bytes, at))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    check_offsets(&offsets, first, bytes.len())?;
    check_spans(&vec![elem; count], &offsets, bytes)
}

fn check_container(fields: &[Shape], bytes: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut offsets = Vec::new();
    let mut variable = Vec::new();
    for field in fields {
        match field.fixed_size() {
            Some(size) => {
                let end = at.checked_add(size).ok_or("size overflow")?;
                field.check(bytes.get(at..end).ok_or("truncated fixed field")?)?;
                at = end;
            }
            None => {
                offsets.push(read_offset(bytes, at)?);
                variable.push(field);
                at = at.checked_add(OFFSET).ok_or("size overflow")?;
            }
        }
    }
    if offsets.is_empty() {
        return (at == bytes.len()).then_some(()).ok_or_else(|| "trailing bytes".into());
    }
    check_offsets(&offsets, at, bytes.len())?;
    check_spans(&variable, &offsets, bytes)
}

/// Types with a known SSZ shape.
pub trait SszShape {
    fn shape() -> Shape;
}

impl SszShape for VoteData {
    fn shape() -> Shape {
        Shape::Fixed(49)
    }
}
impl SszShape for SignedVote {
    fn shape() -> Shape {
        Shape::Fixed(49 + 8 + 96)
    }
}
impl SszShape for Operator {
    fn shape() -> Shape {
        Shape::Fixed(20 + 48 + 96 + 8)
    }
}
impl SszShape for TaskResult {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(2),
            Shape::Fixed(8),
            Shape::Bytes(MAX_PROOF_BYTES),
            Shape::Bytes(MAX_TASK_DATA_BYTES),
            Shape::Fixed(96),
        ])
    }
}
impl SszShape for TaskMessage {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(2),
            Shape::Fixed(48),
            Shape::Bytes(MAX_PROOF_BYTES),
            Shape::Bytes(MAX_TASK_DATA_BYTES),
        ])
    }
}
impl SszShape for SignedTaskMessage {
    fn shape() -> Shape {
        Shape::Container(vec![TaskMessage::shape(), Shape::Fixed(96)])
    }
}
impl SszShape for AvsTaskDefinition {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::Fixed(2), Shape::Bytes(MAX_TASK_NAME_BYTES), Shape::Fixed(1)])
    }
}
impl SszShape for BlockBody {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::List(Box::new(TaskResult::shape()), MAX_TASKS_PER_BLOCK)])
    }
}
impl SszShape for Block {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(8),
            Shape::Fixed(32),
            Shape::Fixed(8),
            Shape::Fixed(32),
            BlockBody::shape(),
        ])
    }
}
impl SszShape for Proposal {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::Fixed(8), Shape::Fixed(8), Block::shape()])
    }
}
impl SszShape for Certificate {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::Fixed(49), Shape::Bits(MAX_OPERATORS), Shape::Fixed(96)])
    }
}
impl SszShape for SignedProposal {
    fn shape() -> Shape {
        Shape::Container(vec![
            Proposal::shape(),
            Shape::Fixed(96),
            Shape::List(Box::new(Certificate::shape()), MAX_JUSTIFICATION),
        ])
    }
}
impl SszShape for OperatorSet {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::List(Box::new(Operator::shape()), MAX_OPERATORS)])
    }
}
impl SszShape for GenesisConfig {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Bytes(MAX_NETWORK_NAME_BYTES),
            Shape::Fixed(8),
            Shape::Fixed(8),
            Shape::Fixed(8),
            OperatorSet::shape(),
            Shape::List(Box::new(AvsTaskDefinition::shape()), MAX_TASK_DEFINITIONS),
        ])
    }
}
impl SszShape for ChainState {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(8),
            Shape::Fixed(8),
            Shape::Fixed(32),
            OperatorSet::shape(),
            OperatorSet::shape(),
            Shape::List(Box::new(TaskState::shape()), MAX_TASK_STATES),
        ])
    }
}
impl SszShape for TaskState {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::Fixed(2), Shape::Bytes(MAX_TASK_STATE_BYTES)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, Height, OperatorIndex, View};
    use crate::types::encode;

    #[test]
    fn fixed_sizes_match_ssz_rs() {
        use ssz_rs::Sized;
        assert_eq!(VoteData::shape().fixed_size(), Some(VoteData::size_hint()));
        assert_eq!(SignedVote::shape().fixed_size(), Some(SignedVote::size_hint()));
        assert_eq!(Operator::shape().fixed_size(), Some(Operator::size_hint()));
        assert!(!Certificate::is_variable_size() || Certificate::shape().fixed_size().is_none());
    }

    #[test]
    fn valid_encodings_pass() {
        let block = Block {
            body: BlockBody { tasks: vec![TaskResult::default(); 3].try_into().unwrap() },
            ..Default::default()
        };
        Block::shape().check(&encode(&block).unwrap()).unwrap();
        let cert = Certificate {
            signers: vec![true, false, true].as_slice().try_into().unwrap(),
            ..Default::default()
        };
        let sp = SignedProposal {
            justification: vec![cert.clone(), cert].try_into().unwrap(),
            ..Default::default()
        };
        SignedProposal::shape().check(&encode(&sp).unwrap()).unwrap();
        ChainState::shape().check(&encode(&ChainState::default()).unwrap()).unwrap();
    }

    fn sample() -> Vec<u8> {
        let task = TaskResult {
            task_definition_id: 1,
            performer_index: OperatorIndex::new(2),
            proof_of_task: vec![1, 2, 3].try_into().unwrap(),
            data: vec![4; 40].try_into().unwrap(),
            signature: Default::default(),
        };
        let block = Block {
            height: Height::new(5),
            body: BlockBody { tasks: vec![task.clone(), task].try_into().unwrap() },
            ..Default::default()
        };
        let cert = Certificate {
            signers: vec![true, false, true, true].as_slice().try_into().unwrap(),
            ..Default::default()
        };
        let sp = SignedProposal {
            message: Proposal { view: View::new(3), epoch: Epoch::new(1), block },
            justification: vec![cert.clone(), cert].try_into().unwrap(),
            ..Default::default()
        };
        encode(&sp).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(11),
            ..Default::default()
        })]
        /// Mutated valid encodings (byte flips, truncation, extension) never panic the decoder,
        /// and whatever still decodes is canonical.
        #[test]
        fn mutated_proposals_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
            cut in proptest::prelude::any::<usize>(),
            extra in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        ) {
            let mut bytes = sample();
            let len = bytes.len();
            for (at, value) in flips {
                bytes[at % len] = value;
            }
            bytes.truncate(len - cut % 16);
            bytes.extend(extra);
            if let Ok(sp) = crate::types::decode::<SignedProposal>(&bytes) {
                proptest::prop_assert_eq!(encode(&sp).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn sample_decodes() {
        assert!(crate::types::decode::<SignedProposal>(&sample()).is_ok());
    }

    #[test]
    fn bad_offsets_fail() {
        let cert = Certificate {
            signers: vec![true].as_slice().try_into().unwrap(),
            ..Default::default()
        };
        let mut bytes = encode(&cert).unwrap();
        // The bitlist offset sits right after the 49-byte VoteData.
        bytes[49] = 0xff;
        assert!(Certificate::shape().check(&bytes).is_err());
        let mut back = encode(&cert).unwrap();
        back[49] = 10; // points into the fixed part
        assert!(Certificate::shape().check(&back).is_err());
    }
}
