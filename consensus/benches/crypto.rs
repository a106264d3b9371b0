//! Consensus-side benchmarks, each a ratio against a blst baseline measured in the same run.
//!
//! 1. `cert_verify/N`: `verify::verify_certificate` (our KeyTable path: bitlist, quorum,
//!    signing root, signature decompression, the signers' key, one pairing check) for N signers
//!    of one message (`/N`) and for the smallest quorum of N (`/N@Q`, Q = 2N/3 + 1), against
//!    blst's own `fast_aggregate_verify_pre_aggregated` on the signers' aggregate key computed
//!    beforehand and a signature already decompressed. Goal: <= 1.1x.
//! 2. `ingest/N`: what an aggregator does per gossiped vote, against one blst `verify` of a
//!    single signature. Goal: <= 0.1x. Measured three ways (see `ingest_*`):
//!    - `node path`: exactly what `avs-node` does today per vote: `GossipContext` snapshot,
//!      `validate_vote_bytes` (strict SSZ decode, window checks, one signature check), then
//!      `Engine::handle(Input::Vote { Incoming::Verified, is_aggregator: true })` (pooling,
//!      and at quorum the certificate's aggregation and acceptance), plus, once per N votes,
//!      the certificate's SSZ encoding and the receivers' `verify_certificate`.
//!    - `node path, 1 forged`: the node path with one vote signed by the wrong key, against
//!      the clean round plus the pairings a bisection needs to isolate it (goal <= 1.1x).
//!    - `batch path`: the same with the N votes checked by one `verify_votes_batch`.
//!    - `aggregate-first bound`: decode, signature decompression and aggregation per vote and
//!      one `fast_aggregate_verify` per N votes, i.e. what a pool that verifies the aggregate
//!      first (and single votes only when that fails) would cost. The engine has no public
//!      entry point for that yet; this row shows what it would buy.
//!
//!    Not included anywhere: snappy, gossipsub, the tokio hops between network task, blocking
//!    pool and node loop.
//!
//! Run: `cargo bench -p avs-consensus --bench crypto` (optionally `-- cert_verify`).

mod common;

use std::hint::black_box;
use std::time::Instant;

use avs_consensus::bls::{self, DST_POP, DST_SIG};
use avs_consensus::signing::{network_digest, vote_signing_root};
use avs_consensus::task::TaskRegistry;
use avs_consensus::types::{
    Certificate, Epoch, GenesisConfig, Operator, OperatorIndex, OperatorSet, SignedVote, Signers,
    View, VoteData, byte_list, decode, encode,
};
use avs_consensus::verify::{Incoming, verify_certificate, verify_votes_batch};
use avs_consensus::{Action, Engine, EngineConfig, Input, KeyTable};
use blst::BLST_ERROR;
use blst::min_pk;
use common::{Row, compare, nanos, per_op, print_table, selected};

const GENESIS_TIME: u64 = 1_000_000;

/// N operators with real keys and proofs of possession, equal power.
struct Network {
    keys: Vec<min_pk::SecretKey>,
    pks: Vec<min_pk::PublicKey>,
    genesis: GenesisConfig,
    table: KeyTable,
}

