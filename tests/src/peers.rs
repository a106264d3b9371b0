//! Simulated peers: one real `avs-node` process on 127.0.0.1 against `N - 1` operators played by
//! this process (issue 18, item 3: how a node's cost grows with the operator count, where `N`
//! real processes do not fit on 2 cores).
//!
//! The harness holds the other operators' BLS keys and reaches the node through a few libp2p
//! peers of its own (`avs-p2p`, the node's own network crate), named in the genesis as the first
//! operators' peer ids, so the node sees them as operator nodes. It plays the happy path of the
//! protocol (docs/protocol.md, 5 and 6) as honest operators would:
//! - a view led by a simulated operator: the leader's block on the notarized tip (empty body,
//!   state root by `apply_block`), signed, with the parent's notarization as justification;
//! - a view led by the node: the node's own proposal, taken from gossip and checked;
//! - then every simulated operator's NOTARIZE and FINALIZE vote for that block, each operator's
//!   votes through one of the harness peers, and (with [`PeersSpec::certificates`]) the two
//!   certificates, as the network's aggregator publishes them;
//! - a view the node's leader never fills (no proposal within [`NODE_PROPOSAL_PATIENCE`]) is
//!   nullified by every simulated operator.
//!
//! Signatures of a view are made before its proposal leaves (the block, and so every vote, is
//! known once it is built), so the harness's own signing is not on the node's critical path
//! except in the views the node leads. Views are paced like the network's: one per slot, and
//! never before the node has voted in the previous one (so a slow node is measured, not
//! overrun). Requests from the node are answered from what the harness built: status,
//! blocks by root and by range, certificates; votes with none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use avs_consensus::KeyTable;
use avs_consensus::TaskRegistry;
use avs_consensus::bls::{self, SecretKey};
use avs_consensus::signing::{network_digest, proposal_signing_root, vote_signing_root};
use avs_consensus::state::{
    apply_block, check_state_root, child_base, genesis_block, genesis_state,
};
use avs_consensus::types::{
    Block, BlockBody, Certificate, ChainState, Epoch, Height, OperatorIndex, Proposal, Root,
    SignedProposal, SignedVote, Signers, View, VoteData, VoteKind, decode, encode, root_of,
};
use avs_consensus::verify::verify_proposal;
use avs_node::genesis::{GenesisFile, GenesisOperator};
use avs_node::sync::{
    BlocksByRangeRequest, BlocksByRootRequest, CertificatesRequest, MAX_BLOCKS_PER_RESPONSE,
    MAX_CERTIFICATES_PER_RESPONSE, StatusMessage,
};
use avs_p2p::{
    CancellationToken, GossipTopic, NetworkConfig, NetworkEvent, NetworkHandle, NetworkService,
    NodeKeySource, ReqRespProtocol, ResponseChunk, TopicKind, ValidationOutcome,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use crate::{NodeProcess, node_with_keys, run_args};

/// How long a view led by the node waits for its proposal before the simulated operators
/// nullify it.
pub const NODE_PROPOSAL_PATIENCE: Duration = Duration::from_secs(10);
/// How long the harness waits for the node to vote in the previous view before going on
/// without it (the other operators do not wait for a lagging node forever).
const NODE_VOTE_PATIENCE: Duration = Duration::from_secs(10);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct PeersSpec {
    /// Operators in the network, the real node included (4 to 1024).
    pub operators: usize,
    /// libp2p peers the harness connects to the node with (a gossip mesh's degree is 8).
    pub peers: usize,
    pub slot_ms: u64,
    /// Publish each view's certificates as the network's aggregator would.
    pub certificates: bool,
    /// More `avs-node run` arguments for the node.
    pub node_args: Vec<String>,
}

impl Default for PeersSpec {
    fn default() -> Self {
        Self { operators: 8, peers: 4, slot_ms: 1000, certificates: true, node_args: Vec::new() }
    }
}

/// What the harness did, for the report.
#[derive(Debug, Default, Clone)]
pub struct PeersReport {
    /// Unix µs at which each height's proposal left the harness (views it led).
    pub proposed_at_us: BTreeMap<u64, u64>,
    /// Unix µs at which the harness had sent each height's last FINALIZE vote and certificate:
    /// the part of a height's latency spent in the harness's own publishing.
    pub sent_at_us: BTreeMap<u64, u64>,
    /// Heights proposed by the real node.
    pub node_proposed: Vec<u64>,
    /// Views the simulated operators nullified (the node's proposal never came).
    pub nullified_views: Vec<u64>,
    /// Gossip messages published, and publishes that failed after retries.
    pub published: u64,
    pub publish_failures: u64,
    /// Requests the node sent to the harness, by protocol.
    pub requests: BTreeMap<String, u64>,
    /// Highest height the simulated operators finalized.
    pub finalized_height: u64,
    /// Set when the harness stopped on an error.
    pub error: Option<String>,
}

/// One real node and the harness playing everyone else; both stop when this is dropped.
pub struct SimulatedNetwork {
    pub node: NodeProcess,
    report: Arc<Mutex<PeersReport>>,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl SimulatedNetwork {
    /// Generates the node's keys and the simulated operators', writes the genesis, starts the
    /// node and the harness.
    pub fn start(spec: &PeersSpec) -> anyhow::Result<Self> {
        if !(4..=1024).contains(&spec.operators) || spec.peers == 0 || spec.slot_ms < 100 {
            bail!("need 4 to 1024 operators, at least one peer and a slot of at least 100 ms");
        }
        let peers = spec.peers.min(spec.operators - 1);
        let dir = tempfile::Builder::new().prefix("avs-peers-").tempdir()?;
        let node_dir = dir.path().join("node0");
        let public = node_with_keys(dir.path(), 0, false)?;

        let keys: Vec<SecretKey> = (1..spec.operators)
            .map(|i| {
                let mut seed = [0x5e; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SecretKey::from_seed(&seed)
            })
            .collect::<Result<_, _>>()?;
        let peer_keys: Vec<avs_p2p::Keypair> =
            (0..peers).map(|_| avs_p2p::Keypair::generate_ed25519()).collect();
        let mut operators = vec![GenesisOperator::from_public(&public, 100)];
        for (i, key) in keys.iter().enumerate() {
            let mut address = [0xee_u8; 20];
            address[12..].copy_from_slice(&(i as u64).to_be_bytes());
            operators.push(GenesisOperator {
                address: format!("0x{}", hex(&address)),
                bls_pubkey: format!("0x{}", hex(&key.public_key().to_bytes())),
                pop: format!("0x{}", hex(&key.proof_of_possession().to_bytes())),
                power: 100,
                // The harness's peers stand for the first operators' nodes.
                peer_id: peer_keys.get(i).map(|k| k.public().to_peer_id().to_string()),
            });
        }
        // Time for the node to check every proof of possession and for the peers to connect.
        let lead_s = 4 + (spec.operators as u64) / 128;
        let genesis_time =
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs().saturating_add(lead_s);
        let genesis = GenesisFile {
            network_name: "avs-peers".into(),
            genesis_time,
            slot_duration_ms: spec.slot_ms,
            intervals_per_slot: 5,
            operators,
            tasks: Vec::new(),
        };
        let genesis_path = dir.path().join("genesis.json");
        genesis.write(&genesis_path)?;
        let config = genesis.to_config()?;

        let ports = avs_node::devnet::node_ports(1)?;
        let mut args = run_args(
            &node_dir,
            &genesis_path,
            &ports,
            std::slice::from_ref(&public.peer_id),
            0,
            None,
        );
        args.extend(spec.node_args.iter().cloned());
        let mut node = NodeProcess::new(0, node_dir, ports[0], args);
        node.start()?;

        let play = Play::new(&config, keys, &public.bls_pubkey, spec)?;
        let report = Arc::new(Mutex::new(PeersReport::default()));
        let cancel = CancellationToken::new();
        let node_addr: avs_p2p::Multiaddr =
            format!("/ip4/127.0.0.1/tcp/{}", node.p2p_port).parse()?;
        let node_peer: avs_p2p::PeerId = public.peer_id.parse()?;
        let thread = {
            let (report, cancel) = (Arc::clone(&report), cancel.clone());
            std::thread::Builder::new().name("simulated-peers".into()).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        lock(&report).error = Some(format!("runtime: {e}"));
                        return;
                    }
                };
                let result = runtime.block_on(run(
                    play,
                    peer_keys,
                    node_addr,
                    node_peer,
                    Arc::clone(&report),
                    cancel.clone(),
                ));
                if let Err(e) = result
                    && !cancel.is_cancelled()
                {
                    lock(&report).error = Some(format!("{e:#}"));
                }
                cancel.cancel();
            })?
        };
        Ok(Self { node, report, cancel, thread: Some(thread), _dir: dir })
    }

    /// What the harness has done so far.
    pub fn report(&self) -> PeersReport {
        lock(&self.report).clone()
    }
}

