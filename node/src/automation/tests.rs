use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use avs_consensus::state::genesis_state;
use avs_consensus::types::{Block, BlockBody, ChainState, TaskResult, byte_list};

use super::consensus::{AUTOMATION_TASK_ID, AutomationRequests};
use super::firing;
use super::spec::tests::cron_definition;
use super::*;
use crate::store::{CountingStore, MemoryDb, MemoryStore};
use avs_consensus::task::{TaskDefinition, TaskValidity};

const NOW: u64 = 1_800_000_000_000;
const DIGEST: [u8; 4] = [1, 2, 3, 4];

/// The test network's operator set; node `i` is operator `i`.
fn chain_state() -> ChainState {
    genesis_state(&avs_consensus::testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap().1)
}

fn node_address(i: usize) -> Address {
    Address::from(chain_state().operators.operators[i].address)
}

/// Node `i`'s automations on `db`.
fn open_node(db: &MemoryDb, i: usize) -> Automation {
    let network = Network { name: "avs-test".into(), digest: DIGEST, node: node_address(i) };
    Automation::open(Arc::new(MemoryStore::open(db).unwrap()), network).unwrap()
}

fn open(db: &MemoryDb) -> Automation {
    open_node(db, 0)
}

fn rows(db: &MemoryDb, prefix: u8) -> usize {
    let store = MemoryStore::open(db).unwrap();
    store
        .range(Column::Automation, &[prefix], 100_000)
        .unwrap()
        .iter()
        .take_while(|(k, _)| k.first() == Some(&prefix))
        .count()
}

fn wallet(seed: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_slice(&[seed; 32]).unwrap()
}

/// Signs `wallet` in on `automation` at `now`; the token.
fn sign_in(automation: &Automation, wallet: &PrivateKeySigner, now: u64) -> String {
    let (message, _) = automation.challenge(wallet.address(), now).unwrap();
    let signature = wallet.sign_message_sync(message.as_bytes()).unwrap().as_bytes();
    automation.sign_in(&message, &signature, now).unwrap().0
}

/// The blocks node `proposer` would propose for what it holds, as results.
fn propose(automation: &Automation, proposer: usize, now: u64) -> Vec<TaskResult> {
    automation
        .take_for_block(now, 64)
        .into_iter()
        .map(|bytes| TaskResult {
            task_definition_id: AUTOMATION_TASK_ID,
            performer_index: avs_consensus::types::OperatorIndex::at(proposer),
            data: byte_list(&bytes).unwrap(),
            ..TaskResult::default()
        })
        .collect()
}

/// Finalizes `results` on every node in `nodes` (each applies the same blocks).
fn finalize(nodes: &[(&Automation, &MemoryDb)], results: &[TaskResult]) {
    for chunk in results.chunks(avs_consensus::types::MAX_TASKS_PER_BLOCK) {
        let block = Block {
            body: BlockBody { tasks: chunk.to_vec().try_into().unwrap() },
            ..Block::default()
        };
        for (automation, db) in nodes {
            let mut batch = WriteBatch::new();
            let certificate = avs_consensus::types::Certificate::default();
            automation.record_finality(&block, &[0; 32], &certificate, &mut batch).unwrap();
            MemoryStore::open(db).unwrap().write(batch, Durability::Sync).unwrap();
        }
    }
}

#[test]
fn an_owner_creates_lists_cancels_and_deletes_its_automations_at_finality() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1);
    sign_in(&automation, &alice, NOW);
    let owner = alice.address();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let task = automation.create(owner, cron_definition("0 * * * * *"), NOW + i).unwrap();
        assert_eq!(task.state, i32::from(pb::TaskState::Pending));
        ids.push(parse_id(&task.id).unwrap());
    }
    // Pending: readable on this node, not listed (the list is the finalized table).
    assert_eq!(automation.get(&owner, &ids[0]).unwrap().state, i32::from(pb::TaskState::Pending));
    assert!(automation.list(&owner, None, 100).unwrap().0.is_empty());
    let results = propose(&automation, 0, NOW + 10);
    assert_eq!(results.len(), 5);
    assert!(propose(&automation, 0, NOW + 11).is_empty(), "not proposed twice within 30 s");
    finalize(&[(&automation, &db)], &results);
    assert_eq!(rows(&db, PENDING), 0, "final requests are no longer pending");
    ids.sort();
    // Pages of two, in id order, each once, all active.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = automation.list(&owner, after, 2).unwrap();
        assert!(page.len() <= 2);
        assert!(page.iter().all(|t| t.state == i32::from(pb::TaskState::Active)));
        seen.extend(page.iter().map(|t| parse_id(&t.id).unwrap()));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // Deleting needs a cancelled (or finished) automation; a cancellation takes effect at
    // finality, and a cancelled one is not cancelled again.
    let err = automation.delete(&owner, &ids[0], NOW + 20).unwrap_err();
    assert!(matches!(err, AutomationError::WrongState { .. }), "{err}");
    automation.cancel(&owner, &ids[0], NOW + 20).unwrap();
    finalize(&[(&automation, &db)], &propose(&automation, 0, NOW + 21));
    let cancelled = automation.get(&owner, &ids[0]).unwrap();
    assert_eq!(cancelled.state, i32::from(pb::TaskState::Cancelled));
    assert_eq!(cancelled.updated_at_ms, NOW + 20);
    let again = automation.cancel(&owner, &ids[0], NOW + 22).unwrap_err();
    assert!(matches!(again, AutomationError::WrongState { .. }), "{again}");
    automation.delete(&owner, &ids[0], NOW + 23).unwrap();
    finalize(&[(&automation, &db)], &propose(&automation, 0, NOW + 24));
    assert!(matches!(automation.get(&owner, &ids[0]), Err(AutomationError::NotFound(_))));
    assert_eq!(automation.list(&owner, None, 100).unwrap().0.len(), 4);

    // Everything final is in the store: a reopened node holds the same.
    let reopened = open(&db);
    assert_eq!(reopened.list(&owner, None, 100).unwrap().0.len(), 4);
    assert_eq!(
        reopened.get(&owner, &ids[1]).unwrap().definition,
        Some(cron_definition("0 * * * * *"))
    );
}

/// Replication: the node a client submitted to proposes the request; every node that
/// finalizes the block holds the same automation, and a request included twice is one.
#[test]
fn every_node_that_finalizes_the_block_holds_the_same_automations() {
    let (db0, db2) = (MemoryDb::default(), MemoryDb::default());
    let (node0, node2) = (open_node(&db0, 0), open_node(&db2, 2));
    let alice = wallet(1);
    sign_in(&node0, &alice, NOW);
    let task = node0.create(alice.address(), cron_definition("0 0 * * * *"), NOW).unwrap();
    let id = parse_id(&task.id).unwrap();
    let results = propose(&node0, 0, NOW + 1);
    // Included twice (a second leader's block, or a re-proposal): still one automation.
    let twice = [results.clone(), results].concat();
    finalize(&[(&node0, &db0), (&node2, &db2)], &twice);
    for node in [&node0, &node2] {
        let held = node.get(&alice.address(), &id).unwrap();
        assert_eq!(held.state, i32::from(pb::TaskState::Active));
        assert_eq!(node.list(&alice.address(), None, 100).unwrap().0.len(), 1);
    }
    // Node 2 serves it to the owner signed in there, and refuses another owner.
    sign_in(&node2, &alice, NOW + 5);
    node2.cancel(&alice.address(), &id, NOW + 6).unwrap();
    finalize(&[(&node0, &db0), (&node2, &db2)], &propose(&node2, 2, NOW + 7));
    assert_eq!(
        node0.get(&alice.address(), &id).unwrap().state,
        i32::from(pb::TaskState::Cancelled),
        "a cancellation submitted to node 2 reaches node 0"
    );
}

