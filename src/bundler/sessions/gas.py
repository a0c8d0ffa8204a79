"""An upper bound of the verification gas a session-mode op (0x01) of a deployed SessionAccount
needs, from the op's shape and its evaluation: the admission fast path only skips the py-evm
run when verificationGasLimit is at least this bound, so "out of verification gas" cannot be a
surprise at bundle time; below it the op takes the full simulation, which decides exactly.

Model (EIP-2929/2200 prices), following the code that runs in SessionAccount._useSession: the
EntryPoint's part of verification and the account's fixed work (session slot, usage counter,
the gas policy's slots, ecrecover, SessionUsed event) as BASE, plus the prefund payment when
the deposit does not cover the op (a fresh deposit slot when it is zero) and a fresh nonce slot
when the key's sequence is 0 (the state read at admission tells both); per call the decoding,
protected-target and loop work; per distinct (target, selector) the four index lookups cold
once and warm on every further call (the contract finds a policy through its (target,
selector) index: the number of policies in the spec costs nothing); per distinct transfer
recipient its two lookups; per distinct policy that governed a call its slots (and its
constraints' slots) read cold once, per call its constraints' checks; per distinct cumulative
limit consumed (the gas budget included) a fresh zero-to-non-zero write of `used` plus the
allowance period write, later consumptions of the same limit in the op on dirty slots;
calldata copied into memory, hashed and logged. Memory grows with the consumptions only (the
SessionUsed array doubles as needed), never with the spec. Then a margin.

tests/integration/test_session_differential.py::test_gas_bound_covers_measured_validation checks the bound
against py-evm measurements (the estimator's buffered limit) of random specs and calls, and
that it stays within a small factor of them. eth_estimateUserOperationGas returns at least this
bound as verificationGasLimit for session ops, so estimated ops qualify for the fast path.
"""
from __future__ import annotations

from .policy import Evaluation

COLD_SLOAD = 2_100
BASE = 40_000
PREFUND_PAYMENT = 12_000  # CALL with value to the EntryPoint, its deposit bookkeeping
FRESH_SLOT = 20_000  # a zero-to-non-zero write instead of an update (nonce or deposit slot)
PER_CALL = 2_500
PER_CALL_KEY_COLD = 4 * (COLD_SLOAD + 300)  # four (target, selector) index lookups, first time
PER_CALL_KEY_WARM = 4 * 200  # the same lookups on a later call (warm mapping reads)
PER_TRANSFER_KEY_COLD = 2 * (COLD_SLOAD + 300)
PER_TRANSFER_KEY_WARM = 2 * 400
PER_GOVERNING_POLICY = 4 * COLD_SLOAD + 1_500  # maxValuePerUse, valueLimit, constraints length
PER_CONSTRAINT_COLD = 3 * COLD_SLOAD + 1_500  # condition/type/index, refValue, limit kind slots
PER_CONSTRAINT_CALL = 2_000  # word read, type check, comparison, limit check on each call
PER_LIMIT_FIRST = 22_100 + 2_900 + 2_000  # fresh `used` write + allowance period write + logic
PER_CONSUMPTION = 2_500  # any consumption: dirty writes, the Consumption record, event data
PER_CALLDATA_BYTE = 6
MARGIN_PERCENT = 115


def validation_gas_bound(ev: Evaluation, call_data_length: int, *, fresh_nonce: bool = True,
                         pays_prefund: bool = True, fresh_deposit: bool = True) -> int:
    """Without the account's state the defaults assume the worst (first op ever, no deposit)."""
    spec = ev.spec
    calls = len(ev.calls)
    gas = BASE + PER_CALLDATA_BYTE * call_data_length + PER_CALL * calls
    if fresh_nonce:
        gas += FRESH_SLOT
    if pays_prefund:
        gas += PREFUND_PAYMENT + (FRESH_SLOT if fresh_deposit else 0)
    if not spec.wildcard:
        seen: set = set()
        for call, m in zip(ev.calls, ev.matched):
            transfer = m is not None and m[0] == "transfer"
            key = ("transfer", call.target) if transfer else ("call", call.target, bytes(call.data[:4]))
            if key in seen:
                gas += PER_TRANSFER_KEY_WARM if transfer else PER_CALL_KEY_WARM
            else:
                seen.add(key)
                gas += PER_TRANSFER_KEY_COLD if transfer else PER_CALL_KEY_COLD
        governing = {m for m in ev.matched if m is not None}
        for kind, index in governing:
            gas += PER_GOVERNING_POLICY
            if kind == "call":
                gas += len(spec.call_policies[index].constraints) * PER_CONSTRAINT_COLD
        for m in ev.matched:
            if m is not None and m[0] == "call":
                gas += len(spec.call_policies[m[1]].constraints) * PER_CONSTRAINT_CALL
    gas += len({c.key for c in ev.consumed}) * PER_LIMIT_FIRST + len(ev.consumed) * PER_CONSUMPTION
    return gas * MARGIN_PERCENT // 100
