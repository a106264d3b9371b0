//! The checks on an automation definition (docs/protocol.md, 7.5): every field, before
//! anything is stored. Errors name the field.

use std::str::FromStr;

use avs_proto::automation_v1 as pb;
use prost::Message;

/// Largest encoded definition.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Most workflow nodes.
pub const MAX_NODES: usize = 16;
/// Most instants of a fixed-time trigger.
pub const MAX_FIXED_TIMES: usize = 64;
/// Largest block interval.
pub const MAX_BLOCK_INTERVAL: u64 = 1_000_000;
/// Most event topics (as in a log filter).
pub const MAX_TOPICS: usize = 4;
/// Most confirmations an event trigger waits for.
pub const MAX_CONFIRMATIONS: u32 = 64;
/// Largest contract call data.
pub const MAX_CALLDATA_BYTES: usize = 4096;
/// Largest REST URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Largest REST body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_NAME_BYTES: usize = 64;
/// Longest cron expression (it is parsed at every vote on a firing).
pub const MAX_CRON_BYTES: usize = 256;
/// A cron expression must fire within this long of its creation.
const CRON_HORIZON_MS: i64 = 366 * 24 * 60 * 60 * 1000;

/// Why a definition is refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn refuse<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError { field: field.into(), reason: reason.into() })
}

/// Checks a whole definition at `now_ms` (a trigger must still be able to fire).
pub fn check(definition: &pb::TaskDefinition, now_ms: u64) -> Result<(), SpecError> {
    let size = definition.encoded_len();
    if size > MAX_DEFINITION_BYTES {
        return refuse("definition", format!("{size} bytes, at most {MAX_DEFINITION_BYTES}"));
    }
    check_name("name", &definition.name, |c| c.is_ascii_graphic() || c == ' ')?;
    let trigger = definition.trigger.as_ref().and_then(|t| t.kind.as_ref());
    match trigger {
        None => refuse("trigger", "missing (one of cron, fixed_time, block, event)")?,
        Some(kind) => check_trigger(kind, now_ms)?,
    }
    check_workflow(&definition.nodes)
}

/// The chain a block or event trigger watches.
pub fn trigger_chain(definition: &pb::TaskDefinition) -> Option<u64> {
    match definition.trigger.as_ref()?.kind.as_ref()? {
        pb::trigger::Kind::Block(b) => Some(b.chain_id),
        pb::trigger::Kind::Event(e) => Some(e.chain_id),
        pb::trigger::Kind::Cron(_) | pb::trigger::Kind::FixedTime(_) => None,
    }
}

fn check_name(field: &str, name: &str, allowed: impl Fn(char) -> bool) -> Result<(), SpecError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return refuse(field, format!("{} bytes, need 1 to {MAX_NAME_BYTES}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return refuse(field, format!("character {bad:?} is not allowed"));
    }
    Ok(())
}

fn check_trigger(kind: &pb::trigger::Kind, now_ms: u64) -> Result<(), SpecError> {
    match kind {
        pb::trigger::Kind::Cron(cron) => check_cron(&cron.expression, now_ms),
        pb::trigger::Kind::FixedTime(fixed) => {
            let at = &fixed.at_unix_ms;
            if at.is_empty() || at.len() > MAX_FIXED_TIMES {
                return refuse(
                    "trigger.fixed_time.at_unix_ms",
                    format!("{} instants, need 1 to {MAX_FIXED_TIMES}", at.len()),
                );
            }
            if at.windows(2).any(|w| w[0] >= w[1]) {
                return refuse("trigger.fixed_time.at_unix_ms", "not strictly increasing");
            }
            if at.last().is_some_and(|last| *last <= now_ms) {
                return refuse("trigger.fixed_time.at_unix_ms", "every instant is in the past");
            }
            Ok(())
        }
        pb::trigger::Kind::Block(block) => {
            check_chain("trigger.block.chain_id", block.chain_id)?;
            if !(1..=MAX_BLOCK_INTERVAL).contains(&block.interval) {
                return refuse(
                    "trigger.block.interval",
                    format!("{}, need 1 to {MAX_BLOCK_INTERVAL} blocks", block.interval),
                );
            }
            if block.confirmations > MAX_CONFIRMATIONS {
                return refuse(
                    "trigger.block.confirmations",
                    format!("{}, at most {MAX_CONFIRMATIONS}", block.confirmations),
                );
            }
            Ok(())
        }
        pb::trigger::Kind::Event(event) => {
            check_chain("trigger.event.chain_id", event.chain_id)?;
            check_address("trigger.event.address", &event.address)?;
            if event.topics.len() > MAX_TOPICS {
                return refuse(
                    "trigger.event.topics",
                    format!("{} topics, at most {MAX_TOPICS}", event.topics.len()),
                );
            }
            if let Some(i) = event.topics.iter().position(|t| t.len() != 32) {
                return refuse(format!("trigger.event.topics[{i}]"), "must be 32 bytes");
            }
            if event.confirmations > MAX_CONFIRMATIONS {
                return refuse(
                    "trigger.event.confirmations",
                    format!("{}, at most {MAX_CONFIRMATIONS}", event.confirmations),
                );
            }
            Ok(())
        }
    }
}