impl Network {
    fn new(n: usize) -> Self {
        let keys: Vec<min_pk::SecretKey> = (0..n)
            .map(|i| {
                let mut ikm = [7u8; 32];
                ikm[..8].copy_from_slice(&(i as u64).to_le_bytes());
                min_pk::SecretKey::key_gen(&ikm, &[]).expect("32-byte ikm")
            })
            .collect();
        let pks: Vec<min_pk::PublicKey> = keys.iter().map(|k| k.sk_to_pk()).collect();
        let operators: Vec<Operator> = keys
            .iter()
            .zip(&pks)
            .enumerate()
            .map(|(i, (sk, pk))| {
                let pk_bytes = pk.compress();
                let mut address = [0u8; 20];
                address[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Operator {
                    address,
                    pubkey: pk_bytes.to_vec().try_into().expect("48 bytes"),
                    pop: sk
                        .sign(&pk_bytes, DST_POP, &[])
                        .compress()
                        .to_vec()
                        .try_into()
                        .expect("96"),
                    power: 100,
                }
            })
            .collect();
        let genesis = GenesisConfig {
            network_name: byte_list(b"bench").expect("short name"),
            genesis_time: GENESIS_TIME,
            slot_duration_ms: 4000,
            intervals_per_slot: 5,
            operators: OperatorSet { operators: operators.try_into().expect("<= 1024 operators") },
            task_definitions: Default::default(),
        };
        let digest = network_digest(&genesis).expect("genesis root");
        let table = KeyTable::new(Epoch::ZERO, &genesis.operators, digest).expect("valid set");
        Self { keys, pks, genesis, table }
    }

    fn signing_root(&self, data: &VoteData) -> [u8; 32] {
        vote_signing_root(data, self.table.digest()).expect("vote root")
    }

    fn vote(&self, i: usize, data: VoteData) -> SignedVote {
        let sig = self.keys[i].sign(&self.signing_root(&data), DST_SIG, &[]);
        SignedVote {
            data,
            operator_index: OperatorIndex::at(i),
            signature: sig.compress().to_vec().try_into().expect("96 bytes"),
        }
    }

    /// A certificate signed by the first `signing` operators.
    fn certificate(&self, data: VoteData, signing: usize) -> Certificate {
        let root = self.signing_root(&data);
        let sigs: Vec<min_pk::Signature> =
            self.keys.iter().take(signing).map(|k| k.sign(&root, DST_SIG, &[])).collect();
        let refs: Vec<&min_pk::Signature> = sigs.iter().collect();
        let agg = min_pk::AggregateSignature::aggregate(&refs, false).expect("non-empty");
        let bits: Vec<bool> = (0..self.keys.len()).map(|i| i < signing).collect();
        Certificate {
            data,
            signers: Signers::try_from(bits.as_slice()).expect("bitlist"),
            signature: agg.to_signature().compress().to_vec().try_into().expect("96 bytes"),
        }
    }
}

fn cert_verify(net: &Network, signing: usize) -> Row {
    let n = net.keys.len();
    let data = VoteData::finalize(Epoch::ZERO, View::new(7), [0xab; 32]);
    let cert = net.certificate(data, signing);
    assert!(verify_certificate(&net.table, &cert).is_ok(), "the certificate must verify");

    let pk_refs: Vec<&min_pk::PublicKey> = net.pks.iter().take(signing).collect();
    let agg_pk =
        min_pk::AggregatePublicKey::aggregate(&pk_refs, false).expect("keys").to_public_key();
    let sig = min_pk::Signature::from_bytes(cert.signature.as_ref()).expect("signature");
    let msg = net.signing_root(&data);
    let blst_check = || sig.fast_aggregate_verify_pre_aggregated(true, &msg, DST_SIG, &agg_pk);
    assert_eq!(blst_check(), BLST_ERROR::BLST_SUCCESS);

    // Where the difference goes: the two steps the baseline does not do per call.
    let table_keys: Vec<&bls::PublicKey> =
        (0..signing).map(|i| net.table.key(OperatorIndex::at(i)).expect("member")).collect();
    let mut aggregation = Vec::new();
    let mut decompression = Vec::new();
    for _ in 0..9 {
        aggregation.push(per_op(8, || {
            black_box(net.table.signers_aggregate(black_box(&cert.signers)).expect("length"));
        }));
        decompression.push(per_op(8, || {
            black_box(bls::Signature::from_bytes(black_box(cert.signature.as_ref())).is_ok());
        }));
    }
    let mut summing = Vec::new();
    for _ in 0..9 {
        summing.push(per_op(8, || {
            black_box(bls::aggregate_public_keys(black_box(&table_keys)));
        }));
    }
    let name = if signing == n {
        format!("cert_verify/{n}")
    } else {
        format!("cert_verify/{n}@{signing}")
    };
    println!(
        "{name}: of which signers' key {} (summing all {signing} signers would be {}), signature \
         decompression {}",
        common::fmt_ns(common::median(&mut aggregation)),
        common::fmt_ns(common::median(&mut summing)),
        common::fmt_ns(common::median(&mut decompression))
    );
    compare(
        name,
        ("verify_certificate", "blst fast_aggregate_verify (pre-aggregated)"),
        1.1,
        15,
        || {
            per_op(8, || {
                assert!(verify_certificate(black_box(&net.table), black_box(&cert)).is_ok())
            })
        },
        || per_op(8, || assert_eq!(black_box(blst_check()), BLST_ERROR::BLST_SUCCESS)),
    )
}

/// Baseline of the ingest rows: one blst single-signature verify (key validated beforehand,
/// signature decompressed beforehand, subgroup check of the signature on).
fn single_verify_sampler(net: &Network) -> impl FnMut() -> f64 + '_ {
    let data = VoteData::notarize(Epoch::ZERO, View::new(3), [0xcd; 32]);
    let msg = net.signing_root(&data);
    let sig = net.keys[0].sign(&msg, DST_SIG, &[]);
    let pk = net.pks[0];
    move || {
        per_op(16, || {
            assert_eq!(
                black_box(&sig).verify(true, &msg, DST_SIG, &[], black_box(&pk), false),
                BLST_ERROR::BLST_SUCCESS
            )
        })
    }
}

