#!/usr/bin/env python3
"""Writes contracts/fixtures/*.json: settlement scenarios for AttestationCenter, produced by an
implementation independent of the Rust crates (avs_ref.py: own SSZ merkleization, py_ecc BLS).

    pip install -r contracts/test/requirements.txt
    python3 contracts/test/gen_fixtures.py            # rewrite the fixtures
    python3 contracts/test/gen_fixtures.py --check    # fail if the committed ones differ

Deterministic: keys are operator_secret(i) = KeyGen(sha256(u64_le(i))) as in
consensus/src/testkit.rs, BLS signing is deterministic, nothing random is drawn.

Fixture shape (camelCase, bytes as 0x-hex, like spec-vectors/):
  _info        description, generator
  network      GenesisConfig fields, networkDigest, voteDomain (constructor takes the digest)
  genesis      epoch 0's set: operators [{index, address, pubkey (48-byte compressed),
               pubkeyG1 (128-byte EIP-2537), pop, power}], operatorSetRoot, commitment, totalPower
  steps        calls in order on one fresh deployment, each:
    method       "settle" | "advanceEpoch"
    expect       "success" | "revert"; expectError: the custom error's name when reverting
    certificate  {kind, view, epoch, blockRoot (what was signed), signers (SSZ Bitlist bytes),
                  signerIndices, signature (96-byte compressed), signatureG2 (256-byte EIP-2537)}
    operatorSet  the set passed in calldata: {epoch, keys: [pubkeyG1...], powers}
    block        {height, parentRoot, proposerIndex, stateRoot, body: {tasks: [TaskResult...]}}
    postState    (advanceEpoch) {epoch, height, parentRoot, operatorsRoot, nextOperators
                  [{address, pubkey, pop, power, pubkeyG1}], taskStates, taskStatesRoot,
                  nextOperatorSetRoot, nextCommitment, stateRoot}
    expected     roots of what is passed: blockRoot, taskResultRoots, voteDataRoot (of
                 FINALIZE(view, epoch, blockRoot of the passed block)), signingRoot, messageG2
                 (hash_to_curve of it), aggregatePubkey (+G1), signedPower, totalPower
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from Crypto.Hash import keccak

import avs_ref as r
from avs_ref import Block, Bls, Operator, TaskResult, hx, sha256

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(os.path.dirname(HERE), "fixtures")
GENERATOR = "contracts/test/gen_fixtures.py (py_ecc + own SSZ)"

NETWORK = {"networkName": b"avs-settlement-fixtures", "genesisTime": 1700000000, "slotDurationMs": 4000,
           "intervalsPerSlot": 5}
# GenesisConfig.task_definitions: one AVS task, id 1, validated by SHA-256 (validation = 1).
TASK_DEFINITIONS = [(1, b"note", 1)]
AVS_NOTE = 1
INTERNAL_POWER_SYNC = 10001  # VotingPowerSyncTask: internal, performed by the proposer


def keccak256(b: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=b).digest()


# ------------------------------------------------------------------------------ operators

_KEY_CACHE: dict[int, tuple[int, bytes, bytes]] = {}


def key(i: int) -> tuple[int, bytes, bytes]:
    """(secret, compressed pubkey, pop) of simulated operator i."""
    if i not in _KEY_CACHE:
        sk = r.operator_secret(i)
        _KEY_CACHE[i] = (sk, Bls.SkToPk(sk), Bls.PopProve(sk))
    return _KEY_CACHE[i]


class OpSet:
    """An epoch's set: operator ids (key seeds) and powers, in index order."""

    def __init__(self, ids: list[int], powers: list[int]):
        assert len(ids) == len(powers)
        self.ids, self.powers = ids, powers
        self.ops = [Operator(r.operator_address(i), key(i)[1], key(i)[2], p) for i, p in zip(ids, powers)]
        self.g1 = [r.pubkey_uncompressed(o.pubkey) for o in self.ops]

    def root(self) -> bytes:
        return r.operator_set_root(self.ops)

    def commitment(self) -> bytes:
        return keccak256(b"".join(self.g1) + b"".join(p.to_bytes(32, "big") for p in self.powers))

    def total(self) -> int:
        return sum(self.powers)

    def operators_json(self) -> list[dict]:
        return [{"index": k, "address": hx(o.address), "pubkey": hx(o.pubkey), "pubkeyG1": hx(g),
                 "pop": hx(o.pop), "power": o.power} for k, (o, g) in enumerate(zip(self.ops, self.g1))]

    def calldata_json(self, epoch: int) -> dict:
        return {"epoch": epoch, "keys": [hx(g) for g in self.g1], "powers": list(self.powers)}

    def json(self) -> dict:
        return {"operators": self.operators_json(), "operatorSetRoot": hx(self.root()),
                "commitment": hx(self.commitment()), "totalPower": self.total()}


