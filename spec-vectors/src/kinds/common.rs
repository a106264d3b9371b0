//! Deterministic inputs shared by the kinds: operator keys, operator sets, genesis
//! configurations and signed messages, all built with our real signing code.
//!
//! Operator `i`'s secret key is IETF KeyGen of `ikm = [i + 1; 32]` (32 bytes, each `i + 1`) with
//! an empty key_info; its address is `[i; 20]`. BLS signing is deterministic, so every
//! signature below is a pure function of the code.

use anyhow::{Context, anyhow};
use avs_consensus::bls::{self, SecretKey};
use avs_consensus::signing::{
    NetworkDigest, network_digest, proposal_signing_root, vote_signing_root,
};
use avs_consensus::types::OperatorIndex;
use avs_consensus::types::{
    AvsTaskDefinition, Certificate, GenesisConfig, Operator, OperatorSet, Proposal, SignatureBytes,
    SignedProposal, SignedVote, Signers, Validation, VoteData, byte_list,
};
use ssz_rs::prelude::{List, Vector};

/// Genesis unix time of every generated network: a round number far from zero.
pub(crate) const GENESIS_TIME: u64 = 1_700_000_000;
/// The default slot of docs/protocol.md: 4000 ms in 5 intervals of 800 ms.
pub(crate) const SLOT_MS: u64 = 4000;
pub(crate) const INTERVALS: u64 = 5;

/// The key material of operator `i`.
pub(crate) fn ikm(i: usize) -> [u8; 32] {
    [u8::try_from(i + 1).unwrap_or(u8::MAX); 32]
}

pub(crate) fn secret(i: usize) -> anyhow::Result<SecretKey> {
    Ok(SecretKey::from_seed(&ikm(i))?)
}

pub(crate) fn sig_bytes(sig: &bls::Signature) -> anyhow::Result<SignatureBytes> {
    Vector::try_from(sig.to_bytes().to_vec()).map_err(|(_, e)| anyhow!("signature: {e}"))
}

/// Operators `0..powers.len()` with their deterministic keys and valid proofs of possession.
pub(crate) fn operator_set(powers: &[u64]) -> anyhow::Result<OperatorSet> {
    let mut operators = Vec::with_capacity(powers.len());
    for (i, power) in powers.iter().enumerate() {
        let key = secret(i)?;
        operators.push(Operator {
            address: [u8::try_from(i).unwrap_or(u8::MAX); 20],
            pubkey: Vector::try_from(key.public_key().to_bytes().to_vec())
                .map_err(|(_, e)| anyhow!("pubkey: {e}"))?,
            pop: sig_bytes(&key.proof_of_possession())?,
            power: *power,
        });
    }
    Ok(OperatorSet {
        operators: List::try_from(operators).map_err(|(_, e)| anyhow!("operators: {e}"))?,
    })
}

pub(crate) fn genesis(name: &str, powers: &[u64]) -> anyhow::Result<GenesisConfig> {
    Ok(GenesisConfig {
        network_name: byte_list(name.as_bytes())?,
        genesis_time: GENESIS_TIME,
        slot_duration_ms: SLOT_MS,
        intervals_per_slot: INTERVALS,
        operators: operator_set(powers)?,
        task_definitions: List::try_from(vec![AvsTaskDefinition {
            id: 1,
            name: byte_list(b"sha256-example")?,
            validation: Validation::Sha256.as_u8(),
        }])
        .map_err(|(_, e)| anyhow!("task definitions: {e}"))?,
    })
}

/// A vote by operator `i` on `data`, signed for the network `digest`.
pub(crate) fn vote(i: usize, data: VoteData, digest: NetworkDigest) -> anyhow::Result<SignedVote> {
    let root = vote_signing_root(&data, digest)?;
    Ok(SignedVote {
        data,
        operator_index: OperatorIndex::at(i),
        signature: sig_bytes(&secret(i)?.sign(&root))?,
    })
}

/// A certificate on `data` signed by `signers` out of `n` operators.
pub(crate) fn certificate(
    n: usize,
    signers: &[usize],
    data: VoteData,
    digest: NetworkDigest,
) -> anyhow::Result<Certificate> {
    let root = vote_signing_root(&data, digest)?;
    let sigs =
        signers.iter().map(|i| Ok(secret(*i)?.sign(&root))).collect::<anyhow::Result<Vec<_>>>()?;
    let bits: Vec<bool> = (0..n).map(|i| signers.contains(&i)).collect();
    let aggregate = bls::aggregate_signatures(&sigs).context("no signer")?;
    Ok(Certificate {
        data,
        signers: Signers::try_from(bits.as_slice()).map_err(|e| anyhow!("signers: {e}"))?,
        signature: sig_bytes(&aggregate)?,
    })
}

/// `message` signed by operator `i` with the given justification.
pub(crate) fn signed_proposal(
    i: usize,
    message: Proposal,
    justification: Vec<Certificate>,
    digest: NetworkDigest,
) -> anyhow::Result<SignedProposal> {
    let root = proposal_signing_root(&message, digest)?;
    Ok(SignedProposal {
        message,
        signature: sig_bytes(&secret(i)?.sign(&root))?,
        justification: List::try_from(justification)
            .map_err(|(_, e)| anyhow!("justification: {e}"))?,
    })
}

/// The network digest of a genesis configuration.
pub(crate) fn digest(genesis: &GenesisConfig) -> anyhow::Result<NetworkDigest> {
    Ok(network_digest(genesis)?)
}
