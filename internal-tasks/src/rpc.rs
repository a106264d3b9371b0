//! The real stake source: the registry contracts of `contracts/` on an L1 and an L2 chain,
//! read over Ethereum JSON-RPC with `alloy`.
//!
//! Heads are `eth_blockNumber` minus the confirmation depth. A snapshot at block `n` reads the
//! block's hash, calls the registry at block `n`, and reads the hash again: if the chain
//! reorganized in between, the read is dropped (and retried on the next pass), so the powers
//! and the hash always describe the same block. (Calls by block hash, EIP-1898, would be
//! simpler, but not every node implements them: ganache answers "header not found".)

use std::collections::BTreeMap;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};

use crate::source::{
    Chain, ChainSnapshot, Heads, RegisteredOperator, SourceError, SourceFuture, StakeSource,
};
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
}

pub struct RpcSource {
    l1: DynProvider,
    l2: DynProvider,
    l1_registry: Address,
    l2_registry: Address,
    confirmations: u64,
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
        let provider = |url: &str| -> Result<DynProvider, SourceError> {
            let url = url
                .parse()
                .map_err(|e| SourceError::Unavailable(format!("RPC URL {url:?}: {e}")))?;
            Ok(ProviderBuilder::new().connect_http(url).erased())
        };
        Ok(Self {
            l1: provider(&config.l1_url)?,
            l2: provider(&config.l2_url)?,
            l1_registry: Address::from(config.l1_registry),
            l2_registry: Address::from(config.l2_registry),
            confirmations: config.confirmations,
        })
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
        Box::pin(async move {
            Ok(Heads { l1: self.head(Chain::L1).await?, l2: self.head(Chain::L2).await? })
        })
    }

    fn snapshot(&self, chain: Chain, number: u64) -> SourceFuture<'_, ChainSnapshot> {
        Box::pin(self.read(chain, number))
    }
}
