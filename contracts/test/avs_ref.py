"""Independent Python reference for the settlement contract's fixtures.

Nothing here comes from the Rust crates: SSZ merkleization is written out below (SHA-256,
as in the Ethereum consensus specs) and BLS12-381 is py_ecc's `G2ProofOfPossession`
(ciphersuite BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_, min-pubkey). It is checked against
the repository's own conformance vectors by `self_check()` (run by gen_fixtures.py).

Containers (docs/protocol.md section 3, plus the new TaskResult.signature field):
  TaskResult  { task_definition_id: uint16, performer_index: uint64,
                proof_of_task: ByteList[65536], data: ByteList[524288], signature: ByteVector[96] }
  BlockBody   { tasks: List[TaskResult, 16] }
  Block       { height, parent_root, proposer_index, state_root, body }
  VoteData    { kind: uint8, view: uint64, epoch: uint64, block_root: Bytes32 }
  Operator    { address: ByteVector[20], pubkey: ByteVector[48], pop: ByteVector[96], power: uint64 }
  OperatorSet { operators: List[Operator, 1024] }
  ChainState  { epoch, height, parent_root, operators, next_operators, task_states: List[TaskState, 64] }
  TaskState   { task_definition_id: uint16, data: ByteList[256] }
  SigningData { object_root, domain }
  TaskMessage { task_definition_id: uint16, performer: ByteVector[48], proof_of_task, data }
  AvsTaskDefinition { id: uint16, name: ByteList[64], validation: uint8 }
  GenesisConfig { network_name, genesis_time, slot_duration_ms, intervals_per_slot, operators,
                  task_definitions: List[AvsTaskDefinition, 64] }
task_id = hash_tree_root(TaskMessage); a performer signs signing_root(task_id, TASK domain).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from py_ecc.bls import G2ProofOfPossession as Bls
from py_ecc.bls.g2_primitives import G1_to_pubkey, G2_to_signature, pubkey_to_G1, signature_to_G2
from py_ecc.bls.hash_to_curve import hash_to_G2
from py_ecc.optimized_bls12_381 import FQ2, add, field_modulus as P, multiply, neg, normalize, G1, G2, Z1

MAX_OPERATORS = 1024
MAX_TASKS_PER_BLOCK = 16
MAX_PROOF_BYTES = 1 << 16
MAX_TASK_DATA_BYTES = 1 << 19
MAX_TASK_STATES = 64
MAX_TASK_STATE_BYTES = 256
MAX_NETWORK_NAME_BYTES = 64

DST_SIG = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
DOMAIN_VOTE = bytes([0, 0, 0, 2])
DOMAIN_TASK = bytes([0, 0, 0, 4])
MAX_TASK_DEFINITIONS = 64
MAX_TASK_NAME_BYTES = 64
FIRST_INTERNAL_TASK_ID = 10000
FINALIZE = 2


# --------------------------------------------------------------------------------------------
# SSZ merkleization
# --------------------------------------------------------------------------------------------

def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


ZERO_HASHES = [b"\x00" * 32]
for _ in range(64):
    ZERO_HASHES.append(sha256(ZERO_HASHES[-1] * 2))


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def merkleize(chunks: list[bytes], limit: int | None = None) -> bytes:
    """SSZ merkleize: pad to next_pow2(limit or len) leaves with zero chunks."""
    count = len(chunks)
    width = _next_pow2(limit if limit is not None else count)
    assert count <= width, "too many chunks for the limit"
    depth = width.bit_length() - 1
    layer = list(chunks)
    for level in range(depth):
        if len(layer) % 2 == 1:
            layer.append(ZERO_HASHES[level])
        layer = [sha256(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0] if layer else ZERO_HASHES[depth]


def mix_in_length(root: bytes, length: int) -> bytes:
    return sha256(root + length.to_bytes(32, "little"))


def pack_bytes(b: bytes) -> list[bytes]:
    if not b:
        return []
    padded = b + b"\x00" * (-len(b) % 32)
    return [padded[i:i + 32] for i in range(0, len(padded), 32)]


def uint_chunk(v: int, size: int) -> bytes:
    return v.to_bytes(size, "little") + b"\x00" * (32 - size)


def byte_list_root(b: bytes, limit: int) -> bytes:
    assert len(b) <= limit
    return mix_in_length(merkleize(pack_bytes(b), (limit + 31) // 32), len(b))


def byte_vector_root(b: bytes) -> bytes:
    return merkleize(pack_bytes(b))


def container_root(field_roots: list[bytes]) -> bytes:
    return merkleize(field_roots)


def list_root(element_roots: list[bytes], limit: int) -> bytes:
    return mix_in_length(merkleize(element_roots, limit), len(element_roots))


# --------------------------------------------------------------------------------------------
# Protocol containers
# --------------------------------------------------------------------------------------------

@dataclass
class TaskResult:
    task_definition_id: int
    performer_index: int
    proof_of_task: bytes
    data: bytes
    signature: bytes = b"\x00" * 96  # ByteVector[96]; opaque to the contract

    def root(self, with_signature: bool = True) -> bytes:
        fields = [
            uint_chunk(self.task_definition_id, 2),
            uint_chunk(self.performer_index, 8),
            byte_list_root(self.proof_of_task, MAX_PROOF_BYTES),
            byte_list_root(self.data, MAX_TASK_DATA_BYTES),
        ]
        if with_signature:
            assert len(self.signature) == 96
            fields.append(byte_vector_root(self.signature))
        return container_root(fields)

    def task_id(self, performer_pubkey: bytes) -> bytes:
        """hash_tree_root(TaskMessage) with the performer's compressed key (protocol 7.3)."""
        return task_message_root(self.task_definition_id, performer_pubkey, self.proof_of_task, self.data)

    def to_json(self) -> dict:
        return {
            "taskDefinitionId": self.task_definition_id,
            "performerIndex": self.performer_index,
            "proofOfTask": hx(self.proof_of_task),
            "data": hx(self.data),
            "signature": hx(self.signature),
        }


