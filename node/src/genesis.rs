//! The genesis file: JSON for people, converted to the consensus's SSZ `GenesisConfig`.
//!
//! ```json
//! {
//!   "network_name": "avs-devnet",
//!   "genesis_time": 1767225600,
//!   "slot_duration_ms": 4000,
//!   "intervals_per_slot": 5,
//!   "operators": [
//!     { "address": "0x…", "bls_pubkey": "0x…", "pop": "0x…", "power": 100, "peer_id": "12D3…" }
//!   ]
//! }
//! ```
//!
//! Loading checks everything a node would otherwise trip over later: every proof of possession,
//! unique addresses and keys, at least one operator with power, and a valid slot clock. The
//! network digest (and so every topic and signature domain) is derived from the SSZ form, so two
//! nodes agree on the network exactly when they load byte-identical genesis values.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use avs_consensus::clock::SlotClock;
use avs_consensus::types::{
    AvsTaskDefinition, GenesisConfig, MAX_TASK_DEFINITIONS, Operator, OperatorSet, Validation,
    byte_list,
};
use serde::{Deserialize, Serialize};
use ssz_rs::prelude::{List, Vector};

use crate::keys::{OperatorPublic, parse_hex_array};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub network_name: String,
    pub genesis_time: u64,
    pub slot_duration_ms: u64,
    pub intervals_per_slot: u64,
    pub operators: Vec<GenesisOperator>,
    /// The network's AVS tasks (docs/protocol.md, 7.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<GenesisTask>,
}

/// An AVS task definition in the genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisTask {
    /// 1 to 9999.
    pub id: u16,
    pub name: String,
    /// `service` (each attester's own validation service) or `sha256` (built in).
    pub validation: String,
}

impl std::str::FromStr for GenesisTask {
    type Err = anyhow::Error;

