//! Gossip payload handling shared by publish and receive: the snappy transform gossipsub runs
//! on every message, and the message-id function.
//!
//! Inbound, gossipsub hands the raw payload to `SnappyTransform`, which decompresses it once
//! (the topic's size limit, [`GossipSizeLimits`], is checked from the block preamble before
//! allocating: a vote topic takes a vote's 153 bytes, not 10 MiB). A payload that is not valid
//! snappy, or larger than its topic allows, fails the transform, so gossipsub drops it, never forwards it, and charges
//! the sender an invalid-message (P4) penalty. Every message that reaches the id function has
//! therefore decompressed, and gets the valid-snappy domain; [`message_id_from_wire`] keeps
//! the full rule (including the invalid-snappy domain) for callers holding wire bytes.

use libp2p::gossipsub::{DataTransform, Message, MessageId, RawMessage, TopicHash};
use sha2::{Digest, Sha256};

use crate::codec::{MAX_PAYLOAD_SIZE, compress_block, decompress_block};
use crate::config::GossipSizeLimits;
use crate::topic::GossipTopic;

/// Domain of the id of a message whose payload decompressed.
pub const MESSAGE_DOMAIN_VALID_SNAPPY: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Domain of the id of a message whose payload is not valid snappy.
pub const MESSAGE_DOMAIN_INVALID_SNAPPY: [u8; 4] = [0x00, 0x00, 0x00, 0x00];
/// Length of a gossip message id.
pub const MESSAGE_ID_LEN: usize = 20;

/// `SHA256(domain ‖ u64_le(len(topic)) ‖ topic ‖ data)[..20]`, hashing the bytes as given.
pub fn compute_message_id(domain: [u8; 4], topic: &[u8], data: &[u8]) -> [u8; MESSAGE_ID_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update((topic.len() as u64).to_le_bytes());
    hasher.update(topic);
    hasher.update(data);
    let digest = hasher.finalize();
    let mut id = [0u8; MESSAGE_ID_LEN];
    id.copy_from_slice(&digest[..MESSAGE_ID_LEN]);
    id
}

/// The id of a message as it travels on the wire: the valid-snappy domain over the
/// decompressed payload if it decompresses within the size limit, else the invalid-snappy
/// domain over the raw payload.
pub fn message_id_from_wire(topic: &str, raw: &[u8]) -> [u8; MESSAGE_ID_LEN] {
    match decompress_block(raw, MAX_PAYLOAD_SIZE) {
        Ok(data) => compute_message_id(MESSAGE_DOMAIN_VALID_SNAPPY, topic.as_bytes(), &data),
        Err(_) => compute_message_id(MESSAGE_DOMAIN_INVALID_SNAPPY, topic.as_bytes(), raw),
    }
}

/// gossipsub's message-id function: `message.data` is already decompressed (see the module
/// docs), both for received messages and for our own publishes.
pub(crate) fn gossipsub_message_id(message: &Message) -> MessageId {
    MessageId::new(&compute_message_id(
        MESSAGE_DOMAIN_VALID_SNAPPY,
        message.topic.as_str().as_bytes(),
        &message.data,
    ))
}

/// Raw-snappy transform: compress on publish, decompress (bounded per topic) on receipt.
#[derive(Debug, Clone)]
pub(crate) struct SnappyTransform {
    limits: GossipSizeLimits,
}

impl SnappyTransform {
    pub(crate) fn new(limits: GossipSizeLimits) -> Self {
        Self { limits }
    }

