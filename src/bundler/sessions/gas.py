"""An upper bound of the verification gas a session-mode op (0x01) of a deployed SessionAccount
needs, from the op's shape alone: the admission fast path only skips the py-evm run when
verificationGasLimit is at least this bound, so "out of verification gas" cannot be a surprise
at bundle time; below it the op takes the full simulation, which decides exactly.

The bound counts the EntryPoint's part of verification (nonce update, prefund bookkeeping), the
account's fixed work (session slot, usage counter, ecrecover, SessionUsed event, prefund
payment) and, per call, every storage slot the contract may read or write for the policies it
scans, as cold accesses and fresh (zero to non-zero) writes, plus calldata copying. It is
checked against py-evm measurements of random specs and calls in
tests/test_session_differential.py (test_gas_bound_covers_measured_validation).

eth_estimateUserOperationGas returns at least this bound as verificationGasLimit for session
ops, so estimated ops qualify for the fast path.
"""
from __future__ import annotations

from .policy import Evaluation

COLD_SLOAD = 2_100
FRESH_SSTORE = 22_100  # cold slot, zero -> non-zero
UPDATE_SSTORE = 5_000  # cold slot, non-zero -> non-zero

BASE = 95_000  # EntryPoint verification overhead + account fixed work + prefund payment
PER_CALL = 12_000  # decoding, self-call check, loop, consumption record
PER_POLICY_SCANNED = 2 * COLD_SLOAD + 1_000  # target/selector slot of a policy that did not match
PER_MATCHED_POLICY = 4 * COLD_SLOAD + 2_000  # maxValuePerUse, valueLimit slots, constraints length
PER_CONSTRAINT = 4 * COLD_SLOAD + 2_000  # condition/index, refValue, limit slots
PER_CONSUMPTION = FRESH_SSTORE + UPDATE_SSTORE + 2_000  # used (+ allowance period) written
PER_CALLDATA_BYTE = 24  # calldata copy, abi.decode into memory, hashing, event data
MARGIN_PERCENT = 125


def validation_gas_bound(ev: Evaluation, call_data_length: int) -> int:
    spec = ev.spec
    gas = BASE + PER_CALLDATA_BYTE * call_data_length
    if not spec.wildcard:
        gas += PER_CONSUMPTION * len(ev.consumed)
        scan = len(spec.call_policies) * PER_POLICY_SCANNED + len(spec.transfer_policies) * PER_POLICY_SCANNED
        most_constraints = max((len(p.constraints) for p in spec.call_policies), default=0)
        per_call = PER_CALL + scan + PER_MATCHED_POLICY + most_constraints * PER_CONSTRAINT
        gas += per_call * len(ev.calls)
    else:
        gas += PER_CALL * len(ev.calls)
    return gas * MARGIN_PERCENT // 100
