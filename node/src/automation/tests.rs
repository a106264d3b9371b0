use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

use super::spec::tests::cron_definition;
use super::*;
use crate::store::{MemoryDb, MemoryStore};

const NOW: u64 = 1_800_000_000_000;

fn network() -> Network {
    Network { name: "avs-test".into(), digest: [1, 2, 3, 4] }
}

fn open(db: &MemoryDb) -> Automation {
    Automation::open(Arc::new(MemoryStore::open(db).unwrap()), network()).unwrap()
}

fn rows(db: &MemoryDb) -> usize {
    MemoryStore::open(db).unwrap().range(Column::Automation, &[0], 10_000).unwrap().len()
}

fn wallet(seed: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_slice(&[seed; 32]).unwrap()
}

#[test]
fn an_owner_creates_lists_cancels_and_deletes_its_automations() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1).address();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let task = automation.create(alice, cron_definition("0 * * * * *"), NOW + i).unwrap();
        assert_eq!(task.state, i32::from(pb::TaskState::Active));
        ids.push(parse_id(&task.id).unwrap());
    }
    ids.sort();
    // Pages of two, in id order, each once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = automation.list(&alice, after, 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|t| parse_id(&t.id).unwrap()));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // Deleting needs a cancelled (or finished) automation; a cancelled one stays cancelled.
    let err = automation.delete(&alice, &ids[0]).unwrap_err();
    assert!(matches!(err, AutomationError::WrongState { .. }), "{err}");
    let cancelled = automation.cancel(&alice, &ids[0], NOW + 10).unwrap();
    assert_eq!(cancelled.state, i32::from(pb::TaskState::Cancelled));
    assert_eq!(cancelled.updated_at_ms, NOW + 10);
    let again = automation.cancel(&alice, &ids[0], NOW + 11).unwrap_err();
    assert!(matches!(again, AutomationError::WrongState { .. }), "{again}");
    automation.delete(&alice, &ids[0]).unwrap();
    assert!(matches!(automation.get(&alice, &ids[0]), Err(AutomationError::NotFound(_))));
    assert_eq!(automation.list(&alice, None, 100).unwrap().0.len(), 4);

    // Everything acknowledged is in the store: a reopened node holds the same.
    let reopened = open(&db);
    assert_eq!(reopened.list(&alice, None, 100).unwrap().0.len(), 4);
    assert_eq!(
        reopened.get(&alice, &ids[1]).unwrap().definition,
        Some(cron_definition("0 * * * * *"))
    );
}

#[test]
fn another_owners_automation_is_neither_read_nor_changed() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let (alice, mallory) = (wallet(1).address(), wallet(2).address());
    let task = automation.create(alice, cron_definition("0 * * * * *"), NOW).unwrap();
    let id = parse_id(&task.id).unwrap();
    assert!(matches!(automation.get(&mallory, &id), Err(AutomationError::NotYours(_))));
    assert!(matches!(automation.cancel(&mallory, &id, NOW), Err(AutomationError::NotYours(_))));
    assert!(matches!(automation.delete(&mallory, &id), Err(AutomationError::NotYours(_))));
    assert!(automation.list(&mallory, None, 100).unwrap().0.is_empty());
    assert_eq!(
        automation.get(&alice, &id).unwrap().state,
        i32::from(pb::TaskState::Active),
        "unchanged"
    );
}

#[test]
fn a_refused_definition_stores_nothing() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let before = rows(&db);
    let alice = wallet(1).address();
    let err = automation.create(alice, cron_definition("not cron"), NOW).unwrap_err();
    assert!(matches!(err, AutomationError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("trigger.cron.expression"), "{err}");
    assert_eq!(rows(&db), before);
    assert!(automation.list(&alice, None, 100).unwrap().0.is_empty());
}

#[test]
fn an_owner_holds_a_bounded_number_of_automations() {
    let automation = open(&MemoryDb::default());
    let alice = wallet(1).address();
    for i in 0..MAX_PER_OWNER as u64 {
        automation.create(alice, cron_definition("0 * * * * *"), NOW + i).unwrap();
    }
    let err = automation.create(alice, cron_definition("0 * * * * *"), NOW + 5000).unwrap_err();
    assert!(matches!(err, AutomationError::Full), "{err}");
    // Others are not affected.
    automation.create(wallet(2).address(), cron_definition("0 * * * * *"), NOW).unwrap();
}

#[test]
fn tokens_survive_a_restart_of_the_node_that_issued_them() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1);
    let (message, _) = automation.challenge(alice.address(), NOW).unwrap();
    let signature = alice.sign_message_sync(message.as_bytes()).unwrap().as_bytes();
    let (token, _) = automation.sign_in(&message, &signature, NOW).unwrap();
    assert_eq!(open(&db).authenticate(&token, NOW + 1).unwrap(), alice.address());
    // Another node (another store) did not issue it.
    let elsewhere = open(&MemoryDb::default());
    assert!(matches!(elsewhere.authenticate(&token, NOW), Err(AutomationError::Auth(_))));
}