impl Drop for SimulatedNetwork {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The simulated operators and the chain they built.
struct Play {
    digest: [u8; 4],
    table: Arc<KeyTable>,
    registry: TaskRegistry,
    /// `(operator index, key)` of every simulated operator.
    keys: Vec<(OperatorIndex, SecretKey)>,
    node_index: OperatorIndex,
    genesis_time_ms: u64,
    slot: Duration,
    certificates: bool,
    tip: (Root, ChainState),
}

impl Play {
    fn new(
        config: &avs_consensus::types::GenesisConfig,
        keys: Vec<SecretKey>,
        node_pubkey: &str,
        spec: &PeersSpec,
    ) -> anyhow::Result<Self> {
        let digest = network_digest(config)?;
        let state = genesis_state(config);
        let table = Arc::new(KeyTable::new(Epoch::ZERO, &child_base(&state)?.operators, digest)?);
        let index_of = |pubkey: [u8; 48]| table.index_of(&pubkey).context("key not in the set");
        let node_index = index_of(avs_node::keys::parse_hex_array("bls_pubkey", node_pubkey)?)?;
        let keys = keys
            .into_iter()
            .map(|k| Ok((index_of(k.public_key().to_bytes())?, k)))
            .collect::<anyhow::Result<_>>()?;
        let root = genesis_block(config)?.root()?;
        Ok(Self {
            digest,
            table,
            registry: TaskRegistry::new(),
            keys,
            node_index,
            genesis_time_ms: config.genesis_time.saturating_mul(1000),
            slot: Duration::from_millis(spec.slot_ms),
            certificates: spec.certificates,
            tip: (root, state),
        })
    }

