//! Check-in signing and verification, the pool's replay and expiry rules, and the display
//! formats.

use super::checkin::{MAX_AGE_MS, MAX_FUTURE_MS, decode_signed, sign, verify};
use super::*;
use crate::store::{CountingStore, MemoryStore};
use avs_consensus::bls::SecretKey;
use avs_consensus::types::{Epoch, Operator, OperatorSet, byte_list, encode};

pub(crate) const DIGEST: [u8; 4] = [1, 2, 3, 4];
const NOW: u64 = 1_700_000_000_000;

pub(crate) fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i.wrapping_add(1); 32]).unwrap()
}

pub(crate) fn table(epoch: u64, members: &[u8]) -> Arc<KeyTable> {
    let operators = members
        .iter()
        .map(|&i| {
            let k = key(i);
            Operator {
                address: [i; 20],
                pubkey: k.public_key().to_bytes().to_vec().try_into().unwrap(),
                pop: k.proof_of_possession().to_bytes().to_vec().try_into().unwrap(),
                power: 100 + u64::from(i),
            }
        })
        .collect::<Vec<_>>();
    let set = OperatorSet { operators: operators.try_into().unwrap() };
    Arc::new(KeyTable::new(Epoch::new(epoch), &set, DIGEST).unwrap())
}

fn checkin(i: u8, ts: u64) -> Checkin {
    Checkin {
        address: [i; 20],
        version: byte_list(b"0.1.0").unwrap(),
        metrics_port: 5052,
        finalized_height: 7,
        events_seen: 3,
        is_aggregator: i == 0,
        timestamp_ms: ts,
    }
}

fn signed(i: u8, ts: u64) -> SignedCheckin {
    sign(checkin(i, ts), &key(i), DIGEST).unwrap()
}

fn pool(members: &[u8]) -> OperatorPool {
    let pool = OperatorPool::open(Arc::new(MemoryStore::new())).unwrap();
    pool.set_operators(table(0, members)).unwrap();
    pool
}

#[test]
fn last_seen_shows_the_two_largest_units() {
    assert_eq!(last_seen(0), "0s ago");
    assert_eq!(last_seen(45_999), "45s ago");
    assert_eq!(last_seen(330_000), "5m30s ago");
    assert_eq!(last_seen((2 * 3600 + 15 * 60 + 59) * 1000), "2h15m ago");
    assert_eq!(last_seen((3 * 86_400 + 4 * 3600 + 59 * 60) * 1000), "3d4h ago");
    assert_eq!(last_seen(86_400_000), "1d0h ago");
}

#[test]
fn status_follows_the_age() {
    assert_eq!(Liveness::from_age_ms(0), Liveness::Active);
    assert_eq!(Liveness::from_age_ms(ACTIVE_WITHIN_MS), Liveness::Active);
    assert_eq!(Liveness::from_age_ms(ACTIVE_WITHIN_MS + 1), Liveness::Late);
    assert_eq!(Liveness::from_age_ms(LATE_WITHIN_MS), Liveness::Late);
    assert_eq!(Liveness::from_age_ms(LATE_WITHIN_MS + 1), Liveness::Offline);
    let pool = pool(&[0]);
    pool.accept(&signed(0, NOW), &Observed::Local, NOW).unwrap();
    let statuses: Vec<_> =
        [NOW, NOW + 20_000, NOW + 120_000].iter().map(|&t| pool.rows(t)[0].status).collect();
    assert_eq!(statuses, [Liveness::Active, Liveness::Late, Liveness::Offline]);
}

