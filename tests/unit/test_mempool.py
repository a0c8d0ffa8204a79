"""The mempool without a node: replacement (fee bump, never an op in flight), the per-sender
cap, the indexes by slot / sender / entity after adds and removals, observers told on every
path, and the order of bundle candidates."""
from __future__ import annotations

import pytest

from bundler.entrypoint import V07, V08
from bundler.errors import InvalidParams
from bundler.pool.mempool import HashIndex, Mempool, MempoolFull, PoolEntry
from helpers.stores import make_op

GWEI = 10**9
SENDER = "0x" + "5e" * 20
PAYMASTER = "0x" + "9a" * 20


def entry(tag: int, *, sender: str = SENDER, nonce: int = 0, fee: int = 2 * GWEI, tip: int = GWEI, ep=V07,
          **changes) -> PoolEntry:
    op = make_op(tag, sender=sender, nonce=nonce, max_fee_per_gas=fee, max_priority_fee_per_gas=tip, **changes)
    return PoolEntry(op=op, entry_point=ep, hash="0x" + f"{tag:064x}")


class Recorder:
    def __init__(self):
        self.events: list[tuple] = []

    def added(self, e):
        self.events.append(("added", e.hash))

    def removed(self, e, mined_block=None):
        self.events.append(("removed", e.hash, mined_block))

    def cleared(self):
        self.events.append(("cleared",))


def test_replacement_needs_both_fees_raised_by_ten_percent():
    pool = Mempool()
    first = entry(1, fee=100 * GWEI, tip=10 * GWEI)
    pool.add(first)
    for fee, tip in ((109 * GWEI, 11 * GWEI), (110 * GWEI, 10 * GWEI)):
        with pytest.raises(InvalidParams, match="replacement underpriced") as refused:
            pool.check_admissible(entry(2, fee=fee, tip=tip).op, V07)
        assert refused.value.code == -32602 and "0x174876e800" in refused.value.message  # the pending maxFee
    bumped = entry(2, fee=110 * GWEI, tip=11 * GWEI)
    assert pool.check_admissible(bumped.op, V07) is first
    assert pool.add(bumped) is first
    assert pool.get(first.hash) is None and pool.get(bumped.hash) is bumped and len(pool) == 1
    # the same sender and nonce at another EntryPoint is another slot
    assert pool.check_admissible(entry(3, fee=GWEI, tip=GWEI).op, V08) is None


def test_an_op_in_a_bundle_is_never_replaced():
    pool = Mempool()
    first = entry(1)
    pool.add(first)
    first.submitted_in = "0x" + "77" * 32
    with pytest.raises(InvalidParams, match="already in a bundle transaction"):
        pool.check_admissible(entry(2, fee=10 * GWEI, tip=5 * GWEI).op, V07)


def test_per_sender_cap_except_for_staked_senders_and_verified_session_ops():
    pool = Mempool(max_ops_per_sender=2)
    pool.add(entry(1, nonce=0))
    pool.add(entry(2, nonce=1))
    with pytest.raises(MempoolFull, match="already has 2 UserOperations pending") as refused:
        pool.check_admissible(entry(3, nonce=2).op, V07)
    assert refused.value.code == -32602
    assert pool.check_admissible(entry(3, nonce=2).op, V07, sender_staked=True) is None
    assert pool.check_admissible(entry(3, nonce=2).op, V07, max_ops=3) is None
    # a replacement of a pending nonce is not held to the cap
    assert pool.check_admissible(entry(4, nonce=1, fee=10 * GWEI, tip=5 * GWEI).op, V07) is not None


def test_indexes_follow_adds_and_removals():
    pool = Mempool()
    a = entry(1, paymaster=PAYMASTER, paymaster_verification_gas_limit=50_000)
    b = entry(2, sender="0x" + "b0" * 20, paymaster=PAYMASTER, paymaster_verification_gas_limit=50_000)
    c = entry(3, nonce=1)
    for e in (a, b, c):
        pool.add(e)
    assert pool.count_using(V07, PAYMASTER) == 2 and pool.count_using(V08, PAYMASTER) == 0
    assert {e.hash for e in pool.for_sender(SENDER)} == {a.hash, c.hash}
    assert pool.remove(a.hash) is a and pool.remove(a.hash) is None
    assert pool.entries_using(V07, PAYMASTER) == [b]
    assert [e.hash for e in pool.for_sender(SENDER)] == [c.hash]
    assert pool.entries(V07) == [b, c] and pool.entries(V08) == []
    # the freed slot takes a new op without a fee bump
    assert pool.check_admissible(entry(4, fee=GWEI, tip=GWEI).op, V07) is None


