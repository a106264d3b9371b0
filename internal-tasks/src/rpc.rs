//! The real stake source: the registry contracts of `contracts/` on an L1 and an L2 chain,
//! read over Ethereum JSON-RPC with `alloy`.
//!
//! Heads are `eth_blockNumber` minus the confirmation depth. A snapshot at block `n` reads the
//! block's hash, calls the registry at block `n`, and reads the hash again: if the chain
//! reorganized in between, the read is dropped (and retried on the next pass), so the powers
//! and the hash always describe the same block. (Calls by block hash, EIP-1898, would be
//! simpler, but not every node implements them: ganache answers "header not found".)
//!
//! Every read has a deadline ([`RpcConfig::timeout`]): an endpoint that accepts the connection
//! and never answers makes the read fail as unavailable (NotYet for attestations) instead of
//! hanging the refresher. Endpoint URLs often carry an API key, so they never appear in an
//! error or a log line: errors name the chain instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};

use crate::source::{
    Chain, ChainSnapshot, Heads, RegisteredOperator, SourceError, SourceFuture, StakeSource,
};
use crate::transport::{CappedHttp, MAX_RESPONSE_BYTES};
use crate::update::ChainBlock;

alloy::sol!(
    #[sol(rpc)]
    StakeRegistry,
    "../contracts/artifacts/StakeRegistry.json"
);
alloy::sol!(
    #[sol(rpc)]
    PowerRegistry,
    "../contracts/artifacts/PowerRegistry.json"
);

/// Where to read stake: endpoints and registry addresses of both chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    pub l1_url: String,
    pub l2_url: String,
    /// `StakeRegistry` on L1.
    pub l1_registry: [u8; 20],
    /// `PowerRegistry` on L2.
    pub l2_registry: [u8; 20],
    pub confirmations: u64,
    /// Longest wait for one read (heads, or one chain's snapshot).
    pub timeout: Duration,
}

/// The default of [`RpcConfig::timeout`].
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Most operators a registry may list (a larger answer is refused as malformed rather than
/// costing a proof-of-possession check per entry).
pub const MAX_REGISTERED_OPERATORS: usize = 4 * avs_consensus::types::MAX_OPERATORS;

pub struct RpcSource {
    l1: DynProvider,
    l2: DynProvider,
    l1_registry: Address,
    l2_registry: Address,
    confirmations: u64,
    timeout: Duration,
    /// The URLs as configured and as parsed (what transport errors print), with the name to
    /// show instead.
    secrets: Vec<(String, &'static str)>,
}

impl std::fmt::Debug for RpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcSource")
            .field("l1_registry", &self.l1_registry)
            .field("l2_registry", &self.l2_registry)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

fn unavailable(chain: Chain, what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("{} {what}: {e}", chain.name()))
}

impl RpcSource {
    /// Builds HTTP providers; no request is made until the first refresh.
    pub fn new(config: &RpcConfig) -> Result<Self, SourceError> {
        let mut secrets = Vec::new();
        let mut provider = |url: &str, name: &'static str| -> Result<DynProvider, SourceError> {
            let parsed: alloy::transports::http::reqwest::Url = url
                .parse()
                .map_err(|e| SourceError::Unavailable(format!("{name}: not a valid URL ({e})")))?;
            secrets.push((url.to_owned(), name));
            secrets.push((parsed.as_str().to_owned(), name));
            let is_local = parsed.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1");
            let transport = CappedHttp::new(parsed, MAX_RESPONSE_BYTES);
            let client = alloy::rpc::client::RpcClient::new(transport, is_local);
            Ok(ProviderBuilder::new().connect_client(client).erased())
        };
        Ok(Self {
            l1: provider(&config.l1_url, "<L1 RPC URL>")?,
            l2: provider(&config.l2_url, "<L2 RPC URL>")?,
            l1_registry: Address::from(config.l1_registry),
            l2_registry: Address::from(config.l2_registry),
            confirmations: config.confirmations,
            timeout: config.timeout,
            secrets,
        })
    }

    /// Runs one read with the deadline, and keeps the endpoints' URLs out of its error.
    async fn guarded<T>(
        &self,
        what: &str,
        read: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(SourceError::Unavailable(message))) => {
                Err(SourceError::Unavailable(redact(&message, &self.secrets)))
            }
            Ok(Err(other)) => Err(other),
            Err(_) => Err(SourceError::Unavailable(format!(
                "{what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    fn provider(&self, chain: Chain) -> &DynProvider {
        match chain {
            Chain::L1 => &self.l1,
            Chain::L2 => &self.l2,
        }
    }

    async fn head(&self, chain: Chain) -> Result<u64, SourceError> {
        let number = self
            .provider(chain)
            .get_block_number()
            .await
            .map_err(|e| unavailable(chain, "eth_blockNumber", e))?;
        Ok(number.saturating_sub(self.confirmations))
    }

    async fn read(&self, chain: Chain, number: u64) -> Result<ChainSnapshot, SourceError> {
        let head = self.head(chain).await?;
        if number > head {
            return Err(SourceError::NotReached { chain: chain.name(), number, head });
        }
        let provider = self.provider(chain);
        let hash = self.block_hash(chain, number).await?;
        let at = BlockId::number(number);
        let mut operators = BTreeMap::new();
        match chain {
            Chain::L1 => {
                let registry = StakeRegistry::new(self.l1_registry, provider);
                let r = registry
                    .operators()
                    .block(at)
                    .call()
                    .await
                    .map_err(|e| unavailable(chain, "StakeRegistry.operators", e))?;
                let n = r.ops.len();
                if n > MAX_REGISTERED_OPERATORS {
                    return Err(SourceError::Malformed(format!(
                        "{n} registered operators, at most {MAX_REGISTERED_OPERATORS}"
                    )));
                }
                if r.pubkeys.len() != n || r.pops.len() != n || r.powers.len() != n {
                    return Err(SourceError::Malformed("array lengths differ".into()));
                }
                for i in 0..n {
                    let address: [u8; 20] = r.ops[i].into_array();
                    if r.powers[i] > 0 {
                        operators.insert(
                            address,
                            RegisteredOperator {
                                address,
                                pubkey: r.pubkeys[i].to_vec(),
                                pop: r.pops[i].to_vec(),
                                power: r.powers[i],
                            },
                        );
                    }
                }
            }
            Chain::L2 => {
                let registry = PowerRegistry::new(self.l2_registry, provider);
                let r = registry
                    .powers()
                    .block(at)
                    .call()
                    .await
                    .map_err(|e| unavailable(chain, "PowerRegistry.powers", e))?;
                if r.ops.len() > MAX_REGISTERED_OPERATORS {
                    return Err(SourceError::Malformed(format!(
                        "{} operators with power, at most {MAX_REGISTERED_OPERATORS}",
                        r.ops.len()
                    )));
                }
                if r.ops.len() != r.values.len() {
                    return Err(SourceError::Malformed("array lengths differ".into()));
                }
                for (op, power) in r.ops.iter().zip(r.values.iter()) {
                    let address: [u8; 20] = op.into_array();
                    if *power > 0 {
                        operators.insert(
                            address,
                            RegisteredOperator {
                                address,
                                pubkey: Vec::new(),
                                pop: Vec::new(),
                                power: *power,
                            },
                        );
                    }
                }
            }
        }
        if self.block_hash(chain, number).await? != hash {
            return Err(unavailable(chain, "block", format!("{number} reorganized while read")));
        }
        Ok(ChainSnapshot { block: ChainBlock { number, hash }, operators })
    }

    async fn block_hash(&self, chain: Chain, number: u64) -> Result<[u8; 32], SourceError> {
        let block = self
            .provider(chain)
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(|e| unavailable(chain, "eth_getBlockByNumber", e))?
            .ok_or_else(|| unavailable(chain, "block", format!("{number} not found")))?;
        Ok(block.header.hash.0)
    }
}

impl StakeSource for RpcSource {
    fn kind(&self) -> &'static str {
        "json-rpc"
    }

    fn heads(&self) -> SourceFuture<'_, Heads> {
        Box::pin(self.guarded("heads", async move {
            Ok(Heads { l1: self.head(Chain::L1).await?, l2: self.head(Chain::L2).await? })
        }))
    }

    fn snapshot(&self, chain: Chain, number: u64) -> SourceFuture<'_, ChainSnapshot> {
        Box::pin(self.guarded(chain.name(), self.read(chain, number)))
    }

    fn block_hash(&self, chain: Chain, number: u64) -> SourceFuture<'_, [u8; 32]> {
        Box::pin(self.guarded(chain.name(), RpcSource::block_hash(self, chain, number)))
    }
}