#[test]
fn signed_checkins_round_trip_strictly_and_verify() {
    let table = table(0, &[0, 1]);
    let s = signed(1, NOW);
    let bytes = encode(&s).unwrap();
    let back = decode_signed(&bytes).unwrap();
    assert_eq!(back, s);
    let v = verify(&table, &back, NOW).unwrap();
    assert_eq!((v.operator_index, v.voting_power, v.epoch), (1, 101, 0));
    // Cut inside the fixed parts, or with a bad offset: refused, never a panic.
    for len in [0, 50, 99, 100, 150] {
        assert!(decode_signed(&bytes[..len]).is_err(), "{len} bytes");
    }
    // Bytes past the end are the version's (the last variable field): another message, whose
    // signature then fails.
    let longer = decode_signed(&[bytes.as_slice(), b"x"].concat()).unwrap();
    assert!(matches!(verify(&table, &longer, NOW), Err(CheckinError::BadSignature(_))));
    let mut bad_offset = bytes.clone();
    bad_offset[0] = 0xff;
    assert!(decode_signed(&bad_offset).is_err());
    // A boolean that is not 0 or 1 is not canonical.
    let mut bad_bool = encode(&s).unwrap();
    // After the signed container's fixed part (offset + signature) and the check-in's
    // address, version offset, port and two counters.
    let bool_at = 4 + 96 + 20 + 4 + 2 + 8 + 8;
    bad_bool[bool_at] = 2;
    assert!(decode_signed(&bad_bool).is_err());
}

#[test]
fn forged_foreign_and_cross_network_signatures_are_refused() {
    let table = table(0, &[0, 1]);
    // Signed by operator 1's key but claiming operator 0's address.
    let forged = sign(checkin(0, NOW), &key(1), DIGEST).unwrap();
    assert!(matches!(verify(&table, &forged, NOW), Err(CheckinError::BadSignature(_))));
    // A field changed after signing.
    let mut tampered = signed(0, NOW);
    tampered.message.finalized_height += 1;
    assert!(matches!(verify(&table, &tampered, NOW), Err(CheckinError::BadSignature(_))));
    // Another network's digest.
    let other = sign(checkin(0, NOW), &key(0), [9, 9, 9, 9]).unwrap();
    assert!(matches!(verify(&table, &other, NOW), Err(CheckinError::BadSignature(_))));
    // Garbage signature bytes.
    let mut garbage = signed(0, NOW);
    garbage.signature = vec![0xaa; 96].try_into().unwrap();
    assert!(matches!(verify(&table, &garbage, NOW), Err(CheckinError::BadSignature(_))));
    // Not a member.
    let outsider = signed(5, NOW);
    assert!(matches!(verify(&table, &outsider, NOW), Err(CheckinError::UnknownOperator(_))));
    assert!(CheckinError::BadSignature(String::new()).is_senders_fault());
    assert!(!CheckinError::Stale { age_ms: 1 }.is_senders_fault());
    assert!(!CheckinError::UnknownOperator(String::new()).is_senders_fault());
}

#[test]
fn stale_and_future_checkins_are_refused() {
    let table = table(0, &[0]);
    assert!(verify(&table, &signed(0, NOW - MAX_AGE_MS), NOW).is_ok());
    assert!(matches!(
        verify(&table, &signed(0, NOW - MAX_AGE_MS - 1), NOW),
        Err(CheckinError::Stale { .. })
    ));
    assert!(verify(&table, &signed(0, NOW + MAX_FUTURE_MS), NOW).is_ok());
    assert!(matches!(
        verify(&table, &signed(0, NOW + MAX_FUTURE_MS + 1), NOW),
        Err(CheckinError::Future { .. })
    ));
}

#[test]
fn replays_are_refused_and_change_nothing() {
    let pool = pool(&[0, 1]);
    let observed = Observed::Grpc { remote: Some("10.1.2.3:4567".parse().unwrap()) };
    let first = pool.accept(&signed(0, NOW), &observed, NOW).unwrap();
    assert_eq!(first.remote_ip, "10.1.2.3");
    assert_eq!(first.voting_power, 100);
    // The same check-in again, and an older one: refused, row and store unchanged.
    for ts in [NOW, NOW - 1] {
        let err = pool.accept(&signed(0, ts), &Observed::Local, NOW + 1000).unwrap_err();
        assert!(matches!(err, PoolError::Refused(CheckinError::Replayed { .. })), "{err}");
    }
    assert_eq!(pool.rows(NOW)[0].row, first);
    assert_eq!(pool.stored_row(&[0; 20]).unwrap(), Some(first.clone()));
    // A newer one replaces the row.
    let next = pool.accept(&signed(0, NOW + 5000), &Observed::Local, NOW + 5000).unwrap();
    assert_eq!((next.remote_ip.as_str(), next.last_ping_ms), ("local", NOW + 5000));
    assert_eq!(pool.stored_row(&[0; 20]).unwrap(), Some(next));
}

