"""Results of EntryPoint simulations (picklable) and their decoding.

Everything here is pure: revert data in, dataclasses out; dataclasses in, bundler.errors out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector
from eth_utils import to_checksum_address

from .custom_errors import describe_custom_error
from ..userop.sharing import shared_quantity
from ..errors import (
    AggregatorUnsupported, BundlerError, PaymasterDepositTooLow, PaymasterRejected, SignatureInvalid,
    TimeRangeInvalid, ValidationRejected,
)

UINT48_MAX = (1 << 48) - 1
ADDRESS_MASK = (1 << 160) - 1
# EntryPoint v0.9: validAfter and validUntil both above this flag are block numbers (masked)
VALIDITY_BLOCK_RANGE_FLAG = 1 << 47
VALIDITY_BLOCK_RANGE_MASK = VALIDITY_BLOCK_RANGE_FLAG - 1


selector = function_signature_to_4byte_selector


SEL_ERROR = selector("Error(string)")
SEL_PANIC = selector("Panic(uint256)")
SEL_FAILED_OP = selector("FailedOp(uint256,string)")
SEL_FAILED_OP_WITH_REVERT = selector("FailedOpWithRevert(uint256,string,bytes)")
SEL_POST_OP_REVERTED = selector("PostOpReverted(bytes)")
SEL_SIGNATURE_VALIDATION_FAILED = selector("SignatureValidationFailed(address)")

PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialized function",
}

_AA_CODE = re.compile(r"^(AA\d\d)\b")


def _address_or_none(value: int) -> str | None:
    return None if value == 0 else "0x" + value.to_bytes(20, "big").hex()


@dataclass(frozen=True, slots=True)
class ValidationData:
    """validationData as returned by validateUserOp / validatePaymasterUserOp, unpacked."""

    raw: int
    aggregator: str | None  # a real aggregator address; None for 0 (ok) and 1 (sig failed)
    sig_failed: bool
    valid_after: int
    valid_until: int  # 0 in the packed form means "forever": stored here as 2**48-1
    # v0.9: the range is of block numbers (valid after block valid_after, up to valid_until)
    block_range: bool = False

    @classmethod
    def unpack(cls, raw: int, block_ranges: bool = False) -> "ValidationData":
        """`block_ranges`: the EntryPoint reads a range with the top bit set in both bounds as
        block numbers (v0.9's VALIDITY_BLOCK_RANGE_FLAG); older ones read every range as times."""
        agg = raw & ADDRESS_MASK
        valid_until = ((raw >> 160) & UINT48_MAX) or UINT48_MAX
        valid_after = (raw >> 208) & UINT48_MAX
        block_range = (block_ranges and valid_after > VALIDITY_BLOCK_RANGE_FLAG
                       and valid_until > VALIDITY_BLOCK_RANGE_FLAG)
        if block_range:
            valid_after &= VALIDITY_BLOCK_RANGE_MASK
            valid_until &= VALIDITY_BLOCK_RANGE_MASK
        return cls(
            raw=raw,
            aggregator=None if agg in (0, 1) else _address_or_none(agg),
            sig_failed=agg == 1,
            valid_after=valid_after,
            valid_until=valid_until,
            block_range=block_range,
        )


@dataclass(frozen=True, slots=True)
class StakeInfo:
    stake: int
    unstake_delay_sec: int

    def is_staked(self, min_stake: int, min_unstake_delay: int) -> bool:
        return self.stake >= min_stake and self.unstake_delay_sec >= min_unstake_delay


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Decoded IEntryPointSimulations.ValidationResult of a successful simulateValidation."""

    pre_op_gas: int
    prefund: int
    account: ValidationData
    paymaster: ValidationData
    paymaster_context: bytes
    sender_info: StakeInfo
    factory_info: StakeInfo
    paymaster_info: StakeInfo
    aggregator: str | None
    aggregator_info: StakeInfo | None
    gas_used: int  # by the simulateValidation call
    block_number: int  # the pinned block the state was read at
    trace: Any = None  # what a tracer reported (next phase: ERC-7562 findings)
    reads: Any = None  # sim.readset.ReadSet of a traced validation without overrides (reuse at bundle time)

    # the time range (block ranges are checked against the block by validation_error, at
    # admission and again at the second validation)
    @property
    def valid_after(self) -> int:
        return max((vd.valid_after for vd in (self.account, self.paymaster) if not vd.block_range), default=0)

    @property
    def valid_until(self) -> int:
        return min((vd.valid_until for vd in (self.account, self.paymaster) if not vd.block_range),
                   default=UINT48_MAX)

    # v0.9 block-number ranges (0 / the mask when neither returned one)
    @property
    def valid_after_block(self) -> int:
        return max((vd.valid_after for vd in (self.account, self.paymaster) if vd.block_range), default=0)

    @property
    def valid_until_block(self) -> int:
        return min((vd.valid_until for vd in (self.account, self.paymaster) if vd.block_range),
                   default=VALIDITY_BLOCK_RANGE_MASK)


@dataclass(frozen=True, slots=True)
class SimulationFailure:
    """A simulation that reverted: FailedOp / FailedOpWithRevert / anything else, decoded."""

    reason: str  # the EntryPoint's reason ("AA23 reverted") or a description of the failure
    code: str | None = None  # "AA23"
    op_index: int | None = None
    inner: bytes = b""  # revert data of the account/paymaster/factory (FailedOpWithRevert)
    inner_reason: str | None = None  # that revert data, decoded
    revert_data: bytes = b""  # the whole revert data of the call
    trace: Any = None

    @property
    def message(self) -> str:
        if self.inner_reason is not None:
            return f"{self.reason}: {self.inner_reason}"
        return self.reason

    def __str__(self) -> str:
        return self.message


def describe_revert(data: bytes) -> str:
    """Human-readable revert data: Error(string), Panic(uint256), the EntryPoint's errors, the
    custom errors of the contracts we ship ABIs of (sim/custom_errors.py), or the selector of
    an unknown one."""
    if not data:
        return "reverted without data"
    sel = data[:4]
    try:
        if sel == SEL_ERROR:
            (text,) = decode(["string"], data[4:])
            return text
        if sel == SEL_PANIC:
            (code,) = decode(["uint256"], data[4:])
            return f"panic 0x{code:02x} ({PANIC_REASONS.get(code, 'unknown panic code')})"
        if sel == SEL_FAILED_OP:
            index, text = decode(["uint256", "string"], data[4:])
            return f"FailedOp({index}, {text!r})"
        if sel == SEL_FAILED_OP_WITH_REVERT:
            index, text, inner = decode(["uint256", "string", "bytes"], data[4:])
            return f"FailedOpWithRevert({index}, {text!r}, {describe_revert(inner)})"
        if sel == SEL_POST_OP_REVERTED:
            (inner,) = decode(["bytes"], data[4:])
            return f"postOp reverted: {describe_revert(inner)}"
    except Exception:  # malformed ABI data: fall through to the raw description
        pass
    if len(data) < 4:
        return f"reverted with data 0x{data.hex()}"
    known = describe_custom_error(data, describe_revert)
    if known is not None:
        return known
    text = f"custom error 0x{sel.hex()}"
    if len(data) > 4:
        rest = data[4:]
        shown = rest[:96].hex()
        text += f" with data 0x{shown}{'...' if len(rest) > 96 else ''}"
    return text


def decode_failure(data: bytes, error: str | None = "Revert") -> SimulationFailure:
    """Revert data of simulateValidation/simulateHandleOp/handleOps -> SimulationFailure."""
    if error is not None and error != "Revert":
        return SimulationFailure(reason=f"simulation failed: {error}", revert_data=data)
    sel = data[:4]
    try:
        if sel == SEL_FAILED_OP:
            index, reason = decode(["uint256", "string"], data[4:])
            return SimulationFailure(reason=reason, code=_aa_code(reason), op_index=index, revert_data=data)
        if sel == SEL_FAILED_OP_WITH_REVERT:
            index, reason, inner = decode(["uint256", "string", "bytes"], data[4:])
            return SimulationFailure(
                reason=reason, code=_aa_code(reason), op_index=index, inner=inner,
                inner_reason=describe_revert(inner), revert_data=data,
            )
        if sel == SEL_SIGNATURE_VALIDATION_FAILED:
            (aggregator,) = decode(["address"], data[4:])
            return SimulationFailure(
                reason=f"aggregator {aggregator} rejected the signatures", code=None, revert_data=data,
            )
        if sel == SEL_ERROR:
            (reason,) = decode(["string"], data[4:])
            return SimulationFailure(reason=reason, code=_aa_code(reason), revert_data=data)
    except Exception:
        pass
    return SimulationFailure(reason=f"EntryPoint reverted: {describe_revert(data)}", revert_data=data)


def _aa_code(reason: str) -> str | None:
    m = _AA_CODE.match(reason)
    return m.group(1) if m else None


# -- mapping to bundler.errors --
def _checksum(address: str | None) -> str | None:
    return to_checksum_address(address) if address else None


def failure_error(failure: SimulationFailure, paymaster: str | None = None) -> BundlerError:
    """The ERC-7769 error for a failed validation. `paymaster` is the op's paymaster (for data)."""
    code = failure.code or ""
    message = failure.message
    pm_data = {"paymaster": _checksum(paymaster)} if paymaster else None
    if code == "AA22":
        return TimeRangeInvalid(
            f"{message}: the account's validAfter/validUntil window does not include the next block"
        )
    if code == "AA32":
        return TimeRangeInvalid(
            f"{message}: the paymaster's validAfter/validUntil window does not include the next block",
            pm_data,
        )
    if code == "AA27":  # v0.9 block ranges
        return TimeRangeInvalid(f"{message}: the account's block range does not include the next block")
    if code == "AA37":
        return TimeRangeInvalid(f"{message}: the paymaster's block range does not include the next block", pm_data)
    if code == "AA24":
        return SignatureInvalid(f"{message}: invalid UserOperation signature")
    if code == "AA34":
        return SignatureInvalid(f"{message}: invalid paymaster signature", pm_data)
    if code == "AA31":
        return PaymasterDepositTooLow(
            f"{message}: the paymaster's EntryPoint deposit does not cover the op's maximum cost",
            pm_data,
        )
    if code.startswith("AA3"):
        return PaymasterRejected(message, pm_data)
    if code == "AA21":
        return ValidationRejected(
            f"{message}: the sender's EntryPoint deposit and balance do not cover the op's maximum "
            f"cost (fund the account or use a paymaster)"
        )
    return ValidationRejected(message)


NO_STAKE = StakeInfo(0, 0)
PLAIN_VALIDATION = ValidationData.unpack(0)  # signature fine, no time range


def kept_form(result: ValidationResult, trace: Any) -> ValidationResult:
    """`result` as something that stays in memory per pending op: `trace` (what later checks
    read of it) in place of the tracer's report, and the usual values (no stake, validation data
    0) as one shared object each instead of a fresh copy per op from the worker's pickle, and
    its prefund through userop.sharing (the entry's prefund is the same object). Its pre_op_gas
    and gas_used are 0: nothing reads them after admission (the second validation reads the
    validation data, the stakes, the paymaster context, the block number, the trace and the read
    set), and for ops whose gas values differ they were 56 bytes per pending op."""
    def shared(value, common):
        return common if value == common else value

    return replace(
        result, trace=trace, pre_op_gas=0, prefund=shared_quantity(result.prefund),
        gas_used=0, account=shared(result.account, PLAIN_VALIDATION),
        paymaster=shared(result.paymaster, PLAIN_VALIDATION), sender_info=shared(result.sender_info, NO_STAKE),
        factory_info=shared(result.factory_info, NO_STAKE), paymaster_info=shared(result.paymaster_info, NO_STAKE),
    )


def validation_error(
    result: ValidationResult, *, now: int, min_valid_for: int = 30, paymaster: str | None = None,
    latest: int | None = None, max_wait: int = 0, strict: bool = False, next_block: int | None = None,
    block_time: int = 1,
) -> BundlerError | None:
    """Checks the EntryPoint leaves to the bundler after a successful simulateValidation:
    signature failure, aggregator, and the validity window against the inclusion time.

    `now` is the earliest timestamp the including block can have, `latest` the latest it is
    expected to have (chain.clock.InclusionWindow; both `now` when not given). An op valid
    only later is accepted when it becomes valid within `max_wait` s of `now` (the pool holds
    it until it is due); `strict`: the EntryPoint wants timestamp > validAfter (v0.8+).

    A v0.9 block range is judged the same way in blocks: `next_block` is the earliest block
    that can include the op (default: the one after the validated block), the block after it
    is the latest expected; `block_time` converts `max_wait` and `min_valid_for` to blocks."""
    latest = now if latest is None else latest
    next_block = result.block_number + 1 if next_block is None else next_block
    block_time = max(1, block_time)
    acct, pm = result.account, result.paymaster
    pm_data = {"paymaster": _checksum(paymaster)} if paymaster else {}
    if acct.sig_failed:
        return SignatureInvalid(
            "Invalid UserOperation signature: the account's validateUserOp returned "
            "SIG_VALIDATION_FAILED"
        )
    if acct.aggregator is not None:
        return AggregatorUnsupported(
            f"the account requires signature aggregator {_checksum(acct.aggregator)}, which this "
            f"bundler does not support",
            {"aggregator": _checksum(acct.aggregator)},
        )
    if pm.sig_failed or pm.aggregator is not None:
        return SignatureInvalid(
            "Invalid paymaster signature: validatePaymasterUserOp returned SIG_VALIDATION_FAILED",
            pm_data or None,
        )
    for who, vd, extra in (("account", acct, {}), ("paymaster", pm, pm_data)):
        data = {"validAfter": vd.valid_after, "validUntil": vd.valid_until, "earliestInclusion": now,
                "latestInclusion": latest, **extra}
        if vd.block_range:
            err = _block_range_error(who, vd, data, next_block, block_time, max_wait, min_valid_for)
            if err is not None:
                return err
            continue
        wait = max(0, vd.valid_after + (1 if strict else 0) - now)
        if wait > max_wait:
            return TimeRangeInvalid(
                f"UserOperation is not valid yet: the {who} returned validAfter {vd.valid_after}, "
                f"{vd.valid_after - now} s in the future (after the earliest inclusion time {now}; "
                f"this bundler holds not-yet-valid ops at most {max_wait} s)",
                data,
            )
        if vd.valid_until < latest + min_valid_for:
            if vd.valid_until < now:
                text = f"expired {now - vd.valid_until} s before the earliest time a block can include it ({now})"
            elif vd.valid_until < latest:
                text = (f"expires before it can be included (the including block is expected by timestamp "
                        f"{latest})")
            else:
                text = (f"expires in {vd.valid_until - now} s (less than {min_valid_for} s after the latest "
                        f"expected inclusion time {latest})")
            return TimeRangeInvalid(
                f"UserOperation {text}: the {who} returned validUntil {vd.valid_until}", data
            )
    return None


def _block_range_error(who: str, vd: ValidationData, data: dict, next_block: int, block_time: int,
                       max_wait: int, min_valid_for: int) -> BundlerError | None:
    """A v0.9 block range against the inclusion window in blocks (chain.clock): valid in a
    block > validAfterBlock and <= validUntilBlock. One that starts within `max_wait` seconds'
    worth of blocks is accepted (held until due, like a validAfter); one that ends before the
    block after the next (+ `min_valid_for` in blocks) is refused, like a validUntil."""
    data = {**data, "blockRange": True, "nextBlock": next_block}
    wait = max(0, vd.valid_after + 1 - next_block)
    max_wait_blocks = max(0, max_wait) // block_time
    if wait > max_wait_blocks:
        return TimeRangeInvalid(
            f"UserOperation is not valid yet: the {who} returned a block range valid after block "
            f"{vd.valid_after}, and the next block is {next_block} ({wait} blocks to wait; this bundler "
            f"holds not-yet-valid ops at most {max_wait_blocks} blocks, {max_wait} s)", data)
    last_block = next_block + 1  # the block expected by the latest inclusion time
    margin = -(-max(0, min_valid_for) // block_time)
    if vd.valid_until < last_block + margin:
        if vd.valid_until < next_block:
            text = "expired"
        elif vd.valid_until < last_block:
            text = "expires before it can be included"
        else:
            text = (f"stays valid only {vd.valid_until - last_block} blocks after the latest expected inclusion "
                    f"block {last_block} (less than {margin}: {min_valid_for} s at {block_time} s a block)")
        return TimeRangeInvalid(
            f"UserOperation {text}: the {who} returned a block range valid up to block {vd.valid_until}, "
            f"and the next block is {next_block}", data)
    return None


@dataclass(frozen=True, slots=True)
class GasEstimate:
    """What one simulateHandleOp run measured, the limits proposed from it, and whether a
    confirming run with those limits succeeded."""

    pre_op_gas: int
    validation_gas: int  # preOpGas - preVerificationGas (account + factory + paymaster + EP)
    account_validation_gas: int  # gas the account's validateUserOp frame needed
    factory_gas: int  # gas the SenderCreator.createSender frame needed (0 without factory)
    paymaster_validation_gas: int  # gas the paymaster's validatePaymasterUserOp frame needed
    execution_gas_used: int  # gas the EntryPoint -> sender execution frame used
    execution_gas_needed: int  # gas that frame must be given (63/64 rule of inner calls)
    post_op_gas: int  # gas the paymaster's postOp frame needed (0 if not called)
    execution_success: bool
    execution_revert: bytes
    verification_gas_limit: int
    call_gas_limit: int
    paymaster_verification_gas_limit: int
    paymaster_post_op_gas_limit: int
    confirmed: bool
    confirm_failure: SimulationFailure | None = None
    account: ValidationData | None = None
    paymaster: ValidationData | None = None
    paid: int = 0  # what the op paid in the confirming run (wei)
    block_number: int = 0

    @property
    def execution_revert_reason(self) -> str | None:
        return None if self.execution_success else describe_revert(self.execution_revert)


@dataclass(frozen=True, slots=True)
class OpOutcome:
    """One UserOperationEvent of a simulated handleOps."""

    user_op_hash: bytes
    sender: str
    paymaster: str | None
    nonce: int
    success: bool
    actual_gas_cost: int
    actual_gas_used: int
    revert_reason: bytes | None = None  # UserOperationRevertReason, if emitted


@dataclass(frozen=True, slots=True)
class BundleResult:
    success: bool
    gas_used: int  # of the handleOps transaction (intrinsic + execution - refund, EIP-7623 floor)
    failed_op_index: int | None = None
    failure: SimulationFailure | None = None
    ops: tuple[OpOutcome, ...] = field(default_factory=tuple)
    block_number: int = 0