/// `message` with every secret replaced by its name.
fn redact(message: &str, secrets: &[(String, &'static str)]) -> String {
    let mut message = message.to_owned();
    // Longest first, so a URL is not half-replaced by a shorter spelling of itself.
    let mut secrets: Vec<_> = secrets.iter().filter(|(s, _)| !s.is_empty()).collect();
    secrets.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    for (secret, name) in secrets {
        message = message.replace(secret.as_str(), name);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, timeout: Duration) -> RpcConfig {
        RpcConfig {
            l1_url: url.to_owned(),
            l2_url: url.to_owned(),
            l1_registry: [1; 20],
            l2_registry: [2; 20],
            confirmations: 0,
            timeout,
        }
    }

    /// An endpoint answering with a body above the cap (here 12 MiB of JSON, streamed without
    /// a Content-Length) fails the read as unavailable; the node never holds the whole body.
    #[tokio::test]
    async fn an_oversized_answer_is_refused_without_reading_it_all() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                transfer-encoding: chunked\r\n\r\n";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 * 1024];
                    for _ in 0..(12 * 16) {
                        let framed =
                            [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                        if socket.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let source = RpcSource::new(&config(&url, Duration::from_secs(10))).unwrap();
        match source.heads().await {
            Err(SourceError::Unavailable(message)) => {
                assert!(message.contains("larger than"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Review T49: an endpoint that accepts connections and never answers fails the read
    /// after the deadline (NotYet for the attester) instead of hanging the refresher.
    #[tokio::test]
    async fn an_endpoint_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket); // accepted, never answered
            }
        });
        let source = RpcSource::new(&config(&url, Duration::from_millis(300))).unwrap();
        match source.heads().await {
            Err(SourceError::Unavailable(message)) => {
                assert!(message.contains("no answer within 300 ms"), "{message}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    /// Review T39: an API key in the endpoint URL never reaches an error message.
    #[tokio::test]
    async fn errors_never_carry_the_endpoint_url() {
        // Nothing listens on port 9 of loopback: the connection is refused at once, and
        // reqwest's error names the URL it tried.
        let url = "http://127.0.0.1:9/v2/secret-api-key";
        let source = RpcSource::new(&config(url, Duration::from_secs(30))).unwrap();
        match source.heads().await {
            Err(SourceError::Unavailable(message)) => {
                assert!(!message.contains("secret-api-key"), "{message}");
                assert!(message.contains("L1"), "{message}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        let bad = RpcSource::new(&config("not a url secret-api-key", Duration::from_secs(1)));
        assert!(!format!("{:?}", bad.err()).contains("secret-api-key"));
        assert_eq!(
            redact("error sending request for url (http://h/k)", &[("http://h/k".into(), "<L1>")]),
            "error sending request for url (<L1>)"
        );
    }
}
