//! `bls_test`: BLS12-381 (min-pubkey, Ethereum's proof-of-possession ciphersuite) as
//! `avs_consensus::bls` implements it.
//!
//! A fixture names an `operation` and its inputs; `output` is what our code returns:
//! `keygen` (`ikm` -> `pubkey` or null), `sign` (`ikm`, `message` -> `signature`),
//! `verify` (`pubkey`, `message`, `signature` -> `valid`), `aggregate` (`signatures` ->
//! `signature` or null), `fast_aggregate_verify` (`pubkeys`, `message`, `signature` -> `valid`),
//! `pop_prove` (`ikm` -> `pop`), `pop_verify` (`pubkey`, `pop` -> `valid`). Undecodable keys
//! or signatures make a verification `false` and an aggregation `null`.

use anyhow::{Context, bail};
use avs_consensus::bls::{self, PublicKey, SecretKey, Signature};
use avs_consensus::types::OperatorIndex;
use serde_json::{Value, json};

use super::common::ikm;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{get_array, get_hex, get_str, hex0x, parse_hex};

const FORMAT: &str = "bls_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn signature(bytes: &[u8]) -> Option<Signature> {
    Signature::from_bytes(bytes).ok()
}

fn public_key(bytes: &[u8]) -> Option<PublicKey> {
    PublicKey::from_bytes(bytes).ok()
}

fn hex_list(input: &Value, name: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    get_array(input, name)?
        .iter()
        .map(parse_hex)
        .collect::<anyhow::Result<_>>()
        .context(name.to_owned())
}

fn secret_of(input: &Value) -> anyhow::Result<Option<SecretKey>> {
    Ok(SecretKey::from_seed(&get_hex(input, "ikm")?).ok())
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let hex_or_null = |bytes: Option<Vec<u8>>| bytes.map_or(Value::Null, |b| hex0x(&b));
    Ok(match get_str(input, "operation")? {
        "keygen" => {
            let pk = secret_of(input)?.map(|sk| sk.public_key().to_bytes().to_vec());
            json!({ "pubkey": hex_or_null(pk) })
        }
        "sign" => {
            let sk = secret_of(input)?.context("ikm is not valid key material")?;
            let message: [u8; 32] = get_hex(input, "message")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("message must be a 32-byte signing root"))?;
            json!({ "signature": hex0x(&sk.sign(&message).to_bytes()) })
        }
        "pop_prove" => {
            let sk = secret_of(input)?.context("ikm is not valid key material")?;
            json!({ "pop": hex0x(&sk.proof_of_possession().to_bytes()) })
        }
        "verify" => {
            let pk = public_key(&get_hex(input, "pubkey")?);
            let sig = signature(&get_hex(input, "signature")?);
            let message = get_hex(input, "message")?;
            let valid = match (pk, sig) {
                (Some(pk), Some(sig)) => bls::verify(&pk, &message, &sig),
                _ => false,
            };
            json!({ "valid": valid })
        }
        "aggregate" => {
            let sigs: Option<Vec<Signature>> =
                hex_list(input, "signatures")?.iter().map(|b| signature(b)).collect();
            let agg = sigs.and_then(|s| bls::aggregate_signatures(&s));
            json!({ "signature": hex_or_null(agg.map(|a| a.to_bytes().to_vec())) })
        }
        "fast_aggregate_verify" => {
            let keys: Option<Vec<PublicKey>> =
                hex_list(input, "pubkeys")?.iter().map(|b| public_key(b)).collect();
            let sig = signature(&get_hex(input, "signature")?);
            let message = get_hex(input, "message")?;
            let valid = match (keys, sig) {
                (Some(keys), Some(sig)) => {
                    let refs: Vec<&PublicKey> = keys.iter().collect();
                    bls::fast_aggregate_verify(&refs, &message, &sig)
                }
                _ => false,
            };
            json!({ "valid": valid })
        }
        "pop_verify" => {
            let valid = bls::verify_pop(
                OperatorIndex::ZERO,
                &get_hex(input, "pubkey")?,
                &get_hex(input, "pop")?,
            )
            .is_ok();
            json!({ "valid": valid })
        }
        other => bail!("unknown operation {other:?}"),
    })
}

struct Key {
    sk: SecretKey,
    pk: [u8; 48],
    blst: blst::min_pk::SecretKey,
}

