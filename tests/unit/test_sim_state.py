"""Overlay state, journaling, overrides, executor and revert decoding: no node needed."""
from __future__ import annotations

import pickle

import pytest
from eth_abi import encode

from bundler.errors import (
    PaymasterDepositTooLow, PaymasterRejected, SignatureInvalid, TimeRangeInvalid,
    ValidationRejected,
)
from bundler.sim import (
    AccountOverride, BlockContext, EvmSession, NoopTracer, PinnedBlock, SimulationFailure,
    ValidationData, describe_revert, failure_error, validation_error,
)
from bundler.sim.results import (
    SEL_ERROR, SEL_FAILED_OP, SEL_FAILED_OP_WITH_REVERT, SEL_PANIC, StakeInfo, ValidationResult,
    decode_failure,
)
from bundler.rpc.params import decode_state_override
from bundler.sim.state import BlockState, OverlayAccountDB

A = b"\xaa" * 20
B = b"\xbb" * 20
BLOCK = PinnedBlock(number=10, timestamp=1_700_000_000, base_fee=10**9, gas_limit=30_000_000)


def offline_db(**accounts) -> OverlayAccountDB:
    base = BlockState(None, BLOCK)
    base.seed_account(A, 100, 1, b"")
    base.storage[A] = {1: 11, 2: 22}
    return OverlayAccountDB(base)


def test_reads_fall_through_and_writes_stay_in_overlay():
    db = offline_db()
    assert db.get_balance(A) == 100 and db.get_nonce(A) == 1
    assert db.get_storage(A, 1) == 11 and db.get_storage(A, 9) == 0
    db.set_storage(A, 1, 99)
    db.set_balance(A, 5)
    assert db.get_storage(A, 1) == 99 and db.get_balance(A) == 5
    assert db._base.storage[A][1] == 11 and db._base.accounts[A][0] == 100  # base untouched


def test_journal_discard_and_commit_nest():
    db = offline_db()
    outer = db.record()
    db.set_storage(A, 1, 1)
    db.mark_address_warm(B)
    inner = db.record()
    db.set_storage(A, 1, 2)
    db.set_storage(A, 3, 3)
    db.set_code(B, b"\x60\x00")
    db.increment_nonce(A)
    db.mark_storage_warm(A, 3)
    db.discard(inner)
    assert db.get_storage(A, 1) == 1 and db.get_storage(A, 3) == 0
    assert db.get_code(B) == b"" and db.get_nonce(A) == 1
    assert not db.is_storage_warm(A, 3) and db.is_address_warm(B)
    inner2 = db.record()
    db.set_storage(A, 2, 7)
    db.commit(inner2)  # committed into outer: outer's discard still undoes it
    assert db.get_storage(A, 2) == 7
    db.discard(outer)
    assert db.get_storage(A, 1) == 11 and db.get_storage(A, 2) == 22
    assert not db.is_address_warm(B)


def test_original_value_is_transaction_start_value():
    db = offline_db()
    db.set_storage(A, 1, 5)
    db.set_storage(A, 1, 6)
    assert db.get_storage(A, 1, from_journal=False) == 11
    db.lock_changes()  # next transaction
    assert db.get_storage(A, 1, from_journal=False) == 6
    db.set_storage(A, 1, 7)
    assert db.get_storage(A, 1, from_journal=False) == 6


def test_delete_storage_and_account_revert():
    db = offline_db()
    cp = db.record()
    db.delete_account(A)
    assert db.get_storage(A, 1) == 0 and db.account_is_empty(A)
    db.discard(cp)
    assert db.get_storage(A, 1) == 11 and db.get_balance(A) == 100


def test_state_overrides_apply():
    ov = decode_state_override({
        "0x" + A.hex().upper(): {"balance": "0x10", "state": {"0x2": "0x5"}},
        "0x" + B.hex(): {"code": "0x6000", "nonce": "0x3", "stateDiff": {hex(1): hex(9)}},
    })
    base = BlockState(None, BLOCK)
    base.seed_account(A, 100, 1, b"")
    base.storage[A] = {1: 11, 2: 22}
    base.storage[B] = {1: 1, 4: 4}
    db = OverlayAccountDB(base, {bytes.fromhex(k[2:]): v for k, v in ov.items()})
    assert db.get_balance(A) == 16 and db.get_nonce(A) == 1
    assert db.get_storage(A, 1) == 0 and db.get_storage(A, 2) == 5  # state replaces everything
    assert db.get_code(B) == b"\x60\x00" and db.get_nonce(B) == 3
    assert db.get_storage(B, 1) == 9 and db.get_storage(B, 4) == 4  # stateDiff patches


