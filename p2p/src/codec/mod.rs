//! Byte-level codecs shared by gossip and req/resp: varints, raw and framed snappy, req/resp
//! chunk encodings. Everything here is pure and synchronous; the async req/resp stream codec in
//! [`crate::rpc`] reuses the same decoders chunk by chunk.

mod crc32c;
mod reqresp;
mod snappy;
mod varint;

pub use reqresp::{
    MAX_ERROR_MESSAGE_LEN, ReqRespCodecError, ResponseChunk, ResponseCode, decode_request,
    decode_response_chunk, decode_response_stream, encode_request, encode_response_chunk,
};
pub use snappy::{
    MAX_FRAME_CHUNK_LEN, STREAM_IDENTIFIER, SnappyError, compress_block, decode_frame,
    decode_frame_exact, decompress_block, encode_frame,
};
pub use varint::{MAX_VARINT_LEN, VarintError, decode_varint, encode_varint, varint_bytes};

pub(crate) use reqresp::checked_len as reqresp_checked_len;
pub(crate) use snappy::{CHUNK_HEADER_LEN, ChunkAction, FrameDecoder};
pub(crate) use varint::VarintDecoder;

/// Largest uncompressed payload of any gossip message or req/resp chunk (protocol brief §7).
pub const MAX_PAYLOAD_SIZE: usize = 10 * 1024 * 1024;
