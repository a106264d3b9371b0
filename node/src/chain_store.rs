//! Typed persistence of the chain on top of [`Store`]: what the engine's actions write and
//! what a restart reads back.
//!
//! Key layout (all integers big-endian, so key order is numeric order):
//!
//! | column | key | value |
//! |---|---|---|
//! | `votes` | `epoch ‖ view ‖ kind` | own `SignedVote` (written with fsync, before it is sent) |
//! | `certificates` | `epoch ‖ view ‖ kind` | `Certificate` |
//! | `blocks` | `root` | `Block` |
//! | `chain_state` | `final/‖height` | root of the finalized block at `height` |
//! | `chain_state` | `anchor/block`, `anchor/state`, `anchor/cert` | the last finalized block, its state and its finalization certificate |
//!
//! The anchor's three entries are always written in one batch, so a restart never sees a block
//! with another block's state.

use std::sync::Arc;

use anyhow::Context;
use avs_consensus::types::{
    Block, Certificate, ChainState, Root, SignedVote, VoteData, decode, encode,
};
use avs_consensus::{Anchor, Persisted};

use crate::store::{Column, Durability, Store, StoreError, WriteBatch};

const ANCHOR_BLOCK: &[u8] = b"anchor/block";
const ANCHOR_STATE: &[u8] = b"anchor/state";
const ANCHOR_CERT: &[u8] = b"anchor/cert";
const FINAL_PREFIX: &[u8] = b"final/";

/// How many stored entries a restart reads back per column at most.
const RESTART_SCAN_LIMIT: usize = 1 << 20;

fn vote_key(data: &VoteData) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.extend_from_slice(&data.epoch.to_be_bytes());
    key.extend_from_slice(&data.view.to_be_bytes());
    key.push(data.kind);
    key
}

fn final_key(height: u64) -> Vec<u8> {
    [FINAL_PREFIX, &height.to_be_bytes()].concat()
}

/// The chain's typed view of the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChainStore {
    store: Arc<dyn Store>,
}

impl ChainStore {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Durably stores an own vote; returns only once it is fsynced.
    pub fn persist_vote(&self, vote: &SignedVote) -> anyhow::Result<()> {
        let bytes = encode(vote).context("encoding own vote")?;
        self.store.put(Column::Votes, &vote_key(&vote.data), &bytes, Durability::Sync)?;
        Ok(())
    }

    pub fn put_certificate(
        &self,
        batch: &mut WriteBatch,
        cert: &Certificate,
    ) -> anyhow::Result<()> {
        batch.put(Column::Certificates, vote_key(&cert.data), encode(cert)?);
        Ok(())
    }

    pub fn put_block(
        &self,
        batch: &mut WriteBatch,
        root: &Root,
        block: &Block,
    ) -> anyhow::Result<()> {
        batch.put(Column::Blocks, root.to_vec(), encode(block)?);
        Ok(())
    }

    pub fn put_finalized(
        &self,
        batch: &mut WriteBatch,
        root: &Root,
        block: &Block,
    ) -> anyhow::Result<()> {
        self.put_block(batch, root, block)?;
        batch.put(Column::ChainState, final_key(block.height), root.to_vec());
        Ok(())
    }

    pub fn put_anchor(&self, batch: &mut WriteBatch, anchor: &Anchor) -> anyhow::Result<()> {
        let root = anchor.block.root()?;
        self.put_block(batch, &root, &anchor.block)?;
        batch.put(Column::ChainState, ANCHOR_BLOCK, root.to_vec());
        batch.put(Column::ChainState, ANCHOR_STATE, encode(&anchor.state)?);
        match &anchor.certificate {
            Some(cert) => batch.put(Column::ChainState, ANCHOR_CERT, encode(cert)?),
            None => batch.delete(Column::ChainState, ANCHOR_CERT),
        }
        Ok(())
    }

    pub fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.store.write(batch, Durability::Buffered)
    }

    pub fn block(&self, root: &Root) -> anyhow::Result<Option<Block>> {
        self.store
            .get(Column::Blocks, root)?
            .map(|b| decode(&b).context("stored block"))
            .transpose()
    }

    pub fn finalized_root(&self, height: u64) -> anyhow::Result<Option<Root>> {
        match self.store.get(Column::ChainState, &final_key(height))? {
            Some(raw) => Ok(Some(raw.as_slice().try_into().context("stored finalized root")?)),
            None => Ok(None),
        }
    }

    /// Finalized blocks at heights `start..start + count`, stopping at the first gap.
    pub fn finalized_range(&self, start: u64, count: u64) -> anyhow::Result<Vec<Block>> {
        let mut blocks = Vec::new();
        for height in start..start.saturating_add(count) {
            let Some(root) = self.finalized_root(height)? else { break };
            let Some(block) = self.block(&root)? else { break };
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// The certificates stored for `epoch`, in view order.
    pub fn certificates_of_epoch(&self, epoch: u64) -> anyhow::Result<Vec<Certificate>> {
        let entries =
            self.store.range(Column::Certificates, &epoch.to_be_bytes(), RESTART_SCAN_LIMIT)?;
        entries
            .into_iter()
            .take_while(|(k, _)| k.starts_with(&epoch.to_be_bytes()))
            .map(|(_, v)| decode(&v).context("stored certificate"))
            .collect()
    }

    /// The anchor and everything to replay, or `None` on a fresh store.
    pub fn load_restart(&self) -> anyhow::Result<Option<(Anchor, Persisted)>> {
        let Some(root) = self.store.get(Column::ChainState, ANCHOR_BLOCK)? else { return Ok(None) };
        let root: Root = root.as_slice().try_into().context("stored anchor root")?;
        let block = self.block(&root)?.context("the anchor block is missing from the store")?;
        let state_bytes = self
            .store
            .get(Column::ChainState, ANCHOR_STATE)?
            .context("the anchor state is missing from the store")?;
        let state: ChainState = decode(&state_bytes).context("stored anchor state")?;
        let certificate = self
            .store
            .get(Column::ChainState, ANCHOR_CERT)?
            .map(|c| decode(&c).context("stored anchor certificate"))
            .transpose()?;
        let from_epoch = state.epoch.to_be_bytes();
        let own_votes = self
            .store
            .range(Column::Votes, &from_epoch, RESTART_SCAN_LIMIT)?
            .into_iter()
            .map(|(_, v)| decode::<SignedVote>(&v).context("stored own vote"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let certificates = self
            .store
            .range(Column::Certificates, &from_epoch, RESTART_SCAN_LIMIT)?
            .into_iter()
            .map(|(_, v)| decode::<Certificate>(&v).context("stored certificate"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let blocks = self
            .store
            .range(Column::Blocks, &[0u8], RESTART_SCAN_LIMIT)?
            .into_iter()
            .map(|(_, v)| decode::<Block>(&v).context("stored block"))
            .filter(|b| b.as_ref().map_or(true, |b| b.height > block.height))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some((
            Anchor { block, state, certificate },
            Persisted { own_votes, certificates, blocks },
        )))
    }
}
