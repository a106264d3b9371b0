//! Runs leanSpec's `networking_codec` conformance vectors (README in
//! `spec-vectors/vendor/leanspec/`) against this crate's codecs.
//!
//! Each applicable file has its own generated test (`per_file::<file stem>`). In addition,
//! [`every_vector_file_is_accounted_for`] reads and classifies every file in the folder: the
//! kinds this crate implements are run, the kinds that belong to other layers (leanSpec's own
//! topic names, gossipsub protobuf, ENR, ECDSA peer ids) are counted as not applicable. It
//! fails if the folder is missing, a file has a kind it does not know, an applicable file has
//! no generated test or fails, or the per-kind counts differ from the README's, so a vector
//! can never be skipped silently.
//!
//! Snappy output is encoder-specific (README, "Snappy caveat"), so compressed fields are
//! checked by decompressing the expected bytes and our own encoding back to the input; varint
//! prefixes, code bytes, stream identifiers and lengths are compared exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::codec::{
    MAX_PAYLOAD_SIZE, ResponseChunk, ResponseCode, STREAM_IDENTIFIER, compress_block, decode_frame,
    decode_request, decode_response_chunk, decode_response_stream, decode_varint, decompress_block,
    encode_frame, encode_request, encode_response_chunk, varint_bytes,
};
use crate::gossip::compute_message_id;

fn vectors_dir() -> PathBuf {
    // The vendored leanSpec vectors, where `.cargo/config.toml` names them for the workspace.
    Path::new(env!("LEANSPEC_VECTORS_DIR")).join("networking_codec")
}

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    let text = value[field].as_str().unwrap_or_else(|| panic!("field {field} is not a string"));
    let digits = text.strip_prefix("0x").unwrap_or_else(|| panic!("{field} lacks 0x"));
    hex::decode(digits).unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn u64_field(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or_else(|| panic!("field {field} is not a u64"))
}

type Check = Result<(), String>;

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(what()) }
}

fn run_varint(codec: &Value, output: &Value) -> Check {
    let value = u64_field(codec, "value");
    let expected = hex_field(output, "encoded");
    ensure(varint_bytes(value) == expected, || format!("encoding of {value}"))?;
    ensure(u64_field(output, "byteLength") as usize == expected.len(), || "byteLength".into())?;
    ensure(decode_varint(&expected) == Ok((value, expected.len())), || "decode".into())
}

fn run_snappy_block(codec: &Value, output: &Value) -> Check {
    let data = hex_field(codec, "data");
    let expected = hex_field(output, "compressed");
    ensure(u64_field(output, "uncompressedLength") as usize == data.len(), || {
        "uncompressedLength".into()
    })?;
    ensure(u64_field(output, "compressedLength") as usize == expected.len(), || {
        "compressedLength".into()
    })?;
    let theirs =
        decompress_block(&expected, MAX_PAYLOAD_SIZE).map_err(|e| format!("theirs: {e}"))?;
    ensure(theirs == data, || "decompress(expected) != input".into())?;
    let ours = compress_block(&data).map_err(|e| e.to_string())?;
    let back = decompress_block(&ours, MAX_PAYLOAD_SIZE).map_err(|e| format!("ours: {e}"))?;
    ensure(back == data, || "decompress(ours) != input".into())?;
    // The length preamble is not encoder-specific.
    let (declared, _) = decode_varint(&expected).map_err(|e| e.to_string())?;
    ensure(declared as usize == data.len(), || "preamble".into())
}