    /// The leader's block on the tip, with its post-state.
    fn build(&self, leader: OperatorIndex) -> anyhow::Result<(Block, ChainState)> {
        let (parent_root, parent) = &self.tip;
        let mut block = Block {
            height: parent.height.checked_add(1).context("height")?,
            parent_root: *parent_root,
            proposer_index: leader,
            state_root: [0; 32],
            body: BlockBody::default(),
        };
        let state = apply_block(&self.registry, self.digest, parent, parent_root, &block)?;
        block.state_root = root_of(&state)?;
        Ok((block, state))
    }

    fn key(&self, index: OperatorIndex) -> anyhow::Result<&SecretKey> {
        self.keys.iter().find(|(i, _)| *i == index).map(|(_, k)| k).context("not simulated")
    }

    /// Every simulated operator's vote on `data`, and their certificate.
    fn votes(&self, data: VoteData) -> anyhow::Result<(Vec<SignedVote>, Certificate)> {
        let root = vote_signing_root(&data, self.digest)?;
        let mut signers = vec![false; self.table.len()];
        let mut votes = Vec::with_capacity(self.keys.len());
        let mut sigs = Vec::with_capacity(self.keys.len());
        for (index, key) in &self.keys {
            let sig = key.sign(&root);
            votes.push(SignedVote {
                data,
                operator_index: *index,
                signature: sig.to_bytes().to_vec().try_into().map_err(|_| anyhow::anyhow!("96"))?,
            });
            sigs.push(sig);
            if let Some(bit) = index.position().and_then(|i| signers.get_mut(i)) {
                *bit = true;
            }
        }
        let aggregate = bls::aggregate_signatures(&sigs).context("no signature")?;
        let certificate = Certificate {
            data,
            signers: Signers::try_from(signers.as_slice())
                .map_err(|_| anyhow::anyhow!("signers"))?,
            signature: aggregate
                .to_bytes()
                .to_vec()
                .try_into()
                .map_err(|_| anyhow::anyhow!("96"))?,
        };
        Ok((votes, certificate))
    }
}

/// What the harness learned from the node's gossip.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct NodeProgress {
    /// Highest view the node voted FINALIZE or NULLIFY in (so it has left it), plus one.
    left_view: View,
}

/// What the request handlers answer from.
#[derive(Default)]
struct Served {
    view: View,
    blocks: BTreeMap<Root, Block>,
    /// Finalized blocks by height.
    chain: BTreeMap<Height, Root>,
    /// Certificates by view (notarizations, finalizations, nullifications).
    certificates: BTreeMap<View, Vec<Certificate>>,
}

