//! Typed gossip topics `/avs/{network_digest_hex}/{name}/ssz_snappy` (protocol brief §7) and
//! the subscription filter built on them.
//!
//! Formatting and parsing are exact inverses: the digest is eight lowercase hex characters and a
//! vote subnet is a decimal number without leading zeros, so a topic has one spelling. The
//! filter admits only our own network's topics (and vote subnets below the configured count),
//! both for our subscriptions and for what we record about peers, so a peer cannot make us
//! track an unbounded set of foreign topics.

use std::fmt;

use libp2p::gossipsub::{IdentTopic, TopicHash, TopicSubscriptionFilter};

const PREFIX: &str = "avs";
const ENCODING: &str = "ssz_snappy";

/// The first four bytes of the genesis configuration's hash tree root.
pub type NetworkDigest = [u8; 4];

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Block,
    Vote {
        subnet: u64,
    },
    Certificate,
    Checkin,
    /// AVS task submissions.
    Task,
}

impl TopicKind {
    /// The name segment of the topic string (bounded cardinality, so fit for metric labels).
    pub fn name(&self) -> String {
        match self {
            TopicKind::Block => "block".into(),
            TopicKind::Vote { subnet } => format!("vote_{subnet}"),
            TopicKind::Certificate => "certificate".into(),
            TopicKind::Checkin => "checkin".into(),
            TopicKind::Task => "task".into(),
        }
    }

    fn parse(name: &str) -> Result<Self, TopicError> {
        match name {
            "block" => Ok(TopicKind::Block),
            "certificate" => Ok(TopicKind::Certificate),
            "checkin" => Ok(TopicKind::Checkin),
            "task" => Ok(TopicKind::Task),
            other => {
                let digits = other
                    .strip_prefix("vote_")
                    .ok_or_else(|| TopicError::UnknownName(other.to_owned()))?;
                let canonical = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                let subnet = digits
                    .parse::<u64>()
                    .ok()
                    .filter(|_| canonical)
                    .ok_or_else(|| TopicError::BadSubnet(digits.to_owned()))?;
                Ok(TopicKind::Vote { subnet })
            }
        }
    }
}

/// A gossip topic of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GossipTopic {
    pub digest: NetworkDigest,
    pub kind: TopicKind,
}

/// Why a topic string is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic must look like /avs/<digest>/<name>/ssz_snappy")]
    Malformed,
    #[error("topic digest {0:?} is not eight lowercase hex characters")]
    BadDigest(String),
    #[error("unknown topic name {0:?}")]
    UnknownName(String),
    #[error("vote subnet {0:?} is not a canonical decimal number")]
    BadSubnet(String),
}

impl GossipTopic {
    pub fn new(digest: NetworkDigest, kind: TopicKind) -> Self {
        Self { digest, kind }
    }

    /// Parses a topic string; the exact inverse of `Display`.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let mut parts = topic.split('/');
        let (Some(""), Some(PREFIX), Some(digest), Some(name), Some(ENCODING), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TopicError::Malformed);
        };
        Ok(Self { digest: parse_digest(digest)?, kind: TopicKind::parse(name)? })
    }

    /// The gossipsub topic (identity-hashed: the hash is the topic string itself).
    pub fn to_ident_topic(&self) -> IdentTopic {
        IdentTopic::new(self.to_string())
    }

    /// The gossipsub topic hash.
    pub fn hash(&self) -> TopicHash {
        TopicHash::from_raw(self.to_string())
    }
}

impl fmt::Display for GossipTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{PREFIX}/{}/{}/{ENCODING}", hex::encode(self.digest), self.kind.name())
    }
}

fn parse_digest(text: &str) -> Result<NetworkDigest, TopicError> {
    let bad = || TopicError::BadDigest(text.to_owned());
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad());
    }
    let mut digest = [0u8; 4];
    hex::decode_to_slice(text, &mut digest).map_err(|_| bad())?;
    Ok(digest)
}

/// Admits only this network's topics, with vote subnets below `vote_subnet_count`.
#[derive(Debug, Clone)]
pub struct AvsTopicFilter {
    digest: NetworkDigest,
    vote_subnet_count: u64,
}

impl AvsTopicFilter {
    pub fn new(digest: NetworkDigest, vote_subnet_count: u64) -> Self {
        Self { digest, vote_subnet_count }
    }