def network(genesis: OpSet) -> tuple[dict, bytes]:
    groot = r.genesis_config_root(NETWORK["networkName"], NETWORK["genesisTime"], NETWORK["slotDurationMs"],
                                  NETWORK["intervalsPerSlot"], genesis.ops, TASK_DEFINITIONS)
    digest = groot[:4]
    return {
        "networkName": hx(NETWORK["networkName"]), "genesisTime": NETWORK["genesisTime"],
        "slotDurationMs": NETWORK["slotDurationMs"], "intervalsPerSlot": NETWORK["intervalsPerSlot"],
        "taskDefinitions": [{"id": i, "name": hx(n), "validation": v} for i, n, v in TASK_DEFINITIONS],
        "genesisConfigRoot": hx(groot), "networkDigest": hx(digest), "voteDomain": hx(r.vote_domain(digest)),
        "taskDomain": hx(r.task_domain(digest)),
    }, r.vote_domain(digest)


# ------------------------------------------------------------------------------ blocks

def avs_task(ops: OpSet, performer: int, data: bytes, digest: bytes) -> TaskResult:
    """An AVS task result (protocol 7.3): the performer (index in `ops`) signs
    signing_root(task_id, TASK domain), task_id = hash_tree_root(TaskMessage). The contract
    does not check this signature (the finalization certificate covers the block that holds it)."""
    proof = sha256(data)  # SHA256 validation
    t = TaskResult(AVS_NOTE, performer, proof, data)
    sroot = r.signing_root(t.task_id(ops.ops[performer].pubkey), r.task_domain(digest))
    t.signature = Bls.Sign(key(ops.ids[performer])[0], sroot)
    return t


def internal_task(task_id: int, proposer: int, data: bytes, proof: bytes) -> TaskResult:
    """An internal task result: performed by the proposer, all-zero signature (protocol 7.3)."""
    return TaskResult(task_id, proposer, proof, data, b"\x00" * 96)


def two_tasks(ops: OpSet, digest: bytes, proposer: int = 1) -> list[TaskResult]:
    long_data = b"".join(sha256(bytes([i])) for i in range(40))[:1237]  # 39 chunks, odd levels
    return [
        avs_task(ops, 2, b"settlement fixture note", digest),
        internal_task(INTERNAL_POWER_SYNC, proposer, long_data, bytes(range(100))),
    ]


def chain_state(epoch: int, height: int, parent: bytes, ops: OpSet, nxt: OpSet,
                task_states: list[tuple[int, bytes]]) -> bytes:
    return r.chain_state_root(epoch, height, parent, ops.root(), nxt.root(), r.task_states_root(task_states))


def make_block(height: int, epoch: int, ops: OpSet, tasks: list[TaskResult], proposer: int = 1,
               nxt: OpSet | None = None, task_states: list[tuple[int, bytes]] | None = None) -> Block:
    parent = sha256(b"parent of height " + str(height).encode())
    state_root = chain_state(epoch, height, parent, ops, nxt or ops, task_states or [])
    return Block(height, parent, proposer, state_root, tasks)


