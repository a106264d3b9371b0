//! An example AVS, end to end: the "hash chain" task, its validation service and a performer.
//!
//! The task is verifiable compute: `data = seed (32 bytes) ‖ rounds (uint32, big-endian)`,
//! `proof_of_task = SHA-256 applied `rounds` times to `seed``, at most [`MAX_ROUNDS`] rounds.
//! The validation service (`avs-node example-avs serve`) answers the protocol's
//! `POST /task/validate` (docs/protocol.md, 7.3) by recomputing the chain; the performer
//! (`avs-node example-avs perform`, or the devnet's own loop) computes tasks, signs them with
//! the operator's BLS key and submits them over gRPC. An AVS builder replaces [`check`] with
//! their own logic and keeps the rest.

use std::net::SocketAddr;
use std::time::Duration;

use avs_consensus::bls::SecretKey;
use avs_consensus::signing::NetworkDigest;
use avs_consensus::types::{SignedTaskMessage, TaskMessage, byte_list};
use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::avs::service::{ValidationAnswer, ValidationRequest};

/// The longest chain the service accepts (bounds its work per request).
pub const MAX_ROUNDS: u32 = 100_000;
/// The path the service answers on.
pub const VALIDATE_PATH: &str = "/task/validate";

/// SHA-256 applied `rounds` times to `seed`.
pub fn chain(seed: &[u8; 32], rounds: u32) -> [u8; 32] {
    let mut value = *seed;
    for _ in 0..rounds {
        value = Sha256::digest(value).into();
    }
    value
}

/// A task: (`proof_of_task`, `data`).
pub fn perform(seed: [u8; 32], rounds: u32) -> (Vec<u8>, Vec<u8>) {
    let data = [seed.as_slice(), &rounds.to_be_bytes()].concat();
    (chain(&seed, rounds).to_vec(), data)
}

/// The AVS's own check of a result.
pub fn check(proof_of_task: &[u8], data: &[u8]) -> Result<(), String> {
    let (seed, rounds) = data.split_first_chunk::<32>().ok_or("data shorter than a seed")?;
    let rounds: [u8; 4] = rounds.try_into().map_err(|_| "data is not seed ‖ uint32 rounds")?;
    let rounds = u32::from_be_bytes(rounds);
    if rounds > MAX_ROUNDS {
        return Err(format!("{rounds} rounds; at most {MAX_ROUNDS}"));
    }
    if chain(seed, rounds).as_slice() != proof_of_task {
        return Err("proof_of_task is not the hash chain of the seed".into());
    }
    Ok(())
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text.strip_prefix("0x").ok_or("expected 0x hex")?).map_err(|e| e.to_string())
}

async fn validate(Json(request): Json<Value>) -> Json<ValidationAnswer> {
    let answer = match serde_json::from_value::<ValidationRequest>(request) {
        Err(e) => ValidationAnswer { data: false, error: true, message: Some(e.to_string()) },
        Ok(r) => match (unhex(&r.proof_of_task), unhex(&r.data)) {
            (Ok(proof), Ok(data)) => match check(&proof, &data) {
                Ok(()) => ValidationAnswer { data: true, error: false, message: None },
                Err(why) => ValidationAnswer { data: false, error: false, message: Some(why) },
            },
            _ => ValidationAnswer { data: false, error: true, message: Some("bad hex".into()) },
        },
    };
    Json(answer)
}

/// The validation service's routes.
pub fn router() -> axum::Router {
    axum::Router::new()
        .route(VALIDATE_PATH, post(validate))
        .route("/health", axum::routing::get(|| async { Json(json!({ "status": "ok" })) }))
}

/// Serves the validation service on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, path = VALIDATE_PATH, "example AVS validation service");
    axum::serve(listener, router()).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Signs a task as its performer (operator key `key`).
pub fn sign(
    key: &SecretKey,
    task_definition_id: u16,
    proof_of_task: &[u8],
    data: &[u8],
    digest: NetworkDigest,
) -> anyhow::Result<SignedTaskMessage> {
    let message = TaskMessage {
        task_definition_id,
        performer: key
            .public_key()
            .to_bytes()
            .to_vec()
            .try_into()
            .map_err(|_| anyhow::anyhow!("key length"))?,
        proof_of_task: byte_list(proof_of_task)?,
        data: byte_list(data)?,
    };
    Ok(avs_consensus::task::sign_task(key, message, digest)?)
}

/// Submits `signed` to the node's gRPC `TaskService`; the node's answer: (task id, status).
pub async fn submit(
    grpc_url: &str,
    signed: &SignedTaskMessage,
) -> anyhow::Result<(String, String)> {
    use avs_proto::v1::task_service_client::TaskServiceClient;
    let mut client = TaskServiceClient::connect(grpc_url.to_owned()).await?;
    let answer =
        client.submit_task(crate::grpc::tasks::submission_to_proto(signed)).await?.into_inner();
    Ok((crate::avs::hex0x(&answer.task_id), answer.status))
}

/// `avs-node example-avs perform`: `count` tasks (forever when 0), one every `every`.
pub async fn perform_loop(
    grpc_url: &str,
    key: &SecretKey,
    task_definition_id: u16,
    digest: NetworkDigest,
    count: u64,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut n = 0u64;
    while count == 0 || n < count {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let (proof, data) = perform(seed, 1000);
        let signed = sign(key, task_definition_id, &proof, &data, digest)?;
        match submit(grpc_url, &signed).await {
            Ok((id, status)) => println!("submitted task {id}: {status}"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "submitting a task failed"),
        }
        n += 1;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    Ok(())
}

/// Where the service listens by default.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4002))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_accepts_a_performed_task_and_nothing_else() {
        let (proof, data) = perform([7; 32], 10);
        assert_eq!(check(&proof, &data), Ok(()));
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(check(&wrong, &data).unwrap_err().contains("hash chain"));
        assert!(check(&proof, &data[..35]).is_err());
        let (_, too_long) = perform([7; 32], MAX_ROUNDS + 1);
        assert!(check(&proof, &too_long).unwrap_err().contains("at most"));
        // Zero rounds: the seed itself.
        assert_eq!(check(&[7; 32], &perform([7; 32], 0).1), Ok(()));
    }
}