/// An aggregator's engine: not itself an operator (it never votes), aggregator flag on,
/// started at genesis. Each round feeds the N NULLIFY votes of the view after its current
/// one; the certificate moves it past that view, so rounds never run out of window.
struct Aggregator<'a> {
    net: &'a Network,
    engine: Engine,
}

impl<'a> Aggregator<'a> {
    fn new(net: &'a Network) -> Self {
        let observer = bls::SecretKey::from_seed(&[0xee; 32]).expect("seed");
        let mut engine =
            Engine::new(EngineConfig::new(net.genesis.clone()), observer, TaskRegistry::new())
                .expect("engine");
        engine.handle(GENESIS_TIME * 1000, Input::Tick { is_aggregator: true });
        Self { net, engine }
    }

    /// Encoded votes of every operator for the next round (signing is not timed).
    fn next_round(&self) -> (VoteData, Vec<Vec<u8>>) {
        let data = VoteData::nullify(Epoch::ZERO, self.engine.view().next());
        let votes = (0..self.net.keys.len())
            .map(|i| encode(&self.net.vote(i, data)).expect("ssz"))
            .collect();
        (data, votes)
    }

    /// What receivers do with the certificate, once per round.
    fn finish(&self, data: VoteData, certs: Vec<Certificate>) {
        assert_eq!(certs.len(), 1, "exactly one certificate per round");
        let cert = &certs[0];
        assert_eq!(cert.data, data);
        black_box(encode(cert).expect("ssz"));
        assert!(verify_certificate(&self.net.table, cert).is_ok());
    }

    fn handle(&mut self, vote: Incoming<SignedVote>, certs: &mut Vec<Certificate>) {
        let now_ms = GENESIS_TIME * 1000;
        let actions = self.engine.handle(now_ms, Input::Vote { vote, is_aggregator: true });
        certs.extend(actions.into_iter().filter_map(|a| match a {
            Action::BroadcastCertificate(c) => Some(c),
            _ => None,
        }));
    }

    /// The node's path, per vote, in nanoseconds: the cheap gossip check, then the engine's
    /// lazy pool (one aggregate check when the votes could form a quorum).
    fn node_path(&mut self) -> f64 {
        self.node_path_forged(0)
    }

    /// The node's path with the first `forged` votes of the round signed by another operator's
    /// key (valid points, wrong signers): the pool's one aggregate check fails and it bisects,
    /// keeping the good votes. Per vote, in nanoseconds.
    fn node_path_forged(&mut self, forged: usize) -> f64 {
        let (data, mut votes) = self.next_round();
        let n = self.net.keys.len();
        for (i, bytes) in votes.iter_mut().enumerate().take(forged) {
            let mut vote = self.net.vote((i + 1) % n, data);
            vote.operator_index = OperatorIndex::at(i);
            *bytes = encode(&vote).expect("ssz");
        }
        let start = Instant::now();
        let mut certs = Vec::new();
        let context = self.engine.gossip_context();
        for bytes in &votes {
            let vote = context.check_vote(bytes).expect("well-formed vote");
            self.handle(Incoming::Raw(vote), &mut certs);
        }
        self.finish(data, certs);
        nanos(start.elapsed()) / votes.len() as f64
    }

