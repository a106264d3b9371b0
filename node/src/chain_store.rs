//! Typed persistence of the chain on top of [`Store`]: what the engine's actions write, what a
//! restart reads back, and what finality lets go of.
//!
//! Key layout (all integers big-endian, so key order is numeric order):
//!
//! | column | key | value |
//! |---|---|---|
//! | `votes` | `epoch ‖ view ‖ kind` | own `SignedVote` (written with fsync, before it is sent) |
//! | `certificates` | `epoch ‖ view ‖ kind` | `Certificate` |
//! | `blocks` | `root` | `Block` |
//! | `chain_state` | `final/‖height` | root of the finalized block at `height` |
//! | `chain_state` | `unfinal/‖height‖root` | empty: a stored block above the finalized height |
//! | `chain_state` | `epoch_end/‖epoch` | the finalization certificate that ended `epoch` |
//! | `chain_state` | `evidence/‖epoch‖view‖operator` | `EvidenceRecord` (two conflicting signed votes) |
//! | `chain_state` | `history_floor` | the lowest finalized height still held, once a history limit pruned below it |
//! | `chain_state` | `anchor/block`, `anchor/state`, `anchor/cert` | the last finalized block, its state and its finalization certificate |
//!
//! The anchor's three entries are written in the batch of the finality that moves them, with
//! the pruning that finality allows (docs/protocol.md, rule 8 and deviation 11): own votes and
//! certificates below the new floor, the `unfinal/` index up to the finalized height with the
//! bodies of the blocks it names that lost (a block at or below the finalized height that is
//! not the finalized one can never be final), and, with a history limit
//! ([`ChainStore::with_history`], `--history-blocks`), finalized blocks more than that many
//! heights behind. Each finality reads at most [`PRUNE_READ_LIMIT`] index entries per kind; what
//! is left is pruned by the next one. One batch, so a restart never sees a floor without its
//! anchor. A restart reads only from the
//! anchor's floor onwards, and refuses to start if that is more than [`RESTART_READ_LIMIT`]
//! entries rather than run with some of its own votes missing.

use std::sync::Arc;

use anyhow::{Context, bail};
use avs_consensus::ssz_check::{Shape, SszShape};
use avs_consensus::types::{
    Block, Certificate, ChainState, Epoch, Height, Root, SignedVote, View, VoteData, decode, encode,
};
use avs_consensus::{Anchor, Evidence, Persisted};
use ssz_rs::prelude::*;

use crate::store::{Column, Durability, Store, StoreError, WriteBatch};

const ANCHOR_BLOCK: &[u8] = b"anchor/block";
const ANCHOR_STATE: &[u8] = b"anchor/state";
const ANCHOR_CERT: &[u8] = b"anchor/cert";
const FINAL_PREFIX: &[u8] = b"final/";
const UNFINAL_PREFIX: &[u8] = b"unfinal/";
const EPOCH_END_PREFIX: &[u8] = b"epoch_end/";
const EVIDENCE_PREFIX: &[u8] = b"evidence/";
const HISTORY_FLOOR: &[u8] = b"history_floor";

/// Most entries of one kind a restart reads back. Finality prunes what lies behind it, so
/// only a network that has not finalized for this many views (about three entries a view)
/// gets here; the node then refuses to start instead of dropping its newest votes.
pub const RESTART_READ_LIMIT: usize = 1 << 20;
/// Most certificates read to answer one `certificates` request.
const ANSWER_READ_LIMIT: usize = 4096;
/// Most index entries of one kind (`unfinal/`, `final/`) one finality reads to prune.
pub const PRUNE_READ_LIMIT: usize = 1024;
/// Fewest finalized blocks a history limit may keep: a peer one catch-up batch (64) behind
/// must still find them here.
pub const MIN_HISTORY_BLOCKS: u64 = 128;

/// Two conflicting signed votes of one operator, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, SimpleSerialize)]
pub struct EvidenceRecord {
    pub first: SignedVote,
    pub second: SignedVote,
}

