"""Off-chain evaluation of a session op against its SessionSpec, mirroring
SessionAccount._validateSignature / _useSession / _checkCall / _consume step by step (the
comment block at the top of contracts/SessionAccount.sol is the rulebook; the differential
test tests/integration/test_session_differential.py holds the two together).

    state = SessionState(...)                  # what the account stores (see sessions.state)
    facts = OpFacts.of(op, entry_point, implementation)   # gas fields, paymaster, protected targets
    ev = evaluate(account, state, sig, op.call_data, pending, facts)   # raises SessionViolation
    ev.consumed, ev.valid_after, ev.valid_until, ev.calls

Cost per op is flat in the spec's size: policies are found through a (target, selector) index
(as the contract does), never by scanning the spec; a batch has at most MAX_SESSION_CALLS calls.

`pending` are the session's ops still in the mempool that the EntryPoint would validate
before this one (SessionLedger.pending_for gives them, in nonce order). The evaluator counts
them as the contract would after their validation: usage count, cumulative counters, and a
grant made by a pending enable-mode op.

Pure: no I/O, no clock. Signatures are not checked here (see sessions.recover); the time window
against "now" is checked by check_window (the contract returns it, the EntryPoint enforces it).

A violation carries `rule` (the contract's custom error name, or a name of ours for checks the
contract leaves to the EntryPoint, e.g. SessionExpired), `args` (the contract error's
arguments, for the differential test), `message` (in words) and `data` (JSON for the RPC
error object: session key, policy, rule, limit / used on chain / pending in the mempool /
requested, as 0x quantities).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from eth_abi import decode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from session_sdk.types import UINT48_MAX, ZERO_ADDRESS, ArgType, Condition, LimitKind, Scope, SessionSpec, Status
from session_sdk.rules import bad_arg_type, check_spec, is_canonical, op_max_cost, signed
from session_sdk.signatures import EnableSignature, OwnerSignature, SessionSignature, decode_signature
from session_sdk.events import Consumption
from session_sdk.calldata import CALL_T, MAX_SESSION_CALLS, SEL_DEPOSIT_TO, SEL_EXECUTE, SEL_EXECUTE_BATCH, Call

if TYPE_CHECKING:
    from ..userop.model import UserOperation

LimitKey = tuple[int, int, int]  # (scope, policy index, constraint index)


def decode_session_signature(sig: bytes) -> SessionSignature | EnableSignature:
    """A session-mode or enable-mode signature; ValueError for anything else (an owner
    signature included: the callers look at the mode byte first, so that is a caller's bug)."""
    decoded = decode_signature(sig)
    if isinstance(decoded, OwnerSignature):
        raise ValueError("an owner signature, not a session signature")
    return decoded

# ---------------------------------------------------------------- state


@dataclass(slots=True)
class StoredCounter:
    """A cumulative limit's stored counter (StoredLimit.periodIndex / .used)."""

    period_index: int = 0
    used: int = 0


@dataclass(slots=True)
class SessionState:
    """One signer's current session as the account stores it (getSession + getUsage)."""

    status: int = Status.NONE
    grant_nonce: int = 0  # the nonce the next enable signature must name
    usage_count: int = 0
    spec: SessionSpec | None = None
    counters: dict[LimitKey, StoredCounter] = field(default_factory=dict)
    epoch: int = 0  # the account's current epoch (SessionAccount.epoch())

    @classmethod
    def fresh(cls, spec: SessionSpec, grant_nonce: int, epoch: int = 0) -> "SessionState":
        """Right after a grant (grantSession or enable mode): fresh counters."""
        return cls(Status.ACTIVE, grant_nonce, 0, spec, {}, epoch)


# Every EntryPoint an account may hold a deposit or stake in (v0.6 .. v0.9): a session may call
# none of them except depositTo(the account).
KNOWN_ENTRY_POINTS = frozenset({
    "0x5ff137d4b0fdcd49dca30c7cf57e578a026d2789", "0x0000000071727de22e5e9d8baf0edac6f37da032",
    "0x4337084d9e255ff0702461cf8895ce9e3b5ff108", "0x433709009b8330fda32311df1c2afa402ed8d009",
})


@dataclass(frozen=True, slots=True)
class OpFacts:
    """What the contract's session validation reads from the op besides callData and signature:
    its maximum cost and paymaster (the gas rules), whether it carries an EIP-7702 authorization,
    and the protected targets (the EntryPoint it is validated by, the implementation). The
    default describes an op that costs nothing (unit tests of the call rules only)."""

    entry_point: str = ZERO_ADDRESS
    implementation: str = ZERO_ADDRESS
    max_cost: int = 0
    paymaster: str | None = None
    delegating: bool = False  # initCode is the EIP-7702 marker

    @classmethod
    def of(cls, op: UserOperation, entry_point: str, implementation: str) -> "OpFacts":
        return cls(entry_point.lower(), implementation.lower(), op_max_cost(
            op.pre_verification_gas, op.verification_gas_limit, op.call_gas_limit,
            op.paymaster_verification_gas_limit, op.paymaster_post_op_gas_limit, op.max_fee_per_gas),
            op.paymaster.lower() if op.paymaster else None, bool(op.is_eip7702))

    def protected(self, target: str, data: bytes, account: str) -> bool:
        """SessionAccount._protected."""
        if target == self.entry_point or target in KNOWN_ENTRY_POINTS:
            return not (len(data) == 36 and data[:4] == SEL_DEPOSIT_TO and data[4:16] == bytes(12)
                        and "0x" + data[16:36].hex() == account)
        return target == self.implementation


UNPRICED_OP = OpFacts()


@dataclass(frozen=True, slots=True)
class PendingUse:
    """A session op in the mempool, as far as the session's counters are concerned."""

    op_hash: str
    nonce: int
    period_index: int
    consumed: tuple[Consumption, ...]
    grant: SessionSpec | None = None  # enable mode: the spec this op grants before using it


@dataclass(slots=True)
class Evaluation:
    account: str
    signer: str
    mode: int  # MODE_SESSION or MODE_ENABLE (session_sdk.signatures)
    period_index: int
    valid_after: int
    valid_until: int  # 0 = unbounded (as in validationData)
    calls: list[Call]
    consumed: tuple[Consumption, ...]
    grant: SessionSpec | None
    spec: SessionSpec
    usage_count: int  # the session's usage count once this op is validated
    # per call, the policy that governed it: ("call" | "transfer", index), None under wildcard
    matched: tuple[tuple[str, int] | None, ...] = ()


# ---------------------------------------------------------------- violations

_TIME_RULES = {"SessionPeriodOutsideWindow", "SessionPeriodExpired", "SessionNotYetValid", "SessionExpired",
               "SessionExpiresTooSoon"}


class SessionViolation(Exception):
    def __init__(self, rule: str, args: tuple, message: str, data: dict[str, Any]):
        super().__init__(message)
        self.rule = rule
        self.args_ = args
        self.message = message
        self.data = {"rule": rule, **data}

    @property
    def time_range(self) -> bool:
        """-32503 (TimeRangeInvalid) rather than -32500 (ValidationRejected)."""
        return self.rule in _TIME_RULES

    def __str__(self) -> str:
        return self.message


def _q(n: int) -> str:
    return hex(n)


# functions whose arguments refusals can name (argument names as in the standards)
_KNOWN_FUNCTIONS = {
    "transfer(address to,uint256 amount)": "ERC-20",
    "approve(address spender,uint256 amount)": "ERC-20",
    "transferFrom(address from,address to,uint256 amount)": "ERC-20",
    "deposit()": "",
    "withdraw(uint256 amount)": "",
    "mint(address to,uint256 amount)": "",
    "safeTransferFrom(address from,address to,uint256 tokenId)": "ERC-721",
    "setApprovalForAll(address operator,bool approved)": "ERC-721",
}


def _split_signature(sig: str) -> tuple[str, list[tuple[str, str]]]:
    name, inner = sig[:-1].split("(", 1)
    return name, [tuple(p.split(" ")) for p in inner.split(",") if p]  # type: ignore[misc]


def _canonical(sig: str) -> str:
    name, params = _split_signature(sig)
    return f"{name}({','.join(t for t, _ in params)})"


FUNCTION_NAMES: dict[bytes, tuple[str, str]] = {
    keccak(_canonical(sig).encode())[:4]: (_split_signature(sig)[0], std) for sig, std in _KNOWN_FUNCTIONS.items()
}
# selector -> ((type, name) per argument): every argument of these functions is one ABI word
FUNCTION_ARGS: dict[bytes, list[tuple[str, str]]] = {
    keccak(_canonical(sig).encode())[:4]: _split_signature(sig)[1] for sig in _KNOWN_FUNCTIONS
}


def checksummed(address: str) -> str:
    """Addresses in messages: EIP-55 checksummed hex, as wallets and explorers show them."""
    return to_checksum_address(address)


_COND_TEXT: dict[int, str] = {Condition.EQ: "==", Condition.NEQ: "!=", Condition.GT: ">", Condition.GTE: ">=",
              Condition.LT: "<", Condition.LTE: "<="}
_SCOPE_NAME: dict[int, str] = {Scope.CALL_VALUE: "callValue", Scope.CALL_ARG: "callArgument", Scope.TRANSFER_VALUE: "transferValue",
               Scope.GAS: "gasCost"}
_ARG_TYPE_TEXT: dict[int, str] = {ArgType.WORD: "word", ArgType.ADDRESS: "address", ArgType.BOOL: "bool", ArgType.UINT: "uint",
                  ArgType.INT: "int", ArgType.BYTES: "bytes"}


def arg_type_text(arg_type: int, size: int) -> str:
    name = _ARG_TYPE_TEXT.get(arg_type, str(arg_type))
    if arg_type in (ArgType.UINT, ArgType.INT):
        return f"{name}{8 * size}"
    if arg_type == ArgType.BYTES:
        return f"bytes{size}"
    return name
# "policyType" in refusal data: a call policy unless the scope says otherwise
POLICY_TYPES: dict[int, str] = {Scope.TRANSFER_VALUE: "transfer", Scope.GAS: "gas"}
_KIND_NAME: dict[int, str] = {LimitKind.NONE: "none", LimitKind.LIFETIME: "lifetime", LimitKind.ALLOWANCE: "allowance"}


def function_name(selector: bytes) -> str:
    known = FUNCTION_NAMES.get(bytes(selector))
    return known[0] if known else "0x" + bytes(selector).hex()


def call_policy_text(spec: SessionSpec, index: int) -> str:
    p = spec.call_policies[index]
    target = "any target" if p.target == ZERO_ADDRESS else checksummed(p.target)
    if p.selector == b"\x00\x00\x00\x00":
        return f"policy {index} ({target}, any function)"
    name, std = FUNCTION_NAMES.get(bytes(p.selector), ("0x" + p.selector.hex(), ""))
    return f"policy {index} ({std + ' ' if std else ''}{target} {name})"


def transfer_policy_text(spec: SessionSpec, index: int) -> str:
    t = spec.transfer_policies[index]
    return f"transfer policy {index} (ETH to {'any recipient' if t.target == ZERO_ADDRESS else checksummed(t.target)})"


def argument_of(spec: SessionSpec, policy_index: int, constraint_index: int) -> tuple[str, str] | None:
    """(type, name) of the function argument a constraint reads, when the function is known."""
    p = spec.call_policies[policy_index]
    args = FUNCTION_ARGS.get(bytes(p.selector))
    index = p.constraints[constraint_index].index
    return args[index] if args and index < len(args) else None


def argument_text(spec: SessionSpec, policy_index: int, constraint_index: int) -> str:
    """The argument by its name ('argument "amount"'), else by its word ('argument word 1')."""
    arg = argument_of(spec, policy_index, constraint_index)
    if arg is not None:
        return f'argument "{arg[1]}"'
    return f"argument word {spec.call_policies[policy_index].constraints[constraint_index].index}"


def value_text(spec: SessionSpec, policy_index: int, constraint_index: int, value: int) -> str:
    """A constrained word as its type reads: an address checksummed, a signed int signed, else a number."""
    c = spec.call_policies[policy_index].constraints[constraint_index]
    arg = argument_of(spec, policy_index, constraint_index)
    if c.arg_type == ArgType.ADDRESS or (arg is not None and arg[0] == "address" and value < (1 << 160)):
        return checksummed("0x" + value.to_bytes(20, "big").hex())
    if c.arg_type == ArgType.INT:
        return str(signed(value))
    return str(value)


def _argument_data(spec: SessionSpec, policy_index: int, constraint_index: int) -> dict[str, str]:
    arg = argument_of(spec, policy_index, constraint_index)
    return {"argument": arg[1]} if arg else {}


def limit_of(spec: SessionSpec, key: LimitKey):
    scope, pi, ci = key
    if scope == Scope.CALL_VALUE:
        return spec.call_policies[pi].value_limit
    if scope == Scope.CALL_ARG:
        return spec.call_policies[pi].constraints[ci].limit
    if scope == Scope.GAS:
        return spec.gas.cost_limit
    return spec.transfer_policies[pi].value_limit


def limit_keys(spec: SessionSpec) -> list[LimitKey]:
    """Every cumulative limit of the spec (kind != NONE), in a stable order."""
    out: list[LimitKey] = []
    for i, p in enumerate(spec.call_policies):
        if p.value_limit.kind != LimitKind.NONE:
            out.append((Scope.CALL_VALUE, i, 0))
        for j, c in enumerate(p.constraints):
            if c.limit.kind != LimitKind.NONE:
                out.append((Scope.CALL_ARG, i, j))
    for i, t in enumerate(spec.transfer_policies):
        if t.value_limit.kind != LimitKind.NONE:
            out.append((Scope.TRANSFER_VALUE, i, 0))
    if spec.gas.cost_limit.kind != LimitKind.NONE:
        out.append((Scope.GAS, 0, 0))
    return out


def limit_text(spec: SessionSpec, key: LimitKey) -> str:
    scope, pi, ci = key
    if scope == Scope.CALL_VALUE:
        return f"{call_policy_text(spec, pi)} value"
    if scope == Scope.CALL_ARG:
        return f"{call_policy_text(spec, pi)} {argument_text(spec, pi, ci)}"
    if scope == Scope.GAS:
        return "gas budget (maximum cost of the ops the account pays for)"
    return transfer_policy_text(spec, pi)


# ---------------------------------------------------------------- grant-time checks


class PolicyIndex:
    """The spec's policies by (target, selector) as SessionAccount indexes them at grant time:
    the lowest index per exact key (zero target / selector = any), the targets that have a
    policy, and the transfer policies by recipient."""

    __slots__ = ("calls", "targets", "transfers")

    def __init__(self, spec: SessionSpec):
        self.calls: dict[tuple[str, bytes], int] = {}
        self.targets: set[str] = set()
        self.transfers: dict[str, int] = {}
        for i, p in enumerate(spec.call_policies):
            self.calls.setdefault((p.target, bytes(p.selector)), i)
            self.targets.add(p.target)
        for i, t in enumerate(spec.transfer_policies):
            self.transfers.setdefault(t.target, i)

    def call_policy(self, target: str, selector: bytes) -> int | None:
        found = [i for i in (self.calls.get((target, selector)), self.calls.get((target, _ANY_SELECTOR)),
                             self.calls.get((ZERO_ADDRESS, selector)), self.calls.get((ZERO_ADDRESS, _ANY_SELECTOR)))
                 if i is not None]
        return min(found) if found else None

    def transfer_policy(self, target: str) -> int | None:
        found = [i for i in (self.transfers.get(target), self.transfers.get(ZERO_ADDRESS)) if i is not None]
        return min(found) if found else None


_ANY_SELECTOR = b"\x00" * 4
_INDEXES: dict[int, tuple[SessionSpec, PolicyIndex]] = {}


def policy_index(spec: SessionSpec) -> PolicyIndex:
    """The spec's index, built once per spec object (a state read decodes one per block)."""
    hit = _INDEXES.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_INDEXES) >= 1024:
        _INDEXES.clear()
    index = PolicyIndex(spec)
    _INDEXES[id(spec)] = (spec, index)
    return index


