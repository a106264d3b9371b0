//! Req/resp chunk encodings (protocol brief §7, leanSpec networking codec).
//!
//! A request is `varint(len(ssz)) ‖ snappy_frame(ssz)`. A response is a stream of chunks, each
//! `code ‖ varint(len(payload)) ‖ snappy_frame(payload)`; for a non-zero code the payload is a
//! short UTF-8 error message. The declared length is checked against the limit before any
//! decompression, and the frame must decompress to exactly that length.

use super::snappy::{SnappyError, decode_frame_exact, encode_frame};
use super::varint::{VarintError, decode_varint, encode_varint};

/// Longest error message a non-success chunk may carry.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// The result code that opens every response chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    Success = 0,
    InvalidRequest = 1,
    ServerError = 2,
    ResourceUnavailable = 3,
}

impl ResponseCode {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Parses the wire byte; unknown codes are an error.
    pub fn from_u8(byte: u8) -> Result<Self, ReqRespCodecError> {
        match byte {
            0 => Ok(Self::Success),
            1 => Ok(Self::InvalidRequest),
            2 => Ok(Self::ServerError),
            3 => Ok(Self::ResourceUnavailable),
            other => Err(ReqRespCodecError::UnknownResponseCode(other)),
        }
    }

    /// Largest payload a chunk with this code may carry, given the SSZ limit for successes.
    pub fn max_payload(self, max_ssz_len: usize) -> usize {
        match self {
            Self::Success => max_ssz_len,
            _ => MAX_ERROR_MESSAGE_LEN,
        }
    }
}

/// One response chunk: a code and its payload (SSZ on success, an error message otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseChunk {
    pub code: ResponseCode,
    pub payload: Vec<u8>,
}

impl ResponseChunk {
    /// A success chunk carrying SSZ bytes.
    pub fn success(payload: Vec<u8>) -> Self {
        Self { code: ResponseCode::Success, payload }
    }

    /// An error chunk; the message is cut (on a character boundary) to
    /// [`MAX_ERROR_MESSAGE_LEN`] bytes so that it always encodes.
    pub fn error(code: ResponseCode, message: &str) -> Self {
        let mut end = message.len().min(MAX_ERROR_MESSAGE_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self { code, payload: message.as_bytes()[..end].to_vec() }
    }
}

/// Why a request or response chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReqRespCodecError {
    #[error("req/resp input is empty")]
    Empty,
    #[error("req/resp length prefix: {0}")]
    Varint(#[from] VarintError),
    #[error("req/resp chunk declares {declared} bytes, more than the limit of {max}")]
    TooLarge { declared: u64, max: usize },
    #[error("req/resp payload: {0}")]
    Snappy(#[from] SnappyError),
    #[error("unknown response code {0}")]
    UnknownResponseCode(u8),
    #[error("{0} unexpected bytes after the request")]
    TrailingBytes(usize),
    #[error("response has more than {0} chunks")]
    TooManyChunks(usize),
}

/// Encodes a request: `varint(len) ‖ snappy_frame(ssz)`.
pub fn encode_request(ssz: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ssz.len() + 32);
    encode_varint(ssz.len() as u64, &mut out);
    out.extend_from_slice(&encode_frame(ssz));
    out
}

/// Appends one response chunk: `code ‖ varint(len) ‖ snappy_frame(payload)`.
pub fn encode_response_chunk(chunk: &ResponseChunk, out: &mut Vec<u8>) {
    out.push(chunk.code.as_u8());
    encode_varint(chunk.payload.len() as u64, out);
    out.extend_from_slice(&encode_frame(&chunk.payload));
}

/// Decodes a whole request, refusing a declared length above `max_len` and trailing bytes.
pub fn decode_request(input: &[u8], max_len: usize) -> Result<Vec<u8>, ReqRespCodecError> {
    if input.is_empty() {
        return Err(ReqRespCodecError::Empty);
    }
    let (payload, used) = decode_prefixed_frame(input, max_len)?;
    if used != input.len() {
        return Err(ReqRespCodecError::TrailingBytes(input.len() - used));
    }
    Ok(payload)
}

/// Decodes one response chunk from the front of `input`; returns it and the bytes used.
pub fn decode_response_chunk(
    input: &[u8],
    max_ssz_len: usize,
) -> Result<(ResponseChunk, usize), ReqRespCodecError> {
    let (&code, rest) = input.split_first().ok_or(ReqRespCodecError::Empty)?;
    let code = ResponseCode::from_u8(code)?;
    let (payload, used) = decode_prefixed_frame(rest, code.max_payload(max_ssz_len))?;
    Ok((ResponseChunk { code, payload }, 1 + used))
}

/// Decodes a whole response stream (zero or more chunks back to back).
pub fn decode_response_stream(
    input: &[u8],
    max_ssz_len: usize,
    max_chunks: usize,
) -> Result<Vec<ResponseChunk>, ReqRespCodecError> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        if chunks.len() == max_chunks {
            return Err(ReqRespCodecError::TooManyChunks(max_chunks));
        }
        let (chunk, used) = decode_response_chunk(rest, max_ssz_len)?;
        chunks.push(chunk);
        rest = &rest[used..];
    }
    Ok(chunks)
}