impl SszShape for EvidenceRecord {
    fn shape() -> Shape {
        Shape::Container(vec![SignedVote::shape(), SignedVote::shape()])
    }
}

fn vote_key(data: &VoteData) -> Vec<u8> {
    view_key(data.epoch, data.view, data.kind)
}

fn view_key(epoch: Epoch, view: View, kind: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.extend_from_slice(&epoch.get().to_be_bytes());
    key.extend_from_slice(&view.get().to_be_bytes());
    key.push(kind);
    key
}

fn final_key(height: Height) -> Vec<u8> {
    [FINAL_PREFIX, &height.get().to_be_bytes()].concat()
}

fn unfinal_key(height: Height, root: &Root) -> Vec<u8> {
    [UNFINAL_PREFIX, &height.get().to_be_bytes(), root].concat()
}

/// Height and root of an `unfinal/` key.
fn parse_unfinal_key(key: &[u8]) -> anyhow::Result<(Height, Root)> {
    let rest = key.strip_prefix(UNFINAL_PREFIX).context("not a block index key")?;
    let (height, root) = rest.split_first_chunk::<8>().context("stored block index key")?;
    Ok((
        Height::new(u64::from_be_bytes(*height)),
        root.try_into().context("stored block index key")?,
    ))
}

/// Height of a `final/` key.
fn parse_final_key(key: &[u8]) -> anyhow::Result<Height> {
    let rest = key.strip_prefix(FINAL_PREFIX).context("not a finalized index key")?;
    Ok(Height::new(u64::from_be_bytes(rest.try_into().context("stored finalized index key")?)))
}

fn epoch_end_key(epoch: Epoch) -> Vec<u8> {
    [EPOCH_END_PREFIX, &epoch.get().to_be_bytes()].concat()
}

/// Reads `column` from `start` while keys start with `prefix`; fails if there are more than
/// `limit` such entries (never truncates silently).
fn read_all(
    store: &dyn Store,
    column: Column,
    start: &[u8],
    prefix: &[u8],
    limit: usize,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let entries = store.range(column, start, limit.saturating_add(1))?;
    let entries: Vec<_> = entries.into_iter().take_while(|(k, _)| k.starts_with(prefix)).collect();
    if entries.len() > limit {
        bail!(
            "more than {limit} entries in {} from the restart point: the network has not \
             finalized for a very long time; refusing to start with some of this node's own \
             votes unread (copy the data directory away and report it)",
            column.name()
        );
    }
    Ok(entries)
}

/// The chain's typed view of the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChainStore {
    store: Arc<dyn Store>,
    /// Finalized blocks kept behind the finalized height; `None` keeps them all.
    history: Option<u64>,
}

