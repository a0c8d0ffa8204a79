"""Read sets (sim/readset.py) on seeded state, no node: which account fields a computation
observed, and that a later block's state with a different value in an unobserved field still
counts as unchanged while one in an observed field does not."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from bundler.sim import BlockContext, EvmSession, PinnedBlock
from bundler.sim import readset
from bundler.sim.state import BALANCE, CODE, BlockState, OverlayAccountDB

pytestmark = pytest.mark.unit

CALLER = b"\xaa" * 20
C = b"\xcc" * 20  # the contract called; it CALLs D with a value
D = b"\xdd" * 20  # code: STOP
BLOCK = PinnedBlock(number=10, timestamp=1_700_000_000, base_fee=10**9, gas_limit=30_000_000, hash="0x01")
SELFBALANCE_STOP = bytes([0x47, 0x50, 0x00])


def call_with_value(value: int, target: bytes) -> bytes:
    """CALL(gas, target, value, 0, 0, 0, 0); STOP"""
    return bytes([0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0, 0x60, value, 0x73]) + target + bytes([0x5A, 0xF1, 0x00])


def state(c_code: bytes, c_balance: int = 10**18, d_balance: int = 0) -> BlockState:
    base = BlockState(None, BLOCK)
    base.seed_account(CALLER, 10**18, 0, b"")
    base.seed_account(C, c_balance, 1, c_code)
    base.seed_account(D, d_balance, 1, b"\x00")
    return base


def run(base: BlockState) -> readset.ReadSet:
    db = OverlayAccountDB(base)
    session = EvmSession(db, BlockContext.after(BLOCK, 1337, BLOCK.timestamp + 12))
    assert session.call(sender=CALLER, to=C, data=b"", gas=1_000_000).success
    return readset.capture(db, session.state.execution_context.block_read)


def fields(rs: readset.ReadSet) -> dict[bytes, int]:
    return dict(zip(rs.account_keys(), rs.fields))


def test_a_call_without_value_does_not_observe_the_callers_balance():
    rs = run(state(call_with_value(0, D)))
    assert not fields(rs)[C] & BALANCE and fields(rs)[C] & CODE
    assert not fields(rs).get(D, 0) & BALANCE  # it has code: being empty is decided by code alone
    # another balance of the caller and of the callee at a later block: unchanged
    assert readset.unchanged(state(call_with_value(0, D), c_balance=5, d_balance=9), [rs]) == [True]


def test_a_call_with_value_observes_the_callers_balance_not_the_one_paid_into():
    rs = run(state(call_with_value(1, D)))
    assert fields(rs)[C] & BALANCE and not fields(rs)[D] & BALANCE
    assert readset.unchanged(state(call_with_value(1, D), d_balance=9), [rs]) == [True]
    assert readset.unchanged(state(call_with_value(1, D), c_balance=5), [rs]) == [False]


def test_selfbalance_observes_the_balance():
    rs = run(state(SELFBALANCE_STOP))
    assert fields(rs)[C] & BALANCE
    assert readset.unchanged(state(SELFBALANCE_STOP, c_balance=5), [rs]) == [False]


def test_other_code_is_a_change():
    rs = run(state(call_with_value(0, D)))
    changed = state(call_with_value(0, D))
    changed.seed_account(D, 0, 1, b"\x00\x00")
    assert readset.unchanged(changed, [rs]) == [False]


def test_an_overridden_field_is_not_the_nodes():
    base = state(SELFBALANCE_STOP)
    db = OverlayAccountDB(base)
    db.override_code(C, SELFBALANCE_STOP + b"\x00")
    session = EvmSession(db, BlockContext.after(BLOCK, 1337, BLOCK.timestamp + 12))
    assert session.call(sender=CALLER, to=C, data=b"", gas=1_000_000).success
    rs = readset.capture(db, False)
    assert fields(rs)[C] == BALANCE  # its code is the override's, not the node's


def test_packed_keys_round_trip_with_a_storage_only_account():
    """The packed form gives back exactly the keys it was made of: an address whose storage alone
    was read is in the slot table but not among the accounts whose fields are compared."""
    from bundler.sim.types import ReadSet
    accounts, fields = [C, D], bytes([BALANCE, CODE])
    slots = [(b"\x01" * 20, 0), (b"\x01" * 20, 256), (b"\x01" * 20, 2**256 - 1), (C, 7)]
    rs = ReadSet.pack(accounts, fields, slots, b"\x5a" * 32, False)
    assert rs.account_keys() == accounts and rs.fields == fields
    assert rs.slot_keys() == slots and rs.digest == b"\x5a" * 32 and rs.reusable and not rs.block_context
    # the main process gets it through a pickle: the same keys, equal, still a ReadSet
    back = pickle.loads(pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is ReadSet and back == rs and back.slot_keys() == slots and back.reusable
    flagged = ReadSet.pack(accounts, fields, slots, b"\x5a" * 32, True)
    assert flagged.block_context and not flagged.reusable and flagged != rs
    assert flagged.account_keys() == accounts and flagged.slot_keys() == slots


def test_no_keys_round_trip():
    from bundler.sim.types import ReadSet
    rs = ReadSet.pack([], b"", [], b"\x01" * 32, False)
    assert rs.account_keys() == [] and rs.slot_keys() == [] and rs.fields == b"" and rs.digest == b"\x01" * 32


def test_another_coinbase_is_a_change():
    """The coinbase is warm for every call (EIP-3651): the digest covers it, so the same values
    under another coinbase are not "unchanged"."""
    rs = run(state(call_with_value(0, D)))
    assert readset.unchanged(state(call_with_value(0, D)), [rs]) == [True]
    other = BlockState(None, dataclasses.replace(BLOCK, coinbase="0x" + "c0" * 20))
    for address, balance, nonce, code in ((CALLER, 10**18, 0, b""), (C, 10**18, 1, call_with_value(0, D)),
                                          (D, 0, 1, b"\x00")):
        other.seed_account(address, balance, nonce, code)
    assert readset.unchanged(other, [rs]) == [False]