fn key(i: usize) -> anyhow::Result<Key> {
    let seed = ikm(i);
    let sk = SecretKey::from_seed(&seed)?;
    let blst = blst::min_pk::SecretKey::key_gen(&seed, &[])
        .map_err(|e| anyhow::anyhow!("key_gen: {e:?}"))?;
    Ok(Key { pk: sk.public_key().to_bytes(), sk, blst })
}

fn sig_hex(sig: &Signature) -> Value {
    hex0x(&sig.to_bytes())
}

/// The compressed point at infinity: flag bits `0b110` then zeros.
fn infinity(len: usize) -> Value {
    let mut bytes = vec![0u8; len];
    bytes[0] = 0xc0;
    hex0x(&bytes)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let keys: Vec<Key> = (0..4).map(key).collect::<anyhow::Result<_>>()?;
    let msg = [0x5a; 32];
    let other_msg = [0xa5; 32];
    let sigs: Vec<Signature> = keys.iter().map(|k| k.sk.sign(&msg)).collect();
    let agg3 = bls::aggregate_signatures(&sigs[..3]).context("aggregate")?;
    let pk = |i: usize| hex0x(&keys[i].pk);
    let pks3 = json!([pk(0), pk(1), pk(2)]);
    // Same key, same message, but hashed to G2 under the proof-of-possession DST.
    let wrong_dst = Signature::from_bytes(&keys[0].blst.sign(&msg, bls::DST_POP, &[]).compress())?;
    let msg_dst_pop =
        Signature::from_bytes(&keys[0].blst.sign(&keys[0].pk, bls::DST_SIG, &[]).compress())?;
    let not_on_curve = hex0x(&[0x8f; 48]);

    let specs: Vec<(&str, &str, Value)> = vec![
        (
            "keygen_operator_0",
            "32 bytes of key material [0x01; 32]",
            json!({"operation": "keygen", "ikm": hex0x(&ikm(0))}),
        ),
        (
            "keygen_short_ikm",
            "31 bytes of key material (below the 32-byte minimum)",
            json!({"operation": "keygen", "ikm": hex0x(&[7u8; 31])}),
        ),
        (
            "sign_operator_0",
            "operator 0's key and a 32-byte signing root",
            json!({"operation": "sign", "ikm": hex0x(&ikm(0)), "message": hex0x(&msg)}),
        ),
        (
            "sign_operator_1_zero_message",
            "operator 1's key and the zero root",
            json!({"operation": "sign", "ikm": hex0x(&ikm(1)), "message": hex0x(&[0u8; 32])}),
        ),
        (
            "verify_valid",
            "a signature by the key over the message",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&msg), "signature": sig_hex(&sigs[0])}),
        ),
        (
            "verify_wrong_message",
            "a valid signature checked against another message",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&other_msg), "signature": sig_hex(&sigs[0])}),
        ),
        (
            "verify_wrong_key",
            "operator 0's signature checked against operator 1's key",
            json!({"operation": "verify", "pubkey": pk(1), "message": hex0x(&msg), "signature": sig_hex(&sigs[0])}),
        ),
        (
            "verify_wrong_dst",
            "a signature hashed under the PoP DST instead of the signature DST",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&msg), "signature": sig_hex(&wrong_dst)}),
        ),
        (
            "verify_infinity_signature",
            "the point at infinity as signature",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&msg), "signature": infinity(96)}),
        ),
        (
            "verify_infinity_pubkey",
            "the point at infinity as public key",
            json!({"operation": "verify", "pubkey": infinity(48), "message": hex0x(&msg), "signature": infinity(96)}),
        ),
        (
            "verify_pubkey_not_on_curve",
            "48 bytes that are not a curve point",
            json!({"operation": "verify", "pubkey": not_on_curve, "message": hex0x(&msg), "signature": sig_hex(&sigs[0])}),
        ),
        (
            "verify_signature_garbage",
            "96 zero bytes (no compression flag) as signature",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&msg), "signature": hex0x(&[0u8; 96])}),
        ),
        (
            "verify_signature_truncated",
            "a 95-byte signature",
            json!({"operation": "verify", "pubkey": pk(0), "message": hex0x(&msg), "signature": hex0x(&sigs[0].to_bytes()[..95])}),
        ),
        (
            "aggregate_three",
            "three signatures over one message",
            json!({"operation": "aggregate", "signatures": [sig_hex(&sigs[0]), sig_hex(&sigs[1]), sig_hex(&sigs[2])]}),
        ),
        (
            "aggregate_order_independent",
            "the same three signatures in another order",
            json!({"operation": "aggregate", "signatures": [sig_hex(&sigs[2]), sig_hex(&sigs[0]), sig_hex(&sigs[1])]}),
        ),
        (
            "aggregate_single",
            "one signature",
            json!({"operation": "aggregate", "signatures": [sig_hex(&sigs[3])]}),
        ),
        ("aggregate_empty", "no signature", json!({"operation": "aggregate", "signatures": []})),
        (
            "aggregate_bad_encoding",
            "two signatures, one of them 96 zero bytes",
            json!({"operation": "aggregate", "signatures": [sig_hex(&sigs[0]), hex0x(&[0u8; 96])]}),
        ),
        (
            "fast_aggregate_verify_valid",
            "the aggregate of operators 0..3 and their keys",
            json!({"operation": "fast_aggregate_verify", "pubkeys": pks3, "message": hex0x(&msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "fast_aggregate_verify_missing_key",
            "that aggregate with one key left out",
            json!({"operation": "fast_aggregate_verify", "pubkeys": [pk(0), pk(1)], "message": hex0x(&msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "fast_aggregate_verify_extra_key",
            "that aggregate with a fourth key added",
            json!({"operation": "fast_aggregate_verify", "pubkeys": [pk(0), pk(1), pk(2), pk(3)], "message": hex0x(&msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "fast_aggregate_verify_wrong_message",
            "that aggregate against another message",
            json!({"operation": "fast_aggregate_verify", "pubkeys": pks3, "message": hex0x(&other_msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "fast_aggregate_verify_no_keys",
            "that aggregate with an empty key list",
            json!({"operation": "fast_aggregate_verify", "pubkeys": [], "message": hex0x(&msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "fast_aggregate_verify_infinity_key",
            "that aggregate with the infinity key added",
            json!({"operation": "fast_aggregate_verify", "pubkeys": [pk(0), pk(1), pk(2), infinity(48)], "message": hex0x(&msg), "signature": sig_hex(&agg3)}),
        ),
        (
            "pop_prove_operator_0",
            "operator 0's key",
            json!({"operation": "pop_prove", "ikm": hex0x(&ikm(0))}),
        ),
        (
            "pop_verify_valid",
            "operator 0's key and its proof of possession",
            json!({"operation": "pop_verify", "pubkey": pk(0), "pop": sig_hex(&keys[0].sk.proof_of_possession())}),
        ),
        (
            "pop_verify_other_keys_pop",
            "operator 0's key with operator 1's proof",
            json!({"operation": "pop_verify", "pubkey": pk(0), "pop": sig_hex(&keys[1].sk.proof_of_possession())}),
        ),
        (
            "pop_verify_signature_dst",
            "operator 0's key with its own pubkey signed under the signature DST",
            json!({"operation": "pop_verify", "pubkey": pk(0), "pop": sig_hex(&msg_dst_pop)}),
        ),
        (
            "pop_verify_infinity_key",
            "the infinity key and operator 0's proof",
            json!({"operation": "pop_verify", "pubkey": infinity(48), "pop": sig_hex(&keys[0].sk.proof_of_possession())}),
        ),
        (
            "pop_verify_bad_pop_encoding",
            "operator 0's key and 96 zero bytes",
            json!({"operation": "pop_verify", "pubkey": pk(0), "pop": hex0x(&[0u8; 96])}),
        ),
    ];
    specs
        .into_iter()
        .map(|(name, given, input)| {
            let op = input["operation"].as_str().unwrap_or_default().to_owned();
            let output = evaluate(&input)?;
            let then = match output.as_object().and_then(|m| m.iter().next()) {
                Some((key, Value::Bool(b))) => format!("`{key}` is {b}"),
                Some((key, Value::Null)) => format!("`{key}` is null (the input is refused)"),
                Some((key, _)) => format!("`{key}` is as given"),
                None => "nothing is returned".to_owned(),
            };
            let description = format!("Given {given}, when `{op}` runs, then {then}.");
            evaluated(name, &description, input, evaluate)
        })
        .collect()
}