#[test]
fn attesters_accept_only_requests_their_owner_granted_to_the_proposer() {
    let db = MemoryDb::default();
    let node1 = Arc::new(open_node(&db, 1));
    let alice = wallet(1);
    sign_in(&node1, &alice, NOW);
    node1.create(alice.address(), cron_definition("0 0 * * * *"), NOW).unwrap();
    let requests = AutomationRequests::new(Arc::clone(&node1));
    let parent = chain_state();
    let result = propose(&node1, 1, NOW + 1).remove(0);
    assert_eq!(requests.validate(&parent, &result, NOW + 1), TaskValidity::Valid);

    // Carried by another proposer than the node the owner granted.
    let stolen = TaskResult {
        performer_index: avs_consensus::types::OperatorIndex::at(3),
        ..result.clone()
    };
    let verdict = requests.validate(&parent, &stolen, NOW + 1);
    assert!(matches!(&verdict, TaskValidity::Invalid(r) if r.contains("granted")), "{verdict:?}");

    // A changed request: its grant's signature no longer matches, or it falls out of the
    // session, or it does not decode.
    let mut request = pb::ReplicatedRequest::decode(result.data.as_ref()).unwrap();
    let tamper = |request: &pb::ReplicatedRequest| TaskResult {
        data: byte_list(&request.encode_to_vec()).unwrap(),
        ..result.clone()
    };
    let original = request.clone();
    request.grant = request.grant.replace("avs-test", "avs-other");
    assert!(matches!(
        requests.validate(&parent, &tamper(&request), NOW + 1),
        TaskValidity::Invalid(_)
    ));
    request = original.clone();
    request.created_at_ms = NOW + auth::TOKEN_TTL_MS + 1;
    assert!(matches!(
        requests.validate(&parent, &tamper(&request), NOW + 1),
        TaskValidity::Invalid(_)
    ));
    request = original.clone();
    request.action = Some(pb::replicated_request::Action::Create(cron_definition("bad cron")));
    assert!(matches!(
        requests.validate(&parent, &tamper(&request), NOW + 1),
        TaskValidity::Invalid(_)
    ));
    let garbage = TaskResult { data: byte_list(&[0xff; 7]).unwrap(), ..result };
    assert!(matches!(requests.validate(&parent, &garbage, NOW + 1), TaskValidity::Invalid(_)));
}

#[test]
fn another_owners_automation_is_neither_read_nor_changed() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let (alice, mallory) = (wallet(1), wallet(2));
    sign_in(&automation, &alice, NOW);
    sign_in(&automation, &mallory, NOW);
    let task = automation.create(alice.address(), cron_definition("0 * * * * *"), NOW).unwrap();
    let id = parse_id(&task.id).unwrap();
    let m = mallory.address();
    assert!(matches!(automation.get(&m, &id), Err(AutomationError::NotFound(_))), "pending");
    finalize(&[(&automation, &db)], &propose(&automation, 0, NOW));
    assert!(matches!(automation.get(&m, &id), Err(AutomationError::NotYours(_))));
    assert!(matches!(automation.cancel(&m, &id, NOW), Err(AutomationError::NotYours(_))));
    assert!(matches!(automation.delete(&m, &id, NOW), Err(AutomationError::NotYours(_))));
    assert!(automation.list(&m, None, 100).unwrap().0.is_empty());
    assert_eq!(rows(&db, PENDING), 0, "nothing submitted for mallory");
    assert_eq!(
        automation.get(&alice.address(), &id).unwrap().state,
        i32::from(pb::TaskState::Active),
        "unchanged"
    );
}

#[test]
fn a_refused_definition_or_a_missing_sign_in_stores_nothing() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1);
    // No sign-in on this node: no grant to carry the request.
    let err = automation.create(alice.address(), cron_definition("0 * * * * *"), NOW).unwrap_err();
    assert!(matches!(err, AutomationError::NoSession), "{err}");
    sign_in(&automation, &alice, NOW);
    let err = automation.create(alice.address(), cron_definition("not cron"), NOW).unwrap_err();
    assert!(matches!(err, AutomationError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("trigger.cron.expression"), "{err}");
    assert_eq!(rows(&db, PENDING), 0);
    assert_eq!(rows(&db, RECORD), 0);
}

#[test]
fn an_owner_holds_a_bounded_number_of_automations_the_same_on_every_node() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1);
    sign_in(&automation, &alice, NOW);
    let owner = alice.address();
    // Pending requests are bounded per owner too.
    for i in 0..MAX_PENDING_PER_OWNER as u64 {
        automation.create(owner, cron_definition("0 * * * * *"), NOW + i).unwrap();
    }
    let busy = automation.create(owner, cron_definition("0 * * * * *"), NOW + 100).unwrap_err();
    assert!(matches!(busy, AutomationError::Busy), "{busy}");
    let mut made = MAX_PENDING_PER_OWNER as u64;
    finalize(&[(&automation, &db)], &propose(&automation, 0, NOW + 100));
    while made < MAX_PER_OWNER as u64 {
        for _ in 0..(MAX_PENDING_PER_OWNER as u64).min(MAX_PER_OWNER as u64 - made) {
            automation.create(owner, cron_definition("0 * * * * *"), NOW + made).unwrap();
            made += 1;
        }
        finalize(&[(&automation, &db)], &propose(&automation, 0, NOW + made));
    }
    let err = automation.create(owner, cron_definition("0 * * * * *"), NOW + 5000).unwrap_err();
    assert!(matches!(err, AutomationError::Full), "{err}");

    // At the bound, a deletion and a creation final in one write: the creation fits (the
    // count follows the write, not the store before it), as it does in two writes.
    let (page, _) = automation.list(&owner, None, 1).unwrap();
    let first = parse_id(&page[0].id).unwrap();
    automation.cancel(&owner, &first, NOW + 5001).unwrap();
    finalize(&[(&automation, &db)], &propose(&automation, 0, NOW + 5002));
    automation.delete(&owner, &first, NOW + 5003).unwrap();
    let raw_delete = propose(&automation, 0, NOW + 5004);
    // Created on another node the owner signed in on (this one still counts the deletion as
    // not final), carried in the same block.
    let db1 = MemoryDb::default();
    let node1 = open_node(&db1, 1);
    sign_in(&node1, &alice, NOW + 5005);
    let late = node1.create(owner, cron_definition("0 0 * * * *"), NOW + 5006).unwrap();
    let both = [raw_delete, propose(&node1, 1, NOW + 5007)].concat();
    finalize(&[(&automation, &db)], &both);
    let late = parse_id(&late.id).unwrap();
    assert_eq!(automation.get(&owner, &late).unwrap().state, i32::from(pb::TaskState::Active));
    assert_eq!(automation.list(&owner, None, 100).unwrap().0.len(), 100);
    // Others are not affected.
    let bob = wallet(2);
    sign_in(&automation, &bob, NOW);
    automation.create(bob.address(), cron_definition("0 * * * * *"), NOW).unwrap();
}

