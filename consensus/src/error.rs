//! Error type of the crate. Every fallible public function returns `ConsensusError`; bad input
//! is reported here and changes no state.

use thiserror::Error;

use crate::ids::{Epoch, OperatorIndex};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConsensusError {
    #[error("SSZ encoding or decoding failed: {0}")]
    Ssz(String),
    #[error("invalid BLS secret key material: need at least 32 bytes of seed")]
    BadKeyMaterial,
    #[error("invalid BLS public key for operator {index}: {reason}")]
    BadPublicKey { index: OperatorIndex, reason: String },
    #[error(
        "invalid BLS public key encoding ({0}): not on the curve, not in the subgroup, or infinity"
    )]
    BadPublicKeyEncoding(String),
    #[error("proof of possession of operator {index} does not verify; the key is refused")]
    BadProofOfPossession { index: OperatorIndex },
    #[error("malformed BLS signature")]
    BadSignatureEncoding,
    #[error("signature does not verify")]
    BadSignature,
    #[error("operator index {0} is not in the epoch's operator set")]
    UnknownOperator(OperatorIndex),
    #[error("operator set is empty or has no voting power")]
    EmptyOperatorSet,
    #[error("operators {first} and {second} share {what}: each operator needs its own")]
    DuplicateOperator { first: OperatorIndex, second: OperatorIndex, what: &'static str },
    #[error("operator set too large: {0} operators")]
    TooManyOperators(usize),
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    #[error("message is for epoch {got}, key table is for epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("certificate signers bitlist has length {got}, operator set has {expected}")]
    SignersLength { expected: usize, got: usize },
    #[error("certificate has no quorum: signed power {signed} of total {total}")]
    NoQuorum { signed: u128, total: u128 },
    #[error("malformed vote data (unknown kind or wrong root for the kind)")]
    MalformedVote,
    #[error("batch verification input is empty or inconsistent")]
    BadBatch,
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    #[error("task {id}: {reason}")]
    Task { id: u16, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}