fn run_snappy_frame(codec: &Value, output: &Value) -> Check {
    let data = hex_field(codec, "data");
    let expected = hex_field(output, "framed");
    ensure(u64_field(output, "uncompressedLength") as usize == data.len(), || {
        "uncompressedLength".into()
    })?;
    ensure(u64_field(output, "framedLength") as usize == expected.len(), || "framedLength".into())?;
    ensure(expected.starts_with(&STREAM_IDENTIFIER), || "expected lacks identifier".into())?;
    let theirs = decode_frame(&expected, MAX_PAYLOAD_SIZE).map_err(|e| format!("theirs: {e}"))?;
    ensure(theirs == data, || "decode(expected) != input".into())?;
    let ours = encode_frame(&data);
    ensure(ours.starts_with(&STREAM_IDENTIFIER), || "ours lacks identifier".into())?;
    let back = decode_frame(&ours, MAX_PAYLOAD_SIZE).map_err(|e| format!("ours: {e}"))?;
    ensure(back == data, || "decode(ours) != input".into())
}

fn run_request(codec: &Value, output: &Value) -> Check {
    let ssz = hex_field(codec, "sszData");
    let expected = hex_field(output, "encoded");
    let prefix = varint_bytes(ssz.len() as u64);
    ensure(expected.starts_with(&prefix), || "varint prefix".into())?;
    ensure(expected[prefix.len()..].starts_with(&STREAM_IDENTIFIER), || "identifier".into())?;
    let theirs = decode_request(&expected, MAX_PAYLOAD_SIZE).map_err(|e| format!("theirs: {e}"))?;
    ensure(theirs == ssz, || "decode(expected) != input".into())?;
    let ours = encode_request(&ssz);
    ensure(ours.starts_with(&prefix), || "our prefix".into())?;
    let back = decode_request(&ours, MAX_PAYLOAD_SIZE).map_err(|e| format!("ours: {e}"))?;
    ensure(back == ssz, || "decode(ours) != input".into())
}

fn chunk_from(value: &Value) -> Result<ResponseChunk, String> {
    let code = u8::try_from(u64_field(value, "responseCode")).map_err(|e| e.to_string())?;
    let code = ResponseCode::from_u8(code).map_err(|e| e.to_string())?;
    Ok(ResponseChunk { code, payload: hex_field(value, "sszData") })
}

fn check_chunk_prefix(chunk: &ResponseChunk, encoded: &[u8]) -> Result<usize, String> {
    let mut prefix = vec![chunk.code.as_u8()];
    prefix.extend_from_slice(&varint_bytes(chunk.payload.len() as u64));
    ensure(encoded.starts_with(&prefix), || "code byte or varint prefix".into())?;
    ensure(encoded[prefix.len()..].starts_with(&STREAM_IDENTIFIER), || "identifier".into())?;
    Ok(prefix.len())
}

fn run_response(codec: &Value, output: &Value) -> Check {
    let chunk = chunk_from(codec)?;
    let expected = hex_field(output, "encoded");
    check_chunk_prefix(&chunk, &expected)?;
    let (theirs, used) =
        decode_response_chunk(&expected, MAX_PAYLOAD_SIZE).map_err(|e| format!("theirs: {e}"))?;
    ensure(theirs == chunk && used == expected.len(), || "decode(expected) != input".into())?;
    let mut ours = Vec::new();
    encode_response_chunk(&chunk, &mut ours);
    let (back, used) =
        decode_response_chunk(&ours, MAX_PAYLOAD_SIZE).map_err(|e| format!("ours: {e}"))?;
    ensure(back == chunk && used == ours.len(), || "decode(ours) != input".into())
}

