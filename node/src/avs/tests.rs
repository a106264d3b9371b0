use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use avs_consensus::bls::SecretKey;
use avs_consensus::signing::network_digest;
use avs_consensus::state::genesis_state;
use avs_consensus::task::sign_task;
use avs_consensus::testkit;
use avs_consensus::types::{Block, BlockBody, Certificate, Epoch, byte_list};

use super::*;
use crate::store::{MemoryDb, MemoryStore};

const SHA: u16 = 1;
const SERVICE: u16 = 2;

struct Net {
    keys: Vec<SecretKey>,
    genesis: GenesisConfig,
    digest: NetworkDigest,
    table: Arc<KeyTable>,
}

fn net() -> Net {
    let (keys, mut genesis) = testkit::genesis(&[1, 1, 1, 1], 0, 4000).unwrap();
    genesis.task_definitions = vec![
        AvsTaskDefinition { id: SHA, name: byte_list(b"hash").unwrap(), validation: 1 },
        AvsTaskDefinition { id: SERVICE, name: byte_list(b"oracle").unwrap(), validation: 0 },
    ]
    .try_into()
    .unwrap();
    let digest = network_digest(&genesis).unwrap();
    let table = Arc::new(KeyTable::new(Epoch::ZERO, &genesis.operators, digest).unwrap());
    Net { keys, genesis, digest, table }
}

impl Net {
    fn open(&self, db: &MemoryDb, services: BTreeMap<u16, String>) -> Arc<AvsTasks> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::open(db).unwrap());
        let settings = AvsSettings { services, timeout: Some(Duration::from_millis(500)) };
        let tasks = AvsTasks::open(&self.genesis, self.digest, settings, store).unwrap();
        tasks.set_operators(Arc::clone(&self.table));
        tasks
    }

    fn signed(&self, performer: usize, id: u16, proof: &[u8], data: &[u8]) -> SignedTaskMessage {
        let message = TaskMessage {
            task_definition_id: id,
            performer: self.keys[performer].public_key().to_bytes().to_vec().try_into().unwrap(),
            proof_of_task: byte_list(proof).unwrap(),
            data: byte_list(data).unwrap(),
        };
        sign_task(&self.keys[performer], message, self.digest).unwrap()
    }

    /// A valid SHA256 task of `performer` with `data`.
    fn hashed(&self, performer: usize, data: &[u8]) -> SignedTaskMessage {
        self.signed(performer, SHA, &Sha256::digest(data), data)
    }
}

use avs_consensus::types::TaskMessage;

fn pending_keys(db: &MemoryDb) -> usize {
    let store = MemoryStore::open(db).unwrap();
    store
        .range(Column::Tasks, PENDING_PREFIX, 10_000)
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(PENDING_PREFIX))
        .count()
}

#[test]
fn a_valid_submission_is_stored_before_it_is_acknowledged_and_resubmitting_changes_nothing() {
    let n = net();
    let db = MemoryDb::default();
    let tasks = n.open(&db, BTreeMap::new());
    let first = tasks.submit(n.hashed(1, b"x"), Origin::Client, 10).unwrap();
    assert!(first.new);
    assert_eq!(first.status, TaskStatus::Pending);
    assert_eq!(pending_keys(&db), 1, "written before the answer");
    let again = tasks.submit(n.hashed(1, b"x"), Origin::Gossip, 20).unwrap();
    assert_eq!((again.new, again.task_id), (false, first.task_id));
    assert_eq!(tasks.get(&first.task_id).unwrap().received_ms, 10, "the first receipt stays");
    assert_eq!(
        tasks.validate_gossip(&encode(&n.hashed(1, b"x")).unwrap(), 30),
        Err((Verdict::Ignore, "known task".into()))
    );

    // After a restart the pending task is still there.
    drop(tasks);
    let reopened = n.open(&db, BTreeMap::new());
    assert_eq!(reopened.get(&first.task_id).unwrap().status, TaskStatus::Pending);
    assert_eq!(reopened.open_counts(), (1, 0));
}