#[test]
fn refused_checkins_leave_the_pool_empty() {
    let pool = pool(&[0, 1]);
    let forged = sign(checkin(0, NOW), &key(1), DIGEST).unwrap();
    for bad in [forged, signed(0, NOW - MAX_AGE_MS - 1), signed(7, NOW)] {
        assert!(pool.accept(&bad, &Observed::Local, NOW).is_err());
    }
    assert!(pool.rows(NOW).is_empty());
    assert_eq!(pool.stored_row(&[0; 20]).unwrap(), None);
}

#[test]
fn the_observed_address_is_recorded_never_a_claimed_one() {
    let pool = pool(&[0, 1, 2]);
    pool.set_own_peers([([1; 20], "12D3KooWone".to_owned())]);
    let gossip = |peer: &str, ip: &str| Observed::Gossip {
        peer: peer.into(),
        addr: Some(ip.parse().unwrap()),
    };
    // Relayed, and never seen directly: the relay's address is not the operator's.
    let row = pool.accept(&signed(1, NOW), &gossip("12D3KooWrelay", "10.0.0.9"), NOW).unwrap();
    assert_eq!(row.remote_ip, VIA_GOSSIP);
    assert_eq!(row.peer_id, "12D3KooWrelay");
    // Forwarded by the operator's own node: its connection's address.
    let at = NOW + 5_000;
    let row = pool.accept(&signed(1, at), &gossip("12D3KooWone", "10.0.0.1"), at).unwrap();
    assert_eq!(row.remote_ip, "10.0.0.1");
    // Relayed again: the address seen directly stays.
    let at = NOW + 10_000;
    let row = pool.accept(&signed(1, at), &gossip("12D3KooWrelay", "10.0.0.9"), at).unwrap();
    assert_eq!(row.remote_ip, "10.0.0.1");
    // An operator whose peer id is unknown (a later joiner) is only ever "via gossip".
    let row = pool.accept(&signed(2, NOW), &gossip("12D3KooWtwo", "10.0.0.2"), NOW).unwrap();
    assert_eq!(row.remote_ip, VIA_GOSSIP);
}

#[test]
fn rows_of_operators_that_left_the_set_expire_and_rows_survive_a_restart() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let pool = OperatorPool::open(store.clone()).unwrap();
    pool.set_operators(table(0, &[0, 1, 2])).unwrap();
    for i in 0..3 {
        pool.accept(&signed(i, NOW), &Observed::Local, NOW).unwrap();
    }
    assert_eq!(OperatorPool::open(store.clone()).unwrap().rows(NOW).len(), 3);
    // Epoch 1 drops operator 1.
    pool.set_operators(table(1, &[0, 2])).unwrap();
    let addresses: Vec<_> = pool.rows(NOW).into_iter().map(|v| v.row.address).collect();
    assert_eq!(addresses, [format!("0x{}", "00".repeat(20)), format!("0x{}", "02".repeat(20))]);
    assert_eq!(pool.stored_row(&[1; 20]).unwrap(), None);
    let reopened = OperatorPool::open(store).unwrap();
    assert_eq!(reopened.rows(NOW).len(), 2);
    // A check-in verified against the old epoch is not recorded after the switch.
    let stale_epoch = verify(&table(0, &[0, 1, 2]), &signed(1, NOW + 1), NOW).unwrap();
    assert!(matches!(
        pool.record(&stale_epoch, &Observed::Local, NOW),
        Err(PoolError::EpochMoved { .. })
    ));
    assert!(pool.stored_row(&[1; 20]).unwrap().is_none());
}

