"""Differential tests: the Python session evaluator (bundler.sessions.policy, with the pending
ledger's semantics and coincurve signature recovery) against SessionAccount itself, on random
specs and random calls / batches, through the real EntryPoints v0.7 and v0.8 on anvil.

For every example a sequence of 1-3 ops goes into one eth_call of handleOps: the EntryPoint
validates them in order (each sees the storage the earlier ones wrote), exactly what the
bundler's pending usage models. The contract's verdict is the first FailedOp (its index, the
AA code, and for AA23 the SessionAccount custom error with its arguments); Python's is the
first op that evaluate() refuses (rule + arguments), or whose signature does not recover
(AA24), or whose time range excludes the block (AA22). Both must agree exactly.

  test_enable_sequences_agree        the first op grants by enable mode (mode 0x02, sometimes
                                     with an invalid spec or a stale nonce), later ops use the
                                     session (0x01) or grant again; nothing is mined
  test_granted_session_agrees        a random spec granted for real, optionally one random op
                                     mined (counters on chain, allowance periods), then 1-3
                                     session ops against the on-chain state read through the
                                     bundler's decoders
  test_gas_bound_covers_measured_validation
                                     the fast path's verification-gas bound against py-evm's
                                     measurement of accepted random ops (zero / partial / full
                                     deposit, fresh or used nonce key)

Examples: SESSION_DIFF_EXAMPLES (default 250 / 200 / 60); derandomized for CI unless
SESSION_DIFF_RANDOM=1.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import replace

import pytest
from eth_abi import encode
from eth_account import Account
from hypothesis import HealthCheck, Phase, event, given, seed, settings, strategies as st

from bundler.devchain import deploy_all, start_anvil
from bundler.devchain.anvil import ANVIL_ACCOUNT0
from bundler.entrypoint import V07, V08
from session_sdk.types import (
    ArgConstraint, ArgType, CallPolicy, GasPolicy, Limit, LimitKind, SessionSpec, Status, TransferPolicy, word,
)
from session_sdk.rules import is_canonical
from session_sdk.eip712 import eip712_spec_digest
from session_sdk.signatures import EnableSignature, decode_signature
from session_sdk.calldata import (
    SEL_DEPOSIT_TO, SEL_EXECUTE, Call, encode_execute, encode_execute_batch, encode_grant_session,
    encode_revoke_session,
)
from bundler.sessions.gas import validation_gas_bound
from bundler.sessions.policy import (
    OpFacts, PendingUse, SessionState, SessionViolation, check_window, evaluate,
)
from bundler.sessions.recover import recover_signer
from bundler.sessions.state import (
    SEL_GET_SESSION, SEL_GET_USAGE, decode_session_info, decode_usage,
)
from bundler.sim import PinnedBlock, SimConfig, SimWorker
from bundler.sim.entrypoint_sim import deposit_slot
from bundler.sim.types import AccountOverride
from helpers.sessions import (
    TEST_GAS,
    RpcError, SessionAccountHandle, block_timestamp, decode_failed_op, deploy_session_contracts,
    erc20_mint, eth_call, handle_ops, handle_ops_calldata, new_key, rpc, selector, wait_receipt,
)

EXAMPLES = int(os.environ.get("SESSION_DIFF_EXAMPLES", "0"))
RANDOM = os.environ.get("SESSION_DIFF_RANDOM") == "1"
SEEN: set[str] = set()  # verdicts the contract gave (coverage check at the end)
SEEN_BY: dict[str, set[str]] = {"enable": set(), "granted": set()}  # the same, per property test
T1 = "0x" + "a1" * 20
T2 = "0x" + "b2" * 20
ZERO = "0x" + "00" * 20
SEL_TRANSFER = selector("transfer(address,uint256)")
SEL_APPROVE = selector("approve(address,uint256)")
SEL_OTHER = bytes.fromhex("12345678")
ANY_SELECTOR = b"\x00" * 4
UINT256_MAX = 2**256 - 1
SESSION_KEY = "0x" + "5e55" * 16
PM = "0x" + "9a" * 20  # a paymaster address (no code: an op that gets that far fails AA3x)
OP_COST = (4_000_000 + 100_000 + 60_000) * 3 * 10**9  # the max cost of an op built by the env's accounts
# word values that are not clean for narrow types: dirty address, above uint96, negative int24
DIRTY = [b"\x01" + bytes(11) + bytes.fromhex("a1" * 20), word(2**96 + 5), word(2**256 - 3), word(2**255)]


def rare(data, one_in: int, label: str) -> bool:
    """True about once in `one_in` draws (a middle value: Hypothesis favours the bounds)."""
    return data.draw(st.integers(0, one_in - 1), label=label) == one_in // 2


def _pinned_seed(value: int):
    """The derandomized examples of a property test, fixed: derandomize seeds from the test's
    source text, so an edit of the body (an import renamed) would silently swap the examples that
    test_differential_examples_covered_the_rules pins. Each value is the seed derandomize gave the
    test's body before the session SDK's split (SESSION_DIFF_RANDOM=1 still draws new ones)."""
    return seed(value) if not RANDOM else (lambda test: test)


def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not RANDOM, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def _session_env():
    """An anvil with the EntryPoints, the session contracts and one session account per version."""
    node = start_anvil()
    try:
        deploy_all(node.url)
        node.sessions = deploy_session_contracts(node.url)
        node.accounts = {}
        for ep in (V07, V08):
            acct = SessionAccountHandle.create(node.url, node.chain_id, ep, node.sessions, fund=10**24)
            acct.verification_gas, acct.call_gas = 4_000_000, 100_000
            acct.impl = node.sessions.implementations[ep.version]
            erc20_mint(node.url, node.sessions.token, acct.address, 10**30)
            node.accounts[ep.version] = acct
        node.signer = Account.from_key(SESSION_KEY).address.lower()
        if len(PROTECTED) == 2:  # once per run (same addresses on every fresh chain): the draws stay the same
            PROTECTED.extend(node.sessions.implementations[v] for v in ("0.7", "0.8"))
        node.worker = SimWorker(node.url, SimConfig(chain_id=node.chain_id))
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def env():
    with _session_env() as node:
        yield node


# ------------------------------------------------------------------ strategies

AMOUNTS = [0, 1, 5, 10, 50, 100, 150, 1000, 10**18, UINT256_MAX]


def limits(period: int, allow_invalid: bool):
    kinds = [LimitKind.NONE, LimitKind.NONE, LimitKind.LIFETIME, LimitKind.LIFETIME]
    if period or allow_invalid:
        kinds += [LimitKind.ALLOWANCE, LimitKind.ALLOWANCE]
    if allow_invalid:
        kinds.append(3)  # unknown kind: InvalidSessionSpec
    return st.builds(Limit, st.sampled_from(kinds), st.sampled_from([0, 10, 100, 150, 1000, 10**18]))


def words(token: str):
    return st.one_of(st.sampled_from(AMOUNTS).map(word), st.sampled_from([T1, T2, token, ZERO]).map(word),
                     st.sampled_from(DIRTY))


ARG_TYPES = [(ArgType.WORD, 0)] * 4 + [(ArgType.ADDRESS, 0), (ArgType.BOOL, 0), (ArgType.UINT, 12),
                                       (ArgType.UINT, 32), (ArgType.INT, 3), (ArgType.BYTES, 20)]


@st.composite
def constraints(draw, token: str, period: int, allow_invalid: bool):
    conds = list(range(6)) + ([6] if allow_invalid else [])
    arg_type, size = draw(st.sampled_from(ARG_TYPES + ([(6, 0), (ArgType.UINT, 0), (ArgType.ADDRESS, 4)]
                                                       if allow_invalid else [])))
    ref = draw(words(token))
    limit = draw(limits(period, allow_invalid))
    if not allow_invalid:  # a valid spec: a clean reference value, no limit on a signed argument
        if not is_canonical(arg_type, size, ref):
            ref = word(1) if arg_type != ArgType.BYTES else b"\x01" + bytes(31)
        if arg_type == ArgType.INT:
            limit = Limit()
    return ArgConstraint(draw(st.sampled_from(conds)), draw(st.integers(0, 3)), ref, limit, arg_type, size)


def gas_policies(period: int, allow_invalid: bool):
    return st.builds(
        GasPolicy,
        max_cost_per_op=st.sampled_from([10**18] * 5 + [OP_COST, OP_COST - 1]),
        cost_limit=st.one_of(st.just(Limit()), st.just(Limit()), st.builds(
            Limit, st.sampled_from([LimitKind.LIFETIME] + ([LimitKind.ALLOWANCE] if period else [])),
            st.sampled_from([OP_COST, 2 * OP_COST + 1, 10**18])), limits(period, allow_invalid)),
        paymasters=st.sampled_from([(), (), (PM,), (T1, PM)] + ([(ZERO,)] if allow_invalid else [])),
    )


def call_policies(token: str, period: int, allow_invalid: bool):
    return st.builds(
        CallPolicy,
        target=st.sampled_from([ZERO, token, token, T1, T2]),
        selector=st.sampled_from([ANY_SELECTOR, SEL_TRANSFER, SEL_TRANSFER, SEL_APPROVE, SEL_OTHER]),
        max_value_per_use=st.sampled_from([0, 0, 10, 1000, 10**18, UINT256_MAX]),
        value_limit=limits(period, allow_invalid),
        constraints=st.lists(constraints(token, period, allow_invalid), max_size=3).map(tuple),
    )


def transfer_policies(period: int, allow_invalid: bool):
    return st.builds(TransferPolicy, target=st.sampled_from([ZERO, T1, T2]),
                     max_value_per_use=st.sampled_from([0, 10, 1000, 10**18]),
                     value_limit=limits(period, allow_invalid))


def draw_spec(data, token: str, signer: str, now: int, *, allow_invalid: bool) -> tuple[SessionSpec, int]:
    """A spec and the period index covering `now` (periods are placed so `now` is mid-period,
    far from any boundary the chain's clock could cross during the test)."""
    period = data.draw(st.sampled_from([0, 0, 600, 3600, 86_400]), label="period")
    k = data.draw(st.integers(0, 4), label="current period")
    where = data.draw(st.sampled_from(["current"] * 5 + ["future", "past", "open", "open"]), label="window")
    if period:
        valid_after = now - k * period - period // 2
    else:
        valid_after = now - data.draw(st.integers(300, 10**6), label="age")
    valid_until = 0
    if where == "current":
        valid_until = data.draw(st.sampled_from([0, now + 400, now + 10**6]), label="until")
    elif where == "future":
        valid_after = now + data.draw(st.integers(400, 10**6), label="starts in")
        valid_until = data.draw(st.sampled_from([0, valid_after + 10**6]), label="until")
        k = 0
    elif where == "past":
        valid_until = now - data.draw(st.integers(400, 10**5), label="ended")
        valid_after = max(0, min(valid_after, valid_until - 1000))
    elif where == "open":
        valid_after = valid_after if period else 0
    if allow_invalid and rare(data, 30, "swap window"):
        valid_after, valid_until = now + 1000, now + 10  # validUntil before validAfter
    spec = SessionSpec(
        signer=signer, valid_after=max(valid_after, 0), valid_until=valid_until, period=period,
        wildcard=rare(data, 10, "wildcard"),
        usage_limit=data.draw(st.sampled_from([0, 0, 0, 1, 2, 3]), label="usage limit"),
        call_policies=tuple(data.draw(st.lists(call_policies(token, period, allow_invalid), max_size=3),
                                      label="call policies")),
        transfer_policies=tuple(data.draw(st.lists(transfer_policies(period, allow_invalid), max_size=2),
                                          label="transfer policies")),
        gas=data.draw(gas_policies(period, allow_invalid), label="gas"),
    )
    if allow_invalid and rare(data, 30, "zero signer"):
        spec = replace(spec, signer=ZERO)
    return spec, k


def satisfying_word(data, c: ArgConstraint) -> bytes:
    """A word meeting constraint c (an amount near its reference value)."""
    ref = int.from_bytes(c.ref_value, "big")
    cond = c.condition
    if cond == 0:
        return c.ref_value
    if cond == 1:
        return word((ref + 1) % 2**256)
    if cond in (2, 3):  # gt / gte
        top = UINT256_MAX if cond == 3 else UINT256_MAX
        lo = ref + 1 if cond == 2 else ref
        if lo > top:
            return word(UINT256_MAX)
        return word(data.draw(st.sampled_from([lo, min(lo + 10, top), min(lo + 100, top)]), label="above"))
    hi = ref - 1 if cond == 4 else ref  # lt / lte
    if hi < 0:
        return word(0)
    return word(data.draw(st.sampled_from([hi, max(hi - 10, 0), max(hi // 2, 0), min(hi, 60), min(hi, 10)]),
                          label="below"))


def violating_word(c: ArgConstraint) -> bytes:
    ref = int.from_bytes(c.ref_value, "big")
    bump = {0: ref + 1, 1: ref, 2: ref, 3: ref - 1, 4: ref, 5: ref + 1}.get(c.condition, ref + 1)
    return word(bump % 2**256)


def draw_call_data(data, token: str, account: str, spec: SessionSpec | None = None) -> bytes:
    """execute / executeBatch of random calls; half of them aimed at one of the spec's policies
    (its target and selector, words near its constraints' reference values)."""
    def aimed_call():
        if spec.call_policies and (not spec.transfer_policies or data.draw(st.booleans(), label="call or send")):
            p = data.draw(st.sampled_from(spec.call_policies), label="aimed policy")
            target = p.target if p.target != ZERO else data.draw(
                st.sampled_from([token, T1, token, account] + PROTECTED), label="any target")
            sel = p.selector if p.selector != ANY_SELECTOR else data.draw(st.sampled_from([SEL_TRANSFER, SEL_OTHER]),
                                                                          label="any selector")
            if rare(data, 5, "other selector"):
                sel = SEL_APPROVE if sel != SEL_APPROVE else SEL_OTHER
            n = max([c.index + 1 for c in p.constraints] + [data.draw(st.integers(0, 2), label="extra words")])
            args = []
            for w in range(n):
                governing = [c for c in p.constraints if c.index == w]
                if governing and not rare(data, 5, "violate"):
                    args.append(satisfying_word(data, governing[0]))
                elif governing and not rare(data, 3, "random word"):
                    args.append(violating_word(governing[0]) if governing[0].arg_type == ArgType.WORD
                                else data.draw(st.sampled_from(DIRTY), label="dirty"))
                else:
                    args.append(data.draw(words(token), label="aimed word"))
            value = data.draw(st.sampled_from([0, 0, 1, p.max_value_per_use, p.max_value_per_use // 2]),
                              label="aimed value")
            return Call(target, value, sel + b"".join(args))
        t = data.draw(st.sampled_from(spec.transfer_policies), label="aimed transfer")
        target = t.target if t.target != ZERO else T2
        return Call(target, data.draw(st.sampled_from([0, 1, t.max_value_per_use, t.max_value_per_use + 1]),
                                      label="aimed amount"), b"")

    def one_call():
        if spec is not None and (spec.call_policies or spec.transfer_policies) \
                and not rare(data, 4, "random call"):
            return aimed_call()
        target = data.draw(st.sampled_from([token, token, T1, T2, account, ZERO] + PROTECTED), label="target")
        value = data.draw(st.sampled_from([0, 0, 0, 1, 10, 1000, 10**18, 2**255]), label="value")
        if target in (V07.address, V08.address) and rare(data, 3, "depositTo"):
            who = data.draw(st.sampled_from([account, T1]), label="depositTo")
            return Call(target, 0, SEL_DEPOSIT_TO + word(who))
        kind = data.draw(st.sampled_from(["call", "call", "call", "transfer", "short"]), label="data kind")
        if kind == "transfer":
            return Call(target, value, b"")
        if kind == "short":
            return Call(target, value, data.draw(st.binary(min_size=1, max_size=3), label="short data"))
        sel = data.draw(st.sampled_from([SEL_TRANSFER, SEL_TRANSFER, SEL_APPROVE, SEL_OTHER]), label="selector")
        args = data.draw(st.lists(words(token), max_size=4), label="words")
        return Call(target, value, sel + b"".join(args))

    shape = data.draw(st.sampled_from(["execute"] * 5 + ["batch"] * 4 + ["other"]), label="callData")
    if shape == "other":
        return data.draw(st.sampled_from([b"", b"\xde\xad\xbe\xef" + bytes(64), SEL_EXECUTE + bytes(40)]),
                         label="odd callData")
    calls = [one_call() for _ in range(1 if shape == "execute" else data.draw(st.integers(0, 3), label="batch"))]
    if shape == "execute":
        c = calls[0]
        return encode_execute(c.target, c.value, c.data)
    return encode_execute_batch(calls)


PROTECTED = [V07.address, V08.address]  # + the implementation, added by the env fixture


def draw_gas(data, op):
    """Now and then a greedy op (huge preVerificationGas, maxFee == maxPriorityFee) or one
    through a paymaster."""
    kind = data.draw(st.sampled_from(["plain"] * 10 + ["greedy", "paymaster", "paymaster"]), label="gas fields")
    if kind == "greedy":
        return op.with_changes(pre_verification_gas=2_000_000, max_fee_per_gas=3000 * 10**9,
                               max_priority_fee_per_gas=3000 * 10**9)
    if kind == "paymaster":
        return op.with_changes(paymaster=data.draw(st.sampled_from([PM, PM, T2]), label="paymaster"),
                               paymaster_verification_gas_limit=100_000, paymaster_post_op_gas_limit=10_000)
    return op


def period_for(data, spec: SessionSpec, current: int) -> int:
    if spec.period == 0:
        return data.draw(st.sampled_from([0] * 12 + [1]), label="period index")
    return max(0, current + data.draw(st.sampled_from([0, 0, 0, 0, 0, 1, -1, 2, 10**6]), label="period offset"))


# ------------------------------------------------------------------ the two sides


def contract_verdict(url: str, ep, ops) -> tuple | None:
    """None if handleOps would succeed, else (op index, AA code, error name, error args)."""
    try:
        eth_call(url, ep.address, handle_ops_calldata(ops), sender=ANVIL_ACCOUNT0)
    except RpcError as e:
        failed = decode_failed_op(e.data)
        assert failed is not None, f"handleOps reverted without FailedOp: {e} {e.data.hex()}"
        code = failed.reason[:4]
        if code.startswith("AA3"):  # the account accepted; the (code-less) paymaster failed
            return (failed.op_index, "AA3x", None, None)
        if code == "AA23":
            err = failed.error
            if err is None:
                assert failed.inner == b"", f"unexpected revert data {failed.inner.hex()}"
                return (failed.op_index, code, "UndecodableCallData", ())
            return (failed.op_index, code, err.name, err.args)
        return (failed.op_index, code, None, None)
    return None


def python_verdict(acct: SessionAccountHandle, state: SessionState, ops, now: int) -> tuple | None:
    """The same verdict from the bundler's evaluator: policy (AA23), then the paymaster stage
    (AA3x) for a sponsored op, then signatures (AA24), then the time range (AA22), op by op
    with the earlier ones pending."""
    pending: list[PendingUse] = []
    for i, op in enumerate(ops):
        sig = decode_signature(op.signature)
        try:
            ev = evaluate(acct.address, state, sig, op.call_data, pending, OpFacts.of(op, acct.ep.address, acct.impl))
        except SessionViolation as v:
            return (i, "AA23", v.rule, tuple(v.args_))
        # signature failures and the time range come back in validationData, which the
        # EntryPoint judges after the paymaster's validation: a sponsored op fails there first
        if op.paymaster is not None:
            return (i, "AA3x", None, None)
        digest = acct.op_hash(op)
        if isinstance(sig, EnableSignature):
            owner_digest = eip712_spec_digest(sig.spec, sig.nonce, acct.address, acct.chain_id)
            if recover_signer(owner_digest, sig.owner_signature) != acct.owner:
                return (i, "AA24", None, None)
        if recover_signer(digest, sig.signature) != sig.signer:
            return (i, "AA24", None, None)
        try:
            check_window(ev, now, 0)
        except SessionViolation:
            return (i, "AA22", None, None)
        pending.append(PendingUse(f"op{i}", op.nonce, ev.period_index, ev.consumed, ev.grant))
    return None


def label(verdict: tuple | None) -> str:
    return "accepted" if verdict is None else (verdict[2] or verdict[1])


def stored_form(spec: SessionSpec) -> SessionSpec:
    """The spec as getSession returns it: the account does not store the amount of a NONE limit."""
    def lim(x: Limit) -> Limit:
        return Limit(x.kind, 0) if x.kind == LimitKind.NONE else x

    return replace(
        spec,
        call_policies=tuple(replace(p, value_limit=lim(p.value_limit), constraints=tuple(
            replace(c, limit=lim(c.limit)) for c in p.constraints)) for p in spec.call_policies),
        transfer_policies=tuple(replace(t, value_limit=lim(t.value_limit)) for t in spec.transfer_policies),
        gas=replace(spec.gas, cost_limit=lim(spec.gas.cost_limit)),
    )


def read_state(url: str, account: str, signer: str) -> SessionState:
    arg = encode(["address"], [signer])
    state = decode_session_info(eth_call(url, account, SEL_GET_SESSION + arg))
    state.counters = decode_usage(eth_call(url, account, SEL_GET_USAGE + arg))
    return state


def sign_op(acct, op, spec: SessionSpec | None, *, signer: str, period: int, data, grant_nonce: int = 0):
    """Mode 0x01 (spec None) or 0x02; now and then signed by a wrong session or owner key."""
    key = new_key()[0] if rare(data, 25, "wrong signature") else SESSION_KEY
    if spec is None:
        return acct.sign_session(op, key, period, signer=signer)
    owner_key = new_key()[0] if rare(data, 25, "wrong owner") else None
    return acct.sign_enable(op, spec, key, nonce=grant_nonce, period_index=period, owner_key=owner_key)


# ------------------------------------------------------------------ tests


@_settings(250)
@_pinned_seed(
    0x70432e611a504174b2fc03a05b1cbc698b5318a4e96c5c702bbcf4d1f57d9daadfd5919a38de9d493ab3622422b30532)
@given(data=st.data())
def test_enable_sequences_agree(env, data):
    ep = data.draw(st.sampled_from([V07, V08]), label="entry point")
    acct = env.accounts[ep.version]
    token = env.sessions.token
    now = block_timestamp(env.url)
    state = read_state(env.url, acct.address, env.signer)  # nothing is ever mined here: status NONE
    assert state.status == Status.NONE
    n = data.draw(st.integers(1, 3), label="ops")
    nonce = acct.nonce()
    ops = []
    grants = 0
    current = 0
    spec = None
    for i in range(n):
        enable = data.draw(st.sampled_from([True] * 4 + [False]), label="enable") if i == 0 else \
            data.draw(st.sampled_from([False] * 5 + [True]), label="enable again")
        if enable:
            invalid = rare(data, 8, "maybe invalid spec")
            spec, current = draw_spec(data, token, env.signer, now, allow_invalid=invalid)
        if spec is None:  # session mode before any grant: SessionUnknown
            spec, current = draw_spec(data, token, env.signer, now, allow_invalid=False)
        op = draw_gas(data, acct.build(draw_call_data(data, token, acct.address, spec), nonce=nonce + i))
        period = period_for(data, spec, current)
        if enable:
            stale = rare(data, 16, "stale nonce")
            op = sign_op(acct, op, spec, signer=env.signer, period=period, data=data, grant_nonce=state.grant_nonce + grants + stale)
            grants += 1
        else:
            op = sign_op(acct, op, None, signer=env.signer, period=period, data=data)
        ops.append(op)
    expected = contract_verdict(env.url, ep, ops)
    got = python_verdict(acct, state, ops, now)
    event(f"verdict {label(expected)}")
    SEEN.add(label(expected))
    SEEN_BY["enable"].add(label(expected))
    assert got == expected, f"python {got} != contract {expected}"


@_settings(200)
@_pinned_seed(
    0x1412010c147cc8067d3929400f38aa88f676be7c13af7033dd32c6364266ed6405d28c0eca5aa3cceca6fa3a00cecad)
@given(data=st.data())
def test_granted_session_agrees(env, data):
    ep = data.draw(st.sampled_from([V07, V08]), label="entry point")
    acct = env.accounts[ep.version]
    token = env.sessions.token
    now = block_timestamp(env.url)
    spec, current = draw_spec(data, token, env.signer, now, allow_invalid=False)
    if rare(data, 8, "revoke"):
        grant_call = encode_execute_batch([Call(acct.address, 0, encode_grant_session(spec)),
                                           Call(acct.address, 0, encode_revoke_session(env.signer))])
    else:
        grant_call = encode_grant_session(spec)
    grant = acct.sign_owner(acct.build(grant_call).with_changes(call_gas_limit=5_000_000))
    [res] = handle_ops(env.url, ep, [grant])
    assert res.success, res.revert_reason.hex()
    state = read_state(env.url, acct.address, env.signer)
    assert state.spec == stored_form(spec) and state.usage_count == 0
    # optionally one op mined first, so counters (and allowance periods) live on chain
    if data.draw(st.booleans(), label="mine one first"):
        op = sign_op(acct, draw_gas(data, acct.build(draw_call_data(data, token, acct.address, spec))), None,
                     signer=env.signer,
                     period=period_for(data, spec, current), data=data)
        if python_verdict(acct, state, [op], now) is None:
            handle_ops(env.url, ep, [op])
            state = read_state(env.url, acct.address, env.signer)
            assert state.usage_count == 1
    nonce = acct.nonce()
    ops = [sign_op(acct, draw_gas(data, acct.build(draw_call_data(data, token, acct.address, spec), nonce=nonce + i)),
                   None,
                   signer=env.signer, period=period_for(data, spec, current), data=data)
           for i in range(data.draw(st.integers(1, 3), label="ops"))]
    expected = contract_verdict(env.url, ep, ops)
    got = python_verdict(acct, state, ops, block_timestamp(env.url))
    event(f"verdict {label(expected)}")
    SEEN.add(label(expected))
    SEEN_BY["granted"].add(label(expected))
    assert got == expected, f"python {got} != contract {expected}"


@_settings(60)
@_pinned_seed(
    0x59d14e988cbe08405f3f811b689cf90e43b4c085113160f461aaf05b02a0b3532786626f4330f4cb77d845ed513cfa76)
@given(data=st.data())
def test_gas_bound_covers_measured_validation(env, data):
    ep = data.draw(st.sampled_from([V07, V08]), label="entry point")
    acct = env.accounts[ep.version]
    token = env.sessions.token
    now = block_timestamp(env.url)
    spec, current = draw_spec(data, token, env.signer, now, allow_invalid=False)
    # the estimator measuring the op raises its gas limits: a budget that does not get in the way
    spec = replace(spec, valid_after=min(spec.valid_after, now - 1), valid_until=0, usage_limit=0, gas=TEST_GAS)
    grant = acct.sign_owner(acct.build(encode_grant_session(spec)).with_changes(call_gas_limit=5_000_000))
    [res] = handle_ops(env.url, ep, [grant])
    assert res.success
    state = read_state(env.url, acct.address, env.signer)
    fresh_key = data.draw(st.booleans(), label="fresh nonce key")
    key = data.draw(st.integers(1, 2**64), label="nonce key") if fresh_key else 0
    op = acct.build(draw_call_data(data, token, acct.address, spec), nonce=acct.nonce(key))
    period = current if spec.period else 0
    op = acct.sign_session(op, SESSION_KEY, period)
    try:
        ev = evaluate(acct.address, state, decode_signature(op.signature), op.call_data)
    except SessionViolation:
        return  # not a fast-path candidate
    deposit = data.draw(st.sampled_from([0, 1, 10**21]), label="deposit")
    overrides = {ep.address: AccountOverride(state_diff={deposit_slot(acct.address): deposit})}
    block = PinnedBlock.from_rpc(rpc(env.url, "eth_getBlockByNumber", ["latest", False]))
    measured = env.worker.measure_gas(op, ep, block, overrides=overrides)
    assert not hasattr(measured, "reason"), measured
    bound = validation_gas_bound(ev, len(op.call_data), fresh_nonce=op.nonce & (2**64 - 1) == 0,
                                 pays_prefund=deposit < op.max_cost(), fresh_deposit=deposit == 0)
    event(f"bound / measured {bound / measured.verification_gas_limit:.1f}")
    assert bound >= measured.verification_gas_limit, (bound, measured)
    assert bound <= 2.5 * measured.verification_gas_limit + 30_000, (bound, measured)


def test_differential_examples_covered_the_rules():
    """The fixed (derandomized) examples above reach the core verdicts; every rule is pinned
    by test_each_rule_agrees below."""
    if RANDOM or EXAMPLES:
        pytest.skip("coverage is only pinned for the default derandomized examples")
    # run alone or after a subset (-k): the property tests that did not run here run now, in
    # file order, on a chain of their own (test_enable_sequences_agree needs an account never granted)
    missing = [name for name, seen in SEEN_BY.items() if not seen]
    if missing:
        with _session_env() as fresh:
            for name in missing:
                {"enable": test_enable_sequences_agree, "granted": test_granted_session_agrees}[name](env=fresh)
    must = {"accepted", "AA22", "SessionCumulativeLimitExceeded", "SessionTargetNotAllowed", "InvalidSessionSpec",
            "SessionPeriodOutsideWindow", "SessionProtectedTarget", "SessionGasCostExceedsPerOp", "SessionArgNotCanonical",
            "SessionPaymasterNotAllowed"}
    assert must <= SEEN, f"never reached: {sorted(must - SEEN)}"


# ------------------------------------------------------------------ one case per rule, deterministic

OTHER_KEY = "0x" + "0ther".encode().hex() * 6 + "0000"


def rule_spec(signer: str, token: str, now: int) -> SessionSpec:
    """transfer(T1, <= 100) 150 lifetime; deposit() 10/use 15 lifetime; approve(address spender != 0);
    ETH to T1 10/use, 15 per hour; 3 uses; hourly periods, now in period 1, 10 h window; gas: two
    plain ops' cost per op, four in all, paymaster PM."""
    return SessionSpec(
        signer=signer, valid_after=now - 5400, valid_until=now + 36_000, period=3600, usage_limit=3,
        call_policies=(
            CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
                ArgConstraint(0, 0, word(T1)), ArgConstraint(5, 1, word(100), Limit.lifetime(150)))),
            CallPolicy(target=token, selector=selector("deposit()"), max_value_per_use=10,
                       value_limit=Limit.lifetime(15)),
            CallPolicy(target=token, selector=SEL_APPROVE, constraints=(ArgConstraint.typed(1, 0, "address", ZERO),)),
        ),
        transfer_policies=(TransferPolicy(target=T1, max_value_per_use=10, value_limit=Limit.allowance(15)),),
        gas=GasPolicy(max_cost_per_op=2 * OP_COST, cost_limit=Limit.lifetime(4 * OP_COST), paymasters=(PM,)),
    )


def _x(target, value=0, data=b""):
    return encode_execute(target, value, data)


def _pay(token, to, amount):
    return _x(token, 0, SEL_TRANSFER + word(to) + word(amount))


# name -> (calls of the ops sent together [(callData, period, key)], expected verdict label)
RULE_CASES = {
    "accepted": lambda t, a: [(_pay(t, T1, 10), 1, None), (_x(T1, 5), 1, None)],
    "SessionCumulativeLimitExceeded": lambda t, a: [(_pay(t, T1, 100), 1, None), (_pay(t, T1, 60), 1, None)],
    "SessionArgConstraintFailed": lambda t, a: [(_pay(t, T2, 10), 1, None)],
    "SessionArgOutOfBounds": lambda t, a: [(_x(t, 0, SEL_TRANSFER + word(T1)), 1, None)],
    "SessionTargetNotAllowed": lambda t, a: [(_pay(T2, T1, 10), 1, None)],
    "SessionSelectorNotAllowed": lambda t, a: [(_x(t, 0, SEL_OTHER), 1, None)],
    "SessionValueExceedsPerUse": lambda t, a: [(_x(t, 11, selector("deposit()")), 1, None)],
    "SessionTransferNotAllowed": lambda t, a: [(_x(T2, 1), 1, None)],
    "SessionTransferExceedsPerUse": lambda t, a: [(_x(T1, 11), 1, None)],
    "SessionSelfCallNotAllowed": lambda t, a: [(_x(a, 0, b""), 1, None)],
    "SessionInvalidCallData": lambda t, a: [(_x(t, 0, b"\x01\x02"), 1, None)],
    "SessionCallNotAllowed": lambda t, a: [(encode_revoke_session(T1), 1, None)],
    "UndecodableCallData": lambda t, a: [(SEL_EXECUTE + bytes(40), 1, None)],
    "SessionUsageLimitReached": lambda t, a: [(_pay(t, T1, 1), 1, None)] * 4,
    "SessionPeriodOutsideWindow": lambda t, a: [(_pay(t, T1, 1), 100, None)],
    "AA22": lambda t, a: [(_pay(t, T1, 1), 2, None)],
    "AA24": lambda t, a: [(_pay(t, T1, 1), 1, OTHER_KEY)],
    "SessionUnknown": lambda t, a: [(_pay(t, T1, 1), 1, "unknown")],
    # counters move to period 1 by a mined op first (see below), then an op for period 0
    "SessionPeriodExpired": lambda t, a: [(_x(T1, 1), 0, None)],
    "SessionIsRevoked": lambda t, a: [(_pay(t, T1, 1), 1, None)],
    "SessionProtectedTarget": lambda t, a: [(_x(V07.address, 0, selector("withdrawTo(address,uint256)")
                                               + word(T2) + word(1)), 1, None)],
    "SessionArgNotCanonical": lambda t, a: [(_x(t, 0, SEL_APPROVE + b"\x01" + bytes(11) + bytes.fromhex(T2[2:])
                                               + word(5)), 1, None)],
    "SessionTooManyCalls": lambda t, a: [(encode_execute_batch([Call(T1, 0, b"")] * 257), 1, None)],
    # (op changes given as a fourth element)
    "SessionGasCostExceedsPerOp": lambda t, a: [(_pay(t, T1, 1), 1, None, {"pre_verification_gas": 9_000_000})],
    "SessionPaymasterNotAllowed": lambda t, a: [(_pay(t, T1, 1), 1, None, SPONSORED | {"paymaster": T2})],
    "AA3x": lambda t, a: [(_pay(t, T1, 1), 1, None, SPONSORED)],
}
SPONSORED = {"paymaster": PM, "paymaster_verification_gas_limit": 50_000, "paymaster_post_op_gas_limit": 0}


@pytest.mark.parametrize("ep", [V07, V08], ids=["v07", "v08"])
@pytest.mark.parametrize("rule", list(RULE_CASES))
def test_each_rule_agrees(env, ep, rule):
    acct = env.accounts[ep.version]
    token = env.sessions.token
    now = block_timestamp(env.url)
    spec = rule_spec(env.signer, token, now)
    calls = [encode_grant_session(spec)]
    if rule == "SessionIsRevoked":
        calls = [encode_execute_batch([Call(acct.address, 0, calls[0]),
                                       Call(acct.address, 0, encode_revoke_session(env.signer))])]
    [res] = handle_ops(env.url, ep, [acct.sign_owner(acct.build(calls[0]).with_changes(call_gas_limit=5_000_000))])
    assert res.success
    if rule == "SessionPeriodExpired":  # ETH 5 to T1 in period 1: the allowance counter is at period 1
        [res] = handle_ops(env.url, ep, [acct.sign_session(acct.build(_x(T1, 5)), SESSION_KEY, 1)])
        assert res.success
    state = read_state(env.url, acct.address, env.signer)
    nonce = acct.nonce()
    ops = []
    for i, (call_data, period, key, *changes) in enumerate(RULE_CASES[rule](token, acct.address)):
        op = acct.build(call_data, nonce=nonce + i).with_changes(**(changes[0] if changes else {}))
        if key == "unknown":
            ops.append(acct.sign_session(op, OTHER_KEY, period))
        else:
            ops.append(acct.sign_session(op, key or SESSION_KEY, period, signer=env.signer))
    if rule == "SessionUnknown":
        state = read_state(env.url, acct.address, Account.from_key(OTHER_KEY).address.lower())
    expected = contract_verdict(env.url, ep, ops)
    assert label(expected) == rule, expected
    assert python_verdict(acct, state, ops, block_timestamp(env.url)) == expected


@pytest.mark.parametrize("case", ["InvalidSessionSpec", "SessionEnableNonceMismatch", "AA24-owner", "accepted"])
def test_enable_rules_agree(env, case):
    ep = V08
    acct = env.accounts[ep.version]
    token = env.sessions.token
    key = "0x" + "e1" * 32
    signer = Account.from_key(key).address.lower()
    spec = rule_spec(signer, token, block_timestamp(env.url))
    if case == "InvalidSessionSpec":
        spec = replace(spec, period=0)  # an allowance without period
    state = read_state(env.url, acct.address, signer)
    op = acct.build(_pay(token, T1, 10))
    op = acct.sign_enable(op, spec, key, nonce=state.grant_nonce + (case == "SessionEnableNonceMismatch"),
                          period_index=0 if case == "InvalidSessionSpec" else 1,
                          owner_key=new_key()[0] if case == "AA24-owner" else None)
    expected = contract_verdict(env.url, ep, [op])
    assert label(expected) == case.split("-")[0]
    assert python_verdict(acct, state, [op], block_timestamp(env.url)) == expected


# ------------------------------------------------------------------ the fast path's bound, by shape

SEL_MINT = selector("mint(address,uint256)")


@pytest.mark.parametrize("extra_policies,unused_constraints", [(0, 0), (0, 80), (25, 0)], ids=["1", "unused80", "26"])
@pytest.mark.parametrize("governing_constraints", [0, 4])
@pytest.mark.parametrize("batch", [1, 25, 100])
def test_gas_bound_by_policy_shape(env, extra_policies, unused_constraints, governing_constraints, batch):
    """The bound against py-evm's measurement for policy counts, unused constraint counts,
    governing constraint counts and batch sizes: never below the measured verificationGasLimit,
    and close to the gas validation used (the contract's cost follows what the op uses: the
    unused policies and their constraints add nothing but nothing)."""
    ep = V07
    acct = env.accounts[ep.version]
    token = env.sessions.token
    now = block_timestamp(env.url)
    unused = tuple(CallPolicy(target="0x" + f"{i + 1:040x}", selector=SEL_TRANSFER) for i in range(extra_policies))
    if unused_constraints:
        unused += (CallPolicy(target=T2, selector=SEL_TRANSFER, constraints=tuple(
            ArgConstraint(5, i, word(UINT256_MAX)) for i in range(unused_constraints))),)
    governing = CallPolicy(target=token, selector=SEL_MINT, constraints=tuple(
        [ArgConstraint.typed(1, 0, "address", ZERO), ArgConstraint.typed(5, 1, "uint96", 10**6, Limit.lifetime(10**9)),
         ArgConstraint(3, 1, word(1)), ArgConstraint(5, 1, word(10**6))][:governing_constraints]))
    spec = SessionSpec(signer=env.signer, valid_after=now - 10, gas=TEST_GAS, call_policies=unused + (governing,))
    grant = acct.sign_owner(acct.build(encode_grant_session(spec)).with_changes(
        call_gas_limit=9_000_000, pre_verification_gas=400_000))
    data = handle_ops_calldata([grant])
    receipt = wait_receipt(env.url, rpc(env.url, "eth_sendTransaction", [{
        "from": ANVIL_ACCOUNT0, "to": ep.address, "data": "0x" + data.hex(), "gas": hex(20_000_000)}]))
    assert receipt["status"] == "0x1"
    state = read_state(env.url, acct.address, env.signer)
    assert state.spec == stored_form(spec)
    call_data = encode_execute_batch([Call(token, 0, SEL_MINT + word(acct.address) + word(i + 1))
                                      for i in range(batch)]) if batch > 1 else \
        encode_execute(token, 0, SEL_MINT + word(acct.address) + word(1))
    op = acct.sign_session(acct.build(call_data), SESSION_KEY, 0)
    ev = evaluate(acct.address, state, decode_signature(op.signature), op.call_data, (),
                  OpFacts.of(op, ep.address, acct.impl))
    block = PinnedBlock.from_rpc(rpc(env.url, "eth_getBlockByNumber", ["latest", False]))
    measured = env.worker.measure_gas(op, ep, block, overrides={
        ep.address: AccountOverride(state_diff={deposit_slot(acct.address): 0})})
    assert not hasattr(measured, "reason"), measured
    bound = validation_gas_bound(ev, len(op.call_data), fresh_nonce=False, pays_prefund=True, fresh_deposit=True)
    assert bound >= measured.verification_gas_limit, (bound, measured)
    assert bound <= 1.6 * measured.validation_gas + 20_000, (bound, measured.validation_gas)