def block_json(b: Block) -> dict:
    return {**b.header_json(), "body": {"tasks": [t.to_json() for t in b.tasks]}}


# ------------------------------------------------------------------------------ certificates

def certify(ops: OpSet, signer_idx: list[int], view: int, epoch: int, block_root: bytes, domain: bytes,
            bitlist_len: int | None = None, kind: int = r.FINALIZE) -> dict:
    """FINALIZE (or `kind`) certificate over block_root by the operators at signer_idx of `ops`."""
    sroot = r.signing_root(r.vote_data_root(kind, view, epoch, block_root), domain)
    sigs = [Bls.Sign(key(ops.ids[k])[0], sroot) for k in signer_idx]
    agg = Bls.Aggregate(sigs)
    assert Bls.FastAggregateVerify([ops.ops[k].pubkey for k in signer_idx], sroot, agg)
    n = len(ops.ids) if bitlist_len is None else bitlist_len
    return {"kind": kind, "view": view, "epoch": epoch, "blockRoot": hx(block_root),
            "signers": hx(r.signers_bitlist(signer_idx, n)), "signerIndices": list(signer_idx),
            "signature": hx(agg), "signatureG2": hx(r.signature_uncompressed(agg))}


def expected(ops: OpSet, cert: dict, b: Block, domain: bytes) -> dict:
    root = b.root()
    vroot = r.vote_data_root(r.FINALIZE, cert["view"], cert["epoch"], root)
    sroot = r.signing_root(vroot, domain)
    idx = cert["signerIndices"]
    task_ids = [hx(t.task_id(ops.ops[t.performer_index].pubkey)) for t in b.tasks]
    return {
        "blockRoot": hx(root), "taskResultRoots": [hx(t.root()) for t in b.tasks], "taskIds": task_ids,
        "voteDataRoot": hx(vroot), "signingRoot": hx(sroot), "messageG2": hx(r.message_point(sroot)),
        "aggregatePubkey": hx(Bls._AggregatePKs([ops.ops[k].pubkey for k in idx])) if idx else None,
        "aggregatePubkeyG1": hx(r.aggregate_pubkey_uncompressed([ops.ops[k].pubkey for k in idx])),
        "signedPower": sum(ops.powers[k] for k in idx), "totalPower": ops.total(),
    }


def settle_step(ops: OpSet, epoch: int, cert: dict, b: Block, domain: bytes, expect: str = "success",
                error: str | None = None, calldata_set: OpSet | None = None) -> dict:
    step = {"method": "settle", "expect": expect, "certificate": cert,
            "operatorSet": (calldata_set or ops).calldata_json(epoch), "block": block_json(b),
            "expected": expected(ops, cert, b, domain)}
    if error:
        step["expectError"] = error
    return step


def post_state_json(epoch: int, b: Block, ops: OpSet, nxt: OpSet, task_states: list[tuple[int, bytes]]) -> dict:
    return {
        "epoch": epoch, "height": b.height, "parentRoot": hx(b.parent_root), "operatorsRoot": hx(ops.root()),
        "nextOperators": [{k: v for k, v in o.items() if k != "index"} for o in nxt.operators_json()],
        "taskStates": [{"taskDefinitionId": i, "data": hx(d)} for i, d in task_states],
        "taskStatesRoot": hx(r.task_states_root(task_states)), "nextOperatorSetRoot": hx(nxt.root()),
        "nextCommitment": hx(nxt.commitment()), "stateRoot": hx(b.state_root),
    }


def fixture(name: str, description: str, genesis: OpSet, steps: list[dict]) -> tuple[str, dict]:
    net, _ = network(genesis)
    return name, {"_info": {"description": description, "generator": GENERATOR, "testId": f"avs/settlement/{name}"},
                  "network": net, "genesis": genesis.json(), "steps": steps}


# ------------------------------------------------------------------------------ scenarios