/// A cron expression (six or seven fields, seconds first) the `cron` crate parses and that
/// fires within a year of `now_ms`.
fn check_cron(expression: &str, now_ms: u64) -> Result<(), SpecError> {
    const FIELD: &str = "trigger.cron.expression";
    if expression.len() > MAX_CRON_BYTES {
        return refuse(FIELD, format!("longer than {MAX_CRON_BYTES} bytes"));
    }
    let fields = expression.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return refuse(FIELD, format!("{fields} fields, need 6 or 7 (seconds first)"));
    }
    let schedule = cron::Schedule::from_str(expression)
        .or_else(|e| refuse(FIELD, format!("does not parse: {e}")))?;
    // The crate's schedules end in 2100, and its arithmetic near chrono's limits panics.
    if now_ms >= super::auth::LAST_TIME_MS {
        return refuse(FIELD, "cannot be checked after 2100");
    }
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let Some(from) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now) else {
        return refuse(FIELD, "the node's clock is out of range");
    };
    match schedule.after(&from).next() {
        Some(next) if next.timestamp_millis() <= now.saturating_add(CRON_HORIZON_MS) => Ok(()),
        _ => refuse(FIELD, "never fires within a year"),
    }
}

fn check_chain(field: &str, chain_id: u64) -> Result<(), SpecError> {
    if chain_id == 0 {
        return refuse(field, "missing (0 is no chain)");
    }
    Ok(())
}

fn check_address(field: &str, address: &[u8]) -> Result<(), SpecError> {
    if address.len() != 20 {
        return refuse(field, format!("{} bytes, an address has 20", address.len()));
    }
    Ok(())
}

fn check_workflow(nodes: &[pb::WorkflowNode]) -> Result<(), SpecError> {
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return refuse("nodes", format!("{} nodes, need 1 to {MAX_NODES}", nodes.len()));
    }
    for (i, node) in nodes.iter().enumerate() {
        let at = |what: &str| format!("nodes[{i}].{what}");
        check_name(&at("name"), &node.name, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-')?;
        if nodes[..i].iter().any(|earlier| earlier.name == node.name) {
            return refuse(at("name"), format!("{:?} is used by an earlier node", node.name));
        }
        match &node.kind {
            None => refuse(
                at("kind"),
                "unknown node kind (known: contract_read, contract_write, rest)",
            )?,
            Some(pb::workflow_node::Kind::ContractRead(call)) => {
                check_call(&at("contract_read"), call)?
            }
            Some(pb::workflow_node::Kind::ContractWrite(call)) => {
                check_call(&at("contract_write"), call)?
            }
            Some(pb::workflow_node::Kind::Rest(rest)) => check_rest(&at("rest"), rest)?,
        }
    }
    Ok(())
}

fn check_call(field: &str, call: &pb::ContractCall) -> Result<(), SpecError> {
    check_chain(&format!("{field}.chain_id"), call.chain_id)?;
    check_address(&format!("{field}.address"), &call.address)?;
    if call.calldata.len() > MAX_CALLDATA_BYTES {
        return refuse(
            format!("{field}.calldata"),
            format!("{} bytes, at most {MAX_CALLDATA_BYTES}", call.calldata.len()),
        );
    }
    Ok(())
}