#[test]
fn replayed_stale_and_crowded_requests_are_refused() {
    let db = MemoryDb::default();
    let node1 = Arc::new(open_node(&db, 1));
    let alice = wallet(1);
    sign_in(&node1, &alice, NOW);
    let owner = alice.address();
    let requests = AutomationRequests::new(Arc::clone(&node1));
    let parent = chain_state();

    // Stale or ahead of the attester's time.
    node1.create(owner, cron_definition("0 0 * * * *"), NOW).unwrap();
    let create = propose(&node1, 1, NOW).remove(0);
    let late = NOW + consensus::MAX_REQUEST_AGE_MS + 1;
    assert!(matches!(requests.validate(&parent, &create, late), TaskValidity::Invalid(_)));
    let early = NOW - consensus::MAX_REQUEST_SKEW_MS - 1;
    assert!(matches!(requests.validate(&parent, &create, early), TaskValidity::NotYet(_)));
    assert_eq!(requests.validate(&parent, &create, NOW + 1), TaskValidity::Valid);

    // A creation replayed after its automation was deleted creates nothing.
    finalize(&[(&node1, &db)], std::slice::from_ref(&create));
    let id = parse_id(&node1.list(&owner, None, 1).unwrap().0[0].id).unwrap();
    node1.cancel(&owner, &id, NOW + 1).unwrap();
    node1.cancel(&owner, &id, NOW + 2).unwrap();
    let cancels = propose(&node1, 1, NOW + 3);
    assert_eq!(cancels.len(), 1, "the same cancellation waits once");
    finalize(&[(&node1, &db)], &cancels);
    node1.delete(&owner, &id, NOW + 4).unwrap();
    finalize(&[(&node1, &db)], &propose(&node1, 1, NOW + 5));
    finalize(&[(&node1, &db)], &[create]);
    assert!(matches!(node1.get(&owner, &id), Err(AutomationError::NotFound(_))));

    // More than MAX_REQUESTS_PER_BLOCK in one block: the block is invalid.
    for i in 0..=consensus::MAX_REQUESTS_PER_BLOCK as u64 {
        node1.create(owner, cron_definition("0 0 * * * *"), NOW + 10 + i).unwrap();
    }
    let crowded = propose(&node1, 1, NOW + 20);
    assert_eq!(crowded.len(), consensus::MAX_REQUESTS_PER_BLOCK + 1);
    let mut registry = avs_consensus::TaskRegistry::new();
    node1.register(&mut registry).unwrap();
    let block = Block {
        proposer_index: avs_consensus::types::OperatorIndex::at(1),
        body: BlockBody { tasks: crowded.clone().try_into().unwrap() },
        ..Block::default()
    };
    let verdict = registry.validate_block(DIGEST, &parent, &block, &Default::default(), NOW + 21);
    assert!(matches!(&verdict, TaskValidity::Invalid(r) if r.contains("more than")), "{verdict:?}");
    let fits = Block {
        body: BlockBody {
            tasks: crowded[..consensus::MAX_REQUESTS_PER_BLOCK].to_vec().try_into().unwrap(),
        },
        ..block
    };
    let verdict = registry.validate_block(DIGEST, &parent, &fits, &Default::default(), NOW + 21);
    assert_eq!(verdict, TaskValidity::Valid);
}

#[test]
fn tokens_grants_and_pending_requests_survive_a_restart() {
    let db = MemoryDb::default();
    let automation = open(&db);
    let alice = wallet(1);
    let token = sign_in(&automation, &alice, NOW);
    automation.create(alice.address(), cron_definition("0 * * * * *"), NOW).unwrap();
    drop(automation);
    let reopened = open(&db);
    assert_eq!(reopened.authenticate(&token, NOW + 1).unwrap(), alice.address());
    // Acknowledged before the restart: proposed after it.
    assert_eq!(propose(&reopened, 0, NOW + 2).len(), 1);
    // And the grant still lets it submit without a new sign-in.
    reopened.create(alice.address(), cron_definition("0 0 * * * *"), NOW + 3).unwrap();
    // Another node (another store) did not issue the token.
    let elsewhere = open(&MemoryDb::default());
    assert!(matches!(elsewhere.authenticate(&token, NOW), Err(AutomationError::Auth(_))));
}

fn every_second() -> pb::TaskDefinition {
    cron_definition("* * * * * *")
}

fn at_times(times: Vec<u64>) -> pb::TaskDefinition {
    pb::TaskDefinition {
        trigger: Some(pb::Trigger {
            kind: Some(pb::trigger::Kind::FixedTime(pb::FixedTimeTrigger { at_unix_ms: times })),
        }),
        ..cron_definition("* * * * * *")
    }
}

fn time_firing(id: &TaskId, instant: u64) -> pb::Firing {
    pb::Firing { automation_id: id.to_vec(), instant_ms: instant, chain: None }
}

fn firing_result(firing: &pb::Firing) -> TaskResult {
    TaskResult {
        task_definition_id: firing::FIRING_TASK_ID,
        performer_index: avs_consensus::types::OperatorIndex::at(0),
        data: byte_list(&firing.encode_to_vec()).unwrap(),
        ..TaskResult::default()
    }
}

fn firing(id: &TaskId, instant: u64) -> TaskResult {
    firing_result(&time_firing(id, instant))
}

/// The active automation of `definition`, created at `at` and final on `node`.
fn active(node: &Automation, db: &MemoryDb, definition: pb::TaskDefinition, at: u64) -> TaskId {
    let alice = wallet(1);
    sign_in(node, &alice, at);
    let task = node.create(alice.address(), definition, at).unwrap();
    finalize(&[(node, db)], &propose(node, 0, at));
    parse_id(&task.id).unwrap()
}

#[test]
fn a_time_trigger_fires_at_its_instants_only_once_each_and_never_when_cancelled() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    // NOW is a whole second: the cron's instants are NOW + k·1000 for k >= 0.
    let id = active(&node, &db, every_second(), NOW);
    let owner = wallet(1).address();
    let firings = firing::AutomationFirings::new(Arc::clone(&node));
    let parent = chain_state();

    // The leader proposes the latest due instant.
    let due = node.due_firings(NOW + 3500, 8);
    assert_eq!(due.len(), 1);
    assert_eq!(firing::decode_firing(&due[0]).unwrap(), (id, time_firing(&id, NOW + 3000)));
    assert!(node.due_firings(NOW + 3600, 8).is_empty(), "in flight: not proposed again");

    // Attesters: a real, come instant is valid; a lying leader's instant that is not the
    // trigger's, or has not come, gets no vote.
    assert_eq!(
        firings.validate(&parent, &firing(&id, NOW + 3000), NOW + 3500),
        TaskValidity::Valid
    );
    let off_schedule = firings.validate(&parent, &firing(&id, NOW + 3001), NOW + 3500);
    assert!(matches!(off_schedule, TaskValidity::Invalid(_)), "{off_schedule:?}");
    let future = firings.validate(&parent, &firing(&id, NOW + 60_000), NOW + 3500);
    assert!(matches!(future, TaskValidity::NotYet(_)), "{future:?}");
    let before_creation = firings.validate(&parent, &firing(&id, NOW - 1000), NOW + 3500);
    assert!(matches!(before_creation, TaskValidity::Invalid(_)), "{before_creation:?}");
    // A missed instant, long after the next one came: stale, never fired late.
    let stale = firings.validate(&parent, &firing(&id, NOW + 1000), NOW + 40_000);
    assert!(matches!(&stale, TaskValidity::Invalid(r) if r.contains("stale")), "{stale:?}");
    let unknown = firings.validate(&parent, &firing(&[9; 32], NOW + 3000), NOW + 3500);
    assert!(matches!(unknown, TaskValidity::NotYet(_)), "{unknown:?}");

    // Final twice (two leaders' blocks): recorded once; an earlier instant after it: nothing.
    finalize(&[(&node, &db)], &[firing(&id, NOW + 3000), firing(&id, NOW + 3000)]);
    finalize(&[(&node, &db)], &[firing(&id, NOW + 2000)]);
    let task = node.get(&owner, &id).unwrap();
    assert_eq!((task.firings, task.last_fired_ms), (1, NOW + 3000));
    // Fired already here: a no-op at finality, so no reason to split the vote on it (a leader
    // whose table lags proposes it again).
    let fired_again = firings.validate(&parent, &firing(&id, NOW + 3000), NOW + 3500);
    assert_eq!(fired_again, TaskValidity::Valid);
    finalize(&[(&node, &db)], &[firing(&id, NOW + 4000)]);
    let (executions, _) = node.list_executions(&owner, &id, None, 100).unwrap();
    let instants: Vec<u64> = executions.iter().map(|e| e.instant_ms).collect();
    assert_eq!(instants, vec![NOW + 3000, NOW + 4000]);

    // Cancelled: never fires again, at the vote or at finality.
    node.cancel(&owner, &id, NOW + 4500).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 4600));
    assert!(node.due_firings(NOW + 10_000, 8).is_empty());
    finalize(&[(&node, &db)], &[firing(&id, NOW + 9000)]);
    assert_eq!(node.get(&owner, &id).unwrap().firings, 2);

    // Deleted: a firing a lagging leader still proposes is a no-op, and its executions go.
    node.delete(&owner, &id, NOW + 11_000).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 11_001));
    let deleted = firings.validate(&parent, &firing(&id, NOW + 12_000), NOW + 12_500);
    assert_eq!(deleted, TaskValidity::Valid);
    assert_eq!(rows(&db, EXECUTION), 0);
}