#[test]
fn bad_submissions_are_refused_with_their_reason_and_store_nothing() {
    let n = net();
    let db = MemoryDb::default();
    let tasks = n.open(&db, BTreeMap::new());
    let unknown = n.signed(0, 77, b"p", b"d");
    assert_eq!(tasks.submit(unknown, Origin::Client, 0), Err(SubmitError::UnknownDefinition(77)));
    let mut forged = n.hashed(0, b"x");
    forged.signature = n.hashed(1, b"x").signature;
    assert_eq!(tasks.submit(forged.clone(), Origin::Client, 0), Err(SubmitError::BadSignature));
    let stranger = SecretKey::from_seed(&[42; 32]).unwrap();
    let message = TaskMessage {
        performer: stranger.public_key().to_bytes().to_vec().try_into().unwrap(),
        ..n.hashed(0, b"y").message
    };
    let outsider = sign_task(&stranger, message, n.digest).unwrap();
    assert_eq!(tasks.submit(outsider, Origin::Client, 0), Err(SubmitError::NotMember));
    assert_eq!(pending_keys(&db), 0);
    assert_eq!(tasks.open_counts(), (0, 0));
    // Gossip verdicts: a forged signature is the sender's fault, a non-member is not.
    assert_eq!(tasks.validate_gossip(&encode(&forged).unwrap(), 0).unwrap_err().0, Verdict::Reject);
    assert_eq!(tasks.validate_gossip(b"\x01\x02", 0).unwrap_err().0, Verdict::Reject);
}

#[test]
fn a_wrong_sha256_proof_is_rejected_with_the_reason() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let wrong = n.signed(2, SHA, &[0; 32], b"data");
    let s = tasks.submit(wrong, Origin::Client, 0).unwrap();
    let TaskStatus::Rejected { reason } = s.status else { panic!("{:?}", s.status) };
    assert!(reason.contains("SHA-256"), "{reason}");
    assert_eq!(tasks.get(&s.task_id).unwrap().status.name(), "rejected");
    assert_eq!(tasks.open_counts(), (0, 0), "a rejected task holds no room");
}

#[test]
fn a_full_pool_refuses_new_tasks_and_drops_none() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    for i in 0..MAX_PENDING_PER_PERFORMER {
        tasks.submit(n.hashed(0, &i.to_be_bytes()), Origin::Gossip, i as u64).unwrap();
    }
    let refused = tasks.submit(n.hashed(0, b"one more"), Origin::Client, 999);
    assert!(matches!(refused, Err(SubmitError::Full(_))), "{refused:?}");
    assert_eq!(tasks.open_counts(), (MAX_PENDING_PER_PERFORMER, 0));
    // Another performer still has room.
    assert!(tasks.submit(n.hashed(1, b"other"), Origin::Client, 1000).unwrap().new);
}

fn registry(tasks: &Arc<AvsTasks>) -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    tasks.register(&mut registry).unwrap();
    registry
}

fn block_with(results: Vec<TaskResult>, proposer: u64) -> Block {
    Block {
        height: Height::new(1),
        proposer_index: OperatorIndex::new(proposer),
        body: BlockBody { tasks: results.try_into().unwrap() },
        ..Default::default()
    }
}

fn finalized(block: Block) -> FinalizedEvent {
    FinalizedEvent {
        root: [7; 32],
        block,
        certificate: Certificate::default(),
        epoch_end: None,
        // The performers' epoch: the tests' genesis set.
        operators: Arc::new(net().genesis.operators),
    }
}