@dataclass
class Block:
    height: int
    parent_root: bytes
    proposer_index: int
    state_root: bytes
    tasks: list[TaskResult] = field(default_factory=list)

    def body_root(self, with_signature: bool = True) -> bytes:
        # BlockBody has one field, so its root is the root of that field.
        assert len(self.tasks) <= MAX_TASKS_PER_BLOCK
        return container_root([list_root([t.root(with_signature) for t in self.tasks], MAX_TASKS_PER_BLOCK)])

    def root(self, with_signature: bool = True) -> bytes:
        return container_root([
            uint_chunk(self.height, 8),
            self.parent_root,
            uint_chunk(self.proposer_index, 8),
            self.state_root,
            self.body_root(with_signature),
        ])

    def header_json(self) -> dict:
        return {
            "height": self.height,
            "parentRoot": hx(self.parent_root),
            "proposerIndex": self.proposer_index,
            "stateRoot": hx(self.state_root),
        }


def vote_data_root(kind: int, view: int, epoch: int, block_root: bytes) -> bytes:
    return container_root([uint_chunk(kind, 1), uint_chunk(view, 8), uint_chunk(epoch, 8), block_root])


def signing_root(object_root: bytes, domain: bytes) -> bytes:
    return container_root([object_root, domain])


def vote_domain(digest: bytes) -> bytes:
    assert len(digest) == 4
    return DOMAIN_VOTE + digest + b"\x00" * 24


def task_domain(digest: bytes) -> bytes:
    assert len(digest) == 4
    return DOMAIN_TASK + digest + b"\x00" * 24


def task_message_root(task_definition_id: int, performer: bytes, proof_of_task: bytes, data: bytes) -> bytes:
    assert len(performer) == 48
    return container_root([
        uint_chunk(task_definition_id, 2),
        byte_vector_root(performer),
        byte_list_root(proof_of_task, MAX_PROOF_BYTES),
        byte_list_root(data, MAX_TASK_DATA_BYTES),
    ])


def avs_task_definition_root(id_: int, name: bytes, validation: int) -> bytes:
    return container_root([uint_chunk(id_, 2), byte_list_root(name, MAX_TASK_NAME_BYTES), uint_chunk(validation, 1)])


@dataclass
class Operator:
    address: bytes  # 20
    pubkey: bytes  # 48, compressed G1
    pop: bytes  # 96, compressed G2
    power: int

    def root(self) -> bytes:
        return container_root([
            byte_vector_root(self.address),
            byte_vector_root(self.pubkey),
            byte_vector_root(self.pop),
            uint_chunk(self.power, 8),
        ])


def operator_set_root(ops: list[Operator]) -> bytes:
    return container_root([list_root([o.root() for o in ops], MAX_OPERATORS)])


