//! The devnet's example client (issue 15, item 7): on the devnet's local chain it deploys a
//! small "ping" contract, signs a wallet in on node 0 and creates two automations: a cron one
//! calling node 1's health endpoint every 10 s, and an event one that reads the contract each
//! time it emits a ping (the devnet pings every 15 s). [`Progress`] is what the devnet prints.
//! The tests use the same contract.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use avs_proto::automation_v1 as pb;
use avs_proto::automation_v1::automation_service_client::AutomationServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The ping contract's runtime, hand-assembled (66 bytes): a call with data stores its first
/// word in slot 0 and emits the data under [`PING_TOPIC`]; a call without data returns slot 0.
pub const PING_RUNTIME_HEX: &str = concat!(
    "3615603657",                                                       // size == 0: to 0x36
    "6000356000553660006000377f",                                       // store, copy, PUSH32
    "5049ab1f2eac1c8c1b8bb4e50b4e3bb0e7f6a1e3c5a3d2f1e0c9b8a7f6e5d4c3", // the topic
    "366000a1",                                                         // LOG1(0, size, topic)
    "5b60005460005260206000f3",                                         // 0x36: return slot 0
);
/// The ping event's topic 0.
pub const PING_TOPIC: [u8; 32] =
    alloy::primitives::hex!("5049ab1f2eac1c8c1b8bb4e50b4e3bb0e7f6a1e3c5a3d2f1e0c9b8a7f6e5d4c3");
/// Copies the 66-byte runtime to memory and returns it.
const PING_CONSTRUCTOR_HEX: &str = "604280600b6000396000f3";

/// The ping contract's creation code.
pub fn ping_init_code() -> Vec<u8> {
    let hex = [PING_CONSTRUCTOR_HEX, PING_RUNTIME_HEX].concat();
    alloy::primitives::hex::decode(hex).expect("constant hex")
}

/// `value` as one 32-byte big-endian word.
pub fn word(value: u64) -> Vec<u8> {
    U256::from(value).to_be_bytes::<32>().to_vec()
}

/// Deploys the ping contract from `from` (an unlocked account); its address.
pub async fn deploy_ping(provider: &DynProvider, from: Address) -> anyhow::Result<Address> {
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_from(from)
        .with_deploy_code(ping_init_code());
    let receipt = provider.send_transaction(tx).await?.get_receipt().await?;
    receipt.contract_address.ok_or_else(|| anyhow::anyhow!("the deployment made no contract"))
}

/// Sends `data` to `to` from `from` and waits for it to be mined.
pub async fn send(
    provider: &DynProvider,
    from: Address,
    to: Address,
    data: Vec<u8>,
) -> anyhow::Result<()> {
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_input(data);
    let receipt = provider.send_transaction(tx).await?.get_receipt().await?;
    anyhow::ensure!(receipt.status(), "the transaction to {to} reverted");
    Ok(())
}

/// `Bearer` metadata on `message`.
/// An automation `name` on the cron `expression` whose workflow is one REST GET of `url`,
/// named `step`.
pub fn cron_get(name: &str, expression: &str, step: &str, url: &str) -> pb::TaskDefinition {
    pb::TaskDefinition {
        name: name.into(),
        trigger: Some(pb::Trigger {
            kind: Some(pb::trigger::Kind::Cron(pb::CronTrigger { expression: expression.into() })),
        }),
        nodes: vec![pb::WorkflowNode {
            name: step.into(),
            kind: Some(pb::workflow_node::Kind::Rest(pb::RestCall {
                url: url.into(),
                method: "GET".into(),
                body: String::new(),
            })),
        }],
    }
}

pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Signs `wallet` in on `client`'s node; the bearer token.
pub async fn sign_in(
    client: &mut AutomationServiceClient<Channel>,
    wallet: &PrivateKeySigner,
) -> anyhow::Result<String> {
    let owner = wallet.address().to_vec();
    let challenge = client.get_challenge(pb::GetChallengeRequest { owner }).await?.into_inner();
    let signature = wallet.sign_message_sync(challenge.message.as_bytes())?.as_bytes().to_vec();
    let request = pb::GetKeyRequest { message: challenge.message, signature };
    Ok(client.get_key(request).await?.into_inner().token)
}

