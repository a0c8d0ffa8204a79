"""CPU per UserOperation param decode at the RPC edge (userop/codec.py decode_user_operation, the
declared msgspec model), in this process, with no node:

    PYTHONPATH=src:sdk/python .venv/bin/python benchmarks/rpc_params.py [--rounds 20000] [--against REV]

Times, per op, the decode of an already parsed JSON object (what the JSON-RPC handlers get), the
decode of JSON text (the stores' column) and the encode back (format_user_operation). With
`--against REV` it also times `parse_user_operation` of userop/codec.py as it was at git revision
REV (the hand parser before the msgspec model: 7326f2f), on the same ops, in the same run.
The best of several repeats is printed (CPU time, process_time): the machine is shared.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "sdk" / "python"))

import orjson  # noqa: E402

from bundler.userop import codec  # noqa: E402

SESSION_OP = {  # the session fast path's op shape: no factory, no paymaster
    "sender": "0x" + "11" * 20, "nonce": "0x1234000000000000000000000000000000000000000000000000000000000001",
    "callData": "0xb61d27f6" + "ab" * 196, "callGasLimit": "0x186a0", "verificationGasLimit": "0x493e0",
    "preVerificationGas": "0xc350", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1",
    "signature": "0x01" + "00" * 150,
}
SPONSORED_7702_OP = {**SESSION_OP, "factory": "0x7702", "paymaster": "0x" + "22" * 20,
                     "paymasterVerificationGasLimit": "0x10000", "paymasterPostOpGasLimit": "0x0",
                     "paymasterData": "0x" + "cd" * 100,
                     "eip7702Auth": {"chainId": "0x7a69", "address": "0x" + "44" * 20, "nonce": "0x3", "yParity": "0x1",
                                     "r": "0x" + "5" * 64, "s": "0x" + "6" * 63}}


def cpu_us(f, rounds: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(rounds):
            f()
        best = min(best, time.process_time() - t)
    return best / rounds * 1e6


def old_parser(rev: str):
    """parse_user_operation of userop/codec.py at `rev`, loaded as a module of its own."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/bundler/userop/codec.py"],
                          check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("codec_at_" + rev)
    module.__package__ = "bundler.userop"  # its relative imports resolve against today's package
    exec(compile(text, f"{rev}:codec.py", "exec"), module.__dict__)
    return module.parse_user_operation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--against", metavar="REV", help="also time the parser of userop/codec.py at this git revision")
    args = ap.parse_args()
    old = old_parser(args.against) if args.against else None
    print(f"UserOperation param, CPU us per op (best of 5 x {args.rounds})")
    print(f"  {'op':22} {'decode':>8} {'from JSON':>10} {'encode':>8}" + (f" {'at ' + args.against:>12}" if old else ""))
    for name, obj in (("session op", SESSION_OP), ("sponsored 7702 op", SPONSORED_7702_OP)):
        op = codec.decode_user_operation(obj)
        raw = orjson.dumps(obj)
        row = (f"  {name:22} {cpu_us(lambda: codec.decode_user_operation(obj), args.rounds):8.1f}"
               f" {cpu_us(lambda: codec.decode_user_operation_json(raw), args.rounds):10.1f}"
               f" {cpu_us(lambda: codec.format_user_operation(op), args.rounds):8.1f}")
        if old is not None:
            assert old(obj) == op, "the parser at REV reads the op differently"
            row += f" {cpu_us(lambda: old(obj), args.rounds):12.1f}"
        print(row)


if __name__ == "__main__":
    main()