def task_state_root(task_definition_id: int, data: bytes) -> bytes:
    return container_root([uint_chunk(task_definition_id, 2), byte_list_root(data, MAX_TASK_STATE_BYTES)])


def task_states_root(states: list[tuple[int, bytes]]) -> bytes:
    return list_root([task_state_root(i, d) for i, d in states], MAX_TASK_STATES)


def chain_state_root(epoch: int, height: int, parent_root: bytes, operators_root: bytes,
                     next_operators_root: bytes, task_states_root_: bytes) -> bytes:
    return container_root([
        uint_chunk(epoch, 8),
        uint_chunk(height, 8),
        parent_root,
        operators_root,
        next_operators_root,
        task_states_root_,
    ])


def genesis_config_root(network_name: bytes, genesis_time: int, slot_duration_ms: int,
                        intervals_per_slot: int, ops: list[Operator],
                        task_definitions: list[tuple[int, bytes, int]] | None) -> bytes:
    """`task_definitions=None` gives the container before that 6th field was added (for the
    conformance vectors written before it)."""
    fields = [
        byte_list_root(network_name, MAX_NETWORK_NAME_BYTES),
        uint_chunk(genesis_time, 8),
        uint_chunk(slot_duration_ms, 8),
        uint_chunk(intervals_per_slot, 8),
        operator_set_root(ops),
    ]
    if task_definitions is not None:
        fields.append(list_root([avs_task_definition_root(*d) for d in task_definitions], MAX_TASK_DEFINITIONS))
    return container_root(fields)