    /// The largest payload `topic` may carry. The subscription filter admits only our own
    /// topics, so an unparsable one never gets here; if it did, it gets the smallest limit.
    fn limit(&self, topic: &TopicHash) -> usize {
        match GossipTopic::parse(topic.as_str()) {
            Ok(topic) => self.limits.of(topic.kind),
            Err(_) => 0,
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl DataTransform for SnappyTransform {
    fn inbound_transform(&self, raw: RawMessage) -> Result<Message, std::io::Error> {
        let data = decompress_block(&raw.data, self.limit(&raw.topic))
            .map_err(|e| invalid(format!("{}: {e}", raw.topic)))?;
        Ok(Message {
            source: raw.source,
            data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(
        &self,
        topic: &TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        let max = self.limit(topic);
        if data.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "gossip payload of {} bytes exceeds the limit of {max} for {topic}",
                    data.len()
                ),
            ));
        }
        compress_block(&data).map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(topic: &str, data: Vec<u8>) -> RawMessage {
        RawMessage {
            source: None,
            data,
            sequence_number: None,
            topic: TopicHash::from_raw(topic),
            signature: None,
            key: None,
            validated: false,
        }
    }

    #[test]
    fn wire_id_uses_the_domain_the_payload_earns() {
        let topic = "/avs/01020304/block/ssz_snappy";
        let data = b"ssz bytes".to_vec();
        let compressed = compress_block(&data).unwrap();
        assert_eq!(
            message_id_from_wire(topic, &compressed),
            compute_message_id(MESSAGE_DOMAIN_VALID_SNAPPY, topic.as_bytes(), &data)
        );
        let garbage = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            message_id_from_wire(topic, &garbage),
            compute_message_id(MESSAGE_DOMAIN_INVALID_SNAPPY, topic.as_bytes(), &garbage)
        );
    }

    const VOTE: &str = "/avs/01020304/vote_0/ssz_snappy";
    const BLOCK: &str = "/avs/01020304/block/ssz_snappy";

    fn limits(vote: usize) -> GossipSizeLimits {
        GossipSizeLimits { vote, ..GossipSizeLimits::uniform() }
    }

    #[test]
    fn transform_roundtrip_and_gossipsub_id_matches_wire_id() {
        let transform = SnappyTransform::new(GossipSizeLimits::uniform());
        let data = vec![5u8; 300];
        let wire = transform.outbound_transform(&TopicHash::from_raw(VOTE), data.clone()).unwrap();
        let message = transform.inbound_transform(raw(VOTE, wire.clone())).unwrap();
        assert_eq!(message.data, data);
        let id = gossipsub_message_id(&message);
        assert_eq!(id.0, message_id_from_wire(VOTE, &wire).to_vec());
    }

    #[test]
    fn transform_refuses_invalid_and_oversize_payloads() {
        let transform = SnappyTransform::new(limits(100));
        assert!(transform.inbound_transform(raw(VOTE, vec![0xff, 0x01])).is_err());
        let at_limit = compress_block(&[0u8; 100]).unwrap();
        assert!(transform.inbound_transform(raw(VOTE, at_limit)).is_ok());
        let big = compress_block(&[0u8; 101]).unwrap();
        assert!(transform.inbound_transform(raw(VOTE, big)).is_err());
        assert!(transform.outbound_transform(&TopicHash::from_raw(VOTE), vec![0; 101]).is_err());
        // A topic that is not ours has no room at all.
        assert!(transform.inbound_transform(raw("t", compress_block(&[1]).unwrap())).is_err());
    }

    /// Review T4: a vote-topic message whose preamble declares 10 MiB (about 480 KiB of
    /// zeros on the wire) is refused from the preamble, before anything is decompressed; the
    /// same bytes on the block topic are within that topic's limit.
    #[test]
    fn each_topic_has_its_own_limit_checked_before_decompression() {
        let transform = SnappyTransform::new(limits(153));
        let wire = compress_block(&vec![0u8; MAX_PAYLOAD_SIZE]).unwrap();
        assert!(wire.len() < MAX_PAYLOAD_SIZE / 16, "the attack is cheap on the wire");
        let error = transform.inbound_transform(raw(VOTE, wire.clone())).unwrap_err();
        let expected = crate::codec::SnappyError::TooLarge { declared: MAX_PAYLOAD_SIZE, max: 153 };
        assert!(error.to_string().ends_with(&expected.to_string()), "{error}");
        assert_eq!(
            transform.inbound_transform(raw(BLOCK, wire)).unwrap().data.len(),
            MAX_PAYLOAD_SIZE
        );
    }

    proptest! {
        #[test]
        fn inbound_transform_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SnappyTransform::new(limits(4096)).inbound_transform(raw(VOTE, bytes.clone()));
            let _ = message_id_from_wire("t", &bytes);
        }
    }
}