fn run_response_stream(codec: &Value, output: &Value) -> Check {
    let chunks = codec["chunks"]
        .as_array()
        .ok_or("chunks is not an array")?
        .iter()
        .map(chunk_from)
        .collect::<Result<Vec<_>, _>>()?;
    ensure(u64_field(output, "chunkCount") as usize == chunks.len(), || "chunkCount".into())?;
    let expected = hex_field(output, "encoded");
    // Walk the expected stream chunk by chunk, checking each exact prefix.
    let mut rest = expected.as_slice();
    for chunk in &chunks {
        check_chunk_prefix(chunk, rest)?;
        let (decoded, used) =
            decode_response_chunk(rest, MAX_PAYLOAD_SIZE).map_err(|e| format!("theirs: {e}"))?;
        ensure(&decoded == chunk, || "chunk mismatch".into())?;
        rest = &rest[used..];
    }
    ensure(rest.is_empty(), || "trailing bytes in expected stream".into())?;
    let theirs =
        decode_response_stream(&expected, MAX_PAYLOAD_SIZE, 16).map_err(|e| e.to_string())?;
    ensure(theirs == chunks, || "decode_stream(expected) != input".into())?;
    let mut ours = Vec::new();
    for chunk in &chunks {
        encode_response_chunk(chunk, &mut ours);
    }
    let back = decode_response_stream(&ours, MAX_PAYLOAD_SIZE, 16).map_err(|e| e.to_string())?;
    ensure(back == chunks, || "decode_stream(ours) != input".into())
}

fn run_message_id(codec: &Value, output: &Value) -> Check {
    let domain: [u8; 4] =
        hex_field(codec, "domain").try_into().map_err(|_| "domain is not 4 bytes")?;
    let id = compute_message_id(domain, &hex_field(codec, "topic"), &hex_field(codec, "data"));
    ensure(id.to_vec() == hex_field(output, "messageId"), || "message id".into())
}

fn run_peer_id(codec: &Value, output: &Value) -> Check {
    use libp2p::identity::{PublicKey, ed25519, secp256k1};
    let raw = hex_field(codec, "publicKey");
    let key: PublicKey = match codec["keyType"].as_str() {
        Some("ed25519") => {
            ed25519::PublicKey::try_from_bytes(&raw).map_err(|e| e.to_string())?.into()
        }
        Some("secp256k1") => {
            secp256k1::PublicKey::try_from_bytes(&raw).map_err(|e| e.to_string())?.into()
        }
        other => return Err(format!("unexpected key type {other:?}")),
    };
    ensure(key.encode_protobuf() == hex_field(output, "protobufEncoded"), || "protobuf".into())?;
    ensure(Some(key.to_peer_id().to_base58().as_str()) == output["peerId"].as_str(), || {
        "peer id".into()
    })
}

fn run_decode_failure(codec: &Value) -> Check {
    let raw = hex_field(codec, "rawBytes");
    let failed = match codec["decoder"].as_str() {
        Some("varint") => decode_varint(&raw).is_err(),
        Some("snappy_frame") => decode_frame(&raw, MAX_PAYLOAD_SIZE).is_err(),
        Some("reqresp_request") => decode_request(&raw, MAX_PAYLOAD_SIZE).is_err(),
        other => return Err(format!("decoder {other:?} is not applicable")),
    };
    ensure(failed, || "decoder accepted bytes it must reject".into())
}