#[test]
fn a_fixed_time_automation_completes_after_its_last_instant() {
    let db = MemoryDb::default();
    let node = open(&db);
    let id = active(&node, &db, at_times(vec![NOW + 1000, NOW + 2000]), NOW);
    assert!(node.due_firings(NOW + 500, 8).is_empty(), "nothing due yet");
    let due = node.due_firings(NOW + 2500, 8);
    assert_eq!(
        firing::decode_firing(&due[0]).unwrap(),
        (id, time_firing(&id, NOW + 2000)),
        "the latest due"
    );
    finalize(&[(&node, &db)], &[firing(&id, NOW + 2000)]);
    let task = node.get(&wallet(1).address(), &id).unwrap();
    assert_eq!(task.state, i32::from(pb::TaskState::Completed));
    assert_eq!(task.firings, 1, "the missed earlier instant is skipped");
}

const CHAIN: u64 = 31337;
const CONTRACT: [u8; 20] = [0xc0; 20];
const TOPIC: [u8; 32] = [0x70; 32];

fn block_hash(n: u64) -> [u8; 32] {
    let mut hash = [0xb0; 32];
    hash[24..].copy_from_slice(&n.to_be_bytes());
    hash
}

/// Blocks `from..=to` of the test chain on `node`'s watch, one a second from NOW.
fn chain_blocks(node: &Automation, from: u64, to: u64) {
    node.chains().add(CHAIN);
    for n in from..=to {
        let header = chain::Header {
            hash: block_hash(n),
            parent: block_hash(n.wrapping_sub(1)),
            timestamp: NOW / 1000 + n,
        };
        assert!(node.chains().write(CHAIN, |c| c.push_header(n, header)));
    }
}

fn chain_trigger(kind: pb::trigger::Kind) -> pb::TaskDefinition {
    pb::TaskDefinition {
        trigger: Some(pb::Trigger { kind: Some(kind) }),
        ..cron_definition("* * * * * *")
    }
}

fn chain_firing(id: &TaskId, point: pb::ChainPoint) -> pb::Firing {
    pb::Firing { automation_id: id.to_vec(), instant_ms: 0, chain: Some(point) }
}

fn block_point(n: u64) -> pb::ChainPoint {
    pb::ChainPoint {
        chain_id: CHAIN,
        block_number: n,
        block_hash: block_hash(n).to_vec(),
        ..Default::default()
    }
}

#[test]
fn a_chain_trigger_on_a_chain_this_node_does_not_watch_is_refused_and_nothing_stored() {
    let db = MemoryDb::default();
    let node = open(&db);
    let alice = wallet(1);
    sign_in(&node, &alice, NOW);
    let definition = chain_trigger(pb::trigger::Kind::Block(pb::BlockTrigger {
        chain_id: CHAIN,
        interval: 5,
        confirmations: 2,
    }));
    let refused = node.create(alice.address(), definition.clone(), NOW).unwrap_err();
    assert!(matches!(refused, AutomationError::Unwatched(CHAIN)), "{refused}");
    assert_eq!(rows(&db, PENDING), 0);
    node.chains().add(CHAIN);
    node.create(alice.address(), definition, NOW).unwrap();
    assert_eq!(rows(&db, PENDING), 1);
}

#[test]
fn a_block_trigger_fires_at_confirmed_multiples_of_its_interval_once_each() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let definition = chain_trigger(pb::trigger::Kind::Block(pb::BlockTrigger {
        chain_id: CHAIN,
        interval: 5,
        confirmations: 2,
    }));
    let id = active(&node, &db, definition, NOW);
    let firings = firing::AutomationFirings::new(Arc::clone(&node));
    let parent = chain_state();
    let vote = |point: pb::ChainPoint, now: u64| {
        firings.validate(&parent, &firing_result(&chain_firing(&id, point)), now)
    };
    // Nothing held yet: no vote either way, nothing proposed.
    assert!(matches!(vote(block_point(5), NOW + 20_000), TaskValidity::NotYet(_)));
    assert!(node.due_firings(NOW + 20_000, 8).is_empty());

    chain_blocks(&node, 0, 11);
    // Confirmed head 9: the latest multiple is 5.
    let due = node.due_firings(NOW + 12_000, 8);
    assert_eq!(firing::decode_firing(&due[0]).unwrap(), (id, chain_firing(&id, block_point(5))));
    assert_eq!(vote(block_point(5), NOW + 12_000), TaskValidity::Valid);
    // A lying leader: a block not of the interval, another hash, an unconfirmed multiple, a
    // block before the automation, another chain.
    assert!(matches!(vote(block_point(6), NOW + 12_000), TaskValidity::Invalid(_)));
    let forged = pb::ChainPoint { block_hash: vec![0xee; 32], ..block_point(5) };
    assert!(matches!(vote(forged, NOW + 12_000), TaskValidity::Invalid(_)));
    assert!(matches!(vote(block_point(10), NOW + 12_000), TaskValidity::NotYet(_)));
    // A block firing with log fields a leader made up (trigger data for the workflow).
    let padded = pb::ChainPoint { tx_hash: vec![1; 32], data: vec![9; 32], ..block_point(5) };
    assert!(matches!(vote(padded, NOW + 12_000), TaskValidity::Invalid(_)));
    let other_chain = pb::ChainPoint { chain_id: 1, ..block_point(5) };
    assert!(matches!(vote(other_chain, NOW + 12_000), TaskValidity::Invalid(_)));

    finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, block_point(5)))]);
    finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, block_point(5)))]);
    let task = node.get(&wallet(1).address(), &id).unwrap();
    assert_eq!((task.firings, task.last_fired_block), (1, 5), "included twice, fired once");
    assert_eq!(rows(&db, EXECUTION), 1);
    let (executions, _) = node.list_executions(&wallet(1).address(), &id, None, 10).unwrap();
    assert_eq!(executions[0].chain, Some(block_point(5)));
    assert_eq!(executions[0].key, 5);
    assert!(node.due_firings(NOW + 12_100, 8).is_empty(), "5 fired, 10 not confirmed");

    // Block 15 confirmed at 17 and came 30 s ago: 10 is stale, 15 is due.
    chain_blocks(&node, 12, 17);
    assert_eq!(vote(block_point(10), NOW + 16_000), TaskValidity::Valid, "15 just came");
    assert!(matches!(vote(block_point(10), NOW + 45_000), TaskValidity::Invalid(_)));
    let due = node.due_firings(NOW + 45_000, 8);
    assert_eq!(firing::decode_firing(&due[0]).unwrap().1, chain_firing(&id, block_point(15)));
}

fn event_definition() -> pb::TaskDefinition {
    chain_trigger(pb::trigger::Kind::Event(pb::EventTrigger {
        chain_id: CHAIN,
        address: CONTRACT.to_vec(),
        topics: vec![TOPIC.to_vec()],
        confirmations: 1,
    }))
}

fn event_log(data: u8) -> chain::ChainLog {
    chain::ChainLog {
        address: CONTRACT,
        topics: vec![TOPIC, [data; 32]],
        data: vec![data; 32],
        tx_hash: [data; 32],
    }
}