# ---------------------------------------------------------------- calls

_EXECUTE_TYPES = ["address", "uint256", "bytes"]
_BATCH_TYPES = [f"{CALL_T}[]"]


def _decode_execute(body: bytes) -> list[Call] | None:
    """execute(address,uint256,bytes) arguments, read by hand (the hot path: ~5x faster than
    eth_abi); None when the strict layout does not hold, and the caller falls back to eth_abi."""
    if len(body) < 96 or body[:12] != b"\x00" * 12:
        return None
    offset = int.from_bytes(body[64:96], "big")
    if offset != 96 or len(body) < 128:
        return None
    length = int.from_bytes(body[96:128], "big")
    end = 128 + length
    if end > len(body):
        return None
    return [Call("0x" + body[12:32].hex(), int.from_bytes(body[32:64], "big"), bytes(body[128:end]))]


def decode_session_calls(call_data: bytes) -> tuple[bytes, list[Call] | None]:
    """(selector, calls): calls is None when the selector is execute/executeBatch but the ABI
    payload does not decode (the contract's abi.decode reverts without data)."""
    selector = bytes(call_data[:4]) if len(call_data) >= 4 else b"\x00" * 4
    body = bytes(call_data[4:])
    try:
        if selector == SEL_EXECUTE:
            calls = _decode_execute(body)
            if calls is None:
                target, value, data = decode(_EXECUTE_TYPES, body)
                calls = [Call(target.lower(), value, bytes(data))]
            return selector, calls
        if selector == SEL_EXECUTE_BATCH:
            (items,) = decode(_BATCH_TYPES, body)
            return selector, [Call(t.lower(), v, bytes(d)) for t, v, d in items]
    except Exception:
        return selector, None
    return selector, []