async fn run(
    mut play: Play,
    peer_keys: Vec<avs_p2p::Keypair>,
    node_addr: avs_p2p::Multiaddr,
    node_peer: avs_p2p::PeerId,
    report: Arc<Mutex<PeersReport>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let served = Arc::new(Mutex::new(Served::default()));
    let (progress_tx, mut progress) = watch::channel(NodeProgress::default());
    let (proposal_tx, mut proposals) = mpsc::channel::<SignedProposal>(64);
    let topics = [TopicKind::Block, TopicKind::Vote { subnet: 0 }, TopicKind::Certificate];
    let mut handles: Vec<NetworkHandle> = Vec::new();
    for key in peer_keys {
        let mut config = NetworkConfig::new(play.digest, NodeKeySource::Provided(Box::new(key)));
        config.listen_addrs = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        config.target_peers = 1;
        config.trusted_peers = vec![node_peer];
        let NetworkService { handle, events, .. } =
            avs_p2p::spawn(config, &mut Registry::default(), cancel.clone())?;
        for kind in topics {
            handle.subscribe(GossipTopic::new(play.digest, kind)).await?;
        }
        tokio::spawn(serve(
            handle.clone(),
            events,
            play.node_index,
            Arc::clone(&served),
            progress_tx.clone(),
            proposal_tx.clone(),
            Arc::clone(&report),
        ));
        handles.push(handle);
    }
    drop(proposal_tx);
    // Connect every peer to the node, and wait until the node's subscriptions are known (a
    // publish with nobody to send to fails).
    for handle in &handles {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !handle.connected_peers().await?.contains(&node_peer) {
            if Instant::now() > deadline {
                bail!("a harness peer never connected to the node");
            }
            let _ = handle.dial(node_addr.clone()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let genesis_at = play.genesis_time_ms;
    sleep_until_unix_ms(genesis_at, &cancel).await;

    let mut nulls: Vec<Certificate> = Vec::new();
    let mut parent_certificate: Option<Certificate> = None;
    let mut pace = Instant::now();
    for number in 0u64.. {
        let view = View::new(number);
        if cancel.is_cancelled() {
            return Ok(());
        }
        lock(&served).view = view;
        // The node has left the previous view (or is too slow to wait for).
        if view > View::ZERO {
            let _ = tokio::time::timeout(
                NODE_VOTE_PATIENCE,
                progress.wait_for(|p| p.left_view >= view),
            )
            .await;
        }
        let leader = play.table.leader(view).context("no leader")?;
        let (block, state, signed) = if leader == play.node_index {
            match wait_for_proposal(&mut proposals, &play, view, &cancel).await? {
                Some((block, state)) => (block, state, None),
                None => {
                    let data = VoteData::nullify(Epoch::ZERO, view);
                    let (votes, certificate) = play.votes(data)?;
                    publish_votes(&handles, &play, &votes, &report).await;
                    publish(
                        &handles,
                        play.digest,
                        0,
                        TopicKind::Certificate,
                        encode(&certificate)?,
                        &report,
                    )
                    .await;
                    lock(&served).certificates.entry(view).or_default().push(certificate.clone());
                    lock(&report).nullified_views.push(view.get());
                    nulls.push(certificate);
                    continue;
                }
            }
        } else {
            let (block, state) = play.build(leader)?;
            let message = Proposal { view, epoch: Epoch::ZERO, block: block.clone() };
            let signature = play.key(leader)?.sign(&proposal_signing_root(&message, play.digest)?);
            let mut justification: Vec<Certificate> = parent_certificate.iter().cloned().collect();
            justification.extend(nulls.iter().cloned());
            let proposal = SignedProposal {
                message,
                signature: signature
                    .to_bytes()
                    .to_vec()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("96"))?,
                justification: justification
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("justification too long"))?,
            };
            (block, state, Some(proposal))
        };
        let root = block.root()?;
        // Every signature of the view before anything of it leaves.
        let sign_play = Arc::new(play);
        let (notarize, finalize) = {
            let p = Arc::clone(&sign_play);
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                Ok((
                    p.votes(VoteData::notarize(Epoch::ZERO, view, root))?,
                    p.votes(VoteData::finalize(Epoch::ZERO, view, root))?,
                ))
            })
            .await??
        };
        play = Arc::into_inner(sign_play).context("signing still holds the play")?;
        {
            let mut s = lock(&served);
            s.blocks.insert(root, block.clone());
        }
        if let Some(proposal) = signed {
            // One block per slot, as the network's leaders pace it.
            tokio::select! {
                () = tokio::time::sleep_until((pace + play.slot).into()) => {}
                () = cancel.cancelled() => return Ok(()),
            }
            pace = Instant::now();
            let peer = leader.position().unwrap_or(0) % handles.len();
            publish(&handles, play.digest, peer, TopicKind::Block, encode(&proposal)?, &report)
                .await;
            lock(&report).proposed_at_us.insert(block.height.get(), unix_us());
        } else {
            pace = Instant::now();
            lock(&report).node_proposed.push(block.height.get());
        }
        for (votes, certificate) in [&notarize, &finalize] {
            publish_votes(&handles, &play, votes, &report).await;
            if play.certificates {
                let data = encode(certificate)?;
                publish(&handles, play.digest, 0, TopicKind::Certificate, data, &report).await;
            }
        }
        {
            let mut s = lock(&served);
            s.chain.insert(block.height, root);
            s.certificates
                .entry(view)
                .or_default()
                .extend([notarize.1.clone(), finalize.1.clone()]);
        }
        {
            let mut r = lock(&report);
            r.finalized_height = block.height.get();
            r.sent_at_us.insert(block.height.get(), unix_us());
        }
        parent_certificate = Some(notarize.1);
        nulls.clear();
        play.tip = (root, state);
    }
    Ok(())
}