fn event_point(n: u64, index: u64, log: &chain::ChainLog) -> pb::ChainPoint {
    pb::ChainPoint {
        log_index: index,
        tx_hash: log.tx_hash.to_vec(),
        topics: log.topics.iter().map(|t| t.to_vec()).collect(),
        data: log.data.clone(),
        ..block_point(n)
    }
}

#[test]
fn an_event_fires_once_per_log_and_a_log_the_chain_does_not_hold_gets_no_vote() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let id = active(&node, &db, event_definition(), NOW);
    let firings = firing::AutomationFirings::new(Arc::clone(&node));
    let parent = chain_state();
    let vote = |point: pb::ChainPoint| {
        firings.validate(&parent, &firing_result(&chain_firing(&id, point)), NOW + 20_000)
    };
    chain_blocks(&node, 0, 8);
    let first = event_log(1);
    let other = chain::ChainLog { topics: vec![[0x71; 32]], ..event_log(2) };
    node.chains().write(CHAIN, |c| {
        assert!(c.push_log(5, 0, block_hash(5), first.clone()));
        assert!(c.push_log(5, 1, block_hash(5), other.clone()));
    });
    // Logs not read here yet: no vote either way.
    assert!(matches!(vote(event_point(5, 0, &first)), TaskValidity::NotYet(_)));
    node.chains().write(CHAIN, |c| c.set_covered(CONTRACT, 8));
    assert_eq!(vote(event_point(5, 0, &first)), TaskValidity::Valid);

    // A single lying operator's event: a log that is not there, one whose data or
    // transaction differ, one of another event, a block of another hash.
    assert!(matches!(vote(event_point(5, 7, &first)), TaskValidity::Invalid(_)));
    let edited = pb::ChainPoint { data: vec![9; 32], ..event_point(5, 0, &first) };
    assert!(matches!(vote(edited), TaskValidity::Invalid(_)));
    let moved = pb::ChainPoint { tx_hash: vec![9; 32], ..event_point(5, 0, &first) };
    assert!(matches!(vote(moved), TaskValidity::Invalid(_)));
    assert!(matches!(vote(event_point(5, 1, &other)), TaskValidity::Invalid(_)));
    let forged = pb::ChainPoint { block_hash: vec![0xee; 32], ..event_point(5, 0, &first) };
    assert!(matches!(vote(forged), TaskValidity::Invalid(_)));
    // Unconfirmed: the head is 8 and one confirmation is needed.
    let late = event_log(3);
    node.chains().write(CHAIN, |c| assert!(c.push_log(8, 0, block_hash(8), late.clone())));
    assert!(matches!(vote(event_point(8, 0, &late)), TaskValidity::NotYet(_)));

    // The leader proposes the matching log, not the other event's nor the unconfirmed one.
    let due = node.due_firings(NOW + 20_000, 8);
    assert_eq!(due.len(), 1);
    assert_eq!(
        firing::decode_firing(&due[0]).unwrap().1,
        chain_firing(&id, event_point(5, 0, &first))
    );
    let fire = firing_result(&chain_firing(&id, event_point(5, 0, &first)));
    finalize(&[(&node, &db)], std::slice::from_ref(&fire));
    finalize(&[(&node, &db)], &[fire]);
    let owner = wallet(1).address();
    assert_eq!(node.get(&owner, &id).unwrap().firings, 1, "a log fires once");
    let (executions, _) = node.list_executions(&owner, &id, None, 10).unwrap();
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].key, 5 << firing::LOG_INDEX_BITS);
    // Fired: not proposed again, even after the in-flight time.
    assert!(node.due_firings(NOW + 60_000, 8).is_empty());
    // Once confirmed, the next log fires; an earlier unfired one would fire too.
    chain_blocks(&node, 9, 9);
    let due = node.due_firings(NOW + 61_000, 8);
    assert_eq!(
        firing::decode_firing(&due[0]).unwrap().1,
        chain_firing(&id, event_point(8, 0, &late))
    );

    // Cancelled: a final firing records nothing.
    sign_in(&node, &wallet(1), NOW + 61_000);
    node.cancel(&owner, &id, NOW + 61_000).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 61_000));
    finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, event_point(8, 0, &late)))]);
    assert_eq!(node.get(&owner, &id).unwrap().firings, 1);
    assert!(node.due_firings(NOW + 62_000, 8).is_empty());
}

const WRITE_TO: [u8; 20] = [0xd0; 20];

/// A cron automation that reads the test contract and writes the trigger's instant.
fn read_then_write() -> pb::TaskDefinition {
    let call = |address: [u8; 20], calldata: Vec<u8>, append| pb::ContractCall {
        chain_id: CHAIN,
        address: address.to_vec(),
        calldata,
        append_trigger_data: append,
    };
    pb::TaskDefinition {
        nodes: vec![
            pb::WorkflowNode {
                name: "read".into(),
                kind: Some(pb::workflow_node::Kind::ContractRead(call(
                    CONTRACT,
                    vec![1, 2],
                    false,
                ))),
            },
            pb::WorkflowNode {
                name: "write".into(),
                kind: Some(pb::workflow_node::Kind::ContractWrite(call(WRITE_TO, vec![9], true))),
            },
        ],
        ..every_second()
    }
}

fn execution_result(
    id: &TaskId,
    key: u64,
    runner: Address,
    steps: Vec<pb::StepResult>,
) -> pb::ExecutionResult {
    let success = steps.len() == 2 && steps.iter().all(|s| s.ok);
    pb::ExecutionResult {
        automation_id: id.to_vec(),
        key,
        steps,
        success,
        runner: runner.to_vec(),
        expired: false,
    }
}

fn step(name: &str, ok: bool, output: Vec<u8>, block_number: u64) -> pb::StepResult {
    pb::StepResult { name: name.into(), ok, output, block_number, ..Default::default() }
}

fn execution_task(result: &pb::ExecutionResult, proposer: usize) -> TaskResult {
    TaskResult {
        task_definition_id: execution::EXECUTION_TASK_ID,
        performer_index: avs_consensus::types::OperatorIndex::at(proposer),
        data: byte_list(&result.encode_to_vec()).unwrap(),
        ..TaskResult::default()
    }
}