def _compare(condition: int, a: int, b: int) -> bool:
    if condition == Condition.EQ:
        return a == b
    if condition == Condition.NEQ:
        return a != b
    if condition == Condition.GT:
        return a > b
    if condition == Condition.GTE:
        return a >= b
    if condition == Condition.LT:
        return a < b
    return a <= b


# ---------------------------------------------------------------- evaluation


_NO_PENDING: dict[int, int] = {}


class _Eval:
    """One op's evaluation: the base session, the pending ops before it, and what earlier calls
    of this op consumed."""

    __slots__ = ("account", "signer", "base", "spec", "period", "pending_by_key", "in_op", "consumed", "matched",
                 "facts", "index")
    # set only for a session that has rules; one that is none or revoked only ever fails (fail())
    spec: SessionSpec
    index: PolicyIndex

    def __init__(self, account: str, signer: str, base: SessionState, period: int, after: Sequence[PendingUse],
                 facts: OpFacts = UNPRICED_OP):
        self.account = account
        self.signer = signer
        self.base = base
        if base.spec is not None:
            self.spec = base.spec
            self.index = policy_index(base.spec)
        self.period = period
        self.facts = facts
        # per limit, the pending ops' amounts summed per allowance period (one pass here instead
        # of a scan of every pending op in each consume())
        self.pending_by_key: dict[LimitKey, dict[int, int]] = {}
        for use in after:
            for c in use.consumed:
                per_period = self.pending_by_key.setdefault(c.key, {})
                per_period[use.period_index] = per_period.get(use.period_index, 0) + c.amount
        self.in_op: dict[LimitKey, int] = {}
        self.consumed: list[Consumption] = []
        self.matched: list[tuple[str, int] | None] = []

    def fail(self, rule: str, args: tuple, text: str, **data) -> SessionViolation:
        return SessionViolation(rule, args, f"session {checksummed(self.signer)} {text}",
                                {"account": self.account, "sessionKey": self.signer, **data})

    def consume(self, key: LimitKey, kind: int, cap: int, amount: int, call_index: int) -> None:
        if kind == LimitKind.NONE or amount == 0:
            return
        p = self.period
        counter = self.base.counters.get(key)
        chain_period, chain_used = (counter.period_index, counter.used) if counter else (0, 0)
        pending = self.pending_by_key.get(key, _NO_PENDING)
        scope, pi, ci = key
        if kind == LimitKind.ALLOWANCE:
            latest = max(chain_period, max(pending, default=chain_period))
            if p < latest:
                where = "on chain" if latest == chain_period else "by a pending op"
                raise self.fail(
                    "SessionPeriodExpired", (p, latest),
                    f"{limit_text(self.spec, key)}: the allowance counter is already in period {latest} ({where}); "
                    f"an op for period {p} can no longer be included: sign it for period {latest} or later",
                    callIndex=call_index, periodIndex=p, counterPeriodIndex=latest,
                )
            used_chain = chain_used if chain_period == p else 0
            used_pending = pending.get(p, 0)
        else:
            used_chain = chain_used
            used_pending = sum(pending.values())
        earlier = self.in_op.get(key, 0)
        used = used_chain + used_pending + earlier
        if amount > cap - used:
            remaining = max(cap - used, 0)
            extra = f", earlier calls of this op {earlier}" if earlier else ""
            period_text = f" (allowance, period {p})" if kind == LimitKind.ALLOWANCE else ""
            raise self.fail(
                "SessionCumulativeLimitExceeded", (call_index, scope, pi, ci, used, amount, cap),
                f"{limit_text(self.spec, key)} cumulative limit exceeded{period_text}: limit {cap}, "
                f"used {used_chain}, pending {used_pending}{extra}, requested {amount}",
                callIndex=call_index, scope=_SCOPE_NAME[scope],
                policyType=POLICY_TYPES.get(scope, "call"), policyIndex=pi,
                **({"constraintIndex": ci, **_argument_data(self.spec, pi, ci)} if scope == Scope.CALL_ARG else {}),
                limitKind=_KIND_NAME.get(kind, str(kind)), periodIndex=p, limit=_q(cap), used=_q(used_chain),
                pending=_q(used_pending), inOp=_q(earlier), requested=_q(amount), remaining=_q(remaining),
            )
        self.in_op[key] = earlier + amount
        self.consumed.append(Consumption(scope, pi, ci, amount))

    def check_gas(self) -> None:
        """SessionAccount._checkGas: paymaster allowed, maximum cost per op, cumulative budget."""
        facts, gas = self.facts, self.spec.gas
        if facts.paymaster is not None and facts.paymaster not in gas.paymasters:
            allowed = ", ".join(gas.paymasters) or "none"
            raise self.fail("SessionPaymasterNotAllowed", (facts.paymaster,),
                            f"gas rule: paymaster {facts.paymaster} is not one the session may use (allowed: {allowed})",
                            scope="gas", paymaster=facts.paymaster, allowed=list(gas.paymasters))
        if facts.max_cost > gas.max_cost_per_op:
            raise self.fail(
                "SessionGasCostExceedsPerOp", (facts.max_cost, gas.max_cost_per_op),
                f"gas rule: the op's maximum cost {facts.max_cost} wei (sum of its gas limits x maxFeePerGas) "
                f"exceeds the session's maximum per op {gas.max_cost_per_op} wei",
                scope="gas", limit=_q(gas.max_cost_per_op), requested=_q(facts.max_cost))
        if facts.paymaster is None:
            self.consume((Scope.GAS, 0, 0), gas.cost_limit.kind, gas.cost_limit.amount, facts.max_cost, 0)

    def check_call(self, index: int, call: Call) -> None:
        if call.target == self.account:
            raise self.fail("SessionSelfCallNotAllowed", (index,),
                            f"call {index}: calls to the account itself are not allowed for session keys",
                            callIndex=index)
        if self.facts.protected(call.target, call.data, self.account):
            raise self.fail("SessionProtectedTarget", (index, call.target),
                            f"call {index}: {checksummed(call.target)} is a protected target (an EntryPoint, where only "
                            f"depositTo(the account) is allowed, or the account's implementation)",
                            callIndex=index, target=call.target)
        spec = self.spec
        if spec.wildcard:
            self.matched.append(None)
            return
        data = call.data
        if not data:
            i = self.index.transfer_policy(call.target)
            if i is None:
                raise self.fail("SessionTransferNotAllowed", (index, call.target),
                                f"call {index}: no transfer policy allows sending ETH to {checksummed(call.target)}",
                                callIndex=index, target=call.target, requested=_q(call.value))
            t = spec.transfer_policies[i]
            if call.value > t.max_value_per_use:
                raise self.fail(
                    "SessionTransferExceedsPerUse", (index, i, call.value, t.max_value_per_use),
                    f"{transfer_policy_text(spec, i)} call {index}: value {call.value} exceeds the per-use "
                    f"maximum {t.max_value_per_use}",
                    callIndex=index, policyType="transfer", policyIndex=i, limit=_q(t.max_value_per_use),
                    requested=_q(call.value),
                )
            self.consume((Scope.TRANSFER_VALUE, i, 0), t.value_limit.kind, t.value_limit.amount, call.value, index)
            self.matched.append(("transfer", i))
            return
        if len(data) < 4:
            raise self.fail("SessionInvalidCallData", (index,),
                            f"call {index}: calldata of {len(data)} bytes is neither empty nor a function call",
                            callIndex=index)
        selector = bytes(data[:4])
        i = self.index.call_policy(call.target, selector)
        if i is None:
            sel_text = function_name(selector)
            if call.target in self.index.targets or ZERO_ADDRESS in self.index.targets:
                raise self.fail("SessionSelectorNotAllowed", (index, call.target, selector),
                                f"call {index}: function {sel_text} on {checksummed(call.target)} is not allowed by any call policy",
                                callIndex=index, target=call.target, selector="0x" + selector.hex())
            raise self.fail("SessionTargetNotAllowed", (index, call.target),
                            f"call {index}: target {checksummed(call.target)} is not allowed by any call policy",
                            callIndex=index, target=call.target)
        p = spec.call_policies[i]
        if call.value > p.max_value_per_use:
            raise self.fail(
                "SessionValueExceedsPerUse", (index, i, call.value, p.max_value_per_use),
                f"{call_policy_text(spec, i)} call {index}: value {call.value} wei exceeds the per-use "
                f"maximum {p.max_value_per_use}" + (" (the policy allows no ETH)" if p.max_value_per_use == 0 else ""),
                callIndex=index, policyType="call", policyIndex=i, limit=_q(p.max_value_per_use),
                requested=_q(call.value),
            )
        self.consume((Scope.CALL_VALUE, i, 0), p.value_limit.kind, p.value_limit.amount, call.value, index)
        for j, c in enumerate(p.constraints):
            offset = 4 + c.index * 32
            if len(data) < offset + 32:
                raise self.fail(
                    "SessionArgOutOfBounds", (index, i, j, c.index),
                    f"{call_policy_text(spec, i)} {argument_text(spec, i, j)} call {index}: the calldata has no word {c.index}",
                    callIndex=index, policyType="call", policyIndex=i, constraintIndex=j, wordIndex=c.index,
                )
            raw = bytes(data[offset:offset + 32])
            if not is_canonical(c.arg_type, c.arg_size, raw):
                type_text = arg_type_text(c.arg_type, c.arg_size)
                raise self.fail(
                    "SessionArgNotCanonical", (index, i, j, int(c.arg_type), raw),
                    f"{call_policy_text(spec, i)} {argument_text(spec, i, j)} call {index}: word {c.index} 0x{raw.hex()} is not a "
                    f"cleanly padded {type_text} (a callee reading fewer bits would see another value)",
                    callIndex=index, policyType="call", policyIndex=i, constraintIndex=j, wordIndex=c.index,
                    argType=type_text, actual="0x" + raw.hex(),
                )
            value = int.from_bytes(raw, "big")
            ref = int.from_bytes(c.ref_value, "big")
            is_signed = c.arg_type == ArgType.INT
            if not _compare(c.condition, signed(value) if is_signed else value, signed(ref) if is_signed else ref):
                op = _COND_TEXT.get(c.condition, "<=")
                arg = argument_of(spec, i, j)
                raise self.fail(
                    "SessionArgConstraintFailed", (index, i, j, c.condition, raw, c.ref_value),
                    f"{call_policy_text(spec, i)} call {index}: {argument_text(spec, i, j)} is "
                    f"{value_text(spec, i, j, value)}, the policy requires {op} {value_text(spec, i, j, ref)}",
                    **({"argument": arg[1]} if arg else {}),
                    callIndex=index, policyType="call", policyIndex=i, constraintIndex=j, wordIndex=c.index,
                    condition=op, actual="0x" + raw.hex(), refValue="0x" + c.ref_value.hex(),
                )
            self.consume((Scope.CALL_ARG, i, j), c.limit.kind, c.limit.amount, value, index)
        self.matched.append(("call", i))


