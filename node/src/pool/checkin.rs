//! The signed check-in: its SSZ container, signing, and verification against an operator set.
//!
//! A check-in is signed over `hash_tree_root(SigningData{hash_tree_root(Checkin), domain})` with
//! domain type CHECK-IN (`0x00000003`) and the network digest (docs/protocol.md, section 4), so a
//! check-in of one network is never valid on another and a vote signature never passes as one.
//! Verification needs the operator's address *and* BLS key to match one operator of the current
//! epoch's set; freshness (not stale, not from the future) is checked here too, while replay (a
//! timestamp not newer than the last recorded one, or too soon after it) is the pool's job
//! because only it knows the last one. The checks are split in two, [`precheck`] (cheap) and
//! [`verify_signature`] (one pairing), so that the pool can refuse a replay between them: a
//! check-in that is refused for any cheap reason never costs a pairing.

// The `SimpleSerialize` derive expands to offset arithmetic clippy cannot see through.
#![allow(clippy::arithmetic_side_effects)]

use avs_consensus::bls::{self, SecretKey, Signature};
use avs_consensus::operators::KeyTable;
use avs_consensus::signing::{DOMAIN_CHECKIN, NetworkDigest, domain, signing_root};
use avs_consensus::ssz_check::{Shape, SszShape};
use avs_consensus::types::{OperatorIndex, Root, SignatureBytes, decode, root_of};
use ssz_rs::prelude::*;
use thiserror::Error;

/// Longest version string a check-in carries.
pub const MAX_VERSION_BYTES: usize = 64;
/// A check-in older than this is stale and refused (twelve missed 5 s periods).
pub const MAX_AGE_MS: u64 = 60_000;
/// A check-in further than this in the future is refused (clock skew allowance).
pub const MAX_FUTURE_MS: u64 = 10_000;

/// What an operator reports about itself every few seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct Checkin {
    /// Execution-layer address of the operator (its identity in the operator set).
    pub address: [u8; 20],
    /// Software version, UTF-8.
    pub version: List<u8, MAX_VERSION_BYTES>,
    pub metrics_port: u16,
    pub finalized_height: u64,
    pub events_seen: u64,
    pub is_aggregator: bool,
    /// Unix milliseconds at signing.
    pub timestamp_ms: u64,
}

/// A check-in with its BLS signature: what the gossip `checkin` topic carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct SignedCheckin {
    pub message: Checkin,
    pub signature: SignatureBytes,
}

impl SszShape for Checkin {
    fn shape() -> Shape {
        Shape::Container(vec![
            Shape::Fixed(20),
            Shape::Bytes(MAX_VERSION_BYTES),
            Shape::Fixed(2),
            Shape::Fixed(8),
            Shape::Fixed(8),
            Shape::Fixed(1),
            Shape::Fixed(8),
        ])
    }
}

impl SszShape for SignedCheckin {
    fn shape() -> Shape {
        Shape::Container(vec![Checkin::shape(), Shape::Fixed(96)])
    }
}

/// Why a check-in was refused. Nothing is recorded for a refused check-in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckinError {
    #[error("malformed check-in: {0}")]
    Malformed(String),
    #[error("address 0x{0} is not in the operator set of the current epoch")]
    UnknownOperator(String),
    #[error("bad signature for operator 0x{0}")]
    BadSignature(String),
    #[error("stale check-in: signed {age_ms} ms ago, the limit is {MAX_AGE_MS} ms")]
    Stale { age_ms: u64 },
    #[error("check-in from the future: {ahead_ms} ms ahead, the limit is {MAX_FUTURE_MS} ms")]
    Future { ahead_ms: u64 },
    #[error("replayed check-in: timestamp {got} is not newer than the recorded {last}")]
    Replayed { got: u64, last: u64 },
    #[error(
        "check-in too soon: timestamp {got} is less than {min_gap_ms} ms after the recorded {last} \
         (an operator checks in at most once per {min_gap_ms} ms)"
    )]
    TooSoon { got: u64, last: u64, min_gap_ms: u64 },
}

