//! Snappy in its two wire forms: raw blocks (gossip payloads) and the framing format
//! (req/resp chunks).
//!
//! Compression uses the `snap` crate's raw encoder. Decompression is bounded before anything is
//! allocated: a raw block's preamble declares its uncompressed length and is checked against the
//! caller's limit first; a frame is decoded chunk by chunk (each chunk at most 64 KiB
//! uncompressed) against a running total. The frame decoder is a small state machine fed one
//! chunk at a time, so the same rules serve a byte slice and an async stream.

use super::crc32c::masked_crc32c;

/// Largest uncompressed chunk the framing format allows.
pub const MAX_FRAME_CHUNK_LEN: usize = 65_536;

/// The stream identifier chunk every frame starts with.
pub const STREAM_IDENTIFIER: [u8; 10] = *b"\xff\x06\x00\x00sNaPpY";

const STREAM_BODY: &[u8] = b"sNaPpY";
const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;
/// Chunk header: type byte plus a 24-bit little-endian length.
pub(crate) const CHUNK_HEADER_LEN: usize = 4;
const CHECKSUM_LEN: usize = 4;

/// Why snappy data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnappyError {
    #[error("snappy data declares {declared} uncompressed bytes, more than the limit of {max}")]
    TooLarge { declared: usize, max: usize },
    #[error("corrupt snappy block: {0}")]
    Corrupt(String),
    #[error("snappy frame is {0} bytes, shorter than the 10-byte stream identifier")]
    TooShort(usize),
    #[error("snappy frame does not start with the stream identifier")]
    MissingStreamIdentifier,
    #[error("snappy frame has a malformed stream identifier chunk")]
    BadStreamIdentifier,
    #[error("snappy frame uses reserved unskippable chunk type {0:#04x}")]
    ReservedChunkType(u8),
    #[error("snappy chunk of type {chunk_type:#04x} has invalid length {len}")]
    BadChunkLength { chunk_type: u8, len: usize },
    #[error("snappy chunk checksum mismatch (expected {expected:#010x}, got {actual:#010x})")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("snappy frame is truncated")]
    Truncated,
    #[error("snappy frame decompressed to more than the declared {expected} bytes")]
    Overrun { expected: usize },
    #[error("snappy frame used more wire bytes than {budget} for its declared length")]
    WireBudgetExceeded { budget: usize },
}

impl From<snap::Error> for SnappyError {
    fn from(error: snap::Error) -> Self {
        SnappyError::Corrupt(error.to_string())
    }
}

/// Compresses `data` as one raw snappy block (varint length preamble, then elements).
pub fn compress_block(data: &[u8]) -> Result<Vec<u8>, SnappyError> {
    Ok(snap::raw::Encoder::new().compress_vec(data)?)
}

/// Decompresses one raw snappy block, refusing (before allocating) a block whose preamble
/// declares more than `max_len` bytes.
pub fn decompress_block(data: &[u8], max_len: usize) -> Result<Vec<u8>, SnappyError> {
    let declared = snap::raw::decompress_len(data)?;
    if declared > max_len {
        return Err(SnappyError::TooLarge { declared, max: max_len });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(data)?)
}