# A contract: SSTORE(0, CALLDATALOAD(0)); LOG1(topic=0x42, empty); RETURN 32 bytes of SLOAD(0)
STORE_AND_RETURN = bytes.fromhex(
    "600035600055"  # PUSH1 0 CALLDATALOAD PUSH1 0 SSTORE
    "60426000" "6000" "a1"  # PUSH1 0x42 PUSH1 0 PUSH1 0 LOG1
    "600054600052" "60206000f3"  # SLOAD(0) MSTORE(0) RETURN(0, 32)
)
REVERTS = bytes.fromhex("60006000fd")  # REVERT(0, 0)


def session(tracer=None) -> EvmSession:
    base = BlockState(None, BLOCK)
    base.seed_account(A, 10**18, 0, b"")
    base.seed_account(B, 0, 1, STORE_AND_RETURN)
    return EvmSession(OverlayAccountDB(base), BlockContext.after(BLOCK, 1337, BLOCK.timestamp + 12), tracer)


def test_executor_call_runs_and_state_persists_across_calls():
    s = session()
    res = s.call(sender=A, to=B, data=(7).to_bytes(32, "big"))
    assert res.success and int.from_bytes(res.output, "big") == 7
    assert res.logs == (("0x" + B.hex(), (0x42,), b""),)
    # 21000 + calldata (31 zero bytes * 4 + 1 * 16) + cold SSTORE 22100 + LOG1 ...
    assert 43_000 < res.gas_used < 50_000
    res2 = s.call(sender=A, to=B, data=(8).to_bytes(32, "big"))
    assert res2.success and int.from_bytes(res2.output, "big") == 8
    assert res2.gas_used < res.gas_used  # non-zero -> non-zero is cheaper
    assert pickle.loads(pickle.dumps(res2)) == res2


def test_executor_transaction_charges_fees_and_bumps_nonce():
    s = session()
    res = s.call(sender=A, to=B, data=(1).to_bytes(32, "big"), gas=100_000, gas_price=2 * 10**9,
                 transaction=True)
    assert res.success
    assert s.db.get_nonce(A) == 1
    assert s.db.get_balance(A) == 10**18 - res.gas_used * 2 * 10**9


def test_executor_revert_and_noop_tracer_same_result():
    base_res = session().call(sender=A, to=B, data=(3).to_bytes(32, "big"))
    traced = session(NoopTracer()).call(sender=A, to=B, data=(3).to_bytes(32, "big"))
    assert traced == base_res
    s = session()
    s.db.override_code(B, REVERTS)
    res = s.call(sender=A, to=B)
    assert not res.success and res.reverted and res.output == b""


class CountingTracer:
    def __init__(self):
        from eth.vm.opcode_values import SLOAD, SSTORE

        self.opcodes = frozenset({SLOAD, SSTORE})
        self.seen: list[int] = []
        self.frames = 0

    def on_enter(self, message, parent):
        self.frames += 1

    def on_exit(self, message, computation):
        pass

    def on_opcode(self, opcode, computation):
        self.seen.append(opcode)


def test_tracer_sees_only_hooked_opcodes_and_frames():
    t = CountingTracer()
    res = session(t).call(sender=A, to=B, data=(3).to_bytes(32, "big"))
    assert res.success
    assert t.seen == [0x55, 0x54] and t.frames == 1


# -- revert decoding and error mapping --
def _err(text: str) -> bytes:
    return SEL_ERROR + encode(["string"], [text])


def test_decode_failed_op_with_revert_reasons():
    inner = _err("not allowed")
    data = SEL_FAILED_OP_WITH_REVERT + encode(["uint256", "string", "bytes"], [0, "AA23 reverted", inner])
    f = decode_failure(data)
    assert (f.code, f.op_index, f.inner_reason) == ("AA23", 0, "not allowed")
    assert f.message == "AA23 reverted: not allowed"
    panic = SEL_PANIC + encode(["uint256"], [0x11])
    assert describe_revert(panic) == "panic 0x11 (arithmetic overflow or underflow)"
    assert describe_revert(bytes.fromhex("deadbeef") + b"\x01" * 4).startswith("custom error 0xdeadbeef")
    assert describe_revert(b"") == "reverted without data"
    f = decode_failure(SEL_FAILED_OP + encode(["uint256", "string"], [3, "AA25 invalid account nonce"]))
    assert (f.code, f.op_index, f.message) == ("AA25", 3, "AA25 invalid account nonce")
    assert decode_failure(_err("AA93 invalid paymasterAndData")).code == "AA93"
    assert decode_failure(b"", "OutOfGas").message == "simulation failed: OutOfGas"
    assert pickle.loads(pickle.dumps(f)) == f