#[test]
fn a_workflow_result_counts_once_and_only_when_every_read_returns_the_same_here() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let id = active(&node, &db, read_then_write(), NOW);
    let owner = wallet(1).address();
    let instant = NOW + 1000;
    finalize(&[(&node, &db)], &[firing(&id, instant)]);
    let task = node.get(&owner, &id).unwrap();
    assert_eq!(task.state, i32::from(pb::TaskState::Executing));
    assert_eq!(task.open_executions, 1);
    let pending = node.get_execution(&owner, &id, instant).unwrap();
    assert_eq!(pending.status, i32::from(pb::ExecutionStatus::Pending));

    chain_blocks(&node, 0, 10);
    let written = [vec![9], execution::trigger_data(&pending)].concat();
    let honest = execution_result(
        &id,
        instant,
        node_address(0),
        vec![step("read", true, vec![0xaa], 10), step("write", true, written.clone(), 0)],
    );
    let executions = execution::AutomationExecutions::new(Arc::clone(&node));
    let parent = chain_state();
    let vote = |result: &pb::ExecutionResult, proposer: usize| {
        executions.validate(&parent, &execution_task(result, proposer), NOW + 2000)
    };
    // The read is re-run off the thread first.
    assert!(matches!(vote(&honest, 0), TaskValidity::NotYet(_)));
    let read = node.wanted_reads();
    assert_eq!(read.len(), 1);
    assert_eq!(
        (read[0].address, read[0].block, read[0].calldata.clone()),
        (CONTRACT, 10, vec![1, 2])
    );
    node.read_done(read[0].clone(), (true, vec![0xaa]));
    assert_eq!(vote(&honest, 0), TaskValidity::Valid);

    // A lying runner: a read that returned otherwise, another write, a success with a failed
    // step, a read at a block long past, a result another node claims to have run.
    let mut lie = honest.clone();
    lie.steps[0].output = vec![0xbb];
    assert!(matches!(vote(&lie, 0), TaskValidity::Invalid(_)));
    let mut lie = honest.clone();
    lie.steps[1].output = vec![9, 9];
    assert!(matches!(vote(&lie, 0), TaskValidity::Invalid(_)));
    let mut lie = honest.clone();
    lie.steps.truncate(1);
    lie.steps[0].ok = false;
    assert!(matches!(vote(&lie, 0), TaskValidity::Invalid(_)), "success with a failed step");
    assert!(matches!(vote(&honest, 1), TaskValidity::Invalid(_)), "runner is not the proposer");
    chain_blocks(&node, 11, 100);
    assert!(matches!(vote(&honest, 0), TaskValidity::Invalid(_)), "a read 90 blocks old");

    // Proposed only by an aggregator (it sends the write).
    node.inner().prepared.insert(
        (id, instant),
        execution::Prepared {
            bytes: honest.encode_to_vec(),
            at_ms: NOW + 2000,
            proposed_ms: None,
            writes: true,
        },
    );
    assert!(node.take_executions(NOW + 2000, 2).is_empty());
    node.set_aggregator(crate::aggregator::AggregatorController::unregistered(true));
    assert_eq!(node.take_executions(NOW + 2000, 2), vec![honest.encode_to_vec()]);

    // Final: recorded with its certificate, once; the write is queued on the runner's node.
    finalize(&[(&node, &db)], &[execution_task(&honest, 0)]);
    let mut other = honest.clone();
    other.steps[0].output = vec![0xcc];
    finalize(&[(&node, &db)], &[execution_task(&other, 0)]);
    let done = node.get_execution(&owner, &id, instant).unwrap();
    assert_eq!(done.status, i32::from(pb::ExecutionStatus::Succeeded));
    assert_eq!(done.steps, honest.steps, "the first final result counts");
    let task = node.get(&owner, &id).unwrap();
    assert_eq!((task.state, task.open_executions), (i32::from(pb::TaskState::Active), 0));
    assert_eq!(rows(&db, SEND), 1);
    assert_eq!(rows(&db, OPEN), 0);
    assert!(node.take_executions(NOW + 40_000, 2).is_empty(), "final: no longer proposed");
}

#[test]
fn only_the_node_that_ran_a_workflow_sends_its_writes_and_a_manual_run_is_an_execution() {
    let (db0, db1) = (MemoryDb::default(), MemoryDb::default());
    let (node0, node1) = (open_node(&db0, 0), open_node(&db1, 1));
    let nodes = [(&node0, &db0), (&node1, &db1)];
    let alice = wallet(1);
    sign_in(&node0, &alice, NOW);
    let task = node0.create(alice.address(), read_then_write(), NOW).unwrap();
    let id = parse_id(&task.id).unwrap();
    finalize(&nodes, &propose(&node0, 0, NOW));
    // A manual run, final on both nodes.
    node0.trigger(&alice.address(), &id, NOW + 5).unwrap();
    finalize(&nodes, &propose(&node0, 0, NOW + 5));
    let key = execution::MANUAL_KEY + NOW + 5;
    for node in [&node0, &node1] {
        let execution = node.get_execution(&alice.address(), &id, key).unwrap();
        assert_eq!(execution.status, i32::from(pb::ExecutionStatus::Pending));
        assert_eq!(node.get(&alice.address(), &id).unwrap().firings, 1);
    }
    let pending = node0.get_execution(&alice.address(), &id, key).unwrap();
    let written = [vec![9], execution::trigger_data(&pending)].concat();
    let result = execution_result(
        &id,
        key,
        node_address(1),
        vec![step("read", true, vec![1], 3), step("write", true, written.clone(), 0)],
    );
    finalize(&nodes, &[execution_task(&result, 1)]);
    assert_eq!((rows(&db0, SEND), rows(&db1, SEND)), (0, 1), "node 1 ran it and sends");
    // The row holds the call data: the write is sent from it, whatever becomes of the record.
    let store = MemoryStore::open(&db1).unwrap();
    let row = store.get(Column::Automation, &send_key(&id, key, 1)).unwrap().unwrap();
    assert_eq!(row, [vec![SEND_UNSIGNED], written.clone()].concat());
    // Sent: the hash is this node's, shown in its record, and the row is gone.
    node1.write_sent(&id, key, 1, [0x5e; 32]).unwrap();
    assert_eq!(rows(&db1, SEND), 0);
    let sent = node1.get_execution(&alice.address(), &id, key).unwrap();
    assert_eq!(sent.steps[1].tx_hash, vec![0x5e; 32]);
    assert!(node0.get_execution(&alice.address(), &id, key).unwrap().steps[1].tx_hash.is_empty());
}

/// Review of c5c9d60: send rows of the format before (empty, or the signed transaction) are
/// moved at open, so a write queued across the upgrade is sent once, with its call data.
#[test]
fn writes_queued_in_the_old_format_are_sent_after_an_upgrade() {
    let db = MemoryDb::default();
    let node = open(&db);
    let alice = wallet(1);
    sign_in(&node, &alice, NOW);
    let task = node.create(alice.address(), read_then_write(), NOW).unwrap();
    let id = parse_id(&task.id).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW));
    node.trigger(&alice.address(), &id, NOW + 5).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 5));
    let key = execution::MANUAL_KEY + NOW + 5;
    let result = execution_result(
        &id,
        key,
        node_address(0),
        vec![step("read", true, vec![1], 3), step("write", true, vec![0xca, 0x11], 0)],
    );
    finalize(&[(&node, &db)], &[execution_task(&result, 0)]);
    // As the version before left them: one not signed yet, one signed (an EIP-1559 envelope).
    let store = MemoryStore::open(&db).unwrap();
    let old = |step: u8| [&[OLD_SEND][..], &id[..], &key.to_be_bytes(), &[step]].concat();
    let mut batch = WriteBatch::new();
    batch.delete(Column::Automation, send_key(&id, key, 1));
    batch.put(Column::Automation, old(1), Vec::new());
    batch.put(Column::Automation, old(7), vec![0x02, 0xf8, 0x70]);
    store.write(batch, Durability::Sync).unwrap();
    drop(node);
    let _reopened = open(&db);
    assert_eq!(rows(&db, OLD_SEND), 0);
    let store = MemoryStore::open(&db).unwrap();
    let row = |step: u8| store.get(Column::Automation, &send_key(&id, key, step)).unwrap();
    assert_eq!(row(1), Some(vec![SEND_UNSIGNED, 0xca, 0x11]), "the call data of the execution");
    assert_eq!(row(7), Some(vec![SEND_SIGNED, 0x02, 0xf8, 0x70]), "the same signed bytes");
}