async fn sleep_until_unix_ms(at_ms: u64, cancel: &CancellationToken) {
    let now_ms = unix_us() / 1000;
    let wait = Duration::from_millis(at_ms.saturating_sub(now_ms));
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = cancel.cancelled() => {}
    }
}

/// The node's proposal for `view`, checked and applied on the tip; `None` if it never came.
async fn wait_for_proposal(
    proposals: &mut mpsc::Receiver<SignedProposal>,
    play: &Play,
    view: View,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<(Block, ChainState)>> {
    let deadline = tokio::time::Instant::now() + NODE_PROPOSAL_PATIENCE;
    loop {
        let proposal = tokio::select! {
            p = proposals.recv() => p.context("the harness's peers stopped")?,
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = cancel.cancelled() => return Ok(None),
        };
        if proposal.message.view != view || proposal.message.epoch != Epoch::ZERO {
            continue;
        }
        if verify_proposal(&play.table, &proposal).is_err() {
            bail!("the node's proposal for view {view} does not verify");
        }
        let block = proposal.message.block;
        let (parent_root, parent) = &play.tip;
        let state = apply_block(&play.registry, play.digest, parent, parent_root, &block)
            .with_context(|| format!("the node's block for view {view} does not apply"))?;
        check_state_root(&block, &state)?;
        return Ok(Some((block, state)));
    }
}

/// Publishes every vote, each operator's through its own harness peer, the peers in parallel.
async fn publish_votes(
    handles: &[NetworkHandle],
    play: &Play,
    votes: &[SignedVote],
    report: &Arc<Mutex<PeersReport>>,
) {
    let mut per_peer: Vec<Vec<Vec<u8>>> = vec![Vec::new(); handles.len()];
    for vote in votes {
        let peer = vote.operator_index.position().unwrap_or(0) % handles.len();
        if let (Some(out), Ok(bytes)) = (per_peer.get_mut(peer), encode(vote)) {
            out.push(bytes);
        }
    }
    let topic = GossipTopic::new(play.digest, TopicKind::Vote { subnet: 0 });
    let mut sends = tokio::task::JoinSet::new();
    for (messages, handle) in per_peer.into_iter().zip(handles) {
        let handle = handle.clone();
        sends.spawn(async move {
            let mut failures = 0u64;
            for data in messages {
                if !publish_one(&handle, topic, data).await {
                    failures += 1;
                }
            }
            failures
        });
    }
    let failures: u64 = sends.join_all().await.into_iter().sum();
    let mut r = lock(report);
    r.published += votes.len() as u64;
    r.publish_failures += failures;
}

async fn publish(
    handles: &[NetworkHandle],
    digest: [u8; 4],
    peer: usize,
    kind: TopicKind,
    data: Vec<u8>,
    report: &Arc<Mutex<PeersReport>>,
) {
    let Some(handle) = handles.get(peer) else { return };
    let ok = publish_one(handle, GossipTopic::new(digest, kind), data).await;
    let mut r = lock(report);
    r.published += 1;
    r.publish_failures += u64::from(!ok);
}

/// Publishes with a few retries (a full queue, or the node's subscription not yet known).
async fn publish_one(handle: &NetworkHandle, topic: GossipTopic, data: Vec<u8>) -> bool {
    for _ in 0..50 {
        match handle.publish(topic, data.clone()).await {
            Ok(_) => return true,
            // The harness is stopping.
            Err(avs_p2p::NetworkError::Stopped) => return false,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    false
}

/// One harness peer's events: gossip is judged Ignore (the harness forwards nothing; the
/// messages it needs are the node's own proposals and votes), requests are answered.
async fn serve(
    handle: NetworkHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    node_index: OperatorIndex,
    served: Arc<Mutex<Served>>,
    progress: watch::Sender<NodeProgress>,
    proposals: mpsc::Sender<SignedProposal>,
    report: Arc<Mutex<PeersReport>>,
) {
    while let Some(event) = events.recv().await {
        match event {
            NetworkEvent::Gossip(message) => {
                let _ = handle.report_validation(
                    message.message_id.clone(),
                    message.peer,
                    ValidationOutcome::Ignore,
                );
                match message.topic.kind {
                    TopicKind::Block => {
                        if let Ok(p) = decode::<SignedProposal>(&message.data)
                            && p.message.block.proposer_index == node_index
                        {
                            let _ = proposals.try_send(p);
                        }
                    }
                    TopicKind::Vote { .. } => {
                        if let Ok(vote) = decode::<SignedVote>(&message.data)
                            && vote.operator_index == node_index
                            && matches!(
                                vote.data.vote_kind(),
                                Some(VoteKind::Finalize | VoteKind::Nullify)
                            )
                        {
                            let left = vote.data.view.next();
                            progress.send_if_modified(|p| {
                                let newer = left > p.left_view;
                                if newer {
                                    p.left_view = left;
                                }
                                newer
                            });
                        }
                    }
                    _ => {}
                }
            }
            NetworkEvent::Request(request) => {
                *lock(&report).requests.entry(format!("{:?}", request.protocol)).or_default() += 1;
                let chunks = answer(&served, request.protocol, &request.request);
                let _ = request.responder.respond(chunks);
            }
            NetworkEvent::PeerConnected(_) | NetworkEvent::PeerDisconnected(_) => {}
        }
    }
}

/// The harness's answer to one request, from what it built.
fn answer(served: &Mutex<Served>, protocol: ReqRespProtocol, request: &[u8]) -> Vec<ResponseChunk> {
    let s = lock(served);
    let encoded = |items: Vec<Vec<u8>>| items.into_iter().map(ResponseChunk::success).collect();
    match protocol {
        ReqRespProtocol::Status => {
            let (finalized_height, finalized_root) =
                s.chain.iter().next_back().map_or((Height::ZERO, [0; 32]), |(h, r)| (*h, *r));
            let status = StatusMessage {
                epoch: Epoch::ZERO,
                view: s.view,
                finalized_height,
                finalized_root,
            };
            encoded(encode(&status).into_iter().collect())
        }
        ReqRespProtocol::BlocksByRoot => {
            let Ok(req) = decode::<BlocksByRootRequest>(request) else { return Vec::new() };
            encoded(
                req.roots
                    .iter()
                    .filter_map(|r| s.blocks.get(r))
                    .filter_map(|b| encode(b).ok())
                    .collect(),
            )
        }
        ReqRespProtocol::BlocksByRange => {
            let Ok(req) = decode::<BlocksByRangeRequest>(request) else { return Vec::new() };
            let count = req.count.min(MAX_BLOCKS_PER_RESPONSE);
            encoded(
                (req.start_height.get()..req.start_height.get().saturating_add(count))
                    .map_while(|h| s.chain.get(&Height::new(h)).and_then(|r| s.blocks.get(r)))
                    .filter_map(|b| encode(b).ok())
                    .collect(),
            )
        }
        ReqRespProtocol::Certificates => {
            let Ok(req) = decode::<CertificatesRequest>(request) else { return Vec::new() };
            if req.epoch != Epoch::ZERO {
                return Vec::new();
            }
            encoded(
                s.certificates
                    .range(req.from_view..)
                    .flat_map(|(_, certs)| certs.iter())
                    .take(MAX_CERTIFICATES_PER_RESPONSE)
                    .filter_map(|c| encode(c).ok())
                    .collect(),
            )
        }
        ReqRespProtocol::Votes => Vec::new(),
    }
}