def effective_base(state: SessionState, pending: Sequence[PendingUse]) -> tuple[SessionState, Sequence[PendingUse]]:
    """The session as the EntryPoint would find it after the pending ops' validation started
    from the last pending grant (enable-mode op), and the pending ops that count against it."""
    last = None
    grant = None
    grants = 0
    for i, use in enumerate(pending):
        if use.grant is not None:
            last, grant = i, use.grant
            grants += 1
    if last is None or grant is None:
        return state, pending
    return SessionState.fresh(grant, state.grant_nonce + grants, state.epoch), pending[last:]


def evaluate(account: str, state: SessionState, sig: SessionSignature | EnableSignature, call_data: bytes,
             pending: Sequence[PendingUse] = (), facts: OpFacts = UNPRICED_OP) -> Evaluation:
    """The contract's session validation of one op, or SessionViolation where it would revert.
    `facts` are the op's gas fields and protected targets (OpFacts.of); the default prices the
    op at zero and is meant for tests of the call rules only."""
    signer = sig.signer
    base, after = effective_base(state, pending)
    grant = None
    if facts.delegating:
        if not isinstance(sig, EnableSignature):
            raise SessionViolation(
                "SessionDelegationNotAllowed", (),
                f"session {signer}: a session op may not carry an EIP-7702 authorization (only the owner "
                f"(re)delegates the account)", {"account": account, "sessionKey": signer})
        # the owner-signed (re)delegation starts a new epoch: every earlier grant is gone
        base = SessionState(Status.NONE, base.grant_nonce, 0, None, {}, base.epoch + 1)
        after = ()
    if isinstance(sig, EnableSignature):
        ctx = _Eval(account, signer, base, sig.period_index, ())
        reason = check_spec(sig.spec, account)
        if reason is not None:
            raise ctx.fail("InvalidSessionSpec", (reason,), f"enable mode: invalid session spec: {reason}",
                           reason=reason)
        if sig.nonce != base.grant_nonce:
            raise ctx.fail(
                "SessionEnableNonceMismatch", (signer, sig.nonce, base.grant_nonce),
                f"enable mode: the owner signed grant nonce {sig.nonce}, the account expects {base.grant_nonce} "
                f"(a grant or revocation happened since); sign the spec again",
                signedNonce=sig.nonce, currentNonce=base.grant_nonce,
            )
        grant = sig.spec
        base, after = SessionState.fresh(sig.spec, base.grant_nonce + 1, base.epoch), ()
    ctx = _Eval(account, signer, base, sig.period_index, after, facts)
    if base.status == Status.NONE:
        raise ctx.fail("SessionUnknown", (signer,),
                       f"is not a session of account {checksummed(account)}: grant it first (owner op or enable mode)")
    if base.status == Status.REVOKED:
        raise ctx.fail("SessionIsRevoked", (signer,), f"was revoked by the owner of account {checksummed(account)}")
    spec = base.spec
    if spec is None:  # an active status always comes with its spec (getSession); say so if an account breaks that
        raise ctx.fail("SessionUnknown", (signer,), f"is active on account {checksummed(account)} without a session spec")
    p = sig.period_index
    lo, hi = spec.valid_after, spec.valid_until or UINT48_MAX
    if spec.period == 0:
        bad = p != 0
    else:
        lo += p * spec.period
        hi = min(hi, lo + spec.period - 1)
        bad = False
    if bad or lo > hi:
        raise ctx.fail(
            "SessionPeriodOutsideWindow", (signer, p),
            f"period {p} lies outside the session window [{spec.valid_after}, {spec.valid_until or 'no expiry'}]"
            + (" (the session has no period: use 0)" if spec.period == 0 else ""),
            periodIndex=p, validAfter=spec.valid_after, validUntil=spec.valid_until,
        )
    pending_uses = len(after)
    count = base.usage_count + pending_uses + 1
    if spec.usage_limit and count > spec.usage_limit:
        raise ctx.fail(
            "SessionUsageLimitReached", (signer, spec.usage_limit),
            f"usage limit reached: limit {spec.usage_limit}, used {base.usage_count}, pending {pending_uses}, "
            f"requested 1",
            limit=_q(spec.usage_limit), used=_q(base.usage_count), pending=_q(pending_uses), requested="0x1",
            remaining=_q(max(spec.usage_limit - base.usage_count - pending_uses, 0)),
        )
    ctx.check_gas()
    selector, calls = decode_session_calls(call_data)
    if calls is None:
        raise ctx.fail("UndecodableCallData", (), f"callData {function_name(selector)} arguments do not ABI-decode")
    if selector != SEL_EXECUTE and selector != SEL_EXECUTE_BATCH:
        raise ctx.fail("SessionCallNotAllowed", (selector,),
                       f"callData must call execute or executeBatch, not {function_name(selector)}",
                       selector="0x" + selector.hex())
    if selector == SEL_EXECUTE_BATCH and len(calls) > MAX_SESSION_CALLS:
        raise ctx.fail("SessionTooManyCalls", (len(calls), MAX_SESSION_CALLS),
                       f"a session op makes at most {MAX_SESSION_CALLS} calls, this batch has {len(calls)}",
                       limit=_q(MAX_SESSION_CALLS), requested=_q(len(calls)))
    for i, call in enumerate(calls):
        ctx.check_call(i, call)
    return Evaluation(
        account=account, signer=signer, mode=2 if grant is not None else 1, period_index=p,
        valid_after=lo, valid_until=0 if hi == UINT48_MAX else hi, calls=calls, consumed=tuple(ctx.consumed),
        grant=grant, spec=spec, usage_count=count, matched=tuple(ctx.matched),
    )


