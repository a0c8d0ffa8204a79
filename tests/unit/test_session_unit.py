"""Unit tests of the session pieces that need no chain: coincurve recovery against eth_account,
the pending-usage ledger and its mempool hooks, evaluator details the differential test does
not pin (pending grants, allowance periods of pending ops, messages), the batching JSON-RPC
client, the gas bound's monotonicity, and the store's activity log."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from eth_utils import to_checksum_address
from aiohttp import web
from eth_account import Account
from eth_hash.auto import keccak

from bundler.entrypoint import V07
from bundler.pool.mempool import Mempool, MempoolFull, PoolEntry
from session_sdk.types import (
    UINT48_MAX, ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, Scope, SessionSpec, Status, TransferPolicy,
    word,
)
from session_sdk.signatures import (
    DUMMY_ECDSA_SIGNATURE, EnableSignature, SessionSignature, encode_session_signature, sign_digest,
)
from session_sdk.events import Consumption
from session_sdk.calldata import MAX_SESSION_CALLS, Call, encode_execute, encode_execute_batch
from bundler.sessions.gas import validation_gas_bound
from bundler.sessions.keeper import LedgerKeeper
from bundler.sessions.ledger import LedgerEntry, SessionLedger
from bundler.sessions.policy import (
    StoredCounter, PendingUse, SessionState, SessionViolation, check_window, evaluate,
)
from bundler.sessions.recover import SECP256K1_HALF_N, recover_signer
from bundler.chain.client import NodeClient, RpcCallError
from bundler.store import MemoryStore, SessionActivity
from bundler.userop import UserOperation

ACCOUNT = "0x" + "ac" * 20
TEST_GAS = GasPolicy(max_cost_per_op=10**18)
TOKEN = "0x" + "70" * 20
DEX = "0x" + "de" * 20
SIGNER = "0x" + "51" * 20
SEL_TRANSFER = keccak(b"transfer(address,uint256)")[:4]
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# ------------------------------------------------------------------ recovery


def test_recover_matches_eth_account_and_the_contracts_rules():
    for _ in range(50):
        acct = Account.create()
        digest = os.urandom(32)
        sig = sign_digest(bytes(acct.key), digest)
        assert recover_signer(digest, sig) == acct.address.lower()
        assert Account._recover_hash(digest, signature=sig).lower() == acct.address.lower()
        # v as 0/1 is accepted like 27/28
        assert recover_signer(digest, sig[:64] + bytes([sig[64] - 27])) == acct.address.lower()
        # the malleable twin (high s, flipped v) is refused, as the contract does
        s = int.from_bytes(sig[32:64], "big")
        twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
        assert N - s > SECP256K1_HALF_N and recover_signer(digest, twin) is None
    digest = os.urandom(32)
    assert recover_signer(digest, DUMMY_ECDSA_SIGNATURE) != Account.create().address.lower()
    assert recover_signer(digest, bytes(64) + b"\x1b") is None  # r = s = 0
    assert recover_signer(digest, b"\x01" * 64 + b"\x1d") is None  # v = 29
    assert recover_signer(digest, b"\x01" * 64) is None  # 64 bytes
    assert recover_signer(digest, N.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b") is None  # r >= n


# ------------------------------------------------------------------ evaluator details


def trading(limit: Limit, **kw) -> SessionSpec:
    return SessionSpec(gas=TEST_GAS, signer=SIGNER, call_policies=(CallPolicy(target=TOKEN, selector=SEL_TRANSFER, constraints=(
        ArgConstraint(Condition.LTE, 1, word(2**256 - 1), limit),)),), **kw)


def transfer(amount: int) -> bytes:
    return encode_execute(TOKEN, 0, SEL_TRANSFER + word(DEX) + word(amount))


def sig(period: int = 0) -> SessionSignature:
    return SessionSignature(SIGNER, period, b"\x00" * 65)


def use(n: int, amount: int, period: int = 0, grant=None) -> PendingUse:
    return PendingUse(f"0x{n:064x}", n, period, (Consumption(1, 0, 0, amount),) if amount else (), grant)


def test_message_names_limit_used_pending_requested():
    state = SessionState.fresh(trading(Limit.lifetime(100)), 1)
    state.counters[(1, 0, 0)] = StoredCounter(0, 60)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), transfer(10), [use(1, 20), use(2, 20)])
    v = e.value
    assert v.message == (f"session {to_checksum_address(SIGNER)} policy 0 (ERC-20 {to_checksum_address(TOKEN)} transfer) "
                         'argument "amount" cumulative limit exceeded: limit 100, used 60, pending 40, requested 10')
    assert v.rule == "SessionCumulativeLimitExceeded" and v.args_ == (0, 1, 0, 0, 100, 10, 100)
    assert v.data["remaining"] == "0x0" and v.data["sessionKey"] == SIGNER and v.data["policyIndex"] == 0
    assert not v.time_range
    # within the limit once a pending op is replaced (excluded by the caller)
    ev = evaluate(ACCOUNT, state, sig(), transfer(10), [use(1, 20)])
    assert ev.consumed == (Consumption(1, 0, 0, 10),) and ev.usage_count == 2


def test_allowance_with_pending_ops_in_periods():
    spec = trading(Limit.allowance(100), valid_after=1000, period=100)
    state = SessionState.fresh(spec, 1)
    state.counters[(1, 0, 0)] = StoredCounter(3, 90)
    # a later period starts from zero, pending ops of that period count
    ev = evaluate(ACCOUNT, state, sig(4), transfer(70), [use(1, 30, period=4)])
    assert (ev.valid_after, ev.valid_until) == (1400, 1499)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(4), transfer(71), [use(1, 30, period=4)])
    assert e.value.args_ == (0, 1, 0, 0, 30, 71, 100)
    # the op's period is older than the counter on chain, or than a pending op's
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(2), transfer(1))
    assert e.value.rule == "SessionPeriodExpired" and e.value.args_ == (2, 3) and e.value.time_range
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(3), transfer(1), [use(1, 5, period=5)])
    assert e.value.args_ == (3, 5) and "pending op" in e.value.message
    # zero amounts consume nothing and never touch the counter's period
    assert evaluate(ACCOUNT, state, sig(2), transfer(0)).consumed == ()


def test_pending_grant_is_the_base_of_later_ops():
    spec = trading(Limit.lifetime(100), usage_limit=3)
    chain = SessionState(grant_nonce=4)  # unknown on chain
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, chain, sig(), transfer(1))
    assert e.value.rule == "SessionUnknown"
    pending = [use(7, 60, grant=spec), use(8, 30)]
    ev = evaluate(ACCOUNT, chain, sig(), transfer(10), pending)
    assert ev.usage_count == 3
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, chain, sig(), transfer(11), pending)
    assert e.value.data["pending"] == hex(90)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, chain, sig(), transfer(1), pending + [use(9, 1)])
    assert e.value.rule == "SessionUsageLimitReached"
    # an enable op after a pending grant must name the nonce after it
    enable = EnableSignature(spec, 4, b"\x00" * 65, 0, b"\x00" * 65)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, chain, enable, transfer(1), pending)
    assert e.value.rule == "SessionEnableNonceMismatch" and e.value.args_ == (SIGNER, 4, 5)
    ev = evaluate(ACCOUNT, chain, EnableSignature(spec, 5, b"\x00" * 65, 0, b"\x00" * 65), transfer(100), pending)
    assert ev.grant == spec and ev.usage_count == 1  # fresh counters: the pending usage is gone


def test_window_checks_and_their_messages():
    spec = trading(Limit.allowance(100), valid_after=1000, valid_until=2000, period=300)
    ev = evaluate(ACCOUNT, SessionState.fresh(spec, 1), sig(1), transfer(1))
    assert (ev.valid_after, ev.valid_until) == (1300, 1599)
    check_window(ev, 1400, 30)
    with pytest.raises(SessionViolation) as e:
        check_window(ev, 1200, 30)
    assert e.value.rule == "SessionNotYetValid" and e.value.time_range and "100 s from now" in e.value.message
    with pytest.raises(SessionViolation) as e:
        check_window(ev, 1580, 30)
    assert e.value.rule == "SessionExpiresTooSoon"
    with pytest.raises(SessionViolation) as e:
        check_window(ev, 1700, 30)
    assert e.value.rule == "SessionExpired" and e.value.data["currentPeriod"] == 2
    assert "sign the op for it" in e.value.message
    with pytest.raises(SessionViolation) as e:  # periods past the window
        evaluate(ACCOUNT, SessionState.fresh(spec, 1), sig(4), transfer(1))
    assert e.value.rule == "SessionPeriodOutsideWindow"


def test_policy_texts_in_messages():
    spec = SessionSpec(gas=TEST_GAS, signer=SIGNER, call_policies=(CallPolicy(),),
                       transfer_policies=(TransferPolicy(max_value_per_use=5),))
    state = SessionState.fresh(spec, 1)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), encode_execute(DEX, 6))
    assert "transfer policy 0 (ETH to any recipient) call 0: value 6 exceeds the per-use maximum 5" in e.value.message
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), encode_execute_batch([Call(DEX, 1), Call(TOKEN, 1, b"\x01" * 4)]))
    assert "policy 0 (any target, any function) call 1: value 1 wei exceeds" in e.value.message
    assert e.value.data["callIndex"] == 1


def test_gas_bound_grows_with_the_work():
    spec = trading(Limit.lifetime(10**9))
    state = SessionState.fresh(spec, 1)
    one = evaluate(ACCOUNT, state, sig(), transfer(1))
    many = evaluate(ACCOUNT, state, sig(), encode_execute_batch([Call(TOKEN, 0, SEL_TRANSFER + word(DEX)
                                                                             + word(1))] * 5))
    assert validation_gas_bound(many, 900) > validation_gas_bound(one, 200)
    assert validation_gas_bound(one, 200) > validation_gas_bound(one, 200, fresh_nonce=False, pays_prefund=False)


# ------------------------------------------------------------------ ledger and mempool hooks


def op(nonce: int, sender: str = ACCOUNT) -> UserOperation:
    return UserOperation(sender=sender, nonce=nonce, call_data=b"", call_gas_limit=1, verification_gas_limit=1,
                         pre_verification_gas=1, max_fee_per_gas=10, max_priority_fee_per_gas=1, signature=b"")


def pool_entry(nonce: int, fee: int = 10) -> PoolEntry:
    o = op(nonce).with_changes(max_fee_per_gas=fee, max_priority_fee_per_gas=fee)
    return PoolEntry(op=o, entry_point=V07, hash=f"0x{nonce:062x}{fee:02x}")


def test_ledger_follows_the_mempool():
    pool = Mempool(max_ops_per_sender=2)
    ledger = SessionLedger()
    pool.observe(LedgerKeeper(ledger, MemoryStore()))

    def admit(entry, amount):
        pool.add(entry)
        ledger.add(LedgerEntry(PendingUse(entry.hash, entry.op.nonce, 0, (Consumption(1, 0, 0, amount),)),
                               ACCOUNT, SIGNER, V07.address))

    a, b = pool_entry(0), pool_entry(1)
    admit(a, 10)
    admit(b, 20)
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 5)] == [a.hash, b.hash]
    assert ledger.totals(ACCOUNT, SIGNER) == (2, {(1, 0, 0): {0: 30}})
    # the cap: a third op is refused unless the caller lifts it for a verified session op
    with pytest.raises(MempoolFull):
        pool.check_admissible(op(2), V07)
    assert pool.check_admissible(op(2), V07, max_ops=16) is None
    # replacement: the replaced op's usage leaves at once
    b2 = pool_entry(1, fee=20)
    assert pool.check_admissible(b2.op, V07).hash == b.hash
    admit(b2, 5)
    assert ledger.totals(ACCOUNT, SIGNER) == (2, {(1, 0, 0): {0: 15}})
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 5, exclude=a.hash)] == [b2.hash]
    # mined in block 7: still counts for state read at block 6, not for state at 7
    version = ledger.version
    pool.remove(a.hash, mined_block=7)
    assert ledger.version > version
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 6)] == [a.hash, b2.hash]
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 7)] == [b2.hash]
    assert ledger.totals(ACCOUNT, SIGNER)[0] == 1
    assert ledger.prune_mined(7) == 1 and a.hash not in ledger
    # dropped: gone at once
    pool.remove(b2.hash)
    assert len(ledger) == 0 and ledger.sessions() == []
    admit(pool_entry(3), 1)
    pool.clear()
    assert len(ledger) == 0


def test_ops_entering_the_pool_without_admission_are_accounted_from_their_activity():
    """Restart recovery, reorg and lost-nonce re-queue, shared-store sync: Mempool.add of an op
    the ledger does not hold enters it again with what admission recorded for it."""
    pool, ledger, store = Mempool(max_ops_per_sender=4), SessionLedger(), MemoryStore()
    pool.observe(LedgerKeeper(ledger, store))
    signer = Account.create().address.lower()
    signature = encode_session_signature(signer, 3, b"\x01" * 65)
    entry = PoolEntry(op=op(5).with_changes(signature=signature), entry_point=V07, hash="0x" + "ab" * 32,
                      valid_after=100, valid_until=UINT48_MAX)
    store.add_session_activity(SessionActivity(
        op_hash=entry.hash, account=ACCOUNT, session_key=signer, entry_point=V07.address, nonce=5, mode="session",
        period_index=3, calls=[], consumed=[{"scope": 2, "policyIndex": 0, "constraintIndex": 1, "amount": 40}]))
    pool.add(entry)  # e.g. reloaded from the store after a restart
    assert ledger.totals(ACCOUNT, signer) == (1, {(2, 0, 1): {3: 40}})
    [restored] = ledger.entries(ACCOUNT, signer)
    assert (restored.valid_after, restored.valid_until, restored.use.nonce) == (100, 0, 5)
    # mined, then its block reorged out before the ledger let go of it: pending again
    pool.remove(entry.hash, mined_block=9)
    assert ledger.totals(ACCOUNT, signer)[0] == 0
    pool.add(entry)
    assert ledger.totals(ACCOUNT, signer) == (1, {(2, 0, 1): {3: 40}})
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, signer, 20)] == [entry.hash]
    # an op with no activity record (never admitted as a session op here) is not invented
    other = PoolEntry(op=op(6).with_changes(signature=signature), entry_point=V07, hash="0x" + "cd" * 32)
    pool.add(other)
    assert len(ledger) == 1


# ------------------------------------------------------------------ batching client


async def test_batch_rpc_coalesces_concurrent_calls_and_keeps_errors_as_values():
    bodies = []

    async def handler(request):
        body = json.loads(await request.read())
        bodies.append(body)
        out = []
        for call in body:
            if call["method"] == "boom":
                out.append({"jsonrpc": "2.0", "id": call["id"], "error": {"code": 3, "message": "execution reverted"}})
            else:
                out.append({"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]})
        return web.json_response(out)

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rpc = NodeClient(f"http://127.0.0.1:{port}", max_batch=5)
    try:
        results = await asyncio.gather(*(rpc.many([("echo", [i]), ("boom", [])]) for i in range(4)))
        assert [r[0] for r in results] == [0, 1, 2, 3]
        assert all(isinstance(r[1], RpcCallError) and r[1].code == 3 for r in results)
        assert len(bodies) == 2 and sorted(len(b) for b in bodies) == [3, 5]  # 8 calls, batches of 5
        assert await rpc.many([("echo", ["x"])]) == ["x"]
    finally:
        await rpc.close()
        await runner.cleanup()


# ------------------------------------------------------------------ store


def test_memory_store_session_activity_log():
    store = MemoryStore(max_activity_per_session=2)
    for i in range(3):
        store.add_session_activity(SessionActivity(
            op_hash=f"0x{i:064x}", account=ACCOUNT, session_key=SIGNER, entry_point=V07.address, nonce=i,
            mode="session", period_index=0, calls=[{"target": DEX, "value": 0, "data": "0x"}],
            consumed=[{"scope": 1, "policyIndex": 0, "constraintIndex": 0, "amount": 5}]))
    log = store.session_activity(ACCOUNT.upper().replace("0X", "0x"), SIGNER)
    assert [a.nonce for a in log] == [1, 2]
    assert store.session_activity(ACCOUNT, DEX) == []
    store.clear()
    assert store.session_activity(ACCOUNT, SIGNER) == []


def test_evaluation_cost_is_flat_in_the_number_of_policies():
    """Policies are found through the (target, selector) index, built once per spec: evaluating a
    batch of MAX_SESSION_CALLS calls against 400 policies never scans the policy list; a longer
    batch is refused by the documented limit."""
    class CountingTuple(tuple):
        iterations = 0

        def __iter__(self):
            CountingTuple.iterations += 1
            return super().__iter__()

    policies = CountingTuple([CallPolicy(target="0x" + f"{i + 1:040x}", selector=SEL_TRANSFER) for i in range(399)]
                             + [CallPolicy(target=TOKEN, selector=SEL_TRANSFER)])
    spec = SessionSpec(gas=TEST_GAS, signer=SIGNER, call_policies=policies)
    state = SessionState.fresh(spec, 1)
    batch = encode_execute_batch([Call(TOKEN, 0, SEL_TRANSFER + word(DEX) + word(i))
                                  for i in range(MAX_SESSION_CALLS)])
    ev = evaluate(ACCOUNT, state, sig(), batch)
    built = CountingTuple.iterations
    assert built <= 2 and ev.matched == (("call", 399),) * MAX_SESSION_CALLS
    for _ in range(3):
        evaluate(ACCOUNT, state, sig(), batch)
    assert CountingTuple.iterations == built  # no scan per op, let alone per call
    too_long = encode_execute_batch([Call(TOKEN, 0, SEL_TRANSFER + word(DEX) + word(1))]
                                    * (MAX_SESSION_CALLS + 1))
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), too_long)
    assert e.value.rule == "SessionTooManyCalls" and e.value.args_ == (257, 256)


def test_refusal_names_the_argument_and_prints_addresses_checksummed():
    spec = SessionSpec(gas=TEST_GAS, signer=SIGNER, call_policies=(CallPolicy(target=TOKEN, selector=SEL_TRANSFER, constraints=(
        ArgConstraint(Condition.EQ, 0, word(DEX)),)),))
    other = "0x" + "ab" * 20
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, SessionState.fresh(spec, 1), sig(),
                 encode_execute(TOKEN, 0, SEL_TRANSFER + word(other) + word(1)))
    v = e.value
    assert v.rule == "SessionArgConstraintFailed"
    assert (f'call 0: argument "to" is {to_checksum_address(other)}, the policy requires == '
            f'{to_checksum_address(DEX)}') in v.message
    assert v.data["argument"] == "to"
    assert str(int(other, 16)) not in v.message  # never as a decimal integer
    unknown = SessionSpec(gas=TEST_GAS, signer=SIGNER, call_policies=(CallPolicy(target=TOKEN, selector=b"\x12\x34\x56\x78",
                          constraints=(ArgConstraint(Condition.LT, 2, word(5)),)),))
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, SessionState.fresh(unknown, 1), sig(),
                 encode_execute(TOKEN, 0, b"\x12\x34\x56\x78" + word(0) + word(0) + word(9)))
    assert "argument word 2 is 9, the policy requires < 5" in e.value.message
    assert f"target {to_checksum_address(TOKEN)}" not in e.value.message and to_checksum_address(TOKEN) in e.value.message


def test_gas_rules_in_the_evaluator():
    """An op through an allowed paymaster counts nothing against the gas budget (the account does
    not pay it) but stays under the per-op cap; one the account pays consumes its maximum cost,
    pending ops included; an unlisted paymaster is refused."""
    from bundler.sessions.policy import OpFacts

    pm = "0x" + "9a" * 20
    spec = SessionSpec(signer=SIGNER, call_policies=(CallPolicy(),), gas=GasPolicy(
        max_cost_per_op=1000, cost_limit=Limit.lifetime(1500), paymasters=(pm,)))
    state = SessionState.fresh(spec, 1)
    call = encode_execute(TOKEN, 0, SEL_TRANSFER + word(DEX) + word(1))
    paid = evaluate(ACCOUNT, state, sig(), call, (), OpFacts(max_cost=900))
    assert paid.consumed == (Consumption(Scope.GAS, 0, 0, 900),)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), call, [PendingUse("0x1", 0, 0, paid.consumed)], OpFacts(max_cost=900))
    assert e.value.rule == "SessionCumulativeLimitExceeded" and e.value.data["scope"] == "gasCost"
    assert (e.value.data["pending"], e.value.data["requested"]) == (hex(900), hex(900))
    sponsored = evaluate(ACCOUNT, state, sig(), call, [PendingUse("0x1", 0, 0, paid.consumed)],
                         OpFacts(max_cost=900, paymaster=pm))
    assert sponsored.consumed == ()
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), call, (), OpFacts(max_cost=1001, paymaster=pm))
    assert e.value.rule == "SessionGasCostExceedsPerOp" and e.value.args_ == (1001, 1000)
    with pytest.raises(SessionViolation) as e:
        evaluate(ACCOUNT, state, sig(), call, (), OpFacts(max_cost=1, paymaster=DEX))
    assert e.value.rule == "SessionPaymasterNotAllowed" and e.value.args_ == (DEX,)


# ------------------------------------------------------------------ decoded session state


async def test_unchanged_session_state_is_decoded_once_across_blocks():
    """The per-block read cache starts empty at each block; answers with the same bytes are not
    decoded again, every view gets its own state, and changed bytes are decoded anew."""
    from types import SimpleNamespace

    from eth_abi import encode

    from bundler.sessions.state import SESSION_INFO_T, USAGE_T, SessionStateReader, decode_session_info

    spec = SessionSpec(gas=TEST_GAS, signer=SIGNER, valid_until=2**40, call_policies=(CallPolicy(
        target=TOKEN, selector=SEL_TRANSFER, constraints=(
            ArgConstraint(Condition.LTE, 1, word(10**24), Limit.lifetime(10**30)),)),))
    info = encode([SESSION_INFO_T], [(spec.to_abi(), Status.ACTIVE, 3, 7, 1)])
    lu = (0, 0)
    usage = {"bytes": encode([USAGE_T], [(1, [lu], [[(0, 5)]], [], lu)])}

    async def node(request):
        out = []
        for call in json.loads(await request.read()):
            data = call["params"][0].get("data", "") if call["method"] == "eth_call" else ""
            if data.startswith("0x" + SEL_GET_SESSION.hex()):
                result = "0x" + info.hex()
            elif data.startswith("0x" + SEL_GET_USAGE.hex()):
                result = "0x" + usage["bytes"].hex()
            else:
                result = "0x" + "00" * 32
            out.append({"jsonrpc": "2.0", "id": call["id"], "result": result})
        return web.json_response(out)

    from bundler.sessions.state import SEL_GET_SESSION, SEL_GET_USAGE
    app = web.Application()
    app.router.add_post("/", node)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rpc = NodeClient(f"http://127.0.0.1:{runner.addresses[0][1]}")
    reader = SessionStateReader(rpc)
    try:
        block = lambda n: SimpleNamespace(number=n, hash="0x%064x" % n)  # noqa: E731
        first = await reader.read(V07, ACCOUNT, SIGNER, 0, block(1))
        assert first.state_error is None and reader.decoded.decoded == 2
        assert first.state.spec == spec and (first.state.status, first.state.grant_nonce,
                                             first.state.usage_count, first.state.epoch) == (Status.ACTIVE, 3, 7, 1)
        assert first.state.counters == {(Scope.CALL_ARG, 0, 0): StoredCounter(0, 5)}
        first.state.counters.clear()  # a caller's changes stay its own
        second = await reader.read(V07, ACCOUNT, SIGNER, 0, block(2))
        assert reader.reads == 2 and reader.decoded.decoded == 2  # read again, not decoded again
        assert second.state is not first.state and second.state.counters == {(Scope.CALL_ARG, 0, 0): StoredCounter(0, 5)}
        assert second.state.spec == decode_session_info(info).spec
        usage["bytes"] = encode([USAGE_T], [(2, [lu], [[(0, 9)]], [], lu)])  # an op was mined
        third = await reader.read(V07, ACCOUNT, SIGNER, 0, block(3))
        assert reader.decoded.decoded == 3 and third.state.counters == {(Scope.CALL_ARG, 0, 0): StoredCounter(0, 9)}
        reader.invalidate()
        await reader.read(V07, ACCOUNT, SIGNER, 0, block(3))
        assert reader.decoded.decoded == 5
    finally:
        await rpc.close()
        await runner.cleanup()


def test_op_validated_on_chain_before_its_bundle_is_settled_counts_once():
    """The op's receipt can be on chain (and its use in the session state read at that block)
    before the builder settles the bundle: the chain nonce says it is spent, so it is not pending."""
    pool = Mempool()
    ledger = SessionLedger()
    pool.observe(LedgerKeeper(ledger, MemoryStore()))
    entries = [pool_entry(n) for n in (0, 1)]
    for e in entries:
        pool.add(e)
        ledger.add(LedgerEntry(PendingUse(e.hash, e.op.nonce, 0, (Consumption(1, 0, 0, 10),)), ACCOUNT, SIGNER, V07.address))
    a, b = entries
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 5, chain_nonce=0)] == [a.hash, b.hash]
    # nonce 0 was used on chain at block 6, still unsettled in the mempool: only b is pending
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 6, chain_nonce=1)] == [b.hash]
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 6, chain_nonce=2)] == []
    # another nonce key's sequence says nothing about these ops
    assert [u.op_hash for u in ledger.pending_for(ACCOUNT, SIGNER, 6, chain_nonce=(7 << 64) | 5)] == [a.hash, b.hash]