@pytest.mark.parametrize("code,cls", [
    ("AA13", ValidationRejected), ("AA21", ValidationRejected), ("AA23", ValidationRejected),
    ("AA25", ValidationRejected), ("AA22", TimeRangeInvalid), ("AA24", SignatureInvalid),
    ("AA31", PaymasterDepositTooLow), ("AA33", PaymasterRejected), ("AA32", TimeRangeInvalid),
    ("AA34", SignatureInvalid), ("AA36", PaymasterRejected),
])
def test_failure_mapping(code, cls):
    err = failure_error(SimulationFailure(reason=f"{code} something", code=code), paymaster="0x" + "cc" * 20)
    assert type(err) is cls
    assert code in err.message
    if code.startswith("AA3"):
        assert err.data["paymaster"].lower() == "0x" + "cc" * 20
    # survives the trip back from a worker process
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.message, again.data, again.code) == (cls, err.message, err.data, err.code)


def _result(account: int = 0, paymaster: int = 0) -> ValidationResult:
    zero = StakeInfo(0, 0)
    return ValidationResult(100_000, 1, ValidationData.unpack(account), ValidationData.unpack(paymaster),
                            b"", zero, zero, zero, None, None, 0, 0)


def _vd(sig_failed=False, valid_after=0, valid_until=0) -> int:
    return int(sig_failed) | (valid_until << 160) | (valid_after << 208)


def test_validation_checks():
    now = 1_000_000
    assert validation_error(_result(), now=now) is None
    assert isinstance(validation_error(_result(_vd(sig_failed=True)), now=now), SignatureInvalid)
    assert isinstance(validation_error(_result(paymaster=_vd(sig_failed=True)), now=now), SignatureInvalid)
    not_due = validation_error(_result(_vd(valid_after=now + 100)), now=now)
    assert isinstance(not_due, TimeRangeInvalid) and "not valid yet" in not_due.message
    soon = validation_error(_result(_vd(valid_until=now + 10)), now=now, min_valid_for=30)
    assert isinstance(soon, TimeRangeInvalid) and "expires in 10 s" in soon.message
    assert validation_error(_result(_vd(valid_until=now + 10)), now=now, min_valid_for=5) is None
    expired = validation_error(_result(paymaster=_vd(valid_until=now - 1)), now=now, paymaster="0x" + "cc" * 20)
    assert isinstance(expired, TimeRangeInvalid) and "paymaster" in expired.message
    assert expired.data["validUntil"] == now - 1
    # judged against the inclusion window, not one instant: held up to max_wait, v0.8 strictly after
    assert validation_error(_result(_vd(valid_after=now + 5)), now=now, max_wait=5) is None
    assert validation_error(_result(_vd(valid_after=now + 5)), now=now, max_wait=5, strict=True) is not None
    assert validation_error(_result(_vd(valid_after=now)), now=now, strict=True) is not None
    assert validation_error(_result(_vd(valid_after=now - 1)), now=now, strict=True) is None
    late = validation_error(_result(paymaster=_vd(valid_until=now + 20)), now=now, latest=now + 25, min_valid_for=0)
    assert isinstance(late, TimeRangeInvalid) and "before it can be included" in late.message
    assert late.data["latestInclusion"] == now + 25
    agg = validation_error(_result(0x1234), now=now)
    assert agg.code == -32506
    vd = ValidationData.unpack(_vd(valid_after=5, valid_until=0))
    assert (vd.valid_after, vd.valid_until, vd.sig_failed, vd.aggregator) == (5, 2**48 - 1, False, None)


def test_pinned_block_from_rpc_and_next_base_fee():
    block = PinnedBlock.from_rpc({
        "number": "0x10", "timestamp": "0x64", "baseFeePerGas": "0x3b9aca00", "gasLimit": "0x1c9c380",
        "gasUsed": "0x0", "miner": "0x" + "AB" * 20, "mixHash": "0x" + "11" * 32, "hash": "0x" + "22" * 32,
    })
    assert block.number == 16 and block.coinbase == "0x" + "ab" * 20
    assert block.next_base_fee() == 10**9 * 7 // 8  # empty block: -12.5%
    ctx = BlockContext.after(block, 1337, timestamp=200)
    assert (ctx.number, ctx.timestamp, ctx.prev_hashes) == (17, 200, (b"\x22" * 32,))
    assert pickle.loads(pickle.dumps(block)) == block
    assert AccountOverride(balance=1) == pickle.loads(pickle.dumps(AccountOverride(balance=1)))
