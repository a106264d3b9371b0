//! Req/resp (docs/protocol.md, sections 10 and 16): the SSZ messages, this node's answers
//! ([`server`]) and its requests ([`client`]).
//!
//! | protocol | request | response chunks |
//! |---|---|---|
//! | `status` | `StatusMessage` (ours) | one `StatusMessage` (theirs) |
//! | `blocks_by_range` | `BlocksByRangeRequest{start_height, count}` | finalized `Block`s in height order, stopping at the first gap |
//! | `blocks_by_root` | `BlocksByRootRequest{roots}` | the `Block`s we hold, in request order, unknown roots skipped |
//! | `certificates` | `CertificatesRequest{epoch, from_view}` | stored `Certificate`s of that epoch with `view >= from_view`, in view order, at most [`MAX_CERTIFICATES_PER_RESPONSE`] (the newest), and the epoch's ending finalization if it ended |
//! | `votes` | `VotesRequest{epoch, view}` | the verified votes we hold for that view |
//!
//! Sync runs one epoch at a time, because a certificate can only be checked with its epoch's
//! keys; every answer about an ended epoch carries the finalization that ended it.

pub mod client;
pub mod server;

use avs_consensus::ssz_check::{Shape, SszShape};
use avs_consensus::types::{Epoch, Height, Root, View, decode};
use avs_p2p::{ResponseChunk, ResponseCode};
use ssz_rs::prelude::*;

/// Most blocks one `blocks_by_range` or `blocks_by_root` response carries.
pub const MAX_BLOCKS_PER_RESPONSE: u64 = 64;
/// Most certificates one `certificates` response carries.
pub const MAX_CERTIFICATES_PER_RESPONSE: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct StatusMessage {
    pub epoch: Epoch,
    pub view: View,
    pub finalized_height: Height,
    pub finalized_root: Root,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct BlocksByRangeRequest {
    pub start_height: Height,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct BlocksByRootRequest {
    pub roots: List<Root, 64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct CertificatesRequest {
    pub epoch: Epoch,
    pub from_view: View,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct VotesRequest {
    pub epoch: Epoch,
    pub view: View,
}

// Shapes for the strict decoder (`avs_consensus::types::decode` checks layout before ssz_rs).
impl SszShape for StatusMessage {
    fn shape() -> Shape {
        Shape::Fixed(8 + 8 + 8 + 32)
    }
}
impl SszShape for BlocksByRangeRequest {
    fn shape() -> Shape {
        Shape::Fixed(16)
    }
}
impl SszShape for CertificatesRequest {
    fn shape() -> Shape {
        Shape::Fixed(16)
    }
}
impl SszShape for VotesRequest {
    fn shape() -> Shape {
        Shape::Fixed(16)
    }
}
impl SszShape for BlocksByRootRequest {
    fn shape() -> Shape {
        Shape::Container(vec![Shape::List(Box::new(Shape::Fixed(32)), 64)])
    }
}

/// Decodes the success chunks of a response, refusing the whole response on any error chunk
/// or undecodable payload (the peer is then not asked again for this).
pub fn decode_chunks<T: SimpleSerialize + SszShape>(
    chunks: Vec<ResponseChunk>,
) -> anyhow::Result<Vec<T>> {
    chunks
        .into_iter()
        .map(|chunk| match chunk.code {
            ResponseCode::Success => {
                decode::<T>(&chunk.payload).map_err(|e| anyhow::anyhow!("{e}"))
            }
            code => Err(anyhow::anyhow!(
                "peer answered {code:?}: {}",
                String::from_utf8_lossy(&chunk.payload)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chunks_fail_decoding() {
        let chunks = vec![ResponseChunk::error(ResponseCode::ResourceUnavailable, "gone")];
        let err = decode_chunks::<StatusMessage>(chunks).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