def test_entity_index_follows_factories_and_paymasters_across_entry_points_replacement_and_clear():
    factory = "0x" + "fa" * 20
    pool = Mempool()
    a = entry(1, paymaster=PAYMASTER, paymaster_verification_gas_limit=50_000)
    b = entry(2, sender="0x" + "b0" * 20, factory=factory, factory_data=b"\x01", ep=V08)
    c = entry(3, sender="0x" + "c0" * 20)
    for e in (a, b, c):
        pool.add(e)
    assert pool.entity_users(PAYMASTER) == [a] and pool.entity_users(factory.upper().replace("0X", "0x")) == [b]
    assert pool.entity_users(SENDER) == [] and pool.entity_users(c.op.sender) == []
    # a replacement without the paymaster takes the old op's place in the index too
    bumped = entry(4, fee=10 * GWEI, tip=5 * GWEI)
    pool.add(bumped)
    assert pool.entity_users(PAYMASTER) == []
    pool.remove(b.hash)
    assert pool.entity_users(factory) == []
    pool.add(entry(5, sender="0x" + "d0" * 20, paymaster=PAYMASTER, paymaster_verification_gas_limit=50_000))
    pool.clear()
    assert pool.entity_users(PAYMASTER) == [] and len(pool) == 0


def test_safe_mode_context_asks_the_entity_index_not_the_whole_pool():
    """STO-040 (sender used as another op's entity): the context names the sender exactly when
    another sender's pending op uses it as factory or paymaster, and never reads entries()."""
    from bundler.pool.safe import SafeMode

    account = "0x" + "ac" * 20
    pool = Mempool()

    class NoScan(Mempool):
        def entries(self, entry_point=None):
            raise AssertionError("a pass over the whole pool per admission")

    pool.__class__ = NoScan
    safe = SafeMode(object(), pool)
    op = make_op(9, sender=account)
    assert safe.context(op, V07, None).mempool_entities == frozenset()
    pool.add(entry(10, sender="0x" + "b0" * 20, paymaster=account, paymaster_verification_gas_limit=50_000))
    assert safe.context(op, V07, None).mempool_entities == frozenset({account})
    # its own op naming itself as paymaster does not count
    pool.clear()
    pool.add(entry(11, sender=account, nonce=1, paymaster=account, paymaster_verification_gas_limit=50_000))
    assert safe.context(op, V07, None).mempool_entities == frozenset()


def test_hash_index_holds_one_hash_bare_and_more_in_a_set():
    index = HashIndex()
    assert index.get("k") == () and index.count("k") == 0
    index.add("k", "0x1")
    index.add("k", "0x1")  # the same hash twice is one
    assert index.get("k") == ("0x1",) and index.count("k") == 1
    index.add("k", "0x2")
    index.add("k", "0x3")
    assert sorted(index.get("k")) == ["0x1", "0x2", "0x3"] and index.count("k") == 3
    index.discard("k", "0x2")
    index.discard("k", "0x9")  # not filed: nothing changes
    assert sorted(index.get("k")) == ["0x1", "0x3"]
    index.discard("k", "0x1")
    assert index.get("k") == ("0x3",) and index.count("k") == 1
    index.discard("k", "0x1")  # a hash no longer filed does not remove the one left
    assert index.get("k") == ("0x3",)
    index.discard("k", "0x3")
    assert index.get("k") == () and len(index) == 0
    index.add(("ep", "a"), "0x4")
    index.clear()
    assert index.count(("ep", "a")) == 0


def test_observers_hear_of_every_entry_that_comes_and_goes():
    pool, seen = Mempool(), Recorder()
    pool.observe(seen)
    first, bumped = entry(1), entry(2, fee=10 * GWEI, tip=5 * GWEI)
    pool.add(first)
    pool.add(bumped)  # a replacement: the old entry leaves first
    pool.remove(bumped.hash, mined_block=42)
    pool.add(entry(3, nonce=5))
    pool.clear()
    assert seen.events == [("added", first.hash), ("removed", first.hash, None), ("added", bumped.hash),
                           ("removed", bumped.hash, 42), ("added", entry(3).hash), ("cleared",)]
    assert len(pool) == 0 and pool.for_sender(SENDER) == []


def test_bundle_candidates_best_paying_sender_first_and_nonces_in_order():
    pool = Mempool()
    rich, poor = "0x" + "aa" * 20, "0x" + "bb" * 20
    # the rich sender's nonce 1 pays most, its nonce 0 least: nonce order still holds within it
    pool.add(entry(1, sender=rich, nonce=1, fee=50 * GWEI, tip=40 * GWEI))
    pool.add(entry(2, sender=rich, nonce=0, fee=3 * GWEI, tip=GWEI))
    pool.add(entry(3, sender=poor, nonce=0, fee=10 * GWEI, tip=5 * GWEI))
    in_flight = entry(4, sender="0x" + "cc" * 20, fee=100 * GWEI, tip=90 * GWEI)
    pool.add(in_flight)
    in_flight.submitted_in = "0x" + "77" * 32
    pool.add(entry(5, sender="0x" + "dd" * 20, fee=100 * GWEI, tip=90 * GWEI, ep=V08))
    order = [(e.op.sender, e.op.nonce) for e in pool.bundle_candidates(V07, base_fee=GWEI)]
    assert order == [(rich, 0), (rich, 1), (poor, 0)]