    /// Whether a topic string names one of this network's topics.
    pub fn allows(&self, topic: &str) -> bool {
        match GossipTopic::parse(topic) {
            Ok(GossipTopic { digest, kind }) => {
                digest == self.digest
                    && match kind {
                        TopicKind::Vote { subnet } => subnet < self.vote_subnet_count,
                        _ => true,
                    }
            }
            Err(_) => false,
        }
    }
}

impl TopicSubscriptionFilter for AvsTopicFilter {
    fn can_subscribe(&mut self, topic_hash: &TopicHash) -> bool {
        self.allows(topic_hash.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DIGEST: NetworkDigest = [0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn formats_the_brief_layout() {
        let cases = [
            (TopicKind::Block, "/avs/deadbeef/block/ssz_snappy"),
            (TopicKind::Vote { subnet: 0 }, "/avs/deadbeef/vote_0/ssz_snappy"),
            (TopicKind::Vote { subnet: 17 }, "/avs/deadbeef/vote_17/ssz_snappy"),
            (TopicKind::Certificate, "/avs/deadbeef/certificate/ssz_snappy"),
            (TopicKind::Checkin, "/avs/deadbeef/checkin/ssz_snappy"),
            (TopicKind::Task, "/avs/deadbeef/task/ssz_snappy"),
        ];
        for (kind, text) in cases {
            let topic = GossipTopic::new(DIGEST, kind);
            assert_eq!(topic.to_string(), text);
            assert_eq!(GossipTopic::parse(text), Ok(topic));
            assert_eq!(topic.hash().as_str(), text);
        }
    }

    #[test]
    fn rejects_non_canonical_and_foreign_topics() {
        for text in [
            "",
            "/avs/deadbeef/block",
            "/avs/deadbeef/block/ssz_snappy/",
            "avs/deadbeef/block/ssz_snappy",
            "/eth2/deadbeef/block/ssz_snappy",
            "/avs/DEADBEEF/block/ssz_snappy",
            "/avs/0xdeadbeef/block/ssz_snappy",
            "/avs/deadbee/block/ssz_snappy",
            "/avs/deadbeef/blocks/ssz_snappy",
            "/avs/deadbeef/vote_/ssz_snappy",
            "/avs/deadbeef/vote_01/ssz_snappy",
            "/avs/deadbeef/vote_+1/ssz_snappy",
            "/avs/deadbeef/vote_18446744073709551616/ssz_snappy",
            "/avs/deadbeef/block/ssz",
        ] {
            assert!(GossipTopic::parse(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn filter_admits_only_our_network_and_subnets() {
        let mut filter = AvsTopicFilter::new(DIGEST, 2);
        let ours = |kind| GossipTopic::new(DIGEST, kind).hash();
        assert!(filter.can_subscribe(&ours(TopicKind::Block)));
        assert!(filter.can_subscribe(&ours(TopicKind::Vote { subnet: 1 })));
        assert!(!filter.can_subscribe(&ours(TopicKind::Vote { subnet: 2 })));
        assert!(!filter.can_subscribe(&GossipTopic::new([0; 4], TopicKind::Block).hash()));
        assert!(!filter.can_subscribe(&TopicHash::from_raw("/meshsub/spam")));
    }

    proptest! {
        #[test]
        fn roundtrip(digest: [u8; 4], which in 0u8..5, subnet: u64) {
            let kind = match which {
                0 => TopicKind::Block,
                1 => TopicKind::Vote { subnet },
                2 => TopicKind::Certificate,
                3 => TopicKind::Task,
                _ => TopicKind::Checkin,
            };
            let topic = GossipTopic::new(digest, kind);
            prop_assert_eq!(GossipTopic::parse(&topic.to_string()), Ok(topic));
        }

        #[test]
        fn near_miss_topics_parse_only_when_canonical(
            text in "/avs/[0-9a-fA-F]{7,9}/(block|certificate|checkin|vote_[0-9]{0,3}|x)/ssz_snappy",
        ) {
            if let Ok(topic) = GossipTopic::parse(&text) {
                prop_assert_eq!(topic.to_string(), text);
            }
        }

        #[test]
        fn parse_never_panics_and_is_canonical(text in "\\PC{0,64}") {
            if let Ok(topic) = GossipTopic::parse(&text) {
                prop_assert_eq!(topic.to_string(), text);
            }
        }
    }
}