def build() -> dict[str, dict]:
    fixtures: dict[str, dict] = {}

    def add(item):
        fixtures[item[0]] = item[1]

    four = OpSet([0, 1, 2, 3], [10, 10, 10, 10])
    net, domain = network(four)
    digest = r.unhx(net["networkDigest"])
    blk = make_block(5, 0, four, two_tasks(four, digest))
    root = blk.root()

    cert_all = certify(four, [0, 1, 2, 3], 7, 0, root, domain)
    add(fixture("settle_valid_4_of_4", "Given epoch 0 with 4 operators of power 10, when a FINALIZE certificate "
                "signed by all 4 over a block with 2 task results is settled, then it succeeds.", four,
                [settle_step(four, 0, cert_all, blk, domain)]))

    cert3 = certify(four, [0, 1, 3], 7, 0, root, domain)
    add(fixture("settle_valid_3_of_4", "Given 4 operators of equal power, when 3 of them sign "
                "(3*30 > 2*40), then settling succeeds.", four, [settle_step(four, 0, cert3, blk, domain)]))

    cert2 = certify(four, [1, 2], 7, 0, root, domain)
    add(fixture("settle_sub_quorum_2_of_4", "Given 4 operators of equal power, when only 2 sign (3*20 <= 2*40), "
                "then settling reverts with QuorumNotReached.", four,
                [settle_step(four, 0, cert2, blk, domain, "revert", "QuorumNotReached")]))

    # Tampered signature 1: a valid subgroup point, but the signers' signature over another view.
    wrong = certify(four, [0, 1, 2, 3], 8, 0, root, domain)
    cert_bad = dict(cert_all, signature=wrong["signature"], signatureG2=wrong["signatureG2"])
    add(fixture("settle_tampered_signature", "Given a certificate whose aggregate signature is a valid G2 point "
                "but was made over FINALIZE at view 8 while the certificate names view 7, when settled, then "
                "the pairing check fails: InvalidSignature.", four,
                [settle_step(four, 0, cert_bad, blk, domain, "revert", "InvalidSignature")]))

    # Tampered signature 2: one byte of the uncompressed point changed (not on the curve).
    g2 = bytearray(r.unhx(cert_all["signatureG2"]))
    g2[255] ^= 0x01
    cert_garbled = dict(cert_all, signatureG2=hx(bytes(g2)))
    add(fixture("settle_signature_not_on_curve", "Given a certificate whose uncompressed signature has its last "
                "byte flipped (not a curve point), when settled, then PAIRING_CHECK refuses it: "
                "InvalidSignature.", four,
                [settle_step(four, 0, cert_garbled, blk, domain, "revert", "InvalidSignature")]))

    # Tampered task result: data changed after the operators signed the block.
    tasks = two_tasks(four, digest)
    tasks[0] = TaskResult(tasks[0].task_definition_id, tasks[0].performer_index, tasks[0].proof_of_task,
                          b"settlement fixture nOte", tasks[0].signature)
    tampered = Block(blk.height, blk.parent_root, blk.proposer_index, blk.state_root, tasks)
    add(fixture("settle_tampered_task_result", "Given a certificate over a block, when the block is submitted with "
                "one task result's data changed, then its recomputed root differs from the signed one and "
                "the signature does not verify: InvalidSignature.", four,
                [settle_step(four, 0, cert_all, tampered, domain, "revert", "InvalidSignature")]))

    add(fixture("settle_replay", "Given a block already settled, when the same settlement is submitted again, "
                "then it reverts with HeightAlreadySettled.", four,
                [settle_step(four, 0, cert_all, blk, domain),
                 settle_step(four, 0, cert3, blk, domain, "revert", "HeightAlreadySettled")]))

    liar = OpSet([0, 1, 2, 3], [10, 10, 10, 100])
    add(fixture("settle_operator_set_mismatch", "Given epoch 0's committed set, when a settlement passes the "
                "same keys with a different power, then it reverts with OperatorSetMismatch.", four,
                [settle_step(four, 0, cert_all, blk, domain, "revert", "OperatorSetMismatch", calldata_set=liar)]))

    bad_len = certify(four, [0, 1, 2, 3], 7, 0, root, domain, bitlist_len=5)
    add(fixture("settle_signers_wrong_length", "Given 4 operators, when the signers bitlist has 5 bits, then it "
                "reverts with SignersLengthMismatch.", four,
                [settle_step(four, 0, bad_len, blk, domain, "revert", "SignersLengthMismatch")]))

    trio = OpSet([0, 1, 2], [7, 7, 7])
    net3, dom3 = network(trio)
    b3 = make_block(5, 0, trio, two_tasks(trio, r.unhx(net3["networkDigest"])))
    add(fixture("settle_exactly_two_thirds", "Given 3 operators of power 7, when 2 sign (3*14 == 2*21, exactly "
                "two thirds), then settling reverts with QuorumNotReached: the quorum is strictly more than "
                "2/3.", trio, [settle_step(trio, 0, certify(trio, [0, 2], 7, 0, b3.root(), dom3), b3, dom3,
                                           "revert", "QuorumNotReached")]))

    notarize = certify(four, [0, 1, 2, 3], 7, 0, root, domain, kind=0)
    add(fixture("settle_notarize_certificate", "Given a NOTARIZE certificate (kind 0) of a block signed by all "
                "4, when it is submitted for settlement, then the contract checks it as FINALIZE and the "
                "signature does not verify: InvalidSignature (only finality settles).", four,
                [settle_step(four, 0, notarize, blk, domain, "revert", "InvalidSignature")]))

    # One operator: the n = 1 paths (bitlist 0x03, a lone key); an empty block; and a block
    # with 3 task results (odd list) holding empty byte lists.
    one = OpSet([7], [5])
    net1, dom1 = network(one)
    dig1 = r.unhx(net1["networkDigest"])
    empty = make_block(1, 0, one, [], proposer=0)
    three = make_block(2, 0, one, [
        avs_task(one, 0, b"", dig1),
        internal_task(INTERNAL_POWER_SYNC, 0, b"", b""),
        avs_task(one, 0, b"x" * 64, dig1),
    ], proposer=0)
    three.parent_root = empty.root()
    three.state_root = chain_state(0, 2, three.parent_root, one, one, [])
    add(fixture("settle_single_operator", "Given epoch 0 with a single operator, when it finalizes an empty "
                "block at height 1 and then a block with 3 task results (two with empty byte lists) at "
                "height 2, then both settle.", one,
                [settle_step(one, 0, certify(one, [0], 0, 0, empty.root(), dom1), empty, dom1),
                 settle_step(one, 0, certify(one, [0], 1, 0, three.root(), dom1), three, dom1)]))

    # Gas: all of n operators sign, the same 2-task block shape.
    for n in (4, 16, 64):
        ops = OpSet(list(range(n)), [10] * n)
        net_n, dom = network(ops)
        b = make_block(5, 0, ops, two_tasks(ops, r.unhx(net_n["networkDigest"])))
        c = certify(ops, list(range(n)), 7, 0, b.root(), dom)
        add(fixture(f"settle_gas_{n}_signers", f"Given {n} operators of equal power, when all {n} sign a block "
                    "with 2 task results, then settling succeeds (gas measurement).", ops,
                    [settle_step(ops, 0, c, b, dom)]))

    add(handover(four, domain, digest))
    for item in handover_negatives(four, domain):
        add(item)
    return fixtures