/// The example client's state, for the devnet's progress lines.
#[derive(Default)]
pub struct Progress {
    pub line: Mutex<Option<String>>,
}

/// Starts the example client: `rpc` is the devnet's chain (anvil, unlocked accounts),
/// `grpc` node 0's gRPC URL, `health` node 1's health URL.
pub fn spawn(
    rpc: String,
    chain_id: u64,
    grpc: String,
    health: String,
    shutdown: CancellationToken,
) -> Arc<Progress> {
    let progress = Arc::new(Progress::default());
    let out = progress.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            result = run(&rpc, chain_id, &grpc, &health, &out) => {
                if let Err(e) = result {
                    *out.line.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(format!("automation example stopped: {e:#}"));
                }
            }
        }
    });
    progress
}

async fn run(
    rpc: &str,
    chain_id: u64,
    grpc: &str,
    health: &str,
    progress: &Progress,
) -> anyhow::Result<()> {
    let provider = ProviderBuilder::new().connect_http(rpc.parse()?).erased();
    let from = *provider.get_accounts().await?.first().context("anvil has no account")?;
    let ping = deploy_ping(&provider, from).await?;
    // The nodes must be up and watching the chain before a chain trigger is accepted.
    let mut client = loop {
        if let Ok(client) = AutomationServiceClient::connect(grpc.to_owned()).await {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wallet = PrivateKeySigner::from_slice(&[0x11; 32])?;
    let token = sign_in(&mut client, &wallet).await?;
    let cron = cron_get("health every 10 s", "*/10 * * * * *", "health", health);
    let event = pb::TaskDefinition {
        name: "read each ping".into(),
        trigger: Some(pb::Trigger {
            kind: Some(pb::trigger::Kind::Event(pb::EventTrigger {
                chain_id,
                address: ping.to_vec(),
                topics: vec![PING_TOPIC.to_vec()],
                confirmations: 0,
            })),
        }),
        nodes: vec![pb::WorkflowNode {
            name: "read_ping".into(),
            kind: Some(pb::workflow_node::Kind::ContractRead(pb::ContractCall {
                chain_id,
                address: ping.to_vec(),
                calldata: Vec::new(),
                append_trigger_data: false,
            })),
        }],
    };
    let mut ids = Vec::new();
    for definition in [cron, event] {
        let created = loop {
            let request = pb::CreateTaskRequest { definition: Some(definition.clone()) };
            match client.create_task(with_token(&token, request)).await {
                Ok(task) => break task.into_inner(),
                // The chain watcher starts with the node: the event one waits for it.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(status) => {
                    anyhow::bail!("creating {:?}: {}", definition.name, status.message())
                }
            }
        };
        ids.push(created.id);
    }
    println!(
        "automation example: wallet {} created a cron automation (node1's health every 10 s) and \
         an event one (reads the ping contract {ping} at each ping) on node 0",
        wallet.address()
    );
    let mut pings = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticker.tick().await;
        pings += 1;
        if pings.is_multiple_of(3) {
            send(&provider, from, ping, word(pings / 3)).await?;
        }
        let mut parts = Vec::new();
        for (what, id) in ["cron", "event"].iter().zip(&ids) {
            let request = pb::ListExecutionsRequest {
                id: id.clone(),
                page_size: 100,
                page_token: Vec::new(),
            };
            let Ok(answer) = client.list_executions(with_token(&token, request)).await else {
                continue;
            };
            let executions = answer.into_inner().executions;
            let succeeded = executions
                .iter()
                .filter(|e| e.status == i32::from(pb::ExecutionStatus::Succeeded))
                .count();
            parts.push(format!("{what} fired {} ({succeeded} succeeded)", executions.len()));
        }
        *progress.line.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("automations: {}; {} pings sent", parts.join(", "), pings / 3));
    }
}