#[test]
fn the_change_log_numbers_the_same_changes_the_same_on_every_node_and_acks_never_move_back() {
    let (db0, db1) = (MemoryDb::default(), MemoryDb::default());
    let (node0, node1) = (open_node(&db0, 0), open_node(&db1, 1));
    let nodes = [(&node0, &db0), (&node1, &db1)];
    let alice = wallet(1);
    sign_in(&node0, &alice, NOW);
    let first = node0.create(alice.address(), every_second(), NOW).unwrap();
    let second = node0.create(alice.address(), every_second(), NOW + 1).unwrap();
    finalize(&nodes, &propose(&node0, 0, NOW + 1));
    let id = parse_id(&first.id).unwrap();
    node0.cancel(&alice.address(), &id, NOW + 2).unwrap();
    finalize(&nodes, &propose(&node0, 0, NOW + 2));
    node0.delete(&alice.address(), &id, NOW + 3).unwrap();
    finalize(&nodes, &propose(&node0, 0, NOW + 3));

    let log = node0.changes(1, 100).unwrap();
    assert_eq!(log, node1.changes(1, 100).unwrap(), "the same log on every node");
    let kinds: Vec<_> = log
        .iter()
        .map(|m| match m.kind.as_ref().unwrap() {
            pb::sync_message::Kind::Assigned(t) => ("assigned", t.id.clone()),
            pb::sync_message::Kind::Cancelled(id) => ("cancelled", id.clone()),
            pb::sync_message::Kind::Deleted(id) => ("deleted", id.clone()),
        })
        .collect();
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[2..], [("cancelled", first.id.clone()), ("deleted", first.id.clone())]);
    assert!(kinds[..2].contains(&("assigned", second.id.clone())));
    assert_eq!(log.iter().map(|m| m.sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(node0.changes(3, 100).unwrap(), log[2..], "resumes at a sequence");
    assert_eq!(node0.log_bounds().unwrap(), (1, 5));

    let operator = wallet(9).address();
    assert!(node0.ack(&operator, 5).is_err(), "not logged yet");
    assert_eq!(node0.ack(&operator, 3).unwrap(), 3);
    assert_eq!(node0.ack(&operator, 1).unwrap(), 3, "never back");
    assert_eq!(node0.acked(&operator).unwrap(), 3);
}

#[test]
fn a_pending_execution_closes_as_expired_only_300_blocks_after_its_firing() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let id = active(&node, &db, read_then_write(), NOW);
    let owner = wallet(1).address();
    finalize(&[(&node, &db)], &[firing(&id, NOW + 1000)]);
    let firing_height = node.get_execution(&owner, &id, NOW + 1000).unwrap().height;
    let expired = pb::ExecutionResult {
        automation_id: id.to_vec(),
        key: NOW + 1000,
        runner: node_address(0).to_vec(),
        expired: true,
        ..Default::default()
    };
    let executions = execution::AutomationExecutions::new(Arc::clone(&node));
    let at_height = |h: u64| {
        let mut parent = chain_state();
        parent.height = avs_consensus::types::Height::new(h);
        executions.validate(&parent, &execution_task(&expired, 0), NOW + 2000)
    };
    let due = firing_height + execution::EXPIRE_AFTER_BLOCKS;
    assert!(matches!(at_height(due - 2), TaskValidity::Invalid(_)), "too early");
    assert_eq!(at_height(due - 1), TaskValidity::Valid, "the block at `due`");
    let mut with_steps = expired.clone();
    with_steps.steps.push(step("read", false, vec![], 1));
    let mut parent = chain_state();
    parent.height = avs_consensus::types::Height::new(due);
    assert!(matches!(
        executions.validate(&parent, &execution_task(&with_steps, 0), NOW),
        TaskValidity::Invalid(_)
    ));
    finalize(&[(&node, &db)], &[execution_task(&expired, 0)]);
    let execution = node.get_execution(&owner, &id, NOW + 1000).unwrap();
    assert_eq!(execution.status, i32::from(pb::ExecutionStatus::Expired));
    let task = node.get(&owner, &id).unwrap();
    assert_eq!((task.state, task.open_executions), (i32::from(pb::TaskState::Active), 0));
    assert_eq!((rows(&db, OPEN), rows(&db, SEND)), (0, 0), "nothing sent for an expired one");
}

/// Issue 15's review, defect 2: a leader's proposal and each chain poll read the index of
/// active automations, never a scan of every stored record (which grew with the table and
/// stopped at 100 000); the index follows creations, firings, cancellations and a restart.
#[test]
fn proposals_and_chain_polls_read_the_index_of_active_automations_not_the_table() {
    let db = MemoryDb::default();
    let counting = Arc::new(CountingStore::over(MemoryStore::open(&db).unwrap()));
    let network = Network { name: "avs-test".into(), digest: DIGEST, node: node_address(0) };
    let node = Automation::open(Arc::clone(&counting) as Arc<dyn Store>, network).unwrap();
    node.chains().add(CHAIN);
    let cron = active(&node, &db, every_second(), NOW);
    let event = active(&node, &db, event_definition(), NOW);
    let idle = active(&node, &db, cron_definition("0 0 0 1 1 *"), NOW);
    assert_eq!(node.active_count(), 3);
    let ranges = || counting.ranges.load(std::sync::atomic::Ordering::Relaxed);
    let before = ranges();
    let due = node.due_firings(NOW + 3_000, 8);
    assert_eq!(due.len(), 1, "one per owner: the every-second cron");
    assert_eq!(firing::decode_firing(&due[0]).unwrap().0, cron);
    assert_eq!(node.watched_contracts(CHAIN), vec![CONTRACT]);
    assert_eq!(ranges(), before, "no scan of the table for a proposal or a chain poll");

    // A firing moves the cron's next instant; a cancellation drops the event automation.
    finalize(&[(&node, &db)], &[firing(&cron, NOW + 3_000)]);
    assert!(node.due_firings(NOW + 3_500, 8).is_empty(), "fired up to NOW + 3 s");
    let owner = wallet(1).address();
    node.cancel(&owner, &event, NOW + 4_000).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 4_000));
    assert!(node.watched_contracts(CHAIN).is_empty());
    assert_eq!(node.active_count(), 2);

    // A restart reloads the same index from the table.
    let reopened = open(&db);
    assert_eq!(reopened.active_count(), 2);
    assert!(reopened.watched_contracts(CHAIN).is_empty());
    let due = reopened.due_firings(NOW + 5_000, 8);
    assert_eq!(firing::decode_firing(&due[0]).unwrap().0, cron);
    let _ = idle;
}

/// Issue 15's review, defect 2: executions no longer grow without bound. An automation keeps
/// its last 1000; the oldest is forgotten when a newer one opens (or, if it was still pending
/// then, when its result is final), the same on every node; and a forgotten key never runs
/// again (docs/protocol.md, 7.5, "What a node keeps").
#[test]
fn an_automation_keeps_its_last_1000_executions_and_a_forgotten_key_never_runs_again() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let id = active(&node, &db, event_definition(), NOW);
    let owner = wallet(1).address();
    let log = event_log(1);
    let key = |n: u64| n << firing::LOG_INDEX_BITS;
    let fire = |n: u64| {
        finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, event_point(n, 0, &log)))])
    };
    let close = |n: u64| {
        let result = pb::ExecutionResult {
            automation_id: id.to_vec(),
            key: key(n),
            runner: node_address(0).to_vec(),
            expired: true,
            ..Default::default()
        };
        finalize(&[(&node, &db)], &[execution_task(&result, 0)]);
    };
    // Block 1's execution stays pending; blocks 2 to 1000 fire and close.
    fire(1);
    for n in 2..=KEEP_EXECUTIONS {
        fire(n);
        close(n);
    }
    assert_eq!(rows(&db, EXECUTION), 1000);
    // The 1001st: the 1st is pending, so it is kept for now.
    fire(KEEP_EXECUTIONS + 1);
    assert_eq!(rows(&db, EXECUTION), 1001);
    assert_eq!(node.get_execution(&owner, &id, key(KEEP_EXECUTIONS + 1)).unwrap().ordinal, 1001);
    // Its result is final: it is forgotten then, and its key is below the mark.
    close(1);
    assert_eq!(rows(&db, EXECUTION), 1000);
    let task = node.get(&owner, &id).unwrap();
    assert_eq!((task.forgotten_executions, task.fired_kept_from), (1, key(1) + 1));
    assert!(matches!(node.get_execution(&owner, &id, key(1)), Err(AutomationError::NotFound(_))));
    // The forgotten log fired again records nothing (its record is gone, the mark holds).
    fire(1);
    assert_eq!(rows(&db, EXECUTION), 1000);
    assert_eq!(node.get(&owner, &id).unwrap().firings, 1001);
    // The 1002nd: the 2nd is final, so it is forgotten as the new one opens.
    fire(KEEP_EXECUTIONS + 2);
    assert_eq!(rows(&db, EXECUTION), 1000);
    assert_eq!(rows(&db, ORDINAL), 1000);
    let (page, _) = node.list_executions(&owner, &id, None, 1).unwrap();
    assert_eq!(page[0].key, key(3), "the oldest kept");
    // A restart holds the same.
    let reopened = open(&db);
    let task = reopened.get(&owner, &id).unwrap();
    assert_eq!((task.forgotten_executions, task.fired_kept_from), (2, key(2) + 1));
}

