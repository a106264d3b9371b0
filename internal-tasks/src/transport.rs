//! The JSON-RPC transport of the stake source: alloy's reqwest transport, with a cap on the
//! response size.
//!
//! alloy's own HTTP transport reads a whole response body before parsing it, so an endpoint
//! that answers with gigabytes makes the node hold gigabytes. This one reads the body chunk by
//! chunk and gives up at [`MAX_RESPONSE_BYTES`] (the largest honest answer, the registry of
//! `MAX_REGISTERED_OPERATORS` operators, is well under a megabyte of JSON).

use std::task;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::http::reqwest::{Client, Url};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut, TransportResult};

/// The largest JSON-RPC response body read.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// How much of a body an error quotes.
const ERROR_EXCERPT_BYTES: usize = 256;

/// A JSON-RPC over HTTP transport that refuses responses above a size.
#[derive(Debug, Clone)]
pub struct CappedHttp {
    client: Client,
    url: Url,
    max_bytes: usize,
}

impl CappedHttp {
    pub fn new(url: Url, max_bytes: usize) -> Self {
        Self { client: Client::new(), url, max_bytes }
    }

    async fn post(self, request: RequestPacket) -> TransportResult<ResponsePacket> {
        let mut response = self
            .client
            .post(self.url)
            .json(&request)
            .headers(request.headers())
            .send()
            .await
            .map_err(TransportErrorKind::custom)?;
        let status = response.status();
        if response.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(too_large(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(TransportErrorKind::custom)? {
            if body.len().saturating_add(chunk.len()) > self.max_bytes {
                return Err(too_large(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        // Error texts carry at most the start of the body: it may be megabytes, and it may
        // echo the request (and so an API key) back.
        let excerpt = || {
            let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_EXCERPT_BYTES)]);
            text.into_owned()
        };
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(status.as_u16(), excerpt()));
        }
        serde_json::from_slice(&body).map_err(|e| TransportError::deser_err(e, excerpt()))
    }
}

fn too_large(max: usize) -> TransportError {
    TransportErrorKind::custom_str(&format!("response larger than {max} bytes; refused"))
}

impl tower::Service<RequestPacket> for CappedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().post(request))
    }
}