NEXT_SET = ([0, 1, 2, 4], [10, 10, 10, 25])  # operator 3 leaves, operator 4 joins with power 25
TASK_STATES = [(2, bytes.fromhex("0100000000000000"))]


def epoch_ending_block(four: OpSet, nxt: OpSet, task_states=TASK_STATES) -> Block:
    # the set change comes from the internal power-sync task, performed by the proposer (2)
    membership = internal_task(INTERNAL_POWER_SYNC, 2, b"remove 3; add 4 power 25", sha256(b"update"))
    return make_block(9, 0, four, [membership], proposer=2, nxt=nxt, task_states=task_states)


def advance_step(four: OpSet, nxt: OpSet, b: Block, cert: dict, domain: bytes, task_states=TASK_STATES,
                 expect="success", error=None, post_override=None) -> dict:
    post = post_state_json(0, b, four, nxt, task_states)
    if post_override:
        post.update(post_override)
    step = {"method": "advanceEpoch", "expect": expect, "certificate": cert,
            "operatorSet": four.calldata_json(0), "block": block_json(b), "postState": post,
            "expected": expected(four, cert, b, domain)}
    if error:
        step["expectError"] = error
    return step


def handover(four: OpSet, domain: bytes, digest: bytes) -> tuple[str, dict]:
    nxt = OpSet(*NEXT_SET)
    end = epoch_ending_block(four, nxt)
    cert_end = certify(four, [0, 1, 2, 3], 12, 0, end.root(), domain)
    # epoch 1's first block, signed by the new set: 0, 1 and 4 hold 45 of 55 (3*45 > 2*55)
    b1 = make_block(10, 1, nxt, two_tasks(nxt, digest))
    b1.parent_root = end.root()
    b1.state_root = chain_state(1, 10, b1.parent_root, nxt, nxt, TASK_STATES)
    cert1 = certify(nxt, [0, 1, 3], 0, 1, b1.root(), domain)
    # the old set cannot certify epoch 1
    b2 = make_block(11, 1, nxt, two_tasks(nxt, digest))
    cert_old = certify(four, [0, 1, 2, 3], 1, 1, b2.root(), domain)
    # epoch 0 blocks stay settleable up to the epoch's last height, not past it
    b_old = make_block(8, 0, four, two_tasks(four, digest))
    cert_old_ok = certify(four, [0, 1, 2], 10, 0, b_old.root(), domain)
    b_late = make_block(11, 0, four, two_tasks(four, digest))
    cert_late = certify(four, [0, 1, 2, 3], 20, 0, b_late.root(), domain)
    # epoch 1, 2 of 4 of the new set by power 20 of 55: no quorum
    b3 = make_block(12, 1, nxt, two_tasks(nxt, digest))
    cert_weak = certify(nxt, [0, 1, 2], 3, 1, b3.root(), domain)  # 30 of 55: 90 <= 110
    steps = [
        advance_step(four, nxt, end, cert_end, domain),
        settle_step(nxt, 1, cert1, b1, domain),
        settle_step(four, 1, cert_old, b2, domain, "revert", "OperatorSetMismatch"),
        settle_step(four, 0, cert_old_ok, b_old, domain),
        settle_step(four, 0, cert_late, b_late, domain, "revert", "HeightOutsideEpoch"),
        settle_step(nxt, 1, cert_weak, b3, domain, "revert", "QuorumNotReached"),
        advance_step(four, nxt, end, cert_end, domain, expect="revert", error="EpochNotCurrent"),
    ]
    return fixture("advance_epoch", "Given epoch 0 with operators 0-3 (power 10 each), when the FINALIZE "
                   "certificate of the block that ends epoch 0 (operator 3 leaves, operator 4 joins with power "
                   "25) is submitted with its post-state, then epoch 1 starts with the new set: a block signed "
                   "by 0, 1 and 4 (45 of 55) settles, the old set cannot certify epoch 1, epoch 0 blocks settle "
                   "only up to height 9, 30 of 55 is no quorum, and the hand-over is not repeated.",
                   four, steps)


