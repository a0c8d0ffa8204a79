"""EntryPoint simulations on an EvmSession: simulateValidation, simulateHandleOp-based gas
measurement, and the real handleOps. One code path for v0.7 and v0.8: the version only
selects artifacts and addresses (EntryPointVersion).

Facts this relies on (checked against the 0.7.0 / 0.8.0 sources):
- EntryPointSimulations' deployedBytecode can be put at the EntryPoint address as is. Its
  immutables are zero in the artifact, which is why it keeps senderCreator in storage
  (initSenderCreator: CREATE address of the EntryPoint with nonce 1, the real one) and in
  v0.8 also recomputes the EIP-712 domain separator into storage (name "ERC4337", version
  "1", chainid, address(this)); both run at the start of every simulate* call.
- simulateValidation does not check validationData (signature, time range); that is left to
  the bundler (results.validation_error). v0.8.0 has no block-number validity mode.
- StakeManager.deposits is storage slot 0, NonceManager.nonceSequenceNumber slot 1 (both).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

from eth_abi import decode, encode
from eth_hash.auto import keccak
from eth.abc import ComputationAPI, MessageAPI

from ..entrypoint import (
    USER_OPERATION_EVENT, USER_OPERATION_REVERT_REASON, EntryPointVersion, handle_ops_calldata,
)
from ..userop import UserOperation, pack
from ..userop.packing import PACKED_USEROP_TYPE
from .executor import DELEGATION_PREFIX, EvmSession
from .results import (
    BundleResult, GasEstimate, OpOutcome, SimulationFailure, StakeInfo, ValidationData,
    ValidationResult, decode_failure, selector,
)
from .state import BlockState, OverlayAccountDB, intern_code
from .config import GasPolicy  # noqa: F401  (re-exported)
from .ep_storage import (  # noqa: F401  (re-exported)
    DEPOSITS_SLOT, NONCES_SLOT, _b20, _word, deposit_slot, mapping_slot, nonce_slot, queued_nonce_override,
)
from .types import ZERO_ADDRESS, AccountOverride

VALIDATION_RESULT_TYPE = (
    "((uint256,uint256,uint256,uint256,bytes),(uint256,uint256),(uint256,uint256),"
    "(uint256,uint256),(address,(uint256,uint256)))"
)
EXECUTION_RESULT_TYPE = "(uint256,uint256,uint256,uint256,bool,bytes)"
MEMORY_USER_OP = "(address,uint256,uint256,uint256,uint256,uint256,uint256,address,uint256,uint256)"

SEL_SIMULATE_VALIDATION = selector(f"simulateValidation({PACKED_USEROP_TYPE})")
SEL_SIMULATE_HANDLE_OP = selector(f"simulateHandleOp({PACKED_USEROP_TYPE},address,bytes)")
SEL_VALIDATE_USER_OP = selector(f"validateUserOp({PACKED_USEROP_TYPE},bytes32,uint256)")
SEL_VALIDATE_PAYMASTER_USER_OP = selector(f"validatePaymasterUserOp({PACKED_USEROP_TYPE},bytes32,uint256)")
SEL_POST_OP = selector("postOp(uint8,bytes,uint256,uint256)")
SEL_CREATE_SENDER = selector("createSender(bytes)")
SEL_INNER_HANDLE_OP = selector(f"innerHandleOp(bytes,({MEMORY_USER_OP},bytes32,uint256,uint256,uint256),bytes)")

TOPIC_USER_OPERATION_EVENT = int.from_bytes(keccak(USER_OPERATION_EVENT.encode()), "big")
TOPIC_USER_OPERATION_REVERT_REASON = int.from_bytes(keccak(USER_OPERATION_REVERT_REASON.encode()), "big")

ERC1967_IMPLEMENTATION_SLOT = 0x360894A13BA1A3210667C828492DB98DCA3E2076CC3735A920A3CA505D382BBC


@functools.cache
def simulation_code(ep: EntryPointVersion) -> bytes:
    """EntryPointSimulations' runtime code (loaded and interned once per process)."""
    return intern_code(bytes.fromhex(ep.artifact("EntryPointSimulations")["deployedBytecode"][2:]))