/// `varint(len) ‖ frame` with the length checked before the frame is touched.
fn decode_prefixed_frame(
    input: &[u8],
    max_len: usize,
) -> Result<(Vec<u8>, usize), ReqRespCodecError> {
    let (declared, prefix_len) = decode_varint(input)?;
    let len = checked_len(declared, max_len)?;
    let (payload, frame_len) = decode_frame_exact(&input[prefix_len..], len)?;
    Ok((payload, prefix_len + frame_len))
}

/// The declared length as a `usize`, if it is within `max_len`.
pub(crate) fn checked_len(declared: u64, max_len: usize) -> Result<usize, ReqRespCodecError> {
    usize::try_from(declared)
        .ok()
        .filter(|len| *len <= max_len)
        .ok_or(ReqRespCodecError::TooLarge { declared, max: max_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_PAYLOAD_SIZE;
    use proptest::prelude::*;

    #[test]
    fn request_roundtrip() {
        for payload in [vec![], vec![7u8; 10], (0..100_000).map(|i| i as u8).collect()] {
            let encoded = encode_request(&payload);
            assert_eq!(decode_request(&encoded, MAX_PAYLOAD_SIZE).unwrap(), payload);
        }
    }

    #[test]
    fn request_rejections() {
        assert_eq!(decode_request(&[], MAX_PAYLOAD_SIZE), Err(ReqRespCodecError::Empty));
        assert_eq!(
            decode_request(&[0x80, 0x80], MAX_PAYLOAD_SIZE),
            Err(ReqRespCodecError::Varint(VarintError::Truncated))
        );
        // 10 MiB + 1 declared, nothing else: refused on the prefix alone.
        assert_eq!(
            decode_request(&[0x81, 0x80, 0x80, 0x05], MAX_PAYLOAD_SIZE),
            Err(ReqRespCodecError::TooLarge { declared: 10_485_761, max: MAX_PAYLOAD_SIZE })
        );
        // Prefix says 5, the frame holds 4: a length mismatch.
        let mut short = encode_request(&[1, 2, 3, 4]);
        short[0] = 5;
        assert!(matches!(decode_request(&short, 100), Err(ReqRespCodecError::Snappy(_))));
        // Prefix says 3, the frame holds 4.
        short[0] = 3;
        assert!(matches!(
            decode_request(&short, 100),
            Err(ReqRespCodecError::Snappy(SnappyError::Overrun { expected: 3 }))
        ));
        let mut trailing = encode_request(&[1, 2, 3]);
        trailing.push(0);
        assert_eq!(decode_request(&trailing, 100), Err(ReqRespCodecError::TrailingBytes(1)));
    }

    #[test]
    fn response_stream_roundtrip() {
        let chunks = vec![
            ResponseChunk::success(vec![1, 2, 3]),
            ResponseChunk::success(vec![]),
            ResponseChunk::error(ResponseCode::ResourceUnavailable, "pruned"),
        ];
        let mut encoded = Vec::new();
        for chunk in &chunks {
            encode_response_chunk(chunk, &mut encoded);
        }
        assert_eq!(decode_response_stream(&encoded, 100, 3).unwrap(), chunks);
        assert_eq!(
            decode_response_stream(&encoded, 100, 2),
            Err(ReqRespCodecError::TooManyChunks(2))
        );
    }

    #[test]
    fn response_rejects_unknown_code_and_long_error_message() {
        let mut encoded = Vec::new();
        encode_response_chunk(&ResponseChunk::success(vec![1]), &mut encoded);
        encoded[0] = 4;
        assert_eq!(
            decode_response_chunk(&encoded, 100),
            Err(ReqRespCodecError::UnknownResponseCode(4))
        );
        let long = ResponseChunk { code: ResponseCode::ServerError, payload: vec![b'x'; 257] };
        let mut encoded = Vec::new();
        encode_response_chunk(&long, &mut encoded);
        assert!(matches!(
            decode_response_chunk(&encoded, MAX_PAYLOAD_SIZE),
            Err(ReqRespCodecError::TooLarge { declared: 257, max: 256 })
        ));
    }

    #[test]
    fn error_messages_are_cut_on_char_boundaries() {
        let message = "é".repeat(200);
        let chunk = ResponseChunk::error(ResponseCode::ServerError, &message);
        assert_eq!(chunk.payload.len(), 256);
        assert!(std::str::from_utf8(&chunk.payload).is_ok());
    }

    proptest! {
        #[test]
        fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes, 4096);
        }

        #[test]
        fn response_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_response_chunk(&bytes, 4096);
            let _ = decode_response_stream(&bytes, 4096, 8);
        }

        #[test]
        fn request_roundtrip_any(payload in proptest::collection::vec(any::<u8>(), 0..1024)) {
            prop_assert_eq!(decode_request(&encode_request(&payload), 1024).unwrap(), payload);
        }
    }
}