/// Encodes `data` in the snappy framing format: the stream identifier (also for empty input),
/// then one chunk per 64 KiB, compressed only when that is strictly shorter.
pub fn encode_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STREAM_IDENTIFIER.len() + data.len() + data.len() / 8 + 16);
    out.extend_from_slice(&STREAM_IDENTIFIER);
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(MAX_FRAME_CHUNK_LEN) {
        let checksum = masked_crc32c(chunk);
        // A 64 KiB chunk is far below snap's input limit, so compression cannot fail; should it
        // ever, storing the chunk uncompressed is still a valid frame.
        let compressed = encoder.compress_vec(chunk).ok().filter(|c| c.len() < chunk.len());
        let (chunk_type, body) = match &compressed {
            Some(body) => (CHUNK_COMPRESSED, body.as_slice()),
            None => (CHUNK_UNCOMPRESSED, chunk),
        };
        let len = (CHECKSUM_LEN + body.len()) as u32;
        out.push(chunk_type);
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.extend_from_slice(&checksum.to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// Decodes a complete snappy frame (the whole of `input`), refusing more than `max_len`
/// uncompressed bytes.
pub fn decode_frame(input: &[u8], max_len: usize) -> Result<Vec<u8>, SnappyError> {
    if input.len() < STREAM_IDENTIFIER.len() {
        return Err(SnappyError::TooShort(input.len()));
    }
    let mut decoder = FrameDecoder::new(max_len, None);
    let mut rest = input;
    while !rest.is_empty() {
        rest = feed_one_chunk(&mut decoder, rest)?;
    }
    decoder.finish()
}

/// Decodes a frame from the front of `input` that must decompress to exactly `expected_len`
/// bytes (the req/resp case, where a varint declared the length). Returns the data and the
/// number of input bytes used; anything after that belongs to the next chunk.
pub fn decode_frame_exact(
    input: &[u8],
    expected_len: usize,
) -> Result<(Vec<u8>, usize), SnappyError> {
    let mut decoder = FrameDecoder::new(expected_len, Some(expected_len));
    let mut rest = input;
    while !decoder.is_complete() {
        if rest.is_empty() {
            return Err(SnappyError::Truncated);
        }
        rest = feed_one_chunk(&mut decoder, rest)?;
    }
    let used = input.len() - rest.len();
    Ok((decoder.finish()?, used))
}

fn feed_one_chunk<'a>(
    decoder: &mut FrameDecoder,
    input: &'a [u8],
) -> Result<&'a [u8], SnappyError> {
    let header: [u8; CHUNK_HEADER_LEN] = input
        .get(..CHUNK_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(SnappyError::Truncated)?;
    let action = decoder.header(header)?;
    let len = action.len();
    let body = input.get(CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + len).ok_or(SnappyError::Truncated)?;
    if let ChunkAction::Read { chunk_type, .. } = action {
        decoder.body(chunk_type, body)?;
    }
    Ok(&input[CHUNK_HEADER_LEN + len..])
}

/// What the reader must do with the body of the chunk whose header it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkAction {
    /// Read `len` bytes and hand them to [`FrameDecoder::body`].
    Read { chunk_type: u8, len: usize },
    /// Discard `len` bytes (padding and reserved skippable chunks).
    Skip { len: usize },
}

impl ChunkAction {
    pub(crate) fn len(self) -> usize {
        match self {
            ChunkAction::Read { len, .. } | ChunkAction::Skip { len } => len,
        }
    }
}

/// Incremental decoder of the snappy framing format.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    out: Vec<u8>,
    max_len: usize,
    expected_len: Option<usize>,
    seen_identifier: bool,
    wire_used: usize,
    wire_budget: Option<usize>,
    raw: snap::raw::Decoder,
}

impl FrameDecoder {
    /// `max_len` bounds the output; with `expected_len` the frame ends as soon as exactly that
    /// many bytes are out, and the wire bytes it may use are bounded by what an honest
    /// encoder needs for that length (so padding cannot stall a stream forever).
    pub(crate) fn new(max_len: usize, expected_len: Option<usize>) -> Self {
        Self {
            // Grow with the data rather than trusting a declared length up front.
            out: Vec::with_capacity(expected_len.unwrap_or(0).min(MAX_FRAME_CHUNK_LEN)),
            max_len,
            expected_len,
            seen_identifier: false,
            wire_used: 0,
            wire_budget: expected_len.map(max_frame_wire_len),
            raw: snap::raw::Decoder::new(),
        }
    }

    /// True once an exact-length frame has produced all of its bytes.
    pub(crate) fn is_complete(&self) -> bool {
        self.seen_identifier && self.expected_len.is_some_and(|expected| self.out.len() == expected)
    }

    /// Validates a chunk header and says what to do with the body.
    pub(crate) fn header(
        &mut self,
        header: [u8; CHUNK_HEADER_LEN],
    ) -> Result<ChunkAction, SnappyError> {
        let chunk_type = header[0];
        let len =
            usize::from(header[1]) | (usize::from(header[2]) << 8) | (usize::from(header[3]) << 16);
        self.wire_used += CHUNK_HEADER_LEN + len;
        if let Some(budget) = self.wire_budget
            && self.wire_used > budget
        {
            return Err(SnappyError::WireBudgetExceeded { budget });
        }
        if !self.seen_identifier && chunk_type != CHUNK_STREAM_IDENTIFIER {
            return Err(SnappyError::MissingStreamIdentifier);
        }
        match chunk_type {
            CHUNK_STREAM_IDENTIFIER => {
                if len != STREAM_BODY.len() {
                    return Err(SnappyError::BadStreamIdentifier);
                }
            }
            CHUNK_COMPRESSED => {
                let max = CHECKSUM_LEN + snap::raw::max_compress_len(MAX_FRAME_CHUNK_LEN);
                if !(CHECKSUM_LEN..=max).contains(&len) {
                    return Err(SnappyError::BadChunkLength { chunk_type, len });
                }
            }
            CHUNK_UNCOMPRESSED => {
                if !(CHECKSUM_LEN..=CHECKSUM_LEN + MAX_FRAME_CHUNK_LEN).contains(&len) {
                    return Err(SnappyError::BadChunkLength { chunk_type, len });
                }
            }
            0x02..=0x7f => return Err(SnappyError::ReservedChunkType(chunk_type)),
            // 0x80..=0xfe: padding and reserved skippable chunks.
            _ => return Ok(ChunkAction::Skip { len }),
        }
        Ok(ChunkAction::Read { chunk_type, len })
    }