def signers_bitlist(indices: list[int], n: int) -> bytes:
    """SSZ serialization of Bitlist[1024] with n bits: bit i at byte i//8, bit i%8 (LSB
    first), then the length-marker bit at position n."""
    bits = bytearray((n + 1 + 7) // 8)
    for i in indices:
        assert 0 <= i < n
        bits[i // 8] |= 1 << (i % 8)
    bits[n // 8] |= 1 << (n % 8)
    return bytes(bits)


# --------------------------------------------------------------------------------------------
# BLS: keys, signatures, EIP-2537 encodings
# --------------------------------------------------------------------------------------------

def operator_secret(i: int) -> int:
    """Same derivation as consensus/src/testkit.rs: IETF KeyGen(IKM = sha256(u64_le(i)))."""
    return Bls.KeyGen(sha256(i.to_bytes(8, "little")))


def operator_address(i: int) -> bytes:
    """Same as testkit.rs: i's 8 little-endian bytes, then 0x01 repeated."""
    return i.to_bytes(8, "little") + b"\x01" * 12


def fp64(v: int) -> bytes:
    assert 0 <= v < P
    return v.to_bytes(64, "big")


def g1_uncompressed(point) -> bytes:
    """EIP-2537 G1: 64-byte padded x || 64-byte padded y (affine); infinity is 128 zero bytes."""
    x, y = normalize(point)
    return fp64(int(x)) + fp64(int(y))


def g2_uncompressed(point) -> bytes:
    """EIP-2537 G2: x.c0 || x.c1 || y.c0 || y.c1, each 64-byte padded."""
    x, y = normalize(point)
    return fp64(x.coeffs[0]) + fp64(x.coeffs[1]) + fp64(y.coeffs[0]) + fp64(y.coeffs[1])


def pubkey_uncompressed(pk48: bytes) -> bytes:
    return g1_uncompressed(pubkey_to_G1(pk48))


def signature_uncompressed(sig96: bytes) -> bytes:
    return g2_uncompressed(signature_to_G2(sig96))


def message_point(msg: bytes) -> bytes:
    """hash_to_curve G2 of msg under the signature DST, EIP-2537 encoded (for debugging)."""
    return g2_uncompressed(hash_to_G2(msg, DST_SIG, hashlib.sha256))


def aggregate_pubkey_uncompressed(pks: list[bytes]) -> bytes:
    acc = Z1
    for pk in pks:
        acc = add(acc, pubkey_to_G1(pk))
    return g1_uncompressed(acc)


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def unhx(s: str) -> bytes:
    assert s.startswith("0x")
    return bytes.fromhex(s[2:])


# --------------------------------------------------------------------------------------------
# Self-check against the repository's conformance vectors (produced by the Rust crates)
# --------------------------------------------------------------------------------------------

def _vector(path: str) -> dict:
    with open(path) as f:
        return list(json.load(f).values())[0]


def _ops_from_json(value: dict) -> list[Operator]:
    return [Operator(unhx(o["address"]), unhx(o["pubkey"]), unhx(o["pop"]), o["power"]) for o in value["operators"]]


def self_check(repo_root: str) -> list[str]:
    """Re-derives roots and signatures of spec-vectors/vectors with this module; returns the
    names checked. Vectors written before TaskResult.signature existed are checked with the
    4-field container (`with_signature=False`: the same code minus one leaf), later ones with 5;
    likewise GenesisConfig with or without `task_definitions`."""
    vdir = os.path.join(repo_root, "spec-vectors", "vectors")
    checked = []

    def expect(name, got, want):
        assert got == want, f"self-check {name}: got {hx(got)} want {hx(want)}"
        checked.append(name)

    v = _vector(os.path.join(vdir, "ssz", "task_result.json"))
    t = v["value"]
    five = "signature" in t  # vectors regenerated after TaskResult.signature was added
    tr = TaskResult(t["taskDefinitionId"], t["performerIndex"], unhx(t["proofOfTask"]), unhx(t["data"]),
                    unhx(t["signature"]) if five else b"\x00" * 96)
    expect("ssz/task_result", tr.root(with_signature=five), unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "ssz", "block.json"))
    b = v["value"]
    five = all("signature" in t for t in b["body"]["tasks"])
    blk = Block(b["height"], unhx(b["parentRoot"]), b["proposerIndex"], unhx(b["stateRoot"]), [
        TaskResult(t["taskDefinitionId"], t["performerIndex"], unhx(t["proofOfTask"]), unhx(t["data"]),
                   unhx(t["signature"]) if five else b"\x00" * 96)
        for t in b["body"]["tasks"]
    ])
    expect("ssz/block", blk.root(with_signature=five), unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "ssz", "vote_data_notarize.json"))
    d = v["value"]
    expect("ssz/vote_data_notarize", vote_data_root(d["kind"], d["view"], d["epoch"], unhx(d["blockRoot"])),
           unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "ssz", "signing_data.json"))
    d = v["value"]
    expect("ssz/signing_data", signing_root(unhx(d["objectRoot"]), unhx(d["domain"])), unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "ssz", "operator_set.json"))
    expect("ssz/operator_set", operator_set_root(_ops_from_json(v["value"])), unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "ssz", "chain_state.json"))
    s = v["value"]
    expect("ssz/chain_state", chain_state_root(
        s["epoch"], s["height"], unhx(s["parentRoot"]),
        operator_set_root(_ops_from_json(s["operators"])),
        operator_set_root(_ops_from_json(s["nextOperators"])),
        task_states_root([(x["taskDefinitionId"], unhx(x["data"])) for x in s["taskStates"]]),
    ), unhx(v["output"]["hashTreeRoot"]))

    v = _vector(os.path.join(vdir, "signing_root", "vote_finalize.json"))
    g = v["genesis"]
    defs = None
    if "taskDefinitions" in g:
        defs = [(d["id"], unhx(d["name"]), d["validation"]) for d in g["taskDefinitions"]]
    groot = genesis_config_root(unhx(g["networkName"]), g["genesisTime"], g["slotDurationMs"], g["intervalsPerSlot"],
                                _ops_from_json(g["operators"]), defs)
    expect("signing_root/vote_finalize digest", groot[:4], unhx(v["output"]["networkDigest"]))
    m = v["message"]
    sroot = signing_root(vote_data_root(m["kind"], m["view"], m["epoch"], unhx(m["blockRoot"])), vote_domain(groot[:4]))
    expect("signing_root/vote_finalize root", sroot, unhx(v["output"]["signingRoot"]))
    assert Bls.Verify(unhx(v["pubkey"]), sroot, unhx(v["signature"])), "vote_finalize signature"
    checked.append("signing_root/vote_finalize signature (py_ecc Verify)")

    v = _vector(os.path.join(vdir, "bls", "sign_operator_0.json"))
    sk = Bls.KeyGen(unhx(v["ikm"]))
    expect("bls/sign_operator_0", Bls.Sign(sk, unhx(v["message"])), unhx(v["output"]["signature"]))

    v = _vector(os.path.join(vdir, "bls", "pop_prove_operator_0.json"))
    sk = Bls.KeyGen(unhx(v["ikm"]))
    expect("bls/pop_prove_operator_0", Bls.PopProve(sk), unhx(v["output"]["pop"]))
    return checked