# ecrecover: every ECDSA-signed account calls it (py-evm reads the precompile's account)
_ECRECOVER = (1).to_bytes(20, "big")
# the owner of a SimpleAccount (and of most single-owner accounts) is slot 0
ACCOUNT_OWNER_SLOT = 0


def _deposit_words(ep_b: bytes, account: str) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """DepositInfo is two words: deposit, then (staked, stake, unstakeDelaySec, withdrawTime)."""
    slot = deposit_slot(account)
    return (ep_b, slot), (ep_b, slot + 1)


def simulation_words(ep: EntryPointVersion) -> list[tuple[bytes, int]]:
    """EntryPointSimulations' own storage words every simulate* call reads (senderCreator, the
    EIP-712 domain cache...), from the version data: a wrong guess there only costs one word
    in a batch that is sent anyway."""
    ep_b = _b20(ep.address)
    return [(ep_b, slot) for slot in ep.simulation_slots]


def prefetch_for_ops(base: BlockState, ops: Sequence[UserOperation], ep: EntryPointVersion) -> None:
    """One node round trip for what every validation of these ops reads: the EntryPoint's
    own words, then per op the sender's account and owner slot, its deposit info and nonce,
    the factory's and paymaster's accounts and deposit info. A SimpleAccount-like op from a
    sender new to this block then needs no other node read."""
    ep_b = _b20(ep.address)
    addresses = [ep_b, _ECRECOVER]
    slots = simulation_words(ep)
    # getStakeInfo(address(0)) for an absent factory / paymaster / aggregator
    slots += _deposit_words(ep_b, ZERO_ADDRESS)
    for op in ops:
        sender = _b20(op.sender)
        addresses.append(sender)
        slots += _deposit_words(ep_b, op.sender)
        slots.append((ep_b, nonce_slot(op.sender, op.nonce_key)))
        slots.append((sender, ERC1967_IMPLEMENTATION_SLOT))
        slots.append((sender, ACCOUNT_OWNER_SLOT))
        if op.factory is not None and not op.is_eip7702:
            addresses.append(_b20(op.factory))
            slots += _deposit_words(ep_b, op.factory)
        if op.paymaster is not None:
            addresses.append(_b20(op.paymaster))
            slots += _deposit_words(ep_b, op.paymaster)
        if op.eip7702_auth is not None:
            addresses.append(_b20(op.eip7702_auth.address))
    base.prefetch(addresses, slots)


def apply_eip7702_authorizations(db: OverlayAccountDB, ops: Sequence[UserOperation]) -> None:
    """The handleOps transaction would carry each op's authorization: emulate its effect."""
    for op in ops:
        auth = op.eip7702_auth
        if auth is not None:
            db.override_code(_b20(op.sender), DELEGATION_PREFIX + _b20(auth.address))


# -- simulateValidation --
def _stake(t: tuple) -> StakeInfo:
    return StakeInfo(stake=t[0], unstake_delay_sec=t[1])


def decode_validation_result(output: bytes, gas_used: int, block_number: int,
                             block_ranges: bool = False) -> ValidationResult:
    ((ret, sender, factory, paymaster, agg),) = decode([VALIDATION_RESULT_TYPE], output)
    pre_op_gas, prefund, account_vd, paymaster_vd, context = ret
    agg_address, agg_stake = agg
    agg_address = agg_address.lower()
    has_agg = int(agg_address, 16) != 0
    return ValidationResult(
        pre_op_gas=pre_op_gas,
        prefund=prefund,
        account=ValidationData.unpack(account_vd, block_ranges),
        paymaster=ValidationData.unpack(paymaster_vd, block_ranges),
        paymaster_context=context,
        sender_info=_stake(sender),
        factory_info=_stake(factory),
        paymaster_info=_stake(paymaster),
        aggregator=agg_address if has_agg else None,
        aggregator_info=_stake(agg_stake) if has_agg else None,
        gas_used=gas_used,
        block_number=block_number,
    )