#[test]
fn unreadable_stored_rows_are_dropped_on_open() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store.put(Column::OperatorPool, b"operator:0xnothex", b"{}", Durability::Buffered).unwrap();
    let pool = OperatorPool::open(store.clone()).unwrap();
    assert!(pool.rows(NOW).is_empty());
    assert!(store.get(Column::OperatorPool, b"operator:0xnothex").unwrap().is_none());
}

#[test]
fn gossip_verdicts_charge_only_forgeries_to_the_forwarder() {
    let pool = pool(&[0, 1]);
    let bytes = |s: &SignedCheckin| encode(s).unwrap();
    let valid = signed(1, NOW);
    assert_eq!(pool.validate_gossip(&bytes(&valid), "12D3KooWa", None, NOW), Ok(()));
    let row = pool.rows(NOW)[0].row.clone();
    assert_eq!((row.remote_ip.as_str(), row.peer_id.as_str()), (VIA_GOSSIP, "12D3KooWa"));
    // Replayed (a late duplicate), stale, or from a non-member: dropped without penalty.
    for ignored in [valid, signed(1, NOW - MAX_AGE_MS - 1), signed(7, NOW + 1)] {
        let outcome = pool.validate_gossip(&bytes(&ignored), "12D3KooWb", None, NOW);
        assert!(matches!(outcome, Err((Verdict::Ignore, _))), "{outcome:?}");
    }
    // Forged or undecodable: the forwarder's fault (a forgery that is not too soon after the
    // recorded check-in: one that is would be Ignored before its signature is looked at).
    let forged = sign(checkin(1, NOW + MIN_CHECKIN_GAP_MS), &key(0), DIGEST).unwrap();
    assert!(matches!(
        pool.validate_gossip(&bytes(&forged), "p", None, NOW),
        Err((Verdict::Reject, _))
    ));
    assert!(matches!(pool.validate_gossip(&[1, 2, 3], "p", None, NOW), Err((Verdict::Reject, _))));
    // None of them changed the row.
    assert_eq!(pool.rows(NOW).len(), 1);
    assert_eq!(pool.rows(NOW)[0].row, row);
}

#[test]
fn a_replayed_or_too_soon_checkin_is_refused_before_its_signature_is_checked() {
    let pool = pool(&[0, 1]);
    pool.accept(&signed(0, NOW), &Observed::Local, NOW).unwrap();
    assert_eq!(pool.verifications(), 1);
    // Badly signed (operator 1's key for operator 0's address), with a replayed timestamp and
    // with one too soon after the recorded one: the replay rules answer, not the signature.
    let forged_at = |ts| sign(checkin(0, ts), &key(1), DIGEST).unwrap();
    let err = pool.accept(&forged_at(NOW), &Observed::Local, NOW + 1).unwrap_err();
    assert!(matches!(err, PoolError::Refused(CheckinError::Replayed { .. })), "{err}");
    let err = pool.accept(&forged_at(NOW + 1), &Observed::Local, NOW + 1).unwrap_err();
    assert!(matches!(err, PoolError::Refused(CheckinError::TooSoon { .. })), "{err}");
    assert_eq!(
        pool.precheck(&forged_at(NOW + 1), NOW + 1).unwrap_err().to_string(),
        err.to_string()
    );
    assert_eq!(pool.verifications(), 1, "no pairing for a check-in the cheap checks refuse");
    // Once the gap has passed, the signature is checked (and this one is refused for it).
    let ts = NOW + MIN_CHECKIN_GAP_MS;
    let err = pool.accept(&forged_at(ts), &Observed::Local, ts).unwrap_err();
    assert!(matches!(err, PoolError::Refused(CheckinError::BadSignature(_))), "{err}");
    assert_eq!(pool.verifications(), 2);
}

