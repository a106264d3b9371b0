//! Protocol-buffer definitions of avs-node's gRPC services and the tonic/prost code generated
//! from them. Only generated types live here; the node converts them to its own types at the
//! edge, so nothing else depends on prost's representation.

/// `avs.node.v1`: the operator-facing `NodeService`.
pub mod v1 {
    #![allow(unreachable_pub, missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("avs.node.v1");
}

/// `avs.automation.v1`: the client-facing `AutomationService` (docs/protocol.md, 7.5).
pub mod automation_v1 {
    #![allow(unreachable_pub, missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("avs.automation.v1");
}

/// Encoded `FileDescriptorSet` of every service here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("avs_descriptor");

#[cfg(test)]
mod tests {
    use super::v1::{Checkin, CheckinRequest};
    use prost::Message;

    #[test]
    fn descriptor_set_describes_the_node_service() {
        let text = String::from_utf8_lossy(super::FILE_DESCRIPTOR_SET);
        assert!(text.contains("avs.node.v1"));
        assert!(text.contains("NodeService"));
        assert!(text.contains("SubscribeFinalized"));
        assert!(text.contains("avs.automation.v1"));
        assert!(text.contains("AutomationService"));
    }

    #[test]
    fn checkin_round_trips_through_protobuf() {
        let request = CheckinRequest {
            checkin: Some(Checkin {
                address: vec![0xab; 20],
                version: "0.1.0".into(),
                metrics_port: 5052,
                finalized_height: 42,
                events_seen: 7,
                is_aggregator: true,
                timestamp_ms: 1_700_000_000_000,
            }),
            signature: vec![0x11; 96],
        };
        let bytes = request.encode_to_vec();
        assert_eq!(CheckinRequest::decode(bytes.as_slice()).unwrap(), request);
        assert!(CheckinRequest::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