def check_window(ev: Evaluation, now: int, margin: int = 0, *, latest: int | None = None, max_wait: int = 0,
                 strict: bool = False) -> None:
    """The time range the account returns against the inclusion time (the EntryPoint's AA22
    check): `now` is the earliest timestamp the including block can have, `latest` the latest
    it is expected to have (chain.clock.InclusionWindow; both `now` when not given). A range
    that starts within `max_wait` s is accepted (the pool holds the op until it is due);
    `margin` s of validity after `latest` are required (the bundler's valid_until_margin);
    `strict`: the EntryPoint wants timestamp > validAfter (v0.8+)."""
    latest = now if latest is None else latest
    too_early = ev.valid_after + (1 if strict else 0) - now > max_wait
    if not too_early and not (ev.valid_until and ev.valid_until < latest + margin):
        return  # the usual case: no message to build
    data = {"account": ev.account, "sessionKey": ev.signer, "periodIndex": ev.period_index,
            "validAfter": ev.valid_after, "validUntil": ev.valid_until, "now": now}
    spec = ev.spec
    whole = not spec.period or (ev.valid_until == spec.valid_until and ev.valid_after == spec.valid_after)
    subject = f"session {ev.signer}" + ("" if whole else f" period {ev.period_index}")
    hint = ""
    if spec.period and now >= spec.valid_after:
        current = current_period(spec, now)
        if current != ev.period_index:
            hint = f"; the current period is {current}: sign the op for it"
            data["currentPeriod"] = current
    if too_early:
        held = f" (this bundler holds ops that become valid within {max_wait} s)" if max_wait else ""
        raise SessionViolation(
            "SessionNotYetValid", (),
            f"{subject} is not valid yet: it starts at {ev.valid_after}, {ev.valid_after - now} s from now{held}{hint}",
            data)
    if ev.valid_until and ev.valid_until < latest + margin:
        if ev.valid_until < now:
            rule, text = "SessionExpired", (f"expired {now - ev.valid_until} s before the earliest time a block can "
                                            f"include the op ({now})")
        elif ev.valid_until < latest:
            rule, text = "SessionExpiresTooSoon", f"expires before the op can be included (expected by {latest})"
        else:
            rule, text = "SessionExpiresTooSoon", (f"expires in {ev.valid_until - now} s (less than {margin} s after "
                                                   f"the latest expected inclusion time {latest})")
        raise SessionViolation(rule, (), f"{subject} {text} (validUntil {ev.valid_until}){hint}", data)


def current_period(spec: SessionSpec, now: int) -> int:
    """The period covering `now` (0 before validAfter or without periods), like currentPeriod()."""
    if spec.period == 0 or now < spec.valid_after:
        return 0
    return (now - spec.valid_after) // spec.period