#[test]
fn a_task_is_included_once_finalized_once_and_then_refused() {
    let n = net();
    let db = MemoryDb::default();
    let tasks = n.open(&db, BTreeMap::new());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let a = tasks.submit(n.hashed(1, b"a"), Origin::Client, 1).unwrap().task_id;
    let b = tasks.submit(n.hashed(2, b"b"), Origin::Client, 2).unwrap().task_id;

    // The leader takes both, oldest first, with their performers' indices.
    let performed = registry.perform(&parent, OperatorIndex::ZERO, 0);
    assert_eq!(performed.iter().map(|r| r.performer_index.get()).collect::<Vec<_>>(), vec![1, 2]);
    let block = block_with(performed.clone(), 0);
    assert_eq!(
        registry.validate_block(n.digest, &parent, &block, &Default::default(), 0),
        TaskValidity::Valid
    );
    assert_eq!(tasks.get(&a).unwrap().status, TaskStatus::Included { height: Height::new(1) });
    assert!(
        registry.perform(&parent, OperatorIndex::ZERO, 0).is_empty(),
        "in flight: not proposed again"
    );

    // Finalized: recorded with its certificate, out of the pending store.
    tasks.finalized(&finalized(block.clone()));
    let TaskStatus::Finalized { height, block_root, .. } = tasks.get(&a).unwrap().status else {
        panic!("not finalized")
    };
    assert_eq!((height, block_root), (Height::new(1), format!("0x{}", "07".repeat(32))));
    assert_eq!(tasks.get(&b).unwrap().status.name(), "finalized");
    assert_eq!(pending_keys(&db), 0);
    // A block carrying it again is invalid.
    let again = block_with(vec![performed[0].clone()], 0);
    let TaskValidity::Invalid(reason) =
        registry.validate_block(n.digest, &parent, &again, &Default::default(), 0)
    else {
        panic!("a finalized task was accepted again")
    };
    assert!(reason.contains("already finalized"), "{reason}");
    // The record outlives a restart.
    drop(tasks);
    let reopened = n.open(&db, BTreeMap::new());
    assert_eq!(reopened.get(&a).unwrap().status.name(), "finalized");
}

#[test]
fn a_task_in_a_block_that_lost_its_height_is_pending_again() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let id = tasks.submit(n.hashed(3, b"c"), Origin::Client, 1).unwrap().task_id;
    let block = block_with(registry.perform(&parent, OperatorIndex::ZERO, 0), 0);
    assert_eq!(
        registry.validate_block(n.digest, &parent, &block, &Default::default(), 0),
        TaskValidity::Valid
    );
    // Another block (without it) is finalized at that height.
    tasks.finalized(&finalized(block_with(Vec::new(), 1)));
    assert_eq!(tasks.get(&id).unwrap().status, TaskStatus::Pending);
    assert_eq!(registry.perform(&parent, OperatorIndex::ZERO, 0).len(), 1, "proposed again");
}

#[test]
fn listing_pages_newest_first_by_definition_and_status() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    for i in 0..5u64 {
        tasks.submit(n.hashed(0, &i.to_be_bytes()), Origin::Client, 100 + i).unwrap();
    }
    tasks.submit(n.signed(1, SHA, &[0; 32], b"bad"), Origin::Client, 200).unwrap();
    let (page1, token) = tasks.page(&ListFilter::parse(None, None, "", 2).unwrap());
    assert_eq!(page1.iter().map(|t| t.received_ms).collect::<Vec<_>>(), vec![200, 104]);
    let (page2, _) = tasks.page(&ListFilter::parse(None, None, &token, 2).unwrap());
    assert_eq!(page2.iter().map(|t| t.received_ms).collect::<Vec<_>>(), vec![103, 102]);
    // The last page has no next token.
    let (all, end) = tasks.page(&ListFilter::parse(None, None, &token, 10).unwrap());
    assert_eq!((all.len(), end.as_str()), (4, ""));
    let (rejected, _) = tasks.list(&ListFilter {
        status: Some("rejected".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].data, "0x", "a refused task's payload is not kept");
    let (other, _) = tasks.list(&ListFilter {
        task_definition_id: Some(SERVICE),
        limit: 10,
        ..Default::default()
    });
    assert!(other.is_empty());
}

#[test]
fn a_performer_that_leaves_the_set_has_its_pending_tasks_rejected() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let id = tasks.submit(n.hashed(3, b"late"), Origin::Client, 1).unwrap().task_id;
    let mut smaller = n.genesis.operators.clone();
    smaller.operators =
        smaller.operators.iter().take(3).cloned().collect::<Vec<_>>().try_into().unwrap();
    tasks.set_operators(Arc::new(KeyTable::new(Epoch::new(1), &smaller, n.digest).unwrap()));
    let TaskStatus::Rejected { reason } = tasks.get(&id).unwrap().status else { panic!() };
    assert!(reason.contains("left the operator set"), "{reason}");
}

