//! Domains, network digest and signing roots (docs/protocol.md, "Signing").
//!
//! `domain = domain_type ‖ network_digest ‖ 24 zero bytes`, `network_digest` = first 4 bytes of
//! `hash_tree_root(GenesisConfig)`, and every signature is over
//! `hash_tree_root(SigningData{object_root, domain})`. This is what keeps a signature for one
//! network or one message kind from being valid for another.

use crate::error::ConsensusError;
use crate::types::{GenesisConfig, Proposal, Root, SigningData, TaskMessage, VoteData, root_of};

/// 4-byte domain type.
pub type DomainType = [u8; 4];
/// First 4 bytes of `hash_tree_root(GenesisConfig)`.
pub type NetworkDigest = [u8; 4];

pub const DOMAIN_PROPOSAL: DomainType = [0x00, 0x00, 0x00, 0x01];
pub const DOMAIN_VOTE: DomainType = [0x00, 0x00, 0x00, 0x02];
pub const DOMAIN_CHECKIN: DomainType = [0x00, 0x00, 0x00, 0x03];
pub const DOMAIN_TASK: DomainType = [0x00, 0x00, 0x00, 0x04];

/// The network digest of a genesis configuration.
pub fn network_digest(genesis: &GenesisConfig) -> Result<NetworkDigest, ConsensusError> {
    let root = root_of(genesis)?;
    let mut digest = [0u8; 4];
    digest.copy_from_slice(root.get(..4).ok_or(ConsensusError::Overflow("digest"))?);
    Ok(digest)
}

/// `domain_type ‖ network_digest ‖ 0^24`.
pub fn domain(domain_type: DomainType, digest: NetworkDigest) -> Root {
    let mut out = [0u8; 32];
    for (slot, byte) in out.iter_mut().zip(domain_type.iter().chain(digest.iter())) {
        *slot = *byte;
    }
    out
}

/// `hash_tree_root(SigningData{object_root, domain})`.
pub fn signing_root(object_root: Root, domain: Root) -> Result<Root, ConsensusError> {
    root_of(&SigningData { object_root, domain })
}

/// Signing root of a proposal (domain PROPOSAL).
pub fn proposal_signing_root(
    proposal: &Proposal,
    digest: NetworkDigest,
) -> Result<Root, ConsensusError> {
    signing_root(root_of(proposal)?, domain(DOMAIN_PROPOSAL, digest))
}

/// Signing root of a vote (domain VOTE); the certificate over the same data signs the same root.
pub fn vote_signing_root(data: &VoteData, digest: NetworkDigest) -> Result<Root, ConsensusError> {
    signing_root(root_of(data)?, domain(DOMAIN_VOTE, digest))
}

/// An AVS task's id: `hash_tree_root(TaskMessage)` (docs/protocol.md, 7.3).
pub fn task_id(message: &TaskMessage) -> Result<Root, ConsensusError> {
    root_of(message)
}

/// What a performer signs for `message` (domain TASK).
pub fn task_signing_root(
    message: &TaskMessage,
    digest: NetworkDigest,
) -> Result<Root, ConsensusError> {
    signing_root(task_id(message)?, domain(DOMAIN_TASK, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, View};
    use crate::types::byte_list;

    #[test]
    fn domain_layout() {
        let d = domain(DOMAIN_VOTE, [0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(&d[..8], &[0, 0, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(d[8..].iter().all(|b| *b == 0));
    }

    #[test]
    fn digest_depends_on_genesis() {
        let a = GenesisConfig { genesis_time: 1, ..Default::default() };
        let b = GenesisConfig {
            genesis_time: 1,
            network_name: byte_list(b"other").unwrap(),
            ..Default::default()
        };
        assert_ne!(network_digest(&a).unwrap(), network_digest(&b).unwrap());
    }

    #[test]
    fn roots_separate_kind_and_network() {
        let data = VoteData::notarize(Epoch::ZERO, View::new(1), [3; 32]);
        let r1 = vote_signing_root(&data, [1, 2, 3, 4]).unwrap();
        let r2 = vote_signing_root(&data, [1, 2, 3, 5]).unwrap();
        assert_ne!(r1, r2);
        let object = root_of(&data).unwrap();
        let r3 = signing_root(object, domain(DOMAIN_PROPOSAL, [1, 2, 3, 4])).unwrap();
        assert_ne!(r1, r3);
    }
}
