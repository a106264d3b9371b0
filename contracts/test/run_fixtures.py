#!/usr/bin/env python3
"""Runs contracts/fixtures/*.json against AttestationCenter on a real EVM (anvil, Prague).

    python3 contracts/test/run_fixtures.py                  # starts anvil on 127.0.0.1, stops it
    python3 contracts/test/run_fixtures.py --rpc-url URL    # an already running Prague node

Each fixture is one test on a fresh deployment (artifact contracts/artifacts/AttestationCenter.json,
constructor = the fixture's network digest and genesis set). Each step is called with eth_call
first (a revert's custom error is decoded and must be the expected one), then sent as a
transaction and mined: a success must have status 1 and emit the expected events, a revert
must have status 0. The contract's own intermediate values (block root, task roots, task ids,
signing root, hash_to_curve point, commitments, next set root) are compared with the fixture's,
so a mismatch says where the two implementations part. Gas of every successful call is printed.
Ends with the line `N passed, M failed`; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from Crypto.Hash import keccak
from eth_abi import decode, encode

HERE = os.path.dirname(os.path.abspath(__file__))
CONTRACTS = os.path.dirname(HERE)
ARTIFACT = os.path.join(CONTRACTS, "artifacts", "AttestationCenter.json")
FIXTURES = os.path.join(CONTRACTS, "fixtures")
NPM_PREFIX = os.environ.get("AVS_NPM_PREFIX", os.path.expanduser("~/.cache/avs-node/npm"))
TX_GAS = 25_000_000


def keccak256(b: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=b).digest()


def unhx(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def hx(b: bytes) -> str:
    return "0x" + b.hex()


# ------------------------------------------------------------------------------ JSON-RPC

class RpcError(Exception):
    def __init__(self, err: dict):
        super().__init__(err.get("message"))
        self.err = err


class Rpc:
    def __init__(self, url: str):
        self.url, self.id = url, 0

    def __call__(self, method: str, *params):
        self.id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method, "params": list(params)}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            out = json.load(resp)
        if "error" in out:
            raise RpcError(out["error"])
        return out["result"]


def start_anvil() -> tuple[subprocess.Popen, str]:
    anvil = shutil.which("anvil") or os.path.join(NPM_PREFIX, "node_modules", "@foundry-rs", "anvil-linux-amd64",
                                                   "bin", "anvil")
    if not os.path.exists(anvil):
        sys.exit(f"anvil not found at {anvil}: run contracts/test/run.sh (it installs it from npm)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([anvil, "--hardfork", "prague", "--host", "127.0.0.1", "--port", str(port),
                             "--gas-limit", "60000000", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    rpc = Rpc(url)
    for _ in range(100):
        try:
            rpc("eth_chainId")
            return proc, url
        except Exception:
            if proc.poll() is not None:
                sys.exit(f"anvil exited: {proc.stderr.read().decode()}")
            time.sleep(0.1)
    proc.kill()
    sys.exit("anvil did not answer")


# ------------------------------------------------------------------------------ ABI

def abi_type(item: dict) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t


class Abi:
    def __init__(self, abi: list[dict]):
        self.fns = {f["name"]: f for f in abi if f["type"] == "function"}
        self.ctor = next((f for f in abi if f["type"] == "constructor"), {"inputs": []})
        self.errors = {}
        for e in abi:
            if e["type"] == "error":
                sig = f'{e["name"]}({",".join(abi_type(i) for i in e["inputs"])})'
                self.errors[keccak256(sig.encode())[:4]] = e
        self.events = {}
        for e in abi:
            if e["type"] == "event":
                sig = f'{e["name"]}({",".join(abi_type(i) for i in e["inputs"])})'
                self.events[e["name"]] = (keccak256(sig.encode()), e)

    def calldata(self, name: str, args: list) -> bytes:
        f = self.fns[name]
        types = [abi_type(i) for i in f["inputs"]]
        return keccak256(f"{name}({','.join(types)})".encode())[:4] + encode(types, args)

    def decode_out(self, name: str, data: bytes):
        return decode([abi_type(o) for o in self.fns[name]["outputs"]], data)

    def decode_error(self, data: bytes) -> str:
        if len(data) < 4:
            return f"revert without data ({hx(data)})"
        e = self.errors.get(data[:4])
        if not e:
            return f"unknown revert {hx(data[:4])}"
        vals = decode([abi_type(i) for i in e["inputs"]], data[4:])
        shown = ", ".join(hx(v) if isinstance(v, bytes) else str(v) for v in vals)
        return f"{e['name']}({shown})"

    def decode_log(self, log: dict):
        topic0 = unhx(log["topics"][0])
        for name, (t, e) in self.events.items():
            if t == topic0:
                topics = [unhx(x) for x in log["topics"][1:]]
                indexed = [i for i in e["inputs"] if i["indexed"]]
                plain = [i for i in e["inputs"] if not i["indexed"]]
                vals = dict(zip([i["name"] for i in plain], decode([abi_type(i) for i in plain], unhx(log["data"]))))
                for i, tp in zip(indexed, topics):
                    vals[i["name"]] = decode([abi_type(i)], tp)[0]
                return name, vals
        return None, {}


# ------------------------------------------------------------------------------ fixture -> calldata

def cert_arg(c: dict):
    return (c["view"], c["epoch"], unhx(c["signers"]), unhx(c["signatureG2"]))


def set_arg(s: dict):
    return (b"".join(unhx(k) for k in s["keys"]), s["powers"])


def header_arg(b: dict):
    return (b["height"], unhx(b["parentRoot"]), b["proposerIndex"], unhx(b["stateRoot"]))


def tasks_arg(b: dict):
    return [(t["taskDefinitionId"], t["performerIndex"], unhx(t["proofOfTask"]), unhx(t["data"]),
             unhx(t["signature"])) for t in b["body"]["tasks"]]


def next_ops_arg(ops: list[dict]):
    return [(unhx(o["address"]), unhx(o["pubkey"]), unhx(o["pop"]), o["power"], unhx(o["pubkeyG1"])) for o in ops]


def post_arg(p: dict):
    return (unhx(p["operatorsRoot"]), next_ops_arg(p["nextOperators"]), unhx(p["taskStatesRoot"]))


def step_args(step: dict) -> list:
    args = [cert_arg(step["certificate"]), set_arg(step["operatorSet"]), header_arg(step["block"]),
            tasks_arg(step["block"])]
    if step["method"] == "advanceEpoch":
        args.append(post_arg(step["postState"]))
    return args


# ------------------------------------------------------------------------------ runner

class Failure(Exception):
    pass


def check(cond: bool, what: str):
    if not cond:
        raise Failure(what)


class Runner:
    def __init__(self, rpc: Rpc, artifact: dict):
        self.rpc, self.abi = rpc, Abi(artifact["abi"])
        self.bytecode = unhx(artifact["bytecode"])
        self.sender = rpc("eth_accounts")[0]
        self.gas: list[tuple[str, str, int, int, int]] = []  # fixture, method, signers, gas, calldata gas

    def send(self, to: str | None, data: bytes) -> dict:
        tx = {"from": self.sender, "data": hx(data), "gas": hex(TX_GAS)}
        if to:
            tx["to"] = to
        h = self.rpc("eth_sendTransaction", tx)
        for _ in range(600):
            rcpt = self.rpc("eth_getTransactionReceipt", h)
            if rcpt:
                return rcpt
            time.sleep(0.05)
        raise Failure("no receipt")

    def call(self, to: str, data: bytes) -> tuple[bool, bytes]:
        try:
            out = self.rpc("eth_call", {"from": self.sender, "to": to, "data": hx(data), "gas": hex(TX_GAS)}, "latest")
            return True, unhx(out)
        except RpcError as e:
            data = e.err.get("data")
            if isinstance(data, dict):
                data = data.get("data")
            return False, unhx(data) if isinstance(data, str) and data.startswith("0x") else b""

    def view(self, to: str, name: str, args: list):
        ok, out = self.call(to, self.abi.calldata(name, args))
        check(ok, f"view {name} reverted: {self.abi.decode_error(out)}")
        return self.abi.decode_out(name, out)

    def deploy(self, fx: dict) -> str:
        g = fx["genesis"]
        keys = b"".join(unhx(o["pubkeyG1"]) for o in g["operators"])
        powers = [o["power"] for o in g["operators"]]
        types = [abi_type(i) for i in self.abi.ctor["inputs"]]
        rcpt = self.send(None, self.bytecode + encode(types, [unhx(fx["network"]["networkDigest"]), keys, powers]))
        check(rcpt["status"] == "0x1", "deployment failed")
        addr = rcpt["contractAddress"]
        check(hx(self.view(addr, "voteDomain", [])[0]) == fx["network"]["voteDomain"], "voteDomain differs")
        commitment = self.view(addr, "epochInfo", [0])[0]
        check(hx(commitment) == g["commitment"], f"epoch 0 commitment {hx(commitment)} != {g['commitment']}")
        return addr

    def check_views(self, addr: str, step: dict):
        exp, blk, cert = step["expected"], step["block"], step["certificate"]
        root, task_roots = self.view(addr, "computeBlockRoot", [header_arg(blk), tasks_arg(blk)])
        check(hx(root) == exp["blockRoot"], f"block root: contract {hx(root)} python {exp['blockRoot']}")
        check([hx(t) for t in task_roots] == exp["taskResultRoots"], "task result roots differ")
        ids = self.view(addr, "computeTaskIds", [set_arg(step["operatorSet"]), tasks_arg(blk)])[0]
        check([hx(t) for t in ids] == exp["taskIds"], f"task ids differ: {[hx(t) for t in ids]} vs {exp['taskIds']}")
        sroot = self.view(addr, "computeSigningRoot", [cert["view"], cert["epoch"], root])[0]
        check(hx(sroot) == exp["signingRoot"], f"signing root: contract {hx(sroot)} python {exp['signingRoot']}")
        point = self.view(addr, "hashToG2", [sroot])[0]
        check(hx(point) == exp["messageG2"], "hash_to_curve G2 point differs from py_ecc's")
        if step["method"] == "advanceEpoch" and step.get("expectError") != "NextKeyMismatch":
            p = step["postState"]
            nroot, ncommit, _ = self.view(addr, "computeOperatorSet", [next_ops_arg(p["nextOperators"])])
            check(hx(nroot) == p["nextOperatorSetRoot"], "next operator set root differs")
            check(hx(ncommit) == p["nextCommitment"], "next commitment differs")

    def check_events(self, rcpt: dict, step: dict, fresh: bool):
        exp = step["expected"]
        logs = [self.abi.decode_log(log) for log in rcpt["logs"]]
        blocks = [v for n, v in logs if n == "BlockSettled"]
        tasks = [v for n, v in logs if n == "TaskResultSettled"]
        if fresh:
            check(len(blocks) == 1 and hx(blocks[0]["blockRoot"]) == exp["blockRoot"], "BlockSettled event")
            check(blocks[0]["signedPower"] == exp["signedPower"] and blocks[0]["totalPower"] == exp["totalPower"],
                  "BlockSettled powers")
            check([hx(v["taskId"]) for v in tasks] == exp["taskIds"], "TaskResultSettled task ids")
            check([hx(v["taskResultRoot"]) for v in tasks] == exp["taskResultRoots"], "TaskResultSettled roots")
        else:
            check(not blocks and not tasks, "settlement events repeated")
        if step["method"] == "advanceEpoch":
            started = [v for n, v in logs if n == "EpochStarted"]
            check(len(started) == 1 and hx(started[0]["commitment"]) == step["postState"]["nextCommitment"],
                  "EpochStarted event")

    def run_fixture(self, name: str, fx: dict) -> list[str]:
        addr = self.deploy(fx)
        notes = []
        settled: set[int] = set()
        for k, step in enumerate(fx["steps"]):
            label = f"step {k} {step['method']}"
            self.check_views(addr, step)
            data = self.abi.calldata(step["method"], step_args(step))
            ok, out = self.call(addr, data)
            if step["expect"] == "success":
                check(ok, f"{label}: expected success, reverted with {self.abi.decode_error(out)}")
                rcpt = self.send(addr, data)
                check(rcpt["status"] == "0x1", f"{label}: mined transaction failed")
                height = step["block"]["height"]
                self.check_events(rcpt, step, height not in settled)
                settled.add(height)
                stored = self.view(addr, "settledRoot", [height])[0]
                check(hx(stored) == step["expected"]["blockRoot"], f"{label}: settledRoot not recorded")
                gas = int(rcpt["gasUsed"], 16)
                n_signers = len(step["certificate"]["signerIndices"])
                # intrinsic: 21000 + 16 per non-zero and 4 per zero calldata byte (EIP-2028)
                intrinsic = 21000 + sum(16 if b else 4 for b in data)
                self.gas.append((name, step["method"], n_signers, gas, intrinsic))
                notes.append(f"{label}: ok, gas {gas}")
            else:
                check(not ok, f"{label}: expected revert {step.get('expectError')}, call succeeded")
                err = self.abi.decode_error(out)
                want = step.get("expectError")
                check(want is None or err.startswith(want + "("), f"{label}: reverted with {err}, expected {want}")
                rcpt = self.send(addr, data)
                check(rcpt["status"] == "0x0", f"{label}: mined transaction did not revert")
                notes.append(f"{label}: reverted {err}")
        return notes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpc-url", help="use this node instead of starting anvil")
    ap.add_argument("--fixtures", default=FIXTURES)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    with open(ARTIFACT) as f:
        artifact = json.load(f)
    proc = None
    url = args.rpc_url
    if not url:
        proc, url = start_anvil()
    passed = failed = 0
    try:
        runner = Runner(Rpc(url), artifact)
        for path in sorted(glob.glob(os.path.join(args.fixtures, "*.json"))):
            with open(path) as f:
                (test_id, fx), = json.load(f).items()
            name = os.path.splitext(os.path.basename(path))[0]
            try:
                notes = runner.run_fixture(name, fx)
                passed += 1
                print(f"PASS {name}")
                if args.verbose:
                    for n in notes:
                        print(f"     {n}")
            except Failure as e:
                failed += 1
                print(f"FAIL {name}: {e}")
        print("\ngas used per successful call (anvil receipts, Prague):")
        print(f"  {'fixture':34} {'method':13} {'signers':>7} {'gas':>9} {'intrinsic':>10} {'execution':>10}")
        for name, method, n, gas, intrinsic in runner.gas:
            print(f"  {name:34} {method:13} {n:>7} {gas:>9} {intrinsic:>10} {gas - intrinsic:>10}")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\n{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
