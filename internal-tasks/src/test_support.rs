//! Helpers for this crate's unit tests: operators with real BLS keys, keyed by one byte.

use std::collections::BTreeMap;

use avs_consensus::bls::SecretKey;
use avs_consensus::types::Operator;
use ssz_rs::prelude::Vector;

use crate::embedded::EmbeddedSource;
use crate::source::{Chain, ChainSnapshot, RegisteredOperator};
use crate::update::ChainBlock;

pub(crate) fn registered(tag: u8, power: u64) -> RegisteredOperator {
    let key = SecretKey::from_seed(&[tag; 32]).unwrap();
    let mut address = [0u8; 20];
    address[0] = tag;
    RegisteredOperator {
        address,
        pubkey: key.public_key().to_bytes().to_vec(),
        pop: key.proof_of_possession().to_bytes().to_vec(),
        power,
    }
}

pub(crate) fn operator(tag: u8, power: u64) -> Operator {
    let r = registered(tag, power);
    Operator {
        address: r.address,
        pubkey: Vector::try_from(r.pubkey).unwrap(),
        pop: Vector::try_from(r.pop).unwrap(),
        power,
    }
}

pub(crate) fn snapshot(number: u64, ops: &[(u8, u64)]) -> ChainSnapshot {
    let operators: BTreeMap<_, _> =
        ops.iter().map(|&(t, p)| (registered(t, p).address, registered(t, p))).collect();
    ChainSnapshot {
        block: ChainBlock { number, hash: EmbeddedSource::block_hash(Chain::L1, number) },
        operators,
    }
}