fn check_rest(field: &str, rest: &pb::RestCall) -> Result<(), SpecError> {
    if rest.url.len() > MAX_URL_BYTES {
        return refuse(format!("{field}.url"), format!("longer than {MAX_URL_BYTES} bytes"));
    }
    match url::Url::parse(&rest.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(_) => refuse(format!("{field}.url"), "must be an http or https URL with a host")?,
        Err(e) => refuse(format!("{field}.url"), format!("does not parse: {e}"))?,
    }
    if !matches!(rest.method.as_str(), "GET" | "POST") {
        return refuse(format!("{field}.method"), format!("{:?}, need GET or POST", rest.method));
    }
    if rest.body.len() > MAX_BODY_BYTES {
        return refuse(format!("{field}.body"), format!("longer than {MAX_BODY_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn rest() -> pb::WorkflowNode {
        pb::WorkflowNode {
            name: "notify".into(),
            kind: Some(pb::workflow_node::Kind::Rest(pb::RestCall {
                url: "https://example.org/hook".into(),
                method: "POST".into(),
                body: "{}".into(),
            })),
        }
    }

    pub(crate) fn cron_definition(expression: &str) -> pb::TaskDefinition {
        pb::TaskDefinition {
            name: "every minute".into(),
            trigger: Some(pb::Trigger {
                kind: Some(pb::trigger::Kind::Cron(pb::CronTrigger {
                    expression: expression.into(),
                })),
            }),
            nodes: vec![rest()],
        }
    }

    fn field_of(definition: &pb::TaskDefinition) -> String {
        check(definition, NOW).unwrap_err().field
    }

    #[test]
    fn good_definitions_pass() {
        check(&cron_definition("0 * * * * *"), NOW).unwrap();
        let event = pb::TaskDefinition {
            trigger: Some(pb::Trigger {
                kind: Some(pb::trigger::Kind::Event(pb::EventTrigger {
                    chain_id: 31337,
                    address: vec![0xaa; 20],
                    topics: vec![vec![0x11; 32]],
                    confirmations: 2,
                })),
            }),
            nodes: vec![pb::WorkflowNode {
                name: "read_balance".into(),
                kind: Some(pb::workflow_node::Kind::ContractRead(pb::ContractCall {
                    chain_id: 31337,
                    address: vec![0xbb; 20],
                    calldata: vec![0x70, 0xa0, 0x82, 0x31],
                    append_trigger_data: false,
                })),
            }],
            ..cron_definition("0 * * * * *")
        };
        check(&event, NOW).unwrap();
    }

    #[test]
    fn bad_definitions_name_their_field() {
        // Malformed cron: garbage, five fields (no seconds), a date that never comes.
        assert_eq!(field_of(&cron_definition("every minute please")), "trigger.cron.expression");
        assert_eq!(field_of(&cron_definition("* * * * *")), "trigger.cron.expression");
        assert_eq!(field_of(&cron_definition("0 0 0 30 2 * *")), "trigger.cron.expression");
        assert_eq!(field_of(&cron_definition("0 0 0 1 1 * 2001")), "trigger.cron.expression");
        let long = format!("0 * * * * {}", vec!["*"; 200].join(","));
        assert_eq!(field_of(&cron_definition(&long)), "trigger.cron.expression");

        // Unknown node kind, duplicate node names, too many nodes.
        let mut unknown = cron_definition("0 * * * * *");
        unknown.nodes.push(pb::WorkflowNode { name: "mystery".into(), kind: None });
        let err = check(&unknown, NOW).unwrap_err();
        assert_eq!(err.field, "nodes[1].kind");
        assert!(err.reason.contains("unknown node kind"), "{err}");
        let mut twice = cron_definition("0 * * * * *");
        twice.nodes.push(rest());
        assert_eq!(field_of(&twice), "nodes[1].name");
        let mut crowded = cron_definition("0 * * * * *");
        crowded.nodes =
            (0..=MAX_NODES).map(|i| pb::WorkflowNode { name: format!("n{i}"), ..rest() }).collect();
        assert_eq!(field_of(&crowded), "nodes");

        // Oversized workflow: REST bodies beyond the definition's size.
        let mut big = cron_definition("0 * * * * *");
        big.nodes = (0..5)
            .map(|i| pb::WorkflowNode {
                name: format!("n{i}"),
                kind: Some(pb::workflow_node::Kind::Rest(pb::RestCall {
                    url: "https://example.org".into(),
                    method: "POST".into(),
                    body: "x".repeat(MAX_BODY_BYTES),
                })),
            })
            .collect();
        assert_eq!(field_of(&big), "definition");

        // The rest, one field each.
        let mut no_trigger = cron_definition("0 * * * * *");
        no_trigger.trigger = None;
        assert_eq!(field_of(&no_trigger), "trigger");
        let mut nameless = cron_definition("0 * * * * *");
        nameless.name = String::new();
        assert_eq!(field_of(&nameless), "name");
        let mut past = cron_definition("0 * * * * *");
        past.trigger = Some(pb::Trigger {
            kind: Some(pb::trigger::Kind::FixedTime(pb::FixedTimeTrigger {
                at_unix_ms: vec![NOW - 2, NOW - 1],
            })),
        });
        assert_eq!(field_of(&past), "trigger.fixed_time.at_unix_ms");
        let mut ftp = cron_definition("0 * * * * *");
        if let Some(pb::workflow_node::Kind::Rest(r)) = &mut ftp.nodes[0].kind {
            r.url = "ftp://example.org/x".into();
        }
        assert_eq!(field_of(&ftp), "nodes[0].rest.url");
        let mut short = cron_definition("0 * * * * *");
        short.nodes[0].kind = Some(pb::workflow_node::Kind::ContractWrite(pb::ContractCall {
            chain_id: 1,
            address: vec![1; 19],
            calldata: Vec::new(),
            append_trigger_data: false,
        }));
        assert_eq!(field_of(&short), "nodes[0].contract_write.address");
    }
}