/// A validation service on 127.0.0.1 that answers each request with the next of `answers`
/// (status, body), and counts the requests.
async fn service(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
    use axum::http::StatusCode as Code;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let answers = Arc::new(answers);
    let app = axum::Router::new().route(
        "/task/validate",
        axum::routing::post(move |axum::Json(body): axum::Json<service::ValidationRequest>| {
            let n = counter.fetch_add(1, AtomicOrdering::SeqCst);
            let answers = Arc::clone(&answers);
            async move {
                assert!(body.proof_of_task.starts_with("0x") && body.task_id.len() == 66);
                let (code, text) = answers[n.min(answers.len() - 1)];
                if text == "slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                (Code::from_u16(code).unwrap(), text.to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/task/validate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

fn request() -> service::ValidationRequest {
    service::ValidationRequest {
        task_definition_id: 2,
        proof_of_task: "0x01".into(),
        data: "0x02".into(),
        performer: format!("0x{}", "11".repeat(20)),
        task_id: format!("0x{}", "22".repeat(32)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_answer_maps_to_valid_invalid_or_not_yet_never_to_valid_by_default() {
    let cases: Vec<((u16, &'static str), &str)> = vec![
        ((200, r#"{"data":true,"error":false,"message":null}"#), "valid"),
        ((200, r#"{"data":false,"error":false,"message":"wrong price"}"#), "invalid"),
        ((200, r#"{"data":true,"error":true,"message":"db down"}"#), "not yet"),
        ((500, r#"{"data":true,"error":false}"#), "not yet"),
        ((200, "not json"), "not yet"),
        ((200, "slow"), "not yet"),
    ];
    for (answer, expected) in cases {
        let (url, _) = service(vec![answer]).await;
        let got = tokio::task::spawn_blocking(move || {
            service::ask(&url, &request(), Duration::from_millis(300))
        })
        .await
        .unwrap();
        let name = match &got {
            TaskValidity::Valid => "valid",
            TaskValidity::Invalid(reason) => {
                assert!(reason.contains("wrong price"), "{reason}");
                "invalid"
            }
            TaskValidity::NotYet(_) => "not yet",
        };
        assert_eq!(name, expected, "{answer:?}: {got:?}");
    }
    // Nobody listening.
    let closed = tokio::task::spawn_blocking(|| {
        service::ask("http://127.0.0.1:9/task/validate", &request(), Duration::from_millis(300))
    })
    .await
    .unwrap();
    assert!(matches!(closed, TaskValidity::NotYet(_)), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_task_waits_for_its_service_and_is_retried_until_it_answers() {
    let n = net();
    // First an error, then valid.
    let (url, asked) =
        service(vec![(503, "{}"), (200, r#"{"data":true,"error":false,"message":null}"#)]).await;
    let tasks = n.open(&MemoryDb::default(), BTreeMap::from([(SERVICE, url)]));
    let shutdown = CancellationToken::new();
    tasks.spawn_validation(shutdown.clone());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let submitted = n.signed(2, SERVICE, b"price", b"42");
    let id = tasks.submit(submitted, Origin::Client, 1).unwrap().task_id;
    // Until the service said valid, the leader does not propose it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let performed = loop {
        let performed =
            tokio::task::block_in_place(|| registry.perform(&parent, OperatorIndex::ZERO, 0));
        if !performed.is_empty() || std::time::Instant::now() > deadline {
            break performed;
        }
        tokio::time::timeout(Duration::from_millis(100), tasks.changed()).await.ok();
    };
    assert_eq!(performed.len(), 1, "valid once the service answered");
    assert!(asked.load(AtomicOrdering::SeqCst) >= 2, "retried after the 503");
    assert_eq!(tasks.get(&id).unwrap().status, TaskStatus::Pending);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_its_service_refuses_is_rejected_and_never_proposed() {
    let n = net();
    let (url, _) =
        service(vec![(200, r#"{"data":false,"error":false,"message":"not a price"}"#)]).await;
    let tasks = n.open(&MemoryDb::default(), BTreeMap::from([(SERVICE, url)]));
    let shutdown = CancellationToken::new();
    tasks.spawn_validation(shutdown.clone());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let result = {
        let signed = n.signed(1, SERVICE, b"p", b"bad");
        let id = tasks.submit(signed.clone(), Origin::Client, 1).unwrap().task_id;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tasks.get(&id).unwrap().status.name() != "rejected"
            && std::time::Instant::now() < deadline
        {
            tokio::time::timeout(Duration::from_millis(100), tasks.changed()).await.ok();
        }
        let TaskStatus::Rejected { reason } = tasks.get(&id).unwrap().status else {
            panic!("not rejected")
        };
        assert!(reason.contains("not a price"), "{reason}");
        TaskResult {
            task_definition_id: SERVICE,
            performer_index: OperatorIndex::new(1),
            proof_of_task: signed.message.proof_of_task,
            data: signed.message.data,
            signature: signed.signature,
        }
    };
    assert!(
        tokio::task::block_in_place(|| registry.perform(&parent, OperatorIndex::ZERO, 0))
            .is_empty()
    );
    // Another leader's block carrying it is invalid here.
    let verdict = tokio::task::block_in_place(|| {
        registry.validate_block(
            n.digest,
            &parent,
            &block_with(vec![result], 0),
            &Default::default(),
            0,
        )
    });
    assert!(matches!(verdict, TaskValidity::Invalid(_)), "{verdict:?}");
    shutdown.cancel();
}

#[test]
fn without_a_configured_service_a_service_task_is_never_valid() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let signed = n.signed(1, SERVICE, b"p", b"d");
    tasks.submit(signed.clone(), Origin::Client, 1).unwrap();
    assert!(registry.perform(&parent, OperatorIndex::ZERO, 0).is_empty());
    let result = TaskResult {
        task_definition_id: SERVICE,
        performer_index: OperatorIndex::new(1),
        proof_of_task: signed.message.proof_of_task,
        data: signed.message.data,
        signature: signed.signature,
    };
    assert!(matches!(
        registry.validate_block(
            n.digest,
            &parent,
            &block_with(vec![result], 0),
            &Default::default(),
            0,
        ),
        TaskValidity::NotYet(_)
    ));
}

#[test]
fn a_pending_task_not_included_in_time_is_dropped_and_reported() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let old = tasks.submit(n.hashed(0, b"old"), Origin::Client, 1).unwrap().task_id;
    let now = crate::node::now_ms();
    let fresh = tasks.submit(n.hashed(0, b"fresh"), Origin::Client, now).unwrap().task_id;
    tasks.finalized(&finalized(block_with(Vec::new(), 1)));
    let TaskStatus::Rejected { reason } = tasks.get(&old).unwrap().status else {
        panic!("an expired task is still open")
    };
    assert!(reason.contains("not included within"), "{reason}");
    assert_eq!(tasks.get(&fresh).unwrap().status, TaskStatus::Pending);
    assert_eq!(tasks.open_counts(), (1, 0));
}

#[test]
fn a_task_refused_here_is_not_forwarded_over_gossip() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let wrong = encode(&n.signed(2, SHA, &[0; 32], b"data")).unwrap();
    let (verdict, reason) = tasks.validate_gossip(&wrong, 0).unwrap_err();
    assert_eq!(verdict, Verdict::Ignore, "{reason}");
}

#[test]
fn clients_submissions_are_bounded_by_a_signature_budget() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    // Forged signatures: each costs a pairing and stores nothing.
    let forged = |i: u64| {
        let mut s = n.hashed(0, &i.to_be_bytes());
        s.signature = n.hashed(1, b"other").signature;
        s
    };
    // The performer's bucket holds 64 and refills 16 a second: the refusals come well before
    // 1000 attempts, and every one before them was checked.
    let outcomes: Vec<SubmitError> =
        (0..1000).map(|i| tasks.submit(forged(i), Origin::Client, 0).unwrap_err()).collect();
    let busy = outcomes.iter().position(|e| matches!(e, SubmitError::Busy(_))).unwrap();
    assert!(busy >= 64, "the burst is 64: {busy}");
    assert!(outcomes[..busy].iter().all(|e| *e == SubmitError::BadSignature));
    // Gossip is not a client: its rate is the validation slots'.
    assert_eq!(tasks.submit(forged(99), Origin::Gossip, 0), Err(SubmitError::BadSignature));
}

#[test]
fn a_clients_pending_task_is_published_again_a_peers_is_not() {
    let n = net();
    let tasks = n.open(&MemoryDb::default(), BTreeMap::new());
    let mut published = tasks.gossip_rx.lock().unwrap().take().unwrap();
    tasks.submit(n.hashed(0, b"mine"), Origin::Client, 1000).unwrap();
    tasks.submit(n.hashed(1, b"a peer's"), Origin::Gossip, 1000).unwrap();
    assert!(published.try_recv().is_ok(), "published when taken");
    assert!(published.try_recv().is_err(), "a peer's task is on the mesh already");
    tasks.republish(1000 + REPUBLISH_MS);
    assert!(published.try_recv().is_err(), "not yet due");
    tasks.republish(1001 + REPUBLISH_MS);
    let again: SignedTaskMessage = decode(&published.try_recv().unwrap()).unwrap();
    assert_eq!(again, n.hashed(0, b"mine"));
    assert!(published.try_recv().is_err(), "only this node's client's task");
}

#[test]
fn a_submission_written_after_its_task_finished_is_not_pending_after_a_restart() {
    let n = net();
    let db = MemoryDb::default();
    let tasks = n.open(&db, BTreeMap::new());
    let signed = n.signed(2, SHA, &[0; 32], b"refused");
    let id = tasks.submit(signed.clone(), Origin::Client, 5).unwrap().task_id;
    assert_eq!(tasks.get(&id).unwrap().status.name(), "rejected");
    // The race: a submission's pending entry lands after the task's record.
    let store = MemoryStore::open(&db).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Column::Tasks, pending_key(&id), encode_pending(5, &signed).unwrap());
    store.write(batch, Durability::Buffered).unwrap();
    drop(tasks);
    let reopened = n.open(&db, BTreeMap::new());
    assert_eq!(reopened.get(&id).unwrap().status.name(), "rejected");
    assert_eq!(reopened.open_counts(), (0, 0));
    assert_eq!(pending_keys(&db), 0, "the stale entry is gone");
}

/// Review M2: the finality's own batch records its tasks, so a crash right after it cannot
/// bring a finalized task back as pending.
#[test]
fn a_finalized_task_is_recorded_in_the_finalitys_batch() {
    let n = net();
    let db = MemoryDb::default();
    let tasks = n.open(&db, BTreeMap::new());
    let registry = registry(&tasks);
    let parent = genesis_state(&n.genesis);
    let id = tasks.submit(n.hashed(1, b"kept"), Origin::Client, 1).unwrap().task_id;
    let block = block_with(registry.perform(&parent, OperatorIndex::ZERO, 0), 0);
    let mut batch = WriteBatch::new();
    tasks.record_finality(
        &block,
        &[9; 32],
        &Certificate::default(),
        &n.genesis.operators,
        &mut batch,
    );
    MemoryStore::open(&db).unwrap().write(batch, Durability::Sync).unwrap();
    // The node stops before the driver hears of the finality.
    drop(tasks);
    let reopened = n.open(&db, BTreeMap::new());
    let TaskStatus::Finalized { height, block_root, .. } = reopened.get(&id).unwrap().status else {
        panic!("a finalized task came back pending")
    };
    assert_eq!((height, block_root), (Height::new(1), format!("0x{}", "09".repeat(32))));
    assert_eq!(reopened.open_counts(), (0, 0));
    assert_eq!(reopened.get(&id).unwrap().data, hex0x(b"kept"), "the record keeps the payload");
}
