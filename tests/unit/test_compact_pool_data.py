"""The compact forms a pending op is held in (benchmarks/memory.py): OpEntities without a refs
tuple, gas and fee values shared between ops, the (entry point, sender, nonce) slot found
through the sender index, the "no end" validity constants shared. Each must answer exactly as
the plain form did."""
from __future__ import annotations

import pickle

import pytest

from bundler.entrypoint import V07, V08
from bundler.pool.mempool import Mempool, MempoolFull, PoolEntry
from bundler.pool.safe import code_hash_change, code_hash_items, pack_code_hashes
from bundler.pool.reputation import AGGREGATOR, FACTORY, PAYMASTER, SENDER, EntityRef, OpEntities
from bundler.sim.results import UINT48_MAX, VALIDITY_BLOCK_RANGE_MASK
from bundler.userop import codec, sharing
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
    monkeypatch.setattr(sharing, "_SHARED_QUANTITIES", {})
    monkeypatch.setattr(sharing, "_SHARED_QUANTITIES_MAX", 8)
    for i in range(1000, 1020):
        assert shared_quantity(i) == i
        assert len(sharing._SHARED_QUANTITIES) <= 8


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


def test_pool_entry_shares_the_block_hash_and_prefund_of_the_previous_entry():
    block, other = bytes(range(32)), bytes(range(1, 33))
    prefund = 3 * 10**30
    a = PoolEntry(op=make_op(1), entry_point=V07, hash="0x" + "01" * 32, validated_block=bytes(block),
                  prefund=int(str(prefund)))
    b = PoolEntry(op=make_op(2), entry_point=V07, hash="0x" + "02" * 32, validated_block=bytes(block),
                  prefund=int(str(prefund)))
    c = PoolEntry(op=make_op(3), entry_point=V07, hash="0x" + "03" * 32, validated_block=bytes(other), prefund=0)
    assert a.validated_block == b.validated_block == block and a.validated_block is b.validated_block
    assert c.validated_block == other and (a.validated_block, b.validated_block) == (block, block)
    assert a.prefund == b.prefund == prefund and a.prefund is b.prefund and c.prefund == 0
    assert PoolEntry(op=make_op(4), entry_point=V07, hash="0x" + "04" * 32).validated_block == b""


@pytest.mark.parametrize("hashes", [
    {},
    {"0x" + "00" * 20: "0x" + "00" * 32},
    {"0x" + "ff" * 20: "0x" + "ff" * 32, "0x" + "12" * 20: "0x" + "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
])
def test_code_hashes_round_trip(hashes):
    packed = pack_code_hashes(hashes)
    assert type(packed) is bytes and len(packed) == 52 * len(hashes)
    assert dict(code_hash_items(packed)) == hashes
    assert code_hash_change(packed, hashes) is None and code_hash_change(hashes, packed) is None


def test_code_hash_change_between_packed_forms():
    a, b = "0x" + "aa" * 20, "0x" + "bb" * 20
    before = pack_code_hashes({a: "0x" + "01" * 32, b: "0x" + "02" * 32})
    assert code_hash_change(before, pack_code_hashes({b: "0x" + "02" * 32})) is None  # a not seen again
    err = code_hash_change(before, pack_code_hashes({a: "0x" + "03" * 32, b: "0x" + "02" * 32}))
    assert err is not None and err.data["rule"] == "COD-010" and err.data["address"] == a
    assert err.data["codeHash"] == "0x" + "01" * 32 and err.data["newCodeHash"] == "0x" + "03" * 32
    assert code_hash_change(None, before) is None and code_hash_change(before, b"") is None


def test_for_sender_and_the_sender_cap_without_a_sender_index():
    pool = Mempool(max_ops_per_sender=2)
    op = make_op(5)
    # another op whose paymaster is op's sender: filed under that address, but not op's sender's op
    sponsored = make_op(6, paymaster=op.sender, paymaster_verification_gas_limit=1)
    pool.add(PoolEntry(op=sponsored, entry_point=V07, hash="0x" + "06" * 32))
    assert pool.for_sender(op.sender) == [] and pool.count_using(V07, op.sender) == 1
    a = PoolEntry(op=op, entry_point=V07, hash="0x" + "05" * 32)
    b = PoolEntry(op=op.with_changes(nonce=op.nonce + 1), entry_point=V08, hash="0x" + "15" * 32)
    pool.add(a)
    assert pool.check_admissible(op.with_changes(nonce=op.nonce + 1), V08) is None  # one pending: room
    pool.add(b)
    assert {e.hash for e in pool.for_sender(op.sender)} == {a.hash, b.hash}
    with pytest.raises(MempoolFull):
        pool.check_admissible(op.with_changes(nonce=op.nonce + 2), V07)
    assert pool.check_admissible(op.with_changes(nonce=op.nonce + 2), V07, sender_staked=True) is None
    pool.remove(a.hash)
    assert pool.for_sender(op.sender) == [b] and pool.at_slot(V07.address, op.sender, op.nonce) is None
    pool.clear()
    assert pool.for_sender(op.sender) == [] and len(pool) == 0


def _validation(account: int, paymaster: int, context: bytes = b"") -> "ValidationResult":
    from bundler.sim.results import StakeInfo, ValidationData, ValidationResult
    return ValidationResult(128_763 + account % 7, 2_053_570_024_437_483, ValidationData.unpack(account),
                            ValidationData.unpack(paymaster), context, StakeInfo(0, 0), StakeInfo(10**18, 86_400),
                            StakeInfo(0, 0), None, None, 121_193, 11)


@pytest.mark.parametrize("account,paymaster", [
    (0, 0), (1, 0),  # plain; signature failed
    ((1_000 << 208) | (2_000 << 160), 0),  # a time range
    (0, (5 << 208) | (9 << 160)),  # the paymaster's range
])
def test_kept_validation_answers_the_later_checks_as_the_full_one(account, paymaster):
    """The kept form (sim.results.kept_form) drops what nothing reads after admission (pre_op_gas,
    gas_used: 0) and keeps every field the second validation and the rules read."""
    from bundler.sim.erc7562 import CheckedTrace
    from bundler.sim.results import kept_form, validation_error
    full = _validation(account, paymaster, b"\x01\x02")
    kept = kept_form(full, CheckedTrace(others_storage=()))
    assert kept.pre_op_gas == 0 and kept.gas_used == 0
    for name in ("prefund", "account", "paymaster", "paymaster_context", "sender_info", "factory_info",
                 "paymaster_info", "aggregator", "aggregator_info", "block_number", "reads",
                 "valid_after", "valid_until", "valid_after_block", "valid_until_block"):
        assert getattr(kept, name) == getattr(full, name), name
    for now in (0, 1_500, 10**9):
        want, got = (validation_error(r, now=now, paymaster="0x" + "9a" * 20) for r in (full, kept))
        assert type(got) is type(want) and getattr(got, "message", None) == getattr(want, "message", None)