    /// Eager checking (the previous design): one batch check for the round, then the
    /// verified votes, per vote, in nanoseconds.
    fn batch_path(&mut self) -> f64 {
        let (data, votes) = self.next_round();
        let seed = [0x5a; 32];
        let start = Instant::now();
        let decoded: Vec<SignedVote> =
            votes.iter().map(|b| decode::<SignedVote>(b).expect("valid ssz")).collect();
        let table = self.engine.key_table();
        let mut certs = Vec::new();
        for verified in verify_votes_batch(&table, &decoded, &seed) {
            self.handle(Incoming::Verified(verified.expect("valid vote")), &mut certs);
        }
        self.finish(data, certs);
        nanos(start.elapsed()) / votes.len() as f64
    }
}

/// Aggregate first: decode, decompress and add each signature, then one
/// `fast_aggregate_verify` for the round (the quorum's keys), per vote, in nanoseconds.
fn aggregate_first(net: &Network, view: u64) -> f64 {
    let data = VoteData::nullify(Epoch::ZERO, View::new(view));
    let votes: Vec<Vec<u8>> =
        (0..net.keys.len()).map(|i| encode(&net.vote(i, data)).expect("ssz")).collect();
    let start = Instant::now();
    let mut sigs = Vec::with_capacity(votes.len());
    let mut indices = Vec::with_capacity(votes.len());
    for bytes in &votes {
        let vote = decode::<SignedVote>(bytes).expect("valid ssz");
        assert!(vote.data.is_well_formed() && net.table.key(vote.operator_index).is_some());
        sigs.push(bls::Signature::from_bytes(vote.signature.as_ref()).expect("signature"));
        indices.push(vote.operator_index);
    }
    let agg = bls::aggregate_signatures(&sigs).expect("non-empty");
    let keys: Vec<&bls::PublicKey> =
        indices.iter().map(|i| net.table.key(*i).expect("member")).collect();
    assert!(bls::fast_aggregate_verify(&keys, &net.signing_root(&data), &agg));
    nanos(start.elapsed()) / votes.len() as f64
}

fn ingest(n: usize, rows: &mut Vec<Row>) {
    let net = Network::new(n);
    let rounds = if n > 64 { 5 } else { 9 };
    let mut node = Aggregator::new(&net);
    rows.push(compare(
        format!("ingest/{n} node path"),
        ("per vote", "blst verify"),
        0.1,
        rounds,
        || node.node_path(),
        single_verify_sampler(&net),
    ));
    // One forged vote in the round: the pool's aggregate check fails and it bisects. Its floor
    // is the clean round plus the pairings a bisection needs to isolate one bad vote (two per
    // halving of the quorum it checked), measured in the same run.
    let halvings = ((n * 2 / 3 + 1) as f64).log2().ceil();
    let mut forged = Aggregator::new(&net);
    let mut clean = Aggregator::new(&net);
    let mut single = single_verify_sampler(&net);
    rows.push(compare(
        format!("ingest/{n} node path, 1 forged"),
        ("per vote", "clean round + 2 log2(Q) verifies"),
        1.1,
        rounds,
        || forged.node_path_forged(1),
        || clean.node_path() + 2.0 * halvings * single() / n as f64,
    ));
    let mut batch = Aggregator::new(&net);
    rows.push(compare(
        format!("ingest/{n} eager batch path"),
        ("per vote", "blst verify"),
        0.1,
        rounds,
        || batch.batch_path(),
        single_verify_sampler(&net),
    ));
    let mut view = 0;
    rows.push(compare(
        format!("ingest/{n} aggregate-first bound"),
        ("per vote", "blst verify"),
        0.1,
        rounds,
        || {
            view += 1;
            aggregate_first(&net, view)
        },
        single_verify_sampler(&net),
    ));
}

fn main() {
    let filter = common::filter();
    let mut rows = Vec::new();
    // Every operator signing, and the smallest quorum (more than 2/3 of equal powers).
    for n in [16, 64, 256, 1024] {
        let name = format!("cert_verify/{n}");
        if selected(&filter, &name) {
            let net = Network::new(n);
            rows.push(cert_verify(&net, n));
            rows.push(cert_verify(&net, n * 2 / 3 + 1));
        }
    }
    for n in [64, 256] {
        if selected(&filter, &format!("ingest/{n}")) {
            ingest(n, &mut rows);
        }
    }
    print_table(&rows);
}
