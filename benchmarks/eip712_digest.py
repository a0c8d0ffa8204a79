"""CPU per EIP-712 enable digest (session_sdk.eip712, eth-account's typed-data encoder): what an
enable-mode op costs the bundler's signature check once, and the relay per grant.

    .venv/bin/python benchmarks/eip712_digest.py [--rounds 300]

Prints process CPU time per call (time.process_time, so a busy machine moves it less than
wall-clock) for a spec with no policies and for a large one (3 call policies with 6 argument
constraints, 2 transfer policies, 2 paymasters), for the digest and for the spec's struct hash.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "sdk/python"))

from session_sdk.eip712 import eip712_spec_digest, spec_struct_hash  # noqa: E402
from session_sdk.types import (  # noqa: E402
    ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, SessionSpec, TransferPolicy, word,
)

ACCOUNT = "0x" + "aa" * 20


def large_spec() -> SessionSpec:
    constraints = (ArgConstraint(Condition.LTE, 1, word(10**24), Limit.lifetime(10**30)),
                   ArgConstraint.typed(Condition.EQ, 0, "address", "0x" + "de" * 20))
    return SessionSpec(
        signer="0x" + "51" * 20, valid_until=2**40, period=3600,
        call_policies=tuple(CallPolicy(target="0x" + f"{i:02x}" * 20, selector=bytes.fromhex("a9059cbb"),
                                       constraints=constraints) for i in range(3)),
        transfer_policies=(TransferPolicy(max_value_per_use=10**17, value_limit=Limit.allowance(10**18)),) * 2,
        gas=GasPolicy(max_cost_per_op=10**16, cost_limit=Limit.lifetime(10**17),
                      paymasters=("0x" + "99" * 20, "0x" + "98" * 20)))


def per_call_ms(fn, rounds: int) -> float:
    fn()  # warm
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    for name, spec in (("empty spec", SessionSpec(signer="0x" + "51" * 20)), ("large spec", large_spec())):
        digest = per_call_ms(lambda: eip712_spec_digest(spec, 3, ACCOUNT, 31337, 1), args.rounds)
        struct = per_call_ms(lambda: spec_struct_hash(spec), args.rounds)
        print(f"{name:11s} eip712_spec_digest {digest:6.3f} ms CPU/call   spec_struct_hash {struct:6.3f} ms CPU/call")


if __name__ == "__main__":
    main()