impl ChainStore {
    /// A store that keeps every finalized block (what a node that others catch up from needs).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, history: None }
    }

    /// Keeps only the newest `blocks` finalized blocks behind the finalized one (`None`: all).
    /// Peers asking for older heights get an empty answer and ask another peer, so a network
    /// needs some nodes that keep everything for newcomers to replay from genesis.
    pub fn with_history(mut self, blocks: Option<u64>) -> Self {
        self.history = blocks;
        self
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

    /// A block kept before it is final (a proposal judged valid, a fetched block).
    pub fn put_unfinal_block(
        &self,
        batch: &mut WriteBatch,
        root: &Root,
        block: &Block,
    ) -> anyhow::Result<()> {
        batch.put(Column::Blocks, root.to_vec(), encode(block)?);
        batch.put(Column::ChainState, unfinal_key(block.height, root), Vec::new());
        Ok(())
    }

    pub fn put_finalized(
        &self,
        batch: &mut WriteBatch,
        root: &Root,
        block: &Block,
    ) -> anyhow::Result<()> {
        batch.put(Column::Blocks, root.to_vec(), encode(block)?);
        batch.put(Column::ChainState, final_key(block.height), root.to_vec());
        Ok(())
    }

    /// The finalization certificate that ended `epoch` (kept when everything behind it is
    /// pruned: it is what a node in that epoch needs to switch).
    pub fn put_epoch_end(&self, batch: &mut WriteBatch, cert: &Certificate) -> anyhow::Result<()> {
        batch.put(Column::ChainState, epoch_end_key(cert.data.epoch), encode(cert)?);
        Ok(())
    }

    pub fn put_evidence(&self, batch: &mut WriteBatch, evidence: &Evidence) -> anyhow::Result<()> {
        let key = [
            EVIDENCE_PREFIX,
            &evidence.epoch.get().to_be_bytes(),
            &evidence.view.get().to_be_bytes(),
            &evidence.operator_index.get().to_be_bytes(),
        ]
        .concat();
        let record =
            EvidenceRecord { first: evidence.first.clone(), second: evidence.second.clone() };
        batch.put(Column::ChainState, key, encode(&record)?);
        Ok(())
    }

    /// Evidence records stored so far (at most `limit`).
    pub fn evidence(&self, limit: usize) -> anyhow::Result<Vec<EvidenceRecord>> {
        self.store
            .range(Column::ChainState, EVIDENCE_PREFIX, limit)?
            .into_iter()
            .take_while(|(k, _)| k.starts_with(EVIDENCE_PREFIX))
            .map(|(_, v)| decode(&v).context("stored evidence"))
            .collect()
    }

    /// The anchor (last finalized block, its state and certificate), and what finality lets
    /// go of: own votes and certificates below its floor, and the `unfinal/` index up to its
    /// height.
    pub fn put_anchor(&self, batch: &mut WriteBatch, anchor: &Anchor) -> anyhow::Result<()> {
        let root = anchor.block.root()?;
        batch.put(Column::Blocks, root.to_vec(), encode(&anchor.block)?);
        batch.put(Column::ChainState, ANCHOR_BLOCK, root.to_vec());
        batch.put(Column::ChainState, ANCHOR_STATE, encode(&anchor.state)?);
        match &anchor.certificate {
            Some(cert) => batch.put(Column::ChainState, ANCHOR_CERT, encode(cert)?),
            None => batch.delete(Column::ChainState, ANCHOR_CERT),
        }
        let floor = view_key(anchor.epoch()?, anchor.floor_view(), 0);
        let zero = [0u8];
        batch.delete_range(Column::Votes, zero.to_vec(), floor.clone());
        batch.delete_range(Column::Certificates, zero.to_vec(), floor);
        self.prune_blocks(batch, anchor.block.height)
    }

    /// The block pruning of a finality at `height` (see the module's text).
    fn prune_blocks(&self, batch: &mut WriteBatch, height: Height) -> anyhow::Result<()> {
        let unfinal = self.store.range(Column::ChainState, UNFINAL_PREFIX, PRUNE_READ_LIMIT)?;
        for (key, _) in unfinal.iter().take_while(|(k, _)| k.starts_with(UNFINAL_PREFIX)) {
            let (at, root) = parse_unfinal_key(key)?;
            if at > height {
                break;
            }
            // This batch may hold the finality of `at` itself: look there first.
            let key_final = final_key(at);
            let finalized = match batch.pending(Column::ChainState, &key_final) {
                Some(value) => value.map(<[u8]>::to_vec),
                None => self.store.get(Column::ChainState, &key_final)?,
            };
            if finalized.as_deref() != Some(root.as_slice()) {
                batch.delete(Column::Blocks, root.to_vec());
            }
            batch.delete(Column::ChainState, key.clone());
        }
        let Some(keep) = self.history else { return Ok(()) };
        let cutoff = height.saturating_sub(keep);
        // Usually one height falls behind per finality: read only what lies below the cutoff.
        let Some(lowest) = self.lowest_finalized()? else { return Ok(()) };
        let behind = usize::try_from(cutoff.since(lowest)).unwrap_or(usize::MAX);
        if behind == 0 {
            return Ok(());
        }
        let finalized =
            self.store.range(Column::ChainState, FINAL_PREFIX, behind.min(PRUNE_READ_LIMIT))?;
        let mut floor = None;
        for (key, root) in finalized.iter().take_while(|(k, _)| k.starts_with(FINAL_PREFIX)) {
            let at = parse_final_key(key)?;
            if at >= cutoff {
                break;
            }
            batch.delete(Column::Blocks, root.clone());
            batch.delete(Column::ChainState, key.clone());
            floor = Some(at.next());
        }
        if let Some(floor) = floor {
            batch.put(Column::ChainState, HISTORY_FLOOR, floor.get().to_be_bytes().to_vec());
        }
        Ok(())
    }

    /// The lowest height of the finalized index, if it holds any.
    fn lowest_finalized(&self) -> anyhow::Result<Option<Height>> {
        let first = self.store.range(Column::ChainState, FINAL_PREFIX, 1)?;
        match first.first() {
            Some((key, _)) if key.starts_with(FINAL_PREFIX) => Ok(Some(parse_final_key(key)?)),
            _ => Ok(None),
        }
    }

    /// The lowest finalized height still held once a history limit pruned below it; `None`
    /// while every finalized block is held.
    pub fn history_floor(&self) -> anyhow::Result<Option<Height>> {
        match self.store.get(Column::ChainState, HISTORY_FLOOR)? {
            Some(raw) => Ok(Some(Height::new(u64::from_be_bytes(
                raw.as_slice().try_into().context("stored history floor")?,
            )))),
            None => Ok(None),
        }
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

    pub fn finalized_root(&self, height: Height) -> anyhow::Result<Option<Root>> {
        match self.store.get(Column::ChainState, &final_key(height))? {
            Some(raw) => Ok(Some(raw.as_slice().try_into().context("stored finalized root")?)),
            None => Ok(None),
        }
    }

    /// Finalized blocks at heights `start..start + count`, stopping at the first gap.
    pub fn finalized_range(&self, start: Height, count: u64) -> anyhow::Result<Vec<Block>> {
        let mut blocks = Vec::new();
        for height in start.get()..start.get().saturating_add(count) {
            let Some(root) = self.finalized_root(Height::new(height))? else { break };
            let Some(block) = self.block(&root)? else { break };
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Certificates of `epoch` with `view >= from_view`, in view order, the newest `max` of
    /// them; if `epoch` ended, its ending finalization is always included (last).
    pub fn certificates_from(
        &self,
        epoch: Epoch,
        from_view: View,
        max: usize,
    ) -> anyhow::Result<Vec<Certificate>> {
        let prefix = epoch.get().to_be_bytes();
        let entries = self.store.range(
            Column::Certificates,
            &view_key(epoch, from_view, 0),
            ANSWER_READ_LIMIT,
        )?;
        let mut certs = entries
            .into_iter()
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| decode::<Certificate>(&v).context("stored certificate"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let end: Option<Certificate> = self
            .store
            .get(Column::ChainState, &epoch_end_key(epoch))?
            .map(|v| decode(&v).context("stored epoch end"))
            .transpose()?;
        if let Some(end) = end {
            certs.retain(|c| c != &end);
            let excess = certs.len().saturating_sub(max.saturating_sub(1));
            certs.drain(..excess);
            certs.push(end);
        } else {
            let excess = certs.len().saturating_sub(max);
            certs.drain(..excess);
        }
        Ok(certs)
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
        let anchor = Anchor { block, state, certificate };
        // Everything from the anchor's floor on: this epoch's views >= floor and later epochs.
        let from = view_key(anchor.epoch()?, anchor.floor_view(), 0);
        let own_votes = read_all(&*self.store, Column::Votes, &from, &[], RESTART_READ_LIMIT)?
            .into_iter()
            .map(|(_, v)| decode::<SignedVote>(&v).context("stored own vote"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let certificates =
            read_all(&*self.store, Column::Certificates, &from, &[], RESTART_READ_LIMIT)?
                .into_iter()
                .map(|(_, v)| decode::<Certificate>(&v).context("stored certificate"))
                .collect::<anyhow::Result<Vec<_>>>()?;
        let index_from = unfinal_key(anchor.block.height.next(), &[0; 32]);
        let mut blocks = Vec::new();
        for (key, _) in read_all(
            &*self.store,
            Column::ChainState,
            &index_from,
            UNFINAL_PREFIX,
            RESTART_READ_LIMIT,
        )? {
            let (_, root) = parse_unfinal_key(&key)?;
            if let Some(block) = self.block(&root)? {
                blocks.push(block);
            }
        }
        Ok(Some((anchor, Persisted { own_votes, certificates, blocks })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use avs_consensus::testkit;
    use avs_consensus::types::VoteData;

    fn vote(epoch: u64, view: u64) -> SignedVote {
        let data = VoteData::nullify(Epoch::new(epoch), View::new(view));
        SignedVote { data, ..Default::default() }
    }

    /// S1 of the consensus review: a restart used to read own votes from the start of the
    /// epoch and stop silently at 2^20, dropping the newest. Now it reads from the anchor's
    /// floor, finality prunes what lies behind, and too much to read is an error.
    #[test]
    fn restart_reads_from_the_floor_prunes_behind_it_and_never_truncates() {
        let chain = ChainStore::new(Arc::new(MemoryStore::new()));
        let (_, genesis) = testkit::genesis(&[1, 1, 1, 1], 1, 4000).unwrap();
        let mut anchor = Anchor::genesis(&genesis).unwrap();
        let mut batch = WriteBatch::new();
        chain.put_anchor(&mut batch, &anchor).unwrap();
        chain.write(batch).unwrap();
        for view in 0..50 {
            chain.persist_vote(&vote(0, view)).unwrap();
        }
        let (_, persisted) = chain.load_restart().unwrap().unwrap();
        assert_eq!(persisted.own_votes.len(), 50);
        // An anchor finalized at view 40 (mid-epoch): votes below 40 are pruned with it.
        anchor.block.height = Height::new(7);
        anchor.certificate = Some(Certificate {
            data: VoteData::finalize(Epoch::ZERO, View::new(40), [1; 32]),
            ..Default::default()
        });
        let mut batch = WriteBatch::new();
        chain.put_anchor(&mut batch, &anchor).unwrap();
        chain.write(batch).unwrap();
        let (_, persisted) = chain.load_restart().unwrap().unwrap();
        let views: Vec<u64> = persisted.own_votes.iter().map(|v| v.data.view.get()).collect();
        assert_eq!(views, (40..50).collect::<Vec<_>>());
        assert_eq!(chain.store.range(Column::Votes, &[0], 100).unwrap().len(), 10);
        // Later epochs are read too.
        chain.persist_vote(&vote(1, 0)).unwrap();
        let (_, persisted) = chain.load_restart().unwrap().unwrap();
        assert_eq!(persisted.own_votes.last().unwrap().data.epoch, Epoch::new(1));
        // More than the limit: an error, not a silent cut.
        let err = read_all(&*chain.store, Column::Votes, &[0], &[], 5).unwrap_err();
        assert!(err.to_string().contains("refusing to start"), "{err}");
    }

    #[test]
    fn an_ended_epoch_always_answers_with_its_ending_finalization() {
        let chain = ChainStore::new(Arc::new(MemoryStore::new()));
        let mut batch = WriteBatch::new();
        let end = Certificate {
            data: VoteData::finalize(Epoch::ZERO, View::new(9), [2; 32]),
            ..Default::default()
        };
        chain
            .put_certificate(
                &mut batch,
                &VoteData::notarize(Epoch::ZERO, View::new(9), [2; 32]).into_cert(),
            )
            .unwrap();
        chain.put_certificate(&mut batch, &end).unwrap();
        chain.put_epoch_end(&mut batch, &end).unwrap();
        chain.write(batch).unwrap();
        // Asked from view 10 (a node that holds the notarization of 9 but not its finality).
        assert_eq!(
            chain.certificates_from(Epoch::ZERO, View::new(10), 256).unwrap(),
            vec![end.clone()]
        );
        let all = chain.certificates_from(Epoch::ZERO, View::ZERO, 256).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.last(), Some(&end));
        assert!(chain.certificates_from(Epoch::new(1), View::ZERO, 256).unwrap().is_empty());
    }

    /// Finalizes heights `1..=top`, each with a losing sibling stored before the finality, the
    /// way proposals arrive; returns the winners' and losers' roots by height.
    fn finalize_with_losers(chain: &ChainStore, top: u64) -> Vec<(Root, Root)> {
        let (_, genesis) = testkit::genesis(&[1, 1, 1, 1], 1, 4000).unwrap();
        let mut anchor = Anchor::genesis(&genesis).unwrap();
        let mut roots = vec![([0; 32], [0; 32])];
        for height in 1..=top {
            let height = Height::new(height);
            let block = |salt| Block { height, state_root: [salt; 32], ..Default::default() };
            let (winner, loser) = (block(1), block(2));
            let (win, lose) = (winner.root().unwrap(), loser.root().unwrap());
            let mut batch = WriteBatch::new();
            chain.put_unfinal_block(&mut batch, &win, &winner).unwrap();
            chain.put_unfinal_block(&mut batch, &lose, &loser).unwrap();
            chain.write(batch).unwrap();
            // The winner's finality and the anchor that prunes are one batch.
            let mut batch = WriteBatch::new();
            chain.put_finalized(&mut batch, &win, &winner).unwrap();
            anchor.block = winner;
            chain.put_anchor(&mut batch, &anchor).unwrap();
            chain.write(batch).unwrap();
            roots.push((win, lose));
        }
        roots
    }

    /// Review M8: nothing deleted blocks, so the disk grew without bound. Finality now drops
    /// the blocks that lost, and a history limit drops finalized blocks behind it.
    #[test]
    fn finality_prunes_losing_blocks_and_history_beyond_its_limit() {
        let top = 300;
        let archive = ChainStore::new(Arc::new(MemoryStore::new()));
        let roots = finalize_with_losers(&archive, top);
        for &(win, lose) in &roots[1..] {
            assert!(archive.block(&win).unwrap().is_some(), "a finalized block was pruned");
            assert!(archive.block(&lose).unwrap().is_none(), "a losing block was kept");
        }
        assert_eq!(archive.history_floor().unwrap(), None);
        assert_eq!(archive.store.range(Column::Blocks, &[0], 1000).unwrap().len(), 300);

        let pruned =
            ChainStore::new(Arc::new(MemoryStore::new())).with_history(Some(MIN_HISTORY_BLOCKS));
        let roots = finalize_with_losers(&pruned, top);
        let oldest = top - MIN_HISTORY_BLOCKS;
        assert_eq!(pruned.history_floor().unwrap(), Some(Height::new(oldest)));
        for (height, &(win, lose)) in roots.iter().enumerate().skip(1) {
            let kept = u64::try_from(height).unwrap() >= oldest;
            assert_eq!(pruned.block(&win).unwrap().is_some(), kept, "height {height}");
            assert!(pruned.block(&lose).unwrap().is_none());
        }
        let blocks = pruned.store.range(Column::Blocks, &[0], 1000).unwrap();
        assert_eq!(blocks.len(), usize::try_from(MIN_HISTORY_BLOCKS + 1).unwrap());
        assert!(pruned.finalized_range(Height::new(1), 10).unwrap().is_empty());
        assert_eq!(pruned.finalized_range(Height::new(oldest), 1000).unwrap().len(), blocks.len());
        // A restart still finds its anchor and nothing above it.
        let (anchor, persisted) = pruned.load_restart().unwrap().unwrap();
        assert_eq!(anchor.block.height, Height::new(top));
        assert!(persisted.blocks.is_empty());
    }

    trait IntoCert {
        fn into_cert(self) -> Certificate;
    }
    impl IntoCert for VoteData {
        fn into_cert(self) -> Certificate {
            Certificate { data: self, ..Default::default() }
        }
    }
}
