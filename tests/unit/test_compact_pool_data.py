"""The compact forms a pending op is held in (benchmarks/memory.py): OpEntities without a refs
tuple, gas and fee values shared between ops, the (entry point, sender, nonce) slot found
through the sender index, the "no end" validity constants shared. Each must answer exactly as
the plain form did."""
from __future__ import annotations

import pickle

import pytest

from bundler.entrypoint import V07, V08
from bundler.pool.mempool import Mempool, PoolEntry
from bundler.pool.reputation import AGGREGATOR, FACTORY, PAYMASTER, SENDER, EntityRef, OpEntities
from bundler.sim.results import UINT48_MAX, VALIDITY_BLOCK_RANGE_MASK
from bundler.userop import codec
from bundler.userop.codec import shared_quantity
from bundler.userop.model import UINT128_MAX, UINT256_MAX
from helpers.stores import make_op

SENDER_ADDR, FACTORY_ADDR, PAYMASTER_ADDR, AGG_ADDR = ("0x" + c * 20 for c in ("5e", "fa", "9a", "a9"))


@pytest.mark.parametrize("refs", [
    (EntityRef(SENDER, SENDER_ADDR, False),),
    (EntityRef(SENDER, SENDER_ADDR, True),),
    (EntityRef(SENDER, SENDER_ADDR, False), EntityRef(FACTORY, FACTORY_ADDR, True),
     EntityRef(PAYMASTER, PAYMASTER_ADDR, False), EntityRef(AGGREGATOR, AGG_ADDR, True)),
    (EntityRef(PAYMASTER, PAYMASTER_ADDR, True), EntityRef(SENDER, SENDER_ADDR, True)),  # sender not first
    (EntityRef(PAYMASTER, PAYMASTER_ADDR, False),),  # no sender
    (),
])
@pytest.mark.parametrize("block", [0, 1, 2**63])
def test_op_entities_round_trip(refs, block):
    e = OpEntities(refs, block)
    assert e.refs == tuple(refs)
    assert e.block_number == block
    for role in (SENDER, FACTORY, PAYMASTER, AGGREGATOR):
        assert e.get(role) == next((r for r in refs if r.role == role), None)
    assert e.tracked() == [r for r in refs if r.tracked]
    assert e == OpEntities(list(refs), block) and hash(e) == hash(OpEntities(tuple(refs), block))
    assert e != OpEntities(refs, block + 1)
    assert repr(e) == f"OpEntities(refs={tuple(refs)!r}, block_number={block!r})"
    assert pickle.loads(pickle.dumps(e)) == e
    if any(r.role == SENDER for r in refs):
        assert e.sender == next(r for r in refs if r.role == SENDER)
    else:
        with pytest.raises(ValueError):
            _ = e.sender


def test_op_entities_of_shares_the_entity_refs_between_ops():
    a = make_op(1, paymaster=PAYMASTER_ADDR, paymaster_verification_gas_limit=50_000)
    b = make_op(2, paymaster=PAYMASTER_ADDR, paymaster_verification_gas_limit=50_000)
    ea, eb = OpEntities.of(a, block_number=7), OpEntities.of(b, block_number=7)
    assert ea.refs == (EntityRef(SENDER, a.sender, False), EntityRef(PAYMASTER, PAYMASTER_ADDR, False))
    assert ea.get(PAYMASTER) is eb.get(PAYMASTER)
    assert ea.sender.address == a.sender and eb.sender.address == b.sender
    assert OpEntities.of(make_op(3)).refs == (EntityRef(SENDER, make_op(3).sender, False),)


@pytest.mark.parametrize("n", [0, 1, 256, 257, 10**10, UINT128_MAX, UINT256_MAX])
def test_shared_quantity_keeps_the_value(n):
    assert shared_quantity(n) == n
    # a fresh equal int (not the literal, which the compiler may already share) comes back as the first
    first, again = shared_quantity(int(str(n))), shared_quantity(int(str(n)))
    assert first is again and again == n


def test_shared_quantity_is_bounded(monkeypatch):
    monkeypatch.setattr(codec, "_SHARED_QUANTITIES", {})
    monkeypatch.setattr(codec, "_SHARED_QUANTITIES_MAX", 8)
    for i in range(1000, 1020):
        assert shared_quantity(i) == i
        assert len(codec._SHARED_QUANTITIES) <= 8


def test_decoded_ops_share_gas_values():
    fields = {"sender": "0x" + "11" * 20, "nonce": "0x0", "callData": "0x", "callGasLimit": hex(50_000),
              "verificationGasLimit": hex(100_000), "preVerificationGas": hex(55_000),
              "maxFeePerGas": hex(10**10), "maxPriorityFeePerGas": hex(2 * 10**9), "signature": "0x"}
    a = codec.decode_user_operation(dict(fields))
    b = codec.decode_user_operation({**fields, "sender": "0x" + "22" * 20})
    assert a.max_fee_per_gas == 10**10 and a.call_gas_limit == 50_000
    for name in ("call_gas_limit", "verification_gas_limit", "pre_verification_gas", "max_fee_per_gas",
                 "max_priority_fee_per_gas"):
        assert getattr(a, name) is getattr(b, name)


def test_at_slot_finds_the_op_of_that_entry_point_and_nonce():
    pool = Mempool(max_ops_per_sender=8)
    ops = [make_op(1, nonce=n) for n in (0, 1, 2**64)]  # same sender, several nonces (and a nonce key)
    sender = ops[0].sender
    assert all(op.sender == sender for op in ops)
    entries = [PoolEntry(op=op, entry_point=V07, hash="0x" + f"{i:064x}") for i, op in enumerate(ops)]
    other_ep = PoolEntry(op=ops[0], entry_point=V08, hash="0x" + "ee" * 32)
    for e in [*entries, other_ep]:
        pool.add(e)
    for e in entries:
        assert pool.at_slot(V07.address, sender, e.op.nonce) is e
    assert pool.at_slot(V08.address, sender, 0) is other_ep
    assert pool.at_slot(V08.address, sender, 1) is None
    assert pool.at_slot(V07.address, "0x" + "00" * 20, 0) is None
    # a replacement takes the slot: the old entry leaves, the new one is found
    bumped = ops[1].with_changes(max_fee_per_gas=ops[1].max_fee_per_gas * 2,
                                 max_priority_fee_per_gas=ops[1].max_priority_fee_per_gas * 2)
    assert pool.check_admissible(bumped, V07) is entries[1]
    new = PoolEntry(op=bumped, entry_point=V07, hash="0x" + "ab" * 32)
    assert pool.add(new) is entries[1]
    assert pool.at_slot(V07.address, sender, 1) is new and pool.get(entries[1].hash) is None
    pool.remove(new.hash)
    assert pool.at_slot(V07.address, sender, 1) is None and pool.at_slot(V07.address, sender, 0) is entries[0]


def test_pool_entry_shares_the_no_end_constants():
    fresh_until, fresh_block = int(str(UINT48_MAX)), int(str(VALIDITY_BLOCK_RANGE_MASK))
    e = PoolEntry(op=make_op(1), entry_point=V07, hash="0x" + "01" * 32, valid_until=fresh_until,
                  valid_until_block=fresh_block)
    assert e.valid_until is UINT48_MAX and e.valid_until_block is VALIDITY_BLOCK_RANGE_MASK
    e2 = PoolEntry(op=make_op(1), entry_point=V07, hash="0x" + "02" * 32, valid_until=12345, valid_until_block=99)
    assert (e2.valid_until, e2.valid_until_block) == (12345, 99)