def simulate_validation(
    session: EvmSession,
    op: UserOperation,
    ep: EntryPointVersion,
    *,
    caller: str,
    gas: int,
    block_number: int = 0,
) -> ValidationResult | SimulationFailure:
    """simulateValidation with EntryPointSimulations at the EntryPoint address."""
    session.db.override_code(_b20(ep.address), simulation_code(ep))
    apply_eip7702_authorizations(session.db, (op,))
    data = SEL_SIMULATE_VALIDATION + encode([PACKED_USEROP_TYPE], [pack(op)])
    res = session.call(sender=caller, to=ep.address, data=data, gas=gas)
    if res.success:
        return decode_validation_result(res.output, res.gas_used, block_number, ep.block_range_validity)
    return decode_failure(res.output, res.error)


# -- gas measurement --
class GasFrameTracer:
    """Frame-only tracer: how much gas each EntryPoint-initiated frame used and *needed*.

    need(frame) = max(used, max over child calls of (gas used before the call +
    need(child) * 64/63)): the gas the frame must be given so that every inner call still
    gets what it needs under the 63/64 rule.
    """

    opcodes: frozenset[int] = frozenset()

    def __init__(self, ep: str, sender: str, paymaster: str | None):
        self.ep = _b20(ep)
        self.sender = _b20(sender)
        self.paymaster = _b20(paymaster) if paymaster else None
        self._stack: list[list] = []  # [kind, before, need_from_children]
        self.frames: dict[str, tuple[int, int, bool, bytes, str | None]] = {}

    def _classify(self, msg) -> str | None:
        if msg.sender != self.ep:
            return None
        sel = bytes(msg.data[:4])
        to = msg.to
        if to == self.sender:
            if sel == SEL_VALIDATE_USER_OP:
                return "account"
            if self._stack and self._stack[-1][0] == "inner":
                return "execution"
            return None
        if sel == SEL_CREATE_SENDER:
            return "factory"
        if self.paymaster is not None and to == self.paymaster:
            if sel == SEL_VALIDATE_PAYMASTER_USER_OP:
                return "paymaster"
            if sel == SEL_POST_OP:
                return "postop"
        if to == self.ep and sel == SEL_INNER_HANDLE_OP:
            return "inner"
        return None

    def on_enter(self, msg: MessageAPI, parent: ComputationAPI | None) -> None:
        before = 0
        if parent is not None:
            stipend = 2300 if (msg.value and msg.should_transfer_value) else 0
            parent_used = parent.msg.gas - parent._gas_meter.gas_remaining
            before = parent_used - (msg.gas - stipend)
        self._stack.append([self._classify(msg), before, 0])

    def on_exit(self, msg: MessageAPI, computation: ComputationAPI) -> None:
        kind, before, child_need = self._stack.pop()
        used = computation.get_gas_used()
        need = max(used, child_need)
        if self._stack:
            parent = self._stack[-1]
            parent[2] = max(parent[2], before + (need * 64 + 62) // 63)
        if kind is not None:
            error = None if computation.is_success else type(computation.error).__name__
            self.frames[kind] = (used, need, computation.is_success, computation.output, error)

    def on_opcode(self, opcode: int, computation: ComputationAPI) -> None:  # pragma: no cover - no opcodes hooked
        pass

    def used(self, kind: str) -> int:
        f = self.frames.get(kind)
        return f[0] if f else 0

    def need(self, kind: str) -> int:
        f = self.frames.get(kind)
        return f[1] if f else 0

    def ok(self, kind: str) -> bool:
        f = self.frames.get(kind)
        return f is None or f[2]

    def error(self, kind: str) -> str | None:
        f = self.frames.get(kind)
        return f[4] if f else None


def _with_buffer(gas: int, policy: GasPolicy) -> int:
    return gas + (gas * policy.buffer_percent + 99) // 100


def _fund(session: EvmSession, op: UserOperation, ep: EntryPointVersion) -> None:
    """Make the op's payer able to afford the (possibly generous) prefund, so estimation works
    for accounts that are not funded yet."""
    prefund = op.total_gas_limit() * op.max_fee_per_gas
    if prefund == 0:
        return
    db = session.db
    if op.paymaster is None:
        sender = _b20(op.sender)
        db.apply_override(sender, AccountOverride(balance=db.get_balance(sender) + prefund))
    else:
        ep_b = _b20(ep.address)
        slot = deposit_slot(op.paymaster)
        current = db.get_storage(ep_b, slot)
        db.apply_override(ep_b, AccountOverride(state_diff={slot: current + prefund}))


def _simulate_handle_op_data(op: UserOperation) -> bytes:
    return SEL_SIMULATE_HANDLE_OP + encode(
        [PACKED_USEROP_TYPE, "address", "bytes"], [pack(op), "0x" + "00" * 20, b""]
    )


def _outer_gas(op: UserOperation) -> int:
    return (op.total_gas_limit() + 1_000_000) * 2


def run_simulate_handle_op(
    session: EvmSession, op: UserOperation, ep: EntryPointVersion, *, caller: str, fund: bool = True,
) -> tuple[tuple | SimulationFailure, GasFrameTracer]:
    session.db.override_code(_b20(ep.address), simulation_code(ep))
    apply_eip7702_authorizations(session.db, (op,))
    if fund:
        _fund(session, op, ep)
    tracer = GasFrameTracer(ep.address, op.sender, op.paymaster)
    session.set_tracer(tracer)
    res = session.call(sender=caller, to=ep.address, data=_simulate_handle_op_data(op), gas=_outer_gas(op))
    session.set_tracer(None)
    if not res.success:
        return decode_failure(res.output, res.error), tracer
    (result,) = decode([EXECUTION_RESULT_TYPE], res.output)
    return result, tracer


def measure_gas(
    new_session: Callable[[], EvmSession],
    op: UserOperation,
    ep: EntryPointVersion,
    *,
    caller: str,
    policy: GasPolicy = GasPolicy(),
    fund: bool = True,
    block_number: int = 0,
) -> GasEstimate | SimulationFailure:
    """Measure validation and execution gas in one simulateHandleOp run with generous limits,
    propose limits from the measured frames, and confirm them with a second run."""
    has_pm = op.paymaster is not None
    generous = op.with_changes(
        verification_gas_limit=max(op.verification_gas_limit, policy.measure_verification_gas),
        call_gas_limit=max(op.call_gas_limit, policy.measure_call_gas),
        paymaster_verification_gas_limit=(
            max(op.paymaster_verification_gas_limit, policy.measure_paymaster_verification_gas) if has_pm else 0
        ),
        paymaster_post_op_gas_limit=(
            max(op.paymaster_post_op_gas_limit, policy.measure_paymaster_post_op_gas) if has_pm else 0
        ),
    )
    result, t = run_simulate_handle_op(new_session(), generous, ep, caller=caller, fund=fund)
    if isinstance(result, SimulationFailure):
        return result
    pre_op_gas, _paid, account_vd, paymaster_vd, _ts, _tr = result
    validation_gas = pre_op_gas - op.pre_verification_gas

    pm_used = t.used("paymaster")
    vgl = max(validation_gas - pm_used, t.need("account"), t.need("factory"))
    pvgl = max(t.need("paymaster"), pm_used + policy.paymaster_overhead) if has_pm else 0
    exec_frame = t.frames.get("execution")
    exec_success = exec_frame[2] if exec_frame else True
    exec_revert = exec_frame[3] if exec_frame is not None and not exec_success else b""
    cgl = t.need("execution") if op.call_data else 0
    post_op_called = "postop" in t.frames
    limits = {
        "verification_gas_limit": _with_buffer(vgl, policy),
        "call_gas_limit": _with_buffer(cgl, policy) if exec_success else max(cgl, op.call_gas_limit),
        "paymaster_verification_gas_limit": _with_buffer(pvgl, policy) if has_pm else 0,
        "paymaster_post_op_gas_limit": (
            _with_buffer(t.need("postop"), policy) if post_op_called else op.paymaster_post_op_gas_limit
        ),
    }

    confirmed = False
    confirm_failure: SimulationFailure | None = None
    paid = 0
    for _ in range(policy.confirm_attempts):
        candidate = op.with_changes(**limits)
        result2, t2 = run_simulate_handle_op(new_session(), candidate, ep, caller=caller, fund=fund)
        if isinstance(result2, SimulationFailure):
            confirm_failure = result2
            code = result2.code
            if code in ("AA26", "AA13") or t2.error("account") == "OutOfGas" or t2.error("factory") == "OutOfGas":
                limits["verification_gas_limit"] = limits["verification_gas_limit"] * 6 // 5 + 10_000
                continue
            if code in ("AA36",) or t2.error("paymaster") == "OutOfGas":
                limits["paymaster_verification_gas_limit"] = limits["paymaster_verification_gas_limit"] * 6 // 5 + 10_000
                continue
            break
        paid = result2[1]
        if exec_success and not t2.ok("execution"):
            limits["call_gas_limit"] = limits["call_gas_limit"] * 6 // 5 + 10_000
            confirm_failure = SimulationFailure(reason="execution ran out of gas with the proposed callGasLimit")
            continue
        if post_op_called and not t2.ok("postop") and t.ok("postop"):
            limits["paymaster_post_op_gas_limit"] = limits["paymaster_post_op_gas_limit"] * 6 // 5 + 10_000
            confirm_failure = SimulationFailure(reason="postOp ran out of gas with the proposed limit")
            continue
        confirmed, confirm_failure = True, None
        break

    return GasEstimate(
        pre_op_gas=pre_op_gas,
        validation_gas=validation_gas,
        account_validation_gas=t.need("account"),
        factory_gas=t.need("factory"),
        paymaster_validation_gas=t.need("paymaster"),
        execution_gas_used=t.used("execution"),
        execution_gas_needed=t.need("execution"),
        post_op_gas=t.need("postop"),
        execution_success=exec_success,
        execution_revert=exec_revert,
        verification_gas_limit=limits["verification_gas_limit"],
        call_gas_limit=limits["call_gas_limit"],
        paymaster_verification_gas_limit=limits["paymaster_verification_gas_limit"],
        paymaster_post_op_gas_limit=limits["paymaster_post_op_gas_limit"],
        confirmed=confirmed,
        confirm_failure=confirm_failure,
        account=ValidationData.unpack(account_vd, ep.block_range_validity),
        paymaster=ValidationData.unpack(paymaster_vd, ep.block_range_validity),
        paid=paid,
        block_number=block_number,
    )


# -- the real handleOps --
def _outcomes(logs, ep: EntryPointVersion) -> tuple[OpOutcome, ...]:
    reasons: dict[bytes, bytes] = {}
    events = []
    for address, topics, data in logs:
        if address != ep.address or not topics:
            continue
        if topics[0] == TOPIC_USER_OPERATION_REVERT_REASON:
            _nonce, reason = decode(["uint256", "bytes"], data)
            reasons[_word(topics[1])] = reason
        elif topics[0] == TOPIC_USER_OPERATION_EVENT:
            events.append((topics, data))
    out = []
    for topics, data in events:
        nonce, success, cost, gas_used = decode(["uint256", "bool", "uint256", "uint256"], data)
        h = _word(topics[1])
        pm = topics[3]
        out.append(OpOutcome(
            user_op_hash=h,
            sender="0x" + topics[2].to_bytes(32, "big")[12:].hex(),
            paymaster=None if pm == 0 else "0x" + pm.to_bytes(32, "big")[12:].hex(),
            nonce=nonce, success=success, actual_gas_cost=cost, actual_gas_used=gas_used,
            revert_reason=reasons.get(h),
        ))
    return tuple(out)


def simulate_handle_ops(
    session: EvmSession,
    ops: Sequence[UserOperation],
    ep: EntryPointVersion,
    *,
    beneficiary: str,
    sender: str,
    gas: int,
    gas_price: int,
    charge_fees: bool = True,
    block_number: int = 0,
) -> BundleResult:
    """handleOps on the REAL EntryPoint code, as a transaction from `sender` (origin == sender).
    With charge_fees the sender must afford gas * gas_price, as a node would require."""
    apply_eip7702_authorizations(session.db, ops)
    data = handle_ops_calldata(ops, beneficiary)
    res = session.call(
        sender=sender, to=ep.address, data=data, gas=gas, gas_price=gas_price, transaction=True,
        charge_fees=charge_fees,
    )
    if res.success:
        return BundleResult(True, res.gas_used, ops=_outcomes(res.logs, ep), block_number=block_number)
    failure = decode_failure(res.output, res.error)
    return BundleResult(
        False, res.gas_used, failed_op_index=failure.op_index, failure=failure, block_number=block_number,
    )
