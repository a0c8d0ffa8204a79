"""preVerificationGas: what the EntryPoint cannot meter but the bundler pays for an op.

The op's share of the bundle transaction is its calldata inside `handleOps` plus the
EntryPoint's per-op bookkeeping outside the op's gas limits, plus a share of the 21,000 base
cost. Since Prague (EIP-7623) a transaction whose execution is small pays a calldata floor of
10 gas per token instead of 4, so the op must also cover that floor.
"""
from __future__ import annotations

from ..userop.model import UserOperation
from ..userop.packing import encode_packed_op, pack

TX_BASE_GAS = 21_000
PER_OP_OVERHEAD = 18_300  # EntryPoint bookkeeping per op outside verification/call limits
PER_WORD_OVERHEAD = 4
STANDARD_GAS_PER_TOKEN = 4
FLOOR_GAS_PER_TOKEN = 10  # EIP-7623 TOTAL_COST_FLOOR_PER_TOKEN
BIG_QUANTITY = (1 << 120) - 1  # stands in for gas fields not yet known during estimation


def op_calldata(op: UserOperation) -> bytes:
    """The op as it appears inside handleOps calldata (one tuple element of the array)."""
    return encode_packed_op(op)


def tokens(data: bytes) -> int:
    zeros = data.count(0)
    return zeros + 4 * (len(data) - zeros)


def _word_zeros(n: int) -> int:
    if n < 256:  # offsets, lengths, most nonces: one byte at most
        return 32 if n == 0 else 31
    return n.to_bytes(32, "big").count(0)


def calldata_size_and_tokens(op: UserOperation) -> tuple[int, int]:
    """(length, tokens) of op_calldata(op), counted without building it: pricing is on the
    admission hot path, where eth_abi's generic encoder was a fifth of a session op's CPU. The
    tuple is 9 head words (the 4 dynamic fields as offsets) then each dynamic field as a length
    word and its bytes zero-padded to 32; test_pvg checks both figures against eth_abi's bytes."""
    sender, nonce, init, call, limits, pvg, fees, pm, sig = pack(op)
    size, zeros = 9 * 32, 12 + bytes.fromhex(sender[2:]).count(0) + _word_zeros(nonce) + _word_zeros(pvg) \
        + limits.count(0) + fees.count(0)
    for field in (init, call, pm, sig):
        padded = (len(field) + 31) // 32 * 32
        zeros += _word_zeros(size) + _word_zeros(len(field)) + field.count(0) + padded - len(field)
        size += 32 + padded
    return size, zeros + 4 * (size - zeros)


def _pvg(op: UserOperation, bundle_size: int) -> tuple[int, int]:
    size, t = calldata_size_and_tokens(op)
    share = TX_BASE_GAS // max(bundle_size, 1)
    standard = share + STANDARD_GAS_PER_TOKEN * t + PER_OP_OVERHEAD + PER_WORD_OVERHEAD * ((size + 31) // 32)
    floor = share + FLOOR_GAS_PER_TOKEN * t
    return standard, floor


def required_pre_verification_gas(op: UserOperation, bundle_size: int = 1) -> int:
    """The least preVerificationGas this bundler accepts for `op` as submitted."""
    return max(_pvg(op, bundle_size))


def floor_pre_verification_gas(op: UserOperation, bundle_size: int = 1) -> int:
    return _pvg(op, bundle_size)[1]


def estimate_pre_verification_gas(op: UserOperation, bundle_size: int = 1) -> int:
    """An upper bound that stays valid once the client fills in the real gas fields and
    signature: unknown gas fields are taken as large values and every signature byte as
    non-zero (a dummy signature can have zero bytes where the real one has none)."""
    filled = op.with_changes(
        call_gas_limit=max(op.call_gas_limit, BIG_QUANTITY),
        verification_gas_limit=max(op.verification_gas_limit, BIG_QUANTITY),
        pre_verification_gas=max(op.pre_verification_gas, BIG_QUANTITY),
        max_fee_per_gas=max(op.max_fee_per_gas, BIG_QUANTITY),
        max_priority_fee_per_gas=max(op.max_priority_fee_per_gas, BIG_QUANTITY),
        paymaster_verification_gas_limit=max(op.paymaster_verification_gas_limit, BIG_QUANTITY)
        if op.paymaster else 0,
        paymaster_post_op_gas_limit=max(op.paymaster_post_op_gas_limit, BIG_QUANTITY)
        if op.paymaster else 0,
        signature=b"\xff" * max(len(op.signature), 65),
    )
    return required_pre_verification_gas(filled, bundle_size)