    /// Consumes the body of a chunk for which [`Self::header`] returned `Read`.
    pub(crate) fn body(&mut self, chunk_type: u8, body: &[u8]) -> Result<(), SnappyError> {
        if chunk_type == CHUNK_STREAM_IDENTIFIER {
            if body != STREAM_BODY {
                return Err(SnappyError::BadStreamIdentifier);
            }
            self.seen_identifier = true;
            return Ok(());
        }
        let (checksum, payload) = body.split_at(CHECKSUM_LEN);
        let expected = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        let start = self.out.len();
        let produced = if chunk_type == CHUNK_COMPRESSED {
            snap::raw::decompress_len(payload)?
        } else {
            payload.len()
        };
        if produced > MAX_FRAME_CHUNK_LEN {
            return Err(SnappyError::BadChunkLength { chunk_type, len: produced });
        }
        let total = start + produced;
        if let Some(expected_len) = self.expected_len
            && total > expected_len
        {
            return Err(SnappyError::Overrun { expected: expected_len });
        }
        if total > self.max_len {
            return Err(SnappyError::TooLarge { declared: total, max: self.max_len });
        }
        self.out.resize(total, 0);
        if chunk_type == CHUNK_COMPRESSED {
            let written = self.raw.decompress(payload, &mut self.out[start..])?;
            if written != produced {
                self.out.truncate(start);
                return Err(SnappyError::Corrupt("block length differs from its preamble".into()));
            }
        } else {
            self.out[start..].copy_from_slice(payload);
        }
        let actual = masked_crc32c(&self.out[start..]);
        if actual != expected {
            return Err(SnappyError::ChecksumMismatch { expected, actual });
        }
        Ok(())
    }

    /// The decoded bytes, once the frame is complete.
    pub(crate) fn finish(self) -> Result<Vec<u8>, SnappyError> {
        if !self.seen_identifier {
            return Err(SnappyError::MissingStreamIdentifier);
        }
        if let Some(expected) = self.expected_len
            && self.out.len() != expected
        {
            return Err(SnappyError::Truncated);
        }
        Ok(self.out)
    }
}

