"""The checks SessionAccount makes, computed off-chain exactly as the contract does: whether a spec
may be granted, whether an argument word is canonical for its type, an allowance period's time
window, an op's maximum cost and the validationData the account returns.

The bundler's evaluator (bundler.sessions.policy) and the SDKs' builders both ask these functions,
so a refusal reads the same on every side."""
from __future__ import annotations

from .types import UINT48_MAX, UINT256_MAX, ZERO_ADDRESS, ArgConstraint, ArgType, Condition, LimitKind, SessionSpec

SIG_VALIDATION_FAILED = 1  # validationData's authorizer when the signature is not the account's


def check_spec(spec: SessionSpec, account: str | None = None) -> str | None:
    """The reason SessionAccount._checkSpec refuses `spec` (InvalidSessionSpec), or None."""
    if spec.signer == ZERO_ADDRESS:
        return "signer is zero"
    if spec.signer == account:
        return "signer is the account"
    if spec.valid_until != 0 and spec.valid_until < spec.valid_after:
        return "validUntil before validAfter"

    def bad_limit(kind: int) -> str | None:
        if kind > LimitKind.ALLOWANCE:
            return "unknown limit kind"
        if kind == LimitKind.ALLOWANCE and spec.period == 0:
            return "allowance without period"
        return None

    for p in spec.call_policies:
        if (reason := bad_limit(p.value_limit.kind)) is not None:
            return reason
        for c in p.constraints:
            if c.condition > Condition.LTE:
                return "unknown condition"
            if (reason := bad_limit(c.limit.kind)) is not None:
                return reason
            if (reason := bad_arg_type(c)) is not None:
                return reason
    for t in spec.transfer_policies:
        if (reason := bad_limit(t.value_limit.kind)) is not None:
            return reason
    if (reason := bad_limit(spec.gas.cost_limit.kind)) is not None:
        return reason
    if any(p == ZERO_ADDRESS for p in spec.gas.paymasters):
        return "paymaster is zero"
    return None


def bad_arg_type(c: ArgConstraint) -> str | None:
    """SessionAccount._checkArgType."""
    if c.arg_type > ArgType.BYTES:
        return "unknown argument type"
    sized = c.arg_type in (ArgType.UINT, ArgType.INT, ArgType.BYTES)
    if (c.arg_size == 0 or c.arg_size > 32) if sized else c.arg_size != 0:
        return "bad argument size"
    if not is_canonical(c.arg_type, c.arg_size, c.ref_value):
        return "refValue does not fit its type"
    if c.arg_type == ArgType.INT and c.limit.kind != LimitKind.NONE:
        return "limit on a signed argument"
    return None


def is_canonical(arg_type: int, arg_size: int, value: bytes) -> bool:
    """SessionAccount._canonical: whether a 32-byte word is the ABI encoding of a value of the type."""
    w = int.from_bytes(value, "big")
    if arg_type == ArgType.WORD:
        return True
    if arg_type == ArgType.ADDRESS:
        return w >> 160 == 0
    if arg_type == ArgType.BOOL:
        return w <= 1
    if arg_size >= 32:
        return True
    bits = 8 * arg_size
    if arg_type == ArgType.UINT:
        return w >> bits == 0
    if arg_type == ArgType.BYTES:
        return (w << bits) & UINT256_MAX == 0
    # INT: the word is its low arg_size bytes sign-extended
    low = w & ((1 << bits) - 1)
    extended = low | (UINT256_MAX ^ ((1 << bits) - 1)) if low >> (bits - 1) else low
    return extended == w


def signed(value: int) -> int:
    """A uint256 read as int256."""
    return value - (1 << 256) if value >> 255 else value


def period_window(spec: SessionSpec, period_index: int) -> tuple[int, int]:
    """(validAfter, validUntil) a session op naming `period_index` gets, exactly as the contract
    computes it (validUntil 0 = unbounded). ValueError where the contract reverts
    SessionPeriodOutsideWindow."""
    lo = spec.valid_after
    hi = spec.valid_until or UINT48_MAX
    if spec.period == 0:
        if period_index != 0:
            raise ValueError("period index must be 0 for a session without period")
    else:
        lo += period_index * spec.period
        hi = min(hi, lo + spec.period - 1)
    if lo > hi:
        raise ValueError(f"period {period_index} lies outside the session window")
    return lo, (0 if hi == UINT48_MAX else hi)


def op_max_cost(pre_verification_gas: int, verification_gas_limit: int, call_gas_limit: int,
                paymaster_verification_gas_limit: int, paymaster_post_op_gas_limit: int, max_fee_per_gas: int) -> int:
    """SessionAccount._maxCost: the op's prefund, saturating at 2^256-1."""
    total = (pre_verification_gas + verification_gas_limit + call_gas_limit + paymaster_verification_gas_limit
             + paymaster_post_op_gas_limit)
    return min(total * max_fee_per_gas, UINT256_MAX)


def unpack_validation_data(vd: int) -> tuple[int, int, int]:
    """(authorizer, validAfter, validUntil) with authorizer 1 = signature failure; validUntil 0
    means unbounded."""
    return vd & ((1 << 160) - 1), (vd >> 208) & UINT48_MAX, (vd >> 160) & UINT48_MAX