impl CheckinError {
    /// True when the forwarding peer is answerable (a gossip Reject): malformed or forged.
    /// Stale, replayed and too-soon ones may be honest messages that arrived late or by another
    /// path (another node may have accepted a different one first), and a non-member may
    /// be a member of the set the forwarder is still (or already) in around an epoch switch:
    /// Ignore.
    pub fn is_senders_fault(&self) -> bool {
        matches!(self, Self::Malformed(_) | Self::BadSignature(_))
    }
}

/// A check-in whose signature matched an operator of the current set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckin {
    pub checkin: Checkin,
    pub operator_index: u64,
    pub voting_power: u64,
    /// Epoch of the set it was checked against.
    pub epoch: u64,
}

/// The root a check-in's signature is over.
pub fn checkin_signing_root(
    checkin: &Checkin,
    digest: NetworkDigest,
) -> Result<Root, CheckinError> {
    let object = root_of(checkin).map_err(|e| CheckinError::Malformed(e.to_string()))?;
    signing_root(object, domain(DOMAIN_CHECKIN, digest))
        .map_err(|e| CheckinError::Malformed(e.to_string()))
}

/// Signs a check-in with the operator's BLS key.
pub fn sign(
    checkin: Checkin,
    key: &SecretKey,
    digest: NetworkDigest,
) -> Result<SignedCheckin, CheckinError> {
    let root = checkin_signing_root(&checkin, digest)?;
    let signature = SignatureBytes::try_from(key.sign(&root).to_bytes().to_vec())
        .map_err(|_| CheckinError::Malformed("signature length".into()))?;
    Ok(SignedCheckin { message: checkin, signature })
}

/// Strictly decodes the gossip bytes of a signed check-in.
pub fn decode_signed(bytes: &[u8]) -> Result<SignedCheckin, CheckinError> {
    decode::<SignedCheckin>(bytes).map_err(|e| CheckinError::Malformed(e.to_string()))
}

/// Checks freshness against `now_ms`, then the address and signature against `table` (the
/// current epoch's set): [`precheck`] then [`verify_signature`].
pub fn verify(
    table: &KeyTable,
    signed: &SignedCheckin,
    now_ms: u64,
) -> Result<VerifiedCheckin, CheckinError> {
    let index = precheck(table, &signed.message, now_ms)?;
    verify_signature(table, signed, index)
}

/// The cheap checks, no pairing: the version is UTF-8, the timestamp is fresh at `now_ms`, and
/// the address is a member of `table`. Returns the operator's index in `table`.
pub fn precheck(
    table: &KeyTable,
    checkin: &Checkin,
    now_ms: u64,
) -> Result<OperatorIndex, CheckinError> {
    if std::str::from_utf8(checkin.version.as_ref()).is_err() {
        return Err(CheckinError::Malformed("version is not UTF-8".into()));
    }
    let ts = checkin.timestamp_ms;
    if ts.saturating_add(MAX_AGE_MS) < now_ms {
        return Err(CheckinError::Stale { age_ms: now_ms.saturating_sub(ts) });
    }
    if ts > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(CheckinError::Future { ahead_ms: ts.saturating_sub(now_ms) });
    }
    let unknown = || CheckinError::UnknownOperator(hex::encode(checkin.address));
    table
        .operator_set()
        .operators
        .iter()
        .position(|op| op.address == checkin.address)
        .map(OperatorIndex::at)
        .ok_or_else(unknown)
}

/// The expensive check, one pairing: the signature against the key of operator `index` of
/// `table` (as returned by [`precheck`]).
pub fn verify_signature(
    table: &KeyTable,
    signed: &SignedCheckin,
    index: OperatorIndex,
) -> Result<VerifiedCheckin, CheckinError> {
    let checkin = &signed.message;
    let address = hex::encode(checkin.address);
    let key = table.key(index).ok_or_else(|| CheckinError::UnknownOperator(address.clone()))?;
    let signature = Signature::from_bytes(signed.signature.as_ref())
        .map_err(|_| CheckinError::BadSignature(address.clone()))?;
    let root = checkin_signing_root(checkin, table.digest())?;
    if !bls::verify(key, &root, &signature) {
        return Err(CheckinError::BadSignature(address));
    }
    Ok(VerifiedCheckin {
        checkin: checkin.clone(),
        operator_index: index.get(),
        voting_power: table.power(index).unwrap_or(0),
        epoch: table.epoch().get(),
    })
}