/// The example AVS as the devnet runs it: the validation service in-process, a local anvil
/// with the `AttestationCenter` contract when anvil is installed (`scripts/devnet` installs
/// it), and a performer that submits one task every [`DEVNET_TASK_EVERY`], by each genesis
/// operator in turn.
pub mod devnet {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use alloy::network::TransactionBuilder;
    use alloy::primitives::{Address, U256};
    use alloy::providers::{Provider, ProviderBuilder};
    use anyhow::Context;
    use tokio::process::{Child, Command};

    use super::*;
    use crate::settlement::{AttestationCenter, operator_keys};

    /// The example task's id in the devnet's genesis.
    pub const TASK_ID: u16 = 1;
    pub const TASK_NAME: &str = "hash-chain";
    /// The devnet chain's id (anvil's default).
    pub const CHAIN_ID: u64 = 31337;
    /// How often the devnet's performer submits a task.
    pub const DEVNET_TASK_EVERY: Duration = Duration::from_secs(3);

    /// The npm prefix `scripts/setup` (and the tests) install anvil into.
    pub fn npm_prefix() -> Option<PathBuf> {
        Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/avs-node/npm"))
    }

    /// Where anvil's binary sits under [`npm_prefix`].
    pub const ANVIL_IN_PREFIX: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

    /// The installed anvil, if any.
    pub fn anvil_path() -> Option<PathBuf> {
        let bin = npm_prefix()?.join(ANVIL_IN_PREFIX);
        bin.is_file().then_some(bin)
    }

    /// What the devnet's AVS started.
    pub struct Started {
        /// `--task-service` and, with a chain, the settlement flags, for every node.
        pub node_args: Vec<String>,
        pub submitted: Arc<AtomicU64>,
        /// Keeps anvil running; killed on drop.
        _anvil: Option<Child>,
        pub chain: Option<String>,
    }

    /// Starts the service and, when anvil is there, a chain with the contract for `genesis`
    /// (whose operators, and `extra` addresses, are funded to pay for settlements).
    pub async fn start(
        dir: &Path,
        genesis: &avs_consensus::types::GenesisConfig,
        extra: &[[u8; 20]],
        shutdown: CancellationToken,
    ) -> anyhow::Result<Started> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{VALIDATE_PATH}", listener.local_addr()?);
        tokio::spawn(serve(listener, shutdown.clone()));
        let mut node_args = vec!["--task-service".to_owned(), format!("{TASK_ID}={url}")];
        println!("example AVS: task {TASK_ID} ({TASK_NAME}) validated by {url}");
        let Some(anvil) = anvil_path() else {
            println!(
                "  on-chain settlement off: anvil not installed (scripts/devnet installs it into \
                 ~/.cache/avs-node/npm)"
            );
            return Ok(Started { node_args, submitted: Arc::default(), _anvil: None, chain: None });
        };
        let port = crate::devnet::free_port()?;
        let log = std::fs::File::create(dir.join("anvil.log"))?;
        let child = Command::new(anvil)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--hardfork", "prague"])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let rpc = format!("http://127.0.0.1:{port}");
        let provider = ProviderBuilder::new().connect_http(rpc.parse()?).erased();
        let mut accounts = Vec::new();
        for _ in 0..100 {
            if let Ok(found) = provider.get_accounts().await
                && !found.is_empty()
            {
                accounts = found;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deployer = *accounts.first().context("anvil did not start")?;
        let digest = avs_consensus::signing::network_digest(genesis)?;
        let set = operator_keys(&genesis.operators)?;
        let contract =
            AttestationCenter::deploy_builder(&provider, digest.into(), set.keys, set.powers)
                .from(deployer)
                .deploy()
                .await?;
        let payees =
            genesis.operators.operators.iter().map(|op| op.address).chain(extra.iter().copied());
        for address in payees {
            let tx = alloy::rpc::types::TransactionRequest::default()
                .with_from(deployer)
                .with_to(Address::from(address))
                .with_value(U256::from(10u128.pow(20)));
            provider.send_transaction(tx).await?.get_receipt().await?;
        }
        println!("  settled on a local anvil at {rpc}: AttestationCenter {contract}");
        node_args.extend([
            "--settlement-rpc".to_owned(),
            rpc.clone(),
            "--settlement-contract".to_owned(),
            contract.to_string(),
        ]);
        Ok(Started { node_args, submitted: Arc::default(), _anvil: Some(child), chain: Some(rpc) })
    }

    /// Submits one task every [`DEVNET_TASK_EVERY`], by operator `k mod n` to its own node.
    pub fn spawn_performer(
        keys: Vec<(SecretKey, String)>,
        digest: NetworkDigest,
        submitted: Arc<AtomicU64>,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut k = 0usize;
            let mut ticker = tokio::time::interval(DEVNET_TASK_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let Some((key, grpc)) = keys.get(k % keys.len().max(1)) else { return };
                k = k.wrapping_add(1);
                let mut seed = [0u8; 32];
                if getrandom::fill(&mut seed).is_err() {
                    continue;
                }
                let (proof, data) = perform(seed, 1000);
                let Ok(signed) = sign(key, TASK_ID, &proof, &data, digest) else { continue };
                if submit(grpc, &signed).await.is_ok() {
                    submitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}