/// Most wire bytes an honest framed encoding of `len` bytes needs: the identifier, one header
/// and checksum per chunk, and snappy's worst-case expansion of each chunk.
pub(crate) fn max_frame_wire_len(len: usize) -> usize {
    let chunks = len.div_ceil(MAX_FRAME_CHUNK_LEN).max(1);
    STREAM_IDENTIFIER.len()
        + chunks * (CHUNK_HEADER_LEN + CHECKSUM_LEN)
        + chunks * snap::raw::max_compress_len(MAX_FRAME_CHUNK_LEN.min(len.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 10 * 1024 * 1024;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn block_roundtrip_and_empty_input() {
        assert_eq!(compress_block(&[]).unwrap(), vec![0x00]);
        for len in [0, 1, 100, 70_000] {
            let data = sample(len);
            let compressed = compress_block(&data).unwrap();
            assert_eq!(decompress_block(&compressed, MAX).unwrap(), data);
        }
    }

    #[test]
    fn block_bound_is_checked_from_the_preamble() {
        // A preamble declaring 10 MiB + 1 with no body: refused on the declared length alone,
        // not on the (missing) body.
        let mut bogus = Vec::new();
        crate::codec::encode_varint(MAX as u64 + 1, &mut bogus);
        assert_eq!(
            decompress_block(&bogus, MAX),
            Err(SnappyError::TooLarge { declared: MAX + 1, max: MAX })
        );
        let data = sample(1000);
        let compressed = compress_block(&data).unwrap();
        assert!(matches!(decompress_block(&compressed, 999), Err(SnappyError::TooLarge { .. })));
        assert_eq!(decompress_block(&compressed, 1000).unwrap(), data);
    }

    #[test]
    fn frame_of_empty_input_is_the_identifier() {
        assert_eq!(encode_frame(&[]), STREAM_IDENTIFIER.to_vec());
        assert_eq!(decode_frame(&STREAM_IDENTIFIER, MAX).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn frame_roundtrip_across_chunk_boundaries() {
        for len in [1, 65_535, 65_536, 65_537, 200_000] {
            let data = sample(len);
            let frame = encode_frame(&data);
            assert_eq!(decode_frame(&frame, MAX).unwrap(), data, "len {len}");
            let (exact, used) = decode_frame_exact(&frame, len).unwrap();
            assert_eq!((exact, used), (data, frame.len()));
        }
    }

    #[test]
    fn frame_rejects_short_and_foreign_input() {
        assert_eq!(decode_frame(&[], MAX), Err(SnappyError::TooShort(0)));
        assert_eq!(decode_frame(&STREAM_IDENTIFIER[..9], MAX), Err(SnappyError::TooShort(9)));
        assert_eq!(decode_frame(&[0; 10], MAX), Err(SnappyError::MissingStreamIdentifier));
        let mut wrong = STREAM_IDENTIFIER;
        wrong[9] = b'X';
        assert_eq!(decode_frame(&wrong, MAX), Err(SnappyError::BadStreamIdentifier));
    }

    #[test]
    fn frame_rejects_reserved_unskippable_chunks_and_skips_skippable_ones() {
        for chunk_type in [0x02u8, 0x42, 0x7f] {
            let mut frame = STREAM_IDENTIFIER.to_vec();
            frame.extend_from_slice(&[chunk_type, 0, 0, 0]);
            assert_eq!(decode_frame(&frame, MAX), Err(SnappyError::ReservedChunkType(chunk_type)));
        }
        for chunk_type in [0x80u8, 0xfd, 0xfe] {
            let mut frame = STREAM_IDENTIFIER.to_vec();
            frame.extend_from_slice(&[chunk_type, 3, 0, 0, 9, 9, 9]);
            frame.extend_from_slice(&encode_frame(b"hello")[STREAM_IDENTIFIER.len()..]);
            assert_eq!(decode_frame(&frame, MAX).unwrap(), b"hello".to_vec());
        }
    }

    #[test]
    fn frame_rejects_checksum_mismatch_and_truncation() {
        let frame = encode_frame(b"some payload bytes");
        let mut corrupted = frame.clone();
        corrupted[STREAM_IDENTIFIER.len() + 4] ^= 0x01;
        assert!(matches!(decode_frame(&corrupted, MAX), Err(SnappyError::ChecksumMismatch { .. })));
        assert_eq!(decode_frame(&frame[..frame.len() - 1], MAX), Err(SnappyError::Truncated));
    }

    #[test]
    fn frame_bounds_output() {
        let frame = encode_frame(&sample(5000));
        assert!(matches!(decode_frame(&frame, 4999), Err(SnappyError::TooLarge { .. })));
        assert_eq!(decode_frame_exact(&frame, 4000), Err(SnappyError::Overrun { expected: 4000 }));
        assert_eq!(decode_frame_exact(&frame, 6000), Err(SnappyError::Truncated));
    }

    #[test]
    fn exact_frame_refuses_endless_padding() {
        let mut frame = STREAM_IDENTIFIER.to_vec();
        for _ in 0..100 {
            frame.extend_from_slice(&[0xfe, 0xff, 0x0f, 0x00]);
            frame.extend_from_slice(&[0u8; 0x0fff]);
        }
        assert!(matches!(
            decode_frame_exact(&frame, 5),
            Err(SnappyError::WireBudgetExceeded { .. })
        ));
    }

    proptest! {
        #[test]
        fn block_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let compressed = compress_block(&data).unwrap();
            prop_assert_eq!(decompress_block(&compressed, MAX).unwrap(), data);
        }

        #[test]
        fn frame_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let frame = encode_frame(&data);
            prop_assert_eq!(decode_frame(&frame, MAX).unwrap(), data.clone());
            prop_assert_eq!(decode_frame_exact(&frame, data.len()).unwrap(), (data, frame.len()));
        }

        #[test]
        fn block_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decompress_block(&bytes, 4096);
        }

        #[test]
        fn frame_decoders_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
            with_identifier: bool,
            expected in 0usize..4096,
        ) {
            let mut bytes = if with_identifier { STREAM_IDENTIFIER.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            let _ = decode_frame(&bytes, 4096);
            let _ = decode_frame_exact(&bytes, expected);
        }
    }
}