/// How a file is handled.
enum Class {
    Run(&'static str),
    NotApplicable(&'static str),
}

fn classify(codec: &Value) -> Result<Class, String> {
    let kind = codec["kind"].as_str().ok_or("codec.kind missing")?;
    Ok(match kind {
        "varint" => Class::Run("varint"),
        "snappy_block" => Class::Run("snappy_block"),
        "snappy_frame" => Class::Run("snappy_frame"),
        "reqresp_request" => Class::Run("reqresp_request"),
        "reqresp_response" => Class::Run("reqresp_response"),
        "reqresp_response_stream" => Class::Run("reqresp_response_stream"),
        "gossip_message_id" => Class::Run("gossip_message_id"),
        "peer_id" => match codec["keyType"].as_str() {
            Some("ed25519") | Some("secp256k1") => Class::Run("peer_id"),
            // libp2p is built without the ecdsa and rsa key features.
            _ => Class::NotApplicable("peer_id (ecdsa/rsa)"),
        },
        "decode_failure" => match codec["decoder"].as_str() {
            Some("varint") => Class::Run("decode_failure/varint"),
            Some("snappy_frame") => Class::Run("decode_failure/snappy_frame"),
            Some("reqresp_request") => Class::Run("decode_failure/reqresp_request"),
            Some("gossipsub_rpc") => Class::NotApplicable("decode_failure/gossipsub_rpc"),
            Some("enr") => Class::NotApplicable("decode_failure/enr"),
            other => return Err(format!("unknown decode_failure decoder {other:?}")),
        },
        // leanSpec's /leanconsensus/ topic names (ours are /avs/), the gossipsub protobuf
        // (libp2p's own code) and ENRs (no discv5 here) belong to other layers.
        "gossip_topic" => Class::NotApplicable("gossip_topic"),
        "gossipsub_rpc" => Class::NotApplicable("gossipsub_rpc"),
        "enr" => Class::NotApplicable("enr"),
        other => return Err(format!("unknown kind {other:?}")),
    })
}

fn run(kind: &str, codec: &Value, output: &Value) -> Check {
    match kind {
        "varint" => run_varint(codec, output),
        "snappy_block" => run_snappy_block(codec, output),
        "snappy_frame" => run_snappy_frame(codec, output),
        "reqresp_request" => run_request(codec, output),
        "reqresp_response" => run_response(codec, output),
        "reqresp_response_stream" => run_response_stream(codec, output),
        "gossip_message_id" => run_message_id(codec, output),
        "peer_id" => run_peer_id(codec, output),
        _ => run_decode_failure(codec),
    }
}

fn load(path: &Path) -> Value {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("cannot read {name} ({e}); the shared folder must sit beside the repository")
    });
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let object = json.as_object().unwrap_or_else(|| panic!("{name}: not a JSON object"));
    assert_eq!(object.len(), 1, "{name}: expected exactly one fixture");
    object.values().next().unwrap().clone()
}

/// Runs one applicable vector file by its stem.
fn run_file(stem: &str) {
    let fixture = load(&vectors_dir().join(format!("{stem}.json")));
    let (codec, output) = (&fixture["codec"], &fixture["output"]);
    match classify(codec) {
        Ok(Class::Run(kind)) => {
            if let Err(reason) = run(kind, codec, output) {
                panic!("{stem} ({kind}): {reason}");
            }
        }
        Ok(Class::NotApplicable(kind)) => panic!("{stem} is listed as applicable but is {kind}"),
        Err(reason) => panic!("{stem}: {reason}"),
    }
}

/// One test per applicable vector file; [`every_vector_file_is_accounted_for`] fails if the
/// folder holds an applicable file missing from this list.
macro_rules! vector_tests {
    ($($stem:ident),* $(,)?) => {
        const APPLICABLE: &[&str] = &[$(stringify!($stem)),*];

        mod per_file {
            $(
                #[test]
                fn $stem() {
                    super::run_file(stringify!($stem));
                }
            )*
        }
    };
}

