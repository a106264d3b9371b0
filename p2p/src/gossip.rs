//! Gossip payload handling shared by publish and receive: the snappy transform gossipsub runs
//! on every message, and the message-id function.
//!
//! Inbound, gossipsub hands the raw payload to `SnappyTransform`, which decompresses it once
//! (the 10 MiB bound is checked from the block preamble before allocating). A payload that is
//! not valid snappy fails the transform, so gossipsub drops it, never forwards it, and charges
//! the sender an invalid-message (P4) penalty. Every message that reaches the id function has
//! therefore decompressed, and gets the valid-snappy domain; [`message_id_from_wire`] keeps
//! the full rule (including the invalid-snappy domain) for callers holding wire bytes.

use libp2p::gossipsub::{DataTransform, Message, MessageId, RawMessage, TopicHash};
use sha2::{Digest, Sha256};

use crate::codec::{MAX_PAYLOAD_SIZE, compress_block, decompress_block};

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

/// Raw-snappy transform: compress on publish, decompress (bounded) on receipt.
#[derive(Debug, Clone)]
pub(crate) struct SnappyTransform {
    max_len: usize,
}

impl SnappyTransform {
    pub(crate) fn new(max_len: usize) -> Self {
        Self { max_len }
    }
}

impl DataTransform for SnappyTransform {
    fn inbound_transform(&self, raw: RawMessage) -> Result<Message, std::io::Error> {
        let data = decompress_block(&raw.data, self.max_len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Message {
            source: raw.source,
            data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(
        &self,
        _topic: &TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        if data.len() > self.max_len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "gossip payload of {} bytes exceeds the limit of {}",
                    data.len(),
                    self.max_len
                ),
            ));
        }
        compress_block(&data).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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

    #[test]
    fn transform_roundtrip_and_gossipsub_id_matches_wire_id() {
        let transform = SnappyTransform::new(MAX_PAYLOAD_SIZE);
        let topic = "/avs/01020304/vote_0/ssz_snappy";
        let data = vec![5u8; 300];
        let wire = transform.outbound_transform(&TopicHash::from_raw(topic), data.clone()).unwrap();
        let message = transform.inbound_transform(raw(topic, wire.clone())).unwrap();
        assert_eq!(message.data, data);
        let id = gossipsub_message_id(&message);
        assert_eq!(id.0, message_id_from_wire(topic, &wire).to_vec());
    }

    #[test]
    fn transform_refuses_invalid_and_oversize_payloads() {
        let transform = SnappyTransform::new(100);
        assert!(transform.inbound_transform(raw("t", vec![0xff, 0x01])).is_err());
        let big = compress_block(&[0u8; 101]).unwrap();
        assert!(transform.inbound_transform(raw("t", big)).is_err());
        assert!(transform.outbound_transform(&TopicHash::from_raw("t"), vec![0; 101]).is_err());
    }

    proptest! {
        #[test]
        fn inbound_transform_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SnappyTransform::new(4096).inbound_transform(raw("t", bytes.clone()));
            let _ = message_id_from_wire("t", &bytes);
        }
    }
}