#[test]
fn an_honest_operator_checking_in_every_period_is_never_too_soon() {
    let pool = pool(&[0]);
    assert_eq!(MIN_CHECKIN_GAP_MS * 2, u64::try_from(CHECKIN_PERIOD.as_millis()).unwrap());
    pool.accept(&signed(0, NOW), &Observed::Local, NOW).unwrap();
    // One millisecond short of the gap is refused; the gap itself, and a period, pass.
    let early = NOW + MIN_CHECKIN_GAP_MS - 1;
    let err = pool.accept(&signed(0, early), &Observed::Local, early).unwrap_err();
    assert!(matches!(err, PoolError::Refused(CheckinError::TooSoon { .. })), "{err}");
    let at_gap = NOW + MIN_CHECKIN_GAP_MS;
    pool.accept(&signed(0, at_gap), &Observed::Local, at_gap).unwrap();
    let next = at_gap + MIN_CHECKIN_GAP_MS * 2;
    pool.accept(&signed(0, next), &Observed::Local, next).unwrap();
    assert_eq!(pool.rows(next)[0].row.checkin_timestamp_ms, next);
}

#[test]
fn a_flood_of_valid_checkins_from_one_operator_is_ignored_before_any_pairing_or_write() {
    // Review finding M2: a byzantine operator publishing validly signed check-ins 1 ms apart.
    let store = Arc::new(CountingStore::default());
    let pool = OperatorPool::open(store.clone()).unwrap();
    pool.set_operators(table(0, &[0, 1])).unwrap();
    let writes_before = store.writes.load(Ordering::Relaxed);
    let flood: Vec<Vec<u8>> = (0..200).map(|i| encode(&signed(1, NOW + i)).unwrap()).collect();
    assert_eq!(pool.validate_gossip(&flood[0], "12D3KooWb", None, NOW), Ok(()));
    let row = pool.stored_row(&[1; 20]).unwrap();
    for (i, bytes) in flood.iter().enumerate().skip(1) {
        let outcome = pool.validate_gossip(bytes, "12D3KooWb", None, NOW + 200);
        assert!(matches!(outcome, Err((Verdict::Ignore, _))), "message {i}: {outcome:?}");
    }
    assert_eq!(pool.verifications(), 1, "one pairing for the whole flood");
    assert_eq!(store.writes.load(Ordering::Relaxed), writes_before + 1, "one store write");
    assert_eq!(pool.stored_row(&[1; 20]).unwrap(), row);
}

#[test]
fn uptime_and_missed_checkins_count_the_periods_an_operator_was_silent() {
    let pool = pool(&[0]);
    // Check-ins at 0, 5, 10 s (jittered), then a gap: 15 and 20 s are missed, 25 s arrives.
    for (ts, arrival) in [(0, 40), (5_030, 5_090), (9_980, 10_020), (25_010, 25_050)] {
        pool.accept(&signed(0, NOW + ts), &Observed::Local, NOW + arrival).unwrap();
    }
    let view = &pool.rows(NOW + 26_000)[0];
    assert_eq!((view.row.checkins, view.missed_checkins, view.uptime_percent), (4, 2, 66));
    // Silent since: every whole period without a check-in counts as missed.
    let view = &pool.rows(NOW + 25_050 + 30_000)[0];
    assert_eq!((view.missed_checkins, view.uptime_percent), (7, 36), "5 of 30 s are grace");
    // Just over one period since the last check-in: within the grace, nothing missed yet.
    let view = &pool.rows(NOW + 25_050 + 5_500)[0];
    assert_eq!(view.missed_checkins, 2);
    // A row stored before the counts existed (no first check-in) shows no misses.
    let mut old_row = pool.stored_row(&[0; 20]).unwrap().unwrap();
    old_row.first_checkin_ms = 0;
    assert_eq!(old_row.expected_checkins(NOW + 1_000_000), old_row.checkins);
    // The counters survive a restart (they are part of the stored row).
    let stored = pool.stored_row(&[0; 20]).unwrap().unwrap();
    assert_eq!((stored.checkins, stored.first_checkin_ms), (4, NOW));
}
