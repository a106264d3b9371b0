//! Durable vote write: `ChainStore::persist_vote` (SSZ encoding of a `SignedVote`, one
//! `RocksStore` write with `Durability::Sync`, i.e. RocksDB's WAL append plus fdatasync)
//! against a raw `File::write_all` + `sync_data()` append of the same number of bytes, in the
//! same directory, interleaved sample by sample. Goal: <= 1.2x.
//!
//! The directory is under the target directory (`CARGO_TARGET_TMPDIR`), i.e. on the disk the
//! build uses; set `AVS_BENCH_DIR` to measure another filesystem (a node's data directory).
//!
//! Run: `cargo bench -p avs-node --bench store --profile dev` (the dev profile reuses the
//! workspace's build; a release build of RocksDB's C++ takes long on 2 cores).

#[path = "../../consensus/benches/common/mod.rs"]
mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use avs_consensus::types::{Epoch, OperatorIndex, SignedVote, View, VoteData, encode};
use avs_node::chain_store::ChainStore;
use avs_node::store::{Column, Durability, RocksStore, Store};
use common::{compare, per_op, print_table};

const WRITES_PER_SAMPLE: u32 = 25;
const ROUNDS: usize = 12;

fn main() -> anyhow::Result<()> {
    let base = std::env::var_os("AVS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("avs-store-bench-").tempdir_in(&base)?;
    println!("directory: {}", dir.path().display());

    let store: Arc<dyn Store> = Arc::new(RocksStore::open(&dir.path().join("db"))?);
    let chain = ChainStore::new(store);
    let mut view = 0u64;
    let mut vote = move || {
        view += 1;
        SignedVote {
            data: VoteData::notarize(Epoch::ZERO, View::new(view), [0x42; 32]),
            operator_index: OperatorIndex::new(3),
            signature: vec![0x99; 96].try_into().expect("96 bytes"),
        }
    };
    let size = encode(&vote())?.len();
    let payload = vec![0x5au8; size];
    let mut file = OpenOptions::new().create(true).append(true).open(dir.path().join("raw.log"))?;
    println!("value size: {size} bytes (an SSZ SignedVote)");

    let row = compare(
        "durable vote write",
        ("RocksStore Sync put", "write_all + sync_data"),
        1.2,
        ROUNDS,
        || {
            per_op(WRITES_PER_SAMPLE, || {
                chain.persist_vote(&vote()).expect("durable write");
            })
        },
        || {
            per_op(WRITES_PER_SAMPLE, || {
                file.write_all(&payload).expect("append");
                file.sync_data().expect("fdatasync");
            })
        },
    );
    // Where the difference goes: the same write without the sync is RocksDB's CPU path (WAL
    // record, memtable insert), which the dev profile builds without optimisation.
    let mut key = 0u64;
    let mut buffered: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            per_op(WRITES_PER_SAMPLE, || {
                key += 1;
                chain
                    .store()
                    .put(Column::Votes, &key.to_be_bytes(), &payload, Durability::Buffered)
                    .expect("buffered write");
            })
        })
        .collect();
    println!(
        "of which without the sync (Durability::Buffered put): {}",
        common::fmt_ns(common::median(&mut buffered))
    );
    // The cost suspected last round: RocksDB preallocates its write-ahead log with fallocate,
    // so every fdatasync would also convert an unwritten extent (an ext4 journal commit). The
    // same raw write into a preallocated file shows it is not where the time goes (measured:
    // the same as a plain append; the difference is RocksDB's CPU path, see the README).
    let mut prealloc =
        OpenOptions::new().create_new(true).write(true).open(dir.path().join("pre.log"))?;
    rustix::fs::fallocate(&prealloc, rustix::fs::FallocateFlags::KEEP_SIZE, 0, 64 << 20)?;
    let mut raw_samples = Vec::new();
    let mut pre_samples = Vec::new();
    for _ in 0..ROUNDS {
        pre_samples.push(per_op(WRITES_PER_SAMPLE, || {
            prealloc.write_all(&payload).expect("write");
            prealloc.sync_data().expect("fdatasync");
        }));
        raw_samples.push(per_op(WRITES_PER_SAMPLE, || {
            file.write_all(&payload).expect("append");
            file.sync_data().expect("fdatasync");
        }));
    }
    println!(
        "raw write + sync_data into a fallocate'd file: {} (plain append: {})",
        common::fmt_ns(common::median(&mut pre_samples)),
        common::fmt_ns(common::median(&mut raw_samples))
    );
    print_table(&[row]);
    Ok(())
}