/// Issue 15's review, defect 3: a node calls a REST step once per execution. Preparing the
/// result again (every 30 s until it is final) reuses the response instead of calling the
/// server again (unless it may pass: no answer, 5xx, 429), and the response is dropped once
/// the result is final.
#[tokio::test]
async fn a_rest_step_is_called_once_per_execution_however_often_its_result_is_prepared() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            // The first call meets a server in trouble.
            let status = if n == 1 { 503 } else { 200 };
            async move { (axum::http::StatusCode::from_u16(status).unwrap(), format!("call {n}")) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    let definition = super::example::cron_get("every minute", "* * * * * *", "hook", &url);
    let id = active(&node, &db, definition, NOW);
    finalize(&[(&node, &db)], &[firing(&id, NOW + 1000)]);
    let http = alloy::transports::http::reqwest::Client::new();
    let mut responses = runner::RestResponses::default();
    let prepared = |node: &Automation| {
        let held = node.inner().prepared.get(&(id, NOW + 1000)).map(|p| p.bytes.clone());
        execution::decode_result(&held.expect("prepared")).unwrap().1
    };
    runner::prepare(&node, &http, &mut responses).await.unwrap();
    let failed = prepared(&node);
    assert_eq!((failed.steps[0].http_status, failed.success), (503, false));
    // A 503 may pass: not kept, the call is made again when the result is prepared again.
    node.inner().prepared.clear();
    runner::prepare(&node, &http, &mut responses).await.unwrap();
    let first = prepared(&node);
    assert_eq!(first.steps[0].output, b"call 2".to_vec());
    // Its prepared result goes stale (30 s) twice: prepared again, from the kept response.
    for _ in 0..2 {
        node.inner().prepared.clear();
        runner::prepare(&node, &http, &mut responses).await.unwrap();
        assert_eq!(prepared(&node), first);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "called again only after the 503");
    // Final: the response is no longer held.
    finalize(&[(&node, &db)], &[execution_task(&first, 0)]);
    runner::prepare(&node, &http, &mut responses).await.unwrap();
    assert!(responses.is_empty());
}

/// Review of c5c9d60: a leader proposes the oldest matching log not fired yet, even below a
/// later log that fired first (a leader that lacked the older block, or restarted).
#[test]
fn an_older_log_fired_after_a_newer_one_is_still_proposed() {
    let db = MemoryDb::default();
    let node = Arc::new(open(&db));
    node.chains().add(CHAIN);
    let id = active(&node, &db, event_definition(), NOW);
    chain_blocks(&node, 0, 9);
    let (older, newer) = (event_log(1), event_log(2));
    node.chains().write(CHAIN, |c| {
        assert!(c.push_log(5, 0, block_hash(5), older.clone()));
        assert!(c.push_log(7, 0, block_hash(7), newer.clone()));
        c.set_covered(CONTRACT, 9);
    });
    finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, event_point(7, 0, &newer)))]);
    let due = node.due_firings(NOW + 20_000, 8);
    assert_eq!(due.len(), 1, "block 5's log is still due");
    assert_eq!(
        firing::decode_firing(&due[0]).unwrap().1,
        chain_firing(&id, event_point(5, 0, &older))
    );
}

/// Review of 8d9e9b5: writes that wait (a chain this node does not watch) never hold up the
/// others, however many there are, and a write left behind by an automation deleted while it
/// was being sent is dropped, not kept for ever in the runner's way.
#[tokio::test]
async fn waiting_writes_never_hold_up_the_others_and_a_deleted_automations_write_goes() {
    let db = MemoryDb::default();
    let node = open(&db);
    let alice = wallet(1);
    sign_in(&node, &alice, NOW);
    let ids: Vec<TaskId> = (0..2u64)
        .map(|i| {
            parse_id(&node.create(alice.address(), read_then_write(), NOW + i).unwrap().id).unwrap()
        })
        .collect();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 2));
    // The automation whose rows sort first waits (this node does not watch its chain); the
    // other is deleted, and its write is left behind (the race with the runner).
    let (waiting, deleted) = (ids[0].min(ids[1]), ids[0].max(ids[1]));
    node.cancel(&alice.address(), &deleted, NOW + 3).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 3));
    node.delete(&alice.address(), &deleted, NOW + 4).unwrap();
    finalize(&[(&node, &db)], &propose(&node, 0, NOW + 4));
    let store = MemoryStore::open(&db).unwrap();
    let mut batch = WriteBatch::new();
    for key in 0..=runner::SENDS_PER_TICK as u64 {
        batch.put(Column::Automation, send_key(&waiting, key, 1), vec![SEND_UNSIGNED, 1]);
    }
    batch.put(Column::Automation, send_key(&deleted, 0, 1), vec![SEND_SIGNED, 2]);
    store.write(batch, Durability::Sync).unwrap();
    let signer = PrivateKeySigner::from_slice(&[7; 32]).unwrap();
    let mut cursor = Vec::new();
    for _ in 0..2 {
        runner::send_writes(&node, &signer, &mut cursor).await.unwrap();
    }
    let left_behind = store.get(Column::Automation, &send_key(&deleted, 0, 1)).unwrap();
    assert_eq!(left_behind, None, "reached past the waiting ones, and dropped");
    assert_eq!(rows(&db, SEND), runner::SENDS_PER_TICK + 1, "the waiting ones wait");
}

/// Review of 8d9e9b5: a leader keeps its place in an event automation's logs, so each proposal
/// does not read the executions of every fired log again to find the first one not fired.
#[test]
fn a_leader_keeps_its_place_in_an_event_automations_logs() {
    let db = MemoryDb::default();
    let counting = Arc::new(CountingStore::over(MemoryStore::open(&db).unwrap()));
    let network = Network { name: "avs-test".into(), digest: DIGEST, node: node_address(0) };
    let node = Automation::open(Arc::clone(&counting) as Arc<dyn Store>, network).unwrap();
    node.chains().add(CHAIN);
    let id = active(&node, &db, event_definition(), NOW);
    chain_blocks(&node, 0, 60);
    let log = event_log(1);
    node.chains().write(CHAIN, |c| {
        for n in 1..=51 {
            assert!(c.push_log(n, 0, block_hash(n), log.clone()));
        }
        c.set_covered(CONTRACT, 60);
    });
    for n in 1..=50 {
        finalize(&[(&node, &db)], &[firing_result(&chain_firing(&id, event_point(n, 0, &log)))]);
    }
    let gets = || counting.gets.load(std::sync::atomic::Ordering::Relaxed);
    let due = |now| node.due_firings(now, 8);
    let first = gets();
    let proposed = due(NOW + 20_000);
    assert_eq!(
        firing::decode_firing(&proposed[0]).unwrap().1,
        chain_firing(&id, event_point(51, 0, &log))
    );
    assert!(gets() - first >= 50, "the first walk reads the fired ones");
    let second = gets();
    due(NOW + 60_000);
    assert!(gets() - second <= 2, "from its place: {} reads", gets() - second);
    // A rewind of the chain forgets the place: logs may come back below it.
    node.chains().write(CHAIN, |c| c.rewind(55));
    let third = gets();
    due(NOW + 100_000);
    assert!(gets() - third >= 50);
}