vector_tests! {
    test_decode_failure_varint_truncated,
    test_message_id_both_empty,
    test_message_id_domain_changes_id,
    test_message_id_domain_valid_same_data,
    test_message_id_empty_data,
    test_message_id_empty_topic,
    test_message_id_invalid_snappy,
    test_message_id_valid_snappy,
    test_message_id_valid_snappy_large_payload,
    test_peer_id_ed25519,
    test_peer_id_secp256k1,
    test_peer_id_secp256k1_from_enr,
    test_reqresp_decode_rejects_declared_length_above_max,
    test_reqresp_decode_rejects_empty_request,
    test_reqresp_decode_rejects_invalid_varint_prefix,
    test_reqresp_error_at_max_error_message_size,
    test_reqresp_error_resource_unavailable_with_informational_text,
    test_reqresp_error_with_multi_byte_utf8,
    test_request_all_zeros,
    test_request_blocks_by_root,
    test_request_blocks_by_root_empty,
    test_request_compressible,
    test_request_empty,
    test_request_multi_chunk,
    test_request_sequential,
    test_request_small,
    test_request_snappy_chunk_boundary,
    test_request_status,
    test_request_varint_one_byte_max,
    test_request_varint_two_byte_min,
    test_response_invalid_request,
    test_response_resource_unavailable,
    test_response_server_error,
    test_response_status,
    test_response_success_all_ff,
    test_response_success_compressible,
    test_response_success_empty,
    test_response_success_sequential,
    test_response_success_small,
    test_snappy_block_alternating_pattern,
    test_snappy_block_at_block_boundary,
    test_snappy_block_empty,
    test_snappy_block_incompressible,
    test_snappy_block_multi_block,
    test_snappy_block_repeated_data,
    test_snappy_block_short_string,
    test_snappy_block_single_byte,
    test_snappy_frame_at_chunk_boundary,
    test_snappy_frame_compressible,
    test_snappy_frame_decode_rejects_empty_input,
    test_snappy_frame_decode_rejects_unknown_unskippable_chunk,
    test_snappy_frame_decode_rejects_wrong_stream_identifier,
    test_snappy_frame_empty,
    test_snappy_frame_incompressible,
    test_snappy_frame_multi_chunk,
    test_snappy_frame_short,
    test_snappy_frame_ssz_like_payload,
    test_stream_success_then_resource_unavailable,
    test_stream_three_success_chunks_with_compressible_payloads,
    test_stream_two_success_chunks,
    test_varint_150,
    test_varint_255,
    test_varint_256,
    test_varint_300,
    test_varint_longer_than_ten_bytes_rejected,
    test_varint_max_four_bytes,
    test_varint_max_one_byte,
    test_varint_max_three_bytes,
    test_varint_max_two_bytes,
    test_varint_min_three_bytes,
    test_varint_min_two_bytes,
    test_varint_one,
    test_varint_truncated_mid_stream_rejected,
    test_varint_uint32_max,
    test_varint_uint64_max,
    test_varint_zero,
}

#[test]
fn every_vector_file_is_accounted_for() {
    let dir = vectors_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!("leanSpec vectors missing at {} ({e}); the shared folder must sit beside the repository", dir.display())
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();

    let mut passed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_applicable: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let fixture = load(path);
        let (codec, output) = (&fixture["codec"], &fixture["output"]);
        match classify(codec) {
            Ok(Class::Run(kind)) if !APPLICABLE.contains(&name.trim_end_matches(".json")) => {
                failures
                    .push(format!("{name} ({kind}) has no generated test: add it to vector_tests!"))
            }
            Ok(Class::Run(kind)) => match run(kind, codec, output) {
                Ok(()) => *passed.entry(kind).or_default() += 1,
                Err(reason) => failures.push(format!("{name} ({kind}): {reason}")),
            },
            Ok(Class::NotApplicable(kind)) => *not_applicable.entry(kind).or_default() += 1,
            Err(reason) => failures.push(format!("{name}: {reason}")),
        }
    }
    println!(
        "networking_codec: {} files; passed {passed:?}; not applicable {not_applicable:?}",
        files.len()
    );
    assert!(failures.is_empty(), "vector failures:\n{}", failures.join("\n"));

    // Counts from the README: a renamed or missing file cannot go unnoticed.
    let expected_run: BTreeMap<&str, usize> = [
        ("varint", 14),
        ("snappy_block", 8),
        ("snappy_frame", 7),
        ("reqresp_request", 12),
        ("reqresp_response", 12),
        ("reqresp_response_stream", 3),
        ("gossip_message_id", 8),
        ("peer_id", 3),
        ("decode_failure/varint", 3),
        ("decode_failure/snappy_frame", 3),
        ("decode_failure/reqresp_request", 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(passed, expected_run, "applicable vectors run and passed, per kind");
    assert_eq!(files.len(), 127, "the README lists 127 networking_codec files");
    let total_not_applicable: usize = not_applicable.values().sum();
    assert_eq!(passed.values().sum::<usize>() + total_not_applicable, files.len());
}