    /// `ID:NAME:VALIDATION`, as `avs-node genesis --task` takes it.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut parts = s.splitn(3, ':');
        let (Some(id), Some(name), Some(validation)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("expected ID:NAME:VALIDATION, got {s:?}");
        };
        Ok(Self {
            id: id.parse().with_context(|| format!("task id {id:?}"))?,
            name: name.to_owned(),
            validation: validation.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisOperator {
    pub address: String,
    pub bls_pubkey: String,
    pub pop: String,
    pub power: u64,
    /// Informational: where to find this operator on the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
}

impl GenesisOperator {
    pub fn from_public(public: &OperatorPublic, power: u64) -> Self {
        Self {
            address: public.address.clone(),
            bls_pubkey: public.bls_pubkey.clone(),
            pop: public.pop.clone(),
            power,
            peer_id: Some(public.peer_id.clone()),
        }
    }
}

/// Slots shorter than this suit only networks on one host: `genesis` says so.
pub const SHORT_SLOT_MS: u64 = 2000;

impl GenesisFile {
    /// `avs-node genesis`: the operators' public files (`KEYS_DIR:POWER` entries) and the
    /// network's time settings, validated. Without `--genesis-time`, 30 s after `now_ms`.
    pub fn from_args(args: &crate::cli::GenesisArgs, now_ms: u64) -> anyhow::Result<Self> {
        let mut operators = Vec::with_capacity(args.operators.len());
        for entry in &args.operators {
            let (dir, power) = entry
                .rsplit_once(':')
                .with_context(|| format!("--operator {entry:?}: expected KEYS_DIR:POWER"))?;
            let power: u64 =
                power.parse().with_context(|| format!("--operator {entry:?}: bad power"))?;
            let public = crate::keys::load_public(Path::new(dir))
                .with_context(|| format!("--operator {entry:?}"))?;
            operators.push(GenesisOperator::from_public(&public, power));
        }
        let genesis = GenesisFile {
            network_name: args.network_name.clone(),
            genesis_time: args.genesis_time.unwrap_or(now_ms / 1000 + 30),
            slot_duration_ms: args.slot_ms,
            intervals_per_slot: args.intervals_per_slot,
            operators,
            tasks: args.tasks.clone(),
        };
        genesis.to_config()?;
        Ok(genesis)
    }

    /// What to tell whoever builds a genesis with a slot under [`SHORT_SLOT_MS`].
    pub fn short_slot_note(&self) -> Option<String> {
        (self.slot_duration_ms < SHORT_SLOT_MS).then(|| {
            format!(
                "a {} ms slot leaves {} ms per interval for every vote to cross the network; \
                 use it only for networks on one host",
                self.slot_duration_ms,
                self.slot_duration_ms / self.intervals_per_slot.max(1)
            )
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading genesis file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("genesis file {} is not valid", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing genesis file {}", path.display()))
    }

    /// The AVS task definitions in their SSZ form, checked by the protocol's rules.
    fn task_definitions(&self) -> anyhow::Result<List<AvsTaskDefinition, MAX_TASK_DEFINITIONS>> {
        let mut out = Vec::with_capacity(self.tasks.len());
        for (index, task) in self.tasks.iter().enumerate() {
            let validation = Validation::parse(&task.validation).with_context(|| {
                format!(
                    "tasks[{index}].validation {:?}: expected \"service\" or \"sha256\"",
                    task.validation
                )
            })?;
            out.push(AvsTaskDefinition {
                id: task.id,
                name: byte_list(task.name.as_bytes())
                    .map_err(|_| anyhow::anyhow!("tasks[{index}].name is longer than 64 bytes"))?,
                validation: validation.as_u8(),
            });
        }
        avs_consensus::task::check_definitions(&out).map_err(|e| anyhow::anyhow!("tasks: {e}"))?;
        List::try_from(out)
            .map_err(|_| anyhow::anyhow!("at most {MAX_TASK_DEFINITIONS} task definitions"))
    }

    /// Validates and converts to the consensus's SSZ form.
    pub fn to_config(&self) -> anyhow::Result<GenesisConfig> {
        SlotClock::new(self.genesis_time, self.slot_duration_ms, self.intervals_per_slot)?;
        ensure!(!self.operators.is_empty(), "genesis has no operators");
        ensure!(
            self.operators.iter().any(|o| o.power > 0),
            "genesis has no operator with voting power"
        );
        let mut addresses = HashSet::new();
        let mut keys = HashSet::new();
        let mut operators = Vec::with_capacity(self.operators.len());
        for (index, op) in self.operators.iter().enumerate() {
            let field = |name: &str| format!("operators[{index}].{name}");
            let address: [u8; 20] = parse_hex_array(&field("address"), &op.address)?;
            let pubkey: [u8; 48] = parse_hex_array(&field("bls_pubkey"), &op.bls_pubkey)?;
            let pop: [u8; 96] = parse_hex_array(&field("pop"), &op.pop)?;
            avs_consensus::bls::verify_pop(
                avs_consensus::types::OperatorIndex::at(index),
                &pubkey,
                &pop,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", field("pop")))?;
            if !addresses.insert(address) {
                bail!("{} {} appears twice", field("address"), op.address);
            }
            if !keys.insert(pubkey) {
                bail!("{} appears twice", field("bls_pubkey"));
            }
            operators.push(Operator {
                address,
                pubkey: Vector::try_from(pubkey.to_vec()).map_err(|_| anyhow::anyhow!("pubkey"))?,
                pop: Vector::try_from(pop.to_vec()).map_err(|_| anyhow::anyhow!("pop"))?,
                power: op.power,
            });
        }
        let operators = List::try_from(operators).map_err(|_| {
            anyhow::anyhow!(
                "too many operators (the limit is {})",
                avs_consensus::types::MAX_OPERATORS
            )
        })?;
        Ok(GenesisConfig {
            network_name: byte_list(self.network_name.as_bytes())
                .map_err(|e| anyhow::anyhow!("network_name: {e}"))?,
            genesis_time: self.genesis_time,
            slot_duration_ms: self.slot_duration_ms,
            intervals_per_slot: self.intervals_per_slot,
            operators: OperatorSet { operators },
            task_definitions: self.task_definitions()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(n: usize) -> (tempfile::TempDir, GenesisFile) {
        let dir = tempfile::tempdir().unwrap();
        let operators = (0..n)
            .map(|i| {
                let public = crate::keys::generate(
                    &dir.path().join(format!("op{i}")),
                    &crate::keys::Protection::InsecurePlaintext,
                )
                .unwrap();
                GenesisOperator::from_public(&public, 100)
            })
            .collect();
        let file = GenesisFile {
            network_name: "test".into(),
            genesis_time: 1_700_000_000,
            slot_duration_ms: 4000,
            intervals_per_slot: 5,
            operators,
            tasks: Vec::new(),
        };
        (dir, file)
    }

    #[test]
    fn the_subcommand_builds_from_keys_dirs_and_names_a_bad_entry() {
        use clap::Parser;
        let (dir, _) = file_with(2);
        let op = |i: usize| format!("{}:100", dir.path().join(format!("op{i}")).display());
        let parse = |extra: &[&str]| {
            let mut argv = vec!["avs-node".to_owned(), "genesis".to_owned()];
            argv.extend(extra.iter().map(|s| (*s).to_owned()));
            match crate::cli::Cli::try_parse_from(argv).unwrap().command {
                crate::cli::Command::Genesis(args) => args,
                _ => unreachable!(),
            }
        };
        let (a, b) = (op(0), op(1));
        let args = parse(&["--operator", &a, "--operator", &b, "--out", "g.json"]);
        let genesis = GenesisFile::from_args(&args, 1_000_000).unwrap();
        assert_eq!((genesis.operators.len(), genesis.genesis_time), (2, 1030));
        assert_eq!(genesis.short_slot_note(), None, "the default slot is 4000 ms");
        let args = parse(&["--operator", &a, "--slot-ms", "500", "--out", "g.json"]);
        let note = GenesisFile::from_args(&args, 0).unwrap().short_slot_note().unwrap();
        assert!(note.contains("100 ms per interval"), "{note}");
        let missing = format!("{}:100", dir.path().join("nobody").display());
        let args = parse(&["--operator", &missing, "--out", "g.json"]);
        let error = format!("{:#}", GenesisFile::from_args(&args, 0).unwrap_err());
        assert!(error.contains("nobody"), "{error}");
        let args = parse(&["--operator", "op0", "--out", "g.json"]);
        let error = format!("{:#}", GenesisFile::from_args(&args, 0).unwrap_err());
        assert!(error.contains("expected KEYS_DIR:POWER"), "{error}");
    }

    #[test]
    fn valid_genesis_converts_and_round_trips_through_json() {
        let (dir, file) = file_with(2);
        let path = dir.path().join("genesis.json");
        file.write(&path).unwrap();
        let loaded = GenesisFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        let config = loaded.to_config().unwrap();
        assert_eq!(config.operators.operators.len(), 2);
        assert_eq!(config.operators.operators[1].power, 100);
    }

    #[test]
    fn bad_genesis_is_refused_with_the_field_named() {
        let (_dir, file) = file_with(2);

        let mut swapped = file.clone();
        swapped.operators[0].pop = file.operators[1].pop.clone();
        let err = swapped.to_config().unwrap_err().to_string();
        assert!(err.contains("operators[0].pop"), "{err}");

        let mut duplicate = file.clone();
        duplicate.operators[1].address = file.operators[0].address.clone();
        assert!(duplicate.to_config().unwrap_err().to_string().contains("appears twice"));

        let mut powerless = file.clone();
        powerless.operators.iter_mut().for_each(|o| o.power = 0);
        assert!(powerless.to_config().is_err());

        let mut uneven = file.clone();
        uneven.slot_duration_ms = 4001;
        assert!(uneven.to_config().is_err());

        let mut short = file;
        short.operators[0].address = "0x1234".into();
        assert!(short.to_config().unwrap_err().to_string().contains("expected 20 bytes"));
    }
}
