//! The async req/resp codec libp2p's `request_response` drives on each stream.
//!
//! Reads go prefix first: the varint length is checked against the limit before a single
//! payload byte is read, then the snappy frame is decoded chunk by chunk (headers validated
//! before bodies are buffered, bodies at most one 64 KiB chunk) until exactly the declared
//! length is out. The request timeout of the behaviour bounds how long a slow peer can hold a
//! stream.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;

use super::{ReqRespProtocol, RpcLimits};
use crate::codec::{
    CHUNK_HEADER_LEN, ChunkAction, FrameDecoder, ResponseChunk, ResponseCode, VarintDecoder,
    encode_request, encode_response_chunk,
};

/// Codec shared by all three req/resp behaviours.
#[derive(Debug, Clone, Default)]
pub struct RpcCodec {
    limits: RpcLimits,
}

impl RpcCodec {
    pub fn new(limits: RpcLimits) -> Self {
        Self { limits }
    }
}

fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Reads a varint prefix one byte at a time (never past it). `None` on a clean end of stream
/// before the first byte.
async fn read_varint<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Option<u64>> {
    let mut decoder = VarintDecoder::default();
    let mut first = true;
    loop {
        let mut byte = [0u8; 1];
        if io.read(&mut byte).await? == 0 {
            return if first { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        first = false;
        if let Some(value) = decoder.push(byte[0]).map_err(invalid)? {
            return Ok(Some(value));
        }
    }
}

/// Reads a frame that must decompress to exactly `len` bytes.
async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, len: usize) -> io::Result<Vec<u8>> {
    let mut decoder = FrameDecoder::new(len, Some(len));
    let mut body = Vec::new();
    while !decoder.is_complete() {
        let mut header = [0u8; CHUNK_HEADER_LEN];
        io.read_exact(&mut header).await?;
        match decoder.header(header).map_err(invalid)? {
            ChunkAction::Read { chunk_type, len } => {
                body.resize(len, 0);
                io.read_exact(&mut body).await?;
                decoder.body(chunk_type, &body).map_err(invalid)?;
            }
            ChunkAction::Skip { len } => {
                let skipped =
                    futures::io::copy((&mut *io).take(len as u64), &mut futures::io::sink())
                        .await?;
                if skipped != len as u64 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    decoder.finish().map_err(invalid)
}

fn checked_len(declared: u64, max: usize) -> io::Result<usize> {
    crate::codec::reqresp_checked_len(declared, max).map_err(invalid)
}

impl request_response::Codec for RpcCodec {
    type Protocol = ReqRespProtocol;
    type Request = Vec<u8>;
    type Response = Vec<ResponseChunk>;

    async fn read_request<T>(&mut self, _: &ReqRespProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let declared = read_varint(io).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let len = checked_len(declared, self.limits.max_request_size)?;
        read_frame(io, len).await
    }

    async fn read_response<T>(
        &mut self,
        protocol: &ReqRespProtocol,
        io: &mut T,
    ) -> io::Result<Vec<ResponseChunk>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let max_chunks = self.limits.max_chunks(*protocol);
        let mut chunks = Vec::new();
        let mut total = 0usize;
        loop {
            let mut code = [0u8; 1];
            if io.read(&mut code).await? == 0 {
                if chunks.len() < self.limits.min_chunks(*protocol) {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{protocol} response ended without a chunk"),
                    ));
                }
                return Ok(chunks);
            }
            if chunks.len() == max_chunks {
                return Err(invalid_input(format!(
                    "{protocol} response has more than {max_chunks} chunks"
                )));
            }
            let code = ResponseCode::from_u8(code[0]).map_err(invalid)?;
            let declared = read_varint(io).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let len = checked_len(declared, code.max_payload(self.limits.max_chunk_size))?;
            total += len;
            if total > self.limits.max_response_bytes {
                return Err(invalid_input(format!(
                    "{protocol} response exceeds {} bytes",
                    self.limits.max_response_bytes
                )));
            }
            let payload = read_frame(io, len).await?;
            chunks.push(ResponseChunk { code, payload });
        }
    }

    async fn write_request<T>(
        &mut self,
        protocol: &ReqRespProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if request.len() > self.limits.max_request_size {
            return Err(invalid_input(format!(
                "{protocol} request of {} bytes exceeds the limit of {}",
                request.len(),
                self.limits.max_request_size
            )));
        }
        io.write_all(&encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &ReqRespProtocol,
        io: &mut T,
        response: Vec<ResponseChunk>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        check_response(&self.limits, *protocol, &response).map_err(invalid_input)?;
        let mut encoded = Vec::new();
        for chunk in &response {
            encode_response_chunk(chunk, &mut encoded);
        }
        io.write_all(&encoded).await
    }
}

/// Whether a response fits the limits the peer will apply when reading it.
pub(crate) fn check_response(
    limits: &RpcLimits,
    protocol: ReqRespProtocol,
    response: &[ResponseChunk],
) -> Result<(), String> {
    let max_chunks = limits.max_chunks(protocol);
    if response.len() < limits.min_chunks(protocol) {
        return Err(format!("{protocol} response needs at least one chunk"));
    }
    if response.len() > max_chunks {
        return Err(format!(
            "{protocol} response has {} chunks, limit {max_chunks}",
            response.len()
        ));
    }
    let mut total = 0usize;
    for chunk in response {
        let max = chunk.code.max_payload(limits.max_chunk_size);
        if chunk.payload.len() > max {
            return Err(format!("{protocol} chunk of {} bytes exceeds {max}", chunk.payload.len()));
        }
        total += chunk.payload.len();
    }
    if total > limits.max_response_bytes {
        return Err(format!(
            "{protocol} response of {total} bytes exceeds {}",
            limits.max_response_bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    fn limits() -> RpcLimits {
        RpcLimits {
            max_request_size: 1024,
            max_chunk_size: 4096,
            max_response_chunks: 4,
            max_response_bytes: 8192,
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn request_roundtrip_over_a_stream() {
        let mut codec = RpcCodec::new(limits());
        let protocol = ReqRespProtocol::Status;
        let mut wire = Vec::new();
        block_on(codec.write_request(&protocol, &mut wire, vec![9; 100])).unwrap();
        assert_eq!(wire, encode_request(&[9; 100]));
        let read = block_on(codec.read_request(&protocol, &mut Cursor::new(wire))).unwrap();
        assert_eq!(read, vec![9; 100]);
    }

    #[test]
    fn refuses_oversize_requests_both_ways() {
        let mut codec = RpcCodec::new(limits());
        let protocol = ReqRespProtocol::BlocksByRange;
        let mut wire = Vec::new();
        let error = block_on(codec.write_request(&protocol, &mut wire, vec![0; 1025])).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.is_empty(), "nothing may be written for a refused request");
        // A peer declaring 1025 bytes is refused on the prefix, before any frame is read.
        let oversize = encode_request(&[0; 1025]);
        let error =
            block_on(codec.read_request(&protocol, &mut Cursor::new(oversize))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let mut prefix_only = Vec::new();
        crate::codec::encode_varint(1 << 40, &mut prefix_only);
        let error =
            block_on(codec.read_request(&protocol, &mut Cursor::new(prefix_only))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn response_roundtrip_and_limits() {
        let mut codec = RpcCodec::new(limits());
        let protocol = ReqRespProtocol::Certificates;
        let response = vec![
            ResponseChunk::success(vec![1; 10]),
            ResponseChunk::success(vec![2; 4096]),
            ResponseChunk::error(ResponseCode::ResourceUnavailable, "gone"),
        ];
        let mut wire = Vec::new();
        block_on(codec.write_response(&protocol, &mut wire, response.clone())).unwrap();
        let read = block_on(codec.read_response(&protocol, &mut Cursor::new(wire))).unwrap();
        assert_eq!(read, response);

        let too_many = vec![ResponseChunk::success(vec![]); 5];
        assert!(
            block_on(codec.write_response(&protocol, &mut Vec::new(), too_many.clone())).is_err()
        );
        let mut wire = Vec::new();
        for chunk in &too_many {
            encode_response_chunk(chunk, &mut wire);
        }
        assert!(block_on(codec.read_response(&protocol, &mut Cursor::new(wire))).is_err());
        // Status allows one chunk only.
        let mut wire = Vec::new();
        for chunk in &too_many[..2] {
            encode_response_chunk(chunk, &mut wire);
        }
        assert!(
            block_on(codec.read_response(&ReqRespProtocol::Status, &mut Cursor::new(wire)))
                .is_err()
        );
        // ... and at least one: an empty status response is an error, an empty range is not.
        assert!(
            block_on(codec.read_response(&ReqRespProtocol::Status, &mut Cursor::new(vec![])))
                .is_err()
        );
        assert_eq!(
            block_on(codec.read_response(&protocol, &mut Cursor::new(vec![]))).unwrap(),
            vec![]
        );
    }

    #[test]
    fn truncated_streams_fail() {
        let mut codec = RpcCodec::new(limits());
        let protocol = ReqRespProtocol::Status;
        let full = encode_request(&[3; 50]);
        for cut in 0..full.len() {
            let result =
                block_on(codec.read_request(&protocol, &mut Cursor::new(full[..cut].to_vec())));
            assert!(result.is_err(), "cut at {cut} must fail");
        }
    }

    proptest! {
        #[test]
        fn stream_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = RpcCodec::new(limits());
            for protocol in ReqRespProtocol::ALL {
                let _ = block_on(codec.read_request(&protocol, &mut Cursor::new(bytes.clone())));
                let _ = block_on(codec.read_response(&protocol, &mut Cursor::new(bytes.clone())));
            }
        }
    }
}