def handover_negatives(four: OpSet, domain: bytes):
    nxt = OpSet(*NEXT_SET)
    end = epoch_ending_block(four, nxt)
    cert_end = certify(four, [0, 1, 2, 3], 12, 0, end.root(), domain)

    # key mismatch: operator 4's uncompressed key replaced by operator 5's (a valid curve point)
    post = post_state_json(0, end, four, nxt, TASK_STATES)
    post["nextOperators"][3]["pubkeyG1"] = hx(r.pubkey_uncompressed(key(5)[1]))
    yield fixture("advance_epoch_key_mismatch", "Given the epoch-ending block, when one next operator's "
                  "uncompressed key is not its compressed key, then advanceEpoch reverts with "
                  "NextKeyMismatch.", four,
                  [advance_step(four, nxt, end, cert_end, domain, expect="revert", error="NextKeyMismatch",
                                post_override={"nextOperators": post["nextOperators"]})])

    # key negated: same x, other y (sign flag no longer matches)
    post = post_state_json(0, end, four, nxt, TASK_STATES)
    g1 = r.unhx(post["nextOperators"][3]["pubkeyG1"])
    y = int.from_bytes(g1[64:], "big")
    post["nextOperators"][3]["pubkeyG1"] = hx(g1[:64] + (r.P - y).to_bytes(64, "big"))
    yield fixture("advance_epoch_key_negated", "Given the epoch-ending block, when one next operator's "
                  "uncompressed key is the negation of its compressed key (same x, other y), then "
                  "advanceEpoch reverts with NextKeyMismatch.", four,
                  [advance_step(four, nxt, end, cert_end, domain, expect="revert", error="NextKeyMismatch",
                                post_override={"nextOperators": post["nextOperators"]})])

    # state root: a different task_states root than the block committed to
    yield fixture("advance_epoch_state_root_mismatch", "Given the epoch-ending block, when the post-state's "
                  "task_states root is not the one its state_root commits to, then advanceEpoch reverts "
                  "with StateRootMismatch.", four,
                  [advance_step(four, nxt, end, cert_end, domain, expect="revert", error="StateRootMismatch",
                                post_override={"taskStatesRoot": hx(r.task_states_root([]))})])

    # a final block that does not end the epoch (next_operators == operators)
    same = make_block(9, 0, four, [internal_task(INTERNAL_POWER_SYNC, 2, b"no change", sha256(b"none"))], proposer=2, task_states=TASK_STATES)
    cert_same = certify(four, [0, 1, 2, 3], 12, 0, same.root(), domain)
    yield fixture("advance_epoch_not_ending", "Given a finalized block whose post-state keeps the operator set, "
                  "when it is submitted as an epoch hand-over, then advanceEpoch reverts with "
                  "NotEpochEnding.", four,
                  [advance_step(four, four, same, cert_same, domain, expect="revert", error="NotEpochEnding")])

    # the hand-over needs a quorum of the current set
    cert_weak = certify(four, [0, 1], 12, 0, end.root(), domain)
    yield fixture("advance_epoch_sub_quorum", "Given the epoch-ending block certified by 2 of 4, when submitted, "
                  "then advanceEpoch reverts with QuorumNotReached.", four,
                  [advance_step(four, nxt, end, cert_weak, domain, expect="revert", error="QuorumNotReached")])

    # already settled through settle(): the hand-over still happens, events not repeated
    yield fixture("advance_epoch_after_settle", "Given the epoch-ending block already settled with settle() "
                  "(which cannot know it ends the epoch), when advanceEpoch is submitted for it, then the "
                  "epoch still advances.", four,
                  [settle_step(four, 0, cert_end, end, domain),
                   advance_step(four, nxt, end, cert_end, domain)])


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare with the files in contracts/fixtures")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    checked = r.self_check(REPO)
    print(f"self-check against spec-vectors: {len(checked)} ok")
    fixtures = build()
    os.makedirs(args.out, exist_ok=True)
    stale = []
    for name, fx in sorted(fixtures.items()):
        path = os.path.join(args.out, f"{name}.json")
        text = dump({f"avs/settlement/{name}": fx})
        if args.check:
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, REPO)}")
    if args.check:
        known = {f"{n}.json" for n in fixtures}
        extra = sorted(f for f in os.listdir(args.out) if f.endswith(".json") and f not in known)
        if stale or extra:
            print(f"stale: {stale} extra: {extra}", file=sys.stderr)
            return 1
        print(f"{len(fixtures)} fixtures up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
