"""Bundle selection (builder/proposer.py) without a node: candidates from a real Mempool, an
inclusion window and a head block built by hand, the reputation gate of a ReputationBook."""
from __future__ import annotations

from bundler.builder.proposer import BUNDLE_OVERHEAD_GAS, select_ops
from bundler.chain.clock import InclusionWindow
from bundler.chain.types import PinnedBlock
from bundler.entrypoint import V07, V08
from bundler.pool.mempool import Mempool, PoolEntry
from bundler.pool.reputation import ReputationBook, ReputationParams, ReputationRules
from bundler.pool.staking import StakePolicy
from bundler.userop.model import Authorization
from helpers.stores import make_op

GWEI = 10**9
HEAD = PinnedBlock(number=100, timestamp=1_000, base_fee=GWEI, gas_limit=30_000_000)
WINDOW = InclusionWindow(earliest=1_001, latest=1_013, next_block=101)
PAYMASTER = "0x" + "9a" * 20
OP_GAS = 50_000 + 200_000 + 100_000  # make_op's preVerification + verification + call gas


def sender(n: int) -> str:
    return "0x" + f"{n:040x}"


def entry(tag: int, who: int, nonce: int = 0, fee: int = 3 * GWEI, **changes) -> PoolEntry:
    op = make_op(tag, sender=sender(who), nonce=nonce, max_fee_per_gas=fee, max_priority_fee_per_gas=GWEI, **changes)
    return PoolEntry(op=op, entry_point=V07, hash="0x" + f"{tag:064x}")


def propose(entries, *, reserved=(), submitted=(), max_gas=30_000_000, max_ops=100, gate=None,
            others_storage=lambda _e: frozenset(), window=WINDOW, header=HEAD):
    pool = Mempool(max_ops_per_sender=100)
    for e in entries:
        pool.add(e)
    return select_ops(pool.bundle_candidates(V07, header.base_fee), reserved=reserved, submitted=submitted,
                      window=window, header=header, max_gas=max_gas, max_ops=max_ops, gate=gate,
                      others_storage=others_storage)


def hashes(entries) -> list[str]:
    return [e.hash for e in entries]


def test_best_paying_first_within_the_gas_and_count_limits():
    a, b, c = entry(1, 1, fee=5 * GWEI), entry(2, 2, fee=4 * GWEI), entry(3, 3, fee=3 * GWEI)
    assert hashes(propose([c, a, b]).ops) == hashes([a, b, c])
    assert hashes(propose([a, b, c], max_ops=2).ops) == hashes([a, b])
    assert hashes(propose([a, b, c], max_gas=BUNDLE_OVERHEAD_GAS + 2 * OP_GAS).ops) == hashes([a, b])
    # the head block's gas limit caps it too
    small = PinnedBlock(number=100, timestamp=1_000, base_fee=GWEI, gas_limit=BUNDLE_OVERHEAD_GAS + OP_GAS)
    assert hashes(propose([a, b, c], header=small).ops) == hashes([a])


def test_expired_ops_come_back_as_drops_and_not_due_ones_hold_their_sender():
    expired = entry(1, 1)
    expired.valid_until = 1_012  # before the latest inclusion time (1_013)
    ends = entry(2, 2)
    ends.valid_until_block = 101  # before the last block it may be included in (102)
    later = entry(3, 3, fee=9 * GWEI)
    later.valid_after = 1_002  # not due at the earliest inclusion time (1_001) on v0.7
    after_it = entry(4, 3, nonce=1, fee=9 * GWEI)
    fine = entry(5, 5)
    out = propose([expired, ends, later, after_it, fine])
    assert hashes(out.ops) == [fine.hash]
    assert [(e.hash, code) for e, _reason, code in out.drops] == [(expired.hash, -32503), (ends.hash, -32503)]
    assert "validUntil 1012" in out.drops[0][1] and "block 101" in out.drops[1][1]


def test_ops_that_cannot_pay_the_base_fee_wait():
    out = propose([entry(1, 1, fee=GWEI // 2), entry(2, 2)])
    assert hashes(out.ops) == [entry(2, 2).hash] and out.drops == []


def test_senders_and_paymasters_of_other_bundles_wait():
    in_flight = entry(9, 1)
    reserved_pm = entry(8, 8, paymaster=PAYMASTER, paymaster_verification_gas_limit=10_000)
    same_sender = entry(1, 1, nonce=1)
    same_paymaster = entry(2, 2, paymaster=PAYMASTER, paymaster_verification_gas_limit=10_000)
    free = entry(3, 3)
    out = propose([same_sender, same_paymaster, free], submitted=[in_flight], reserved=[reserved_pm])
    assert hashes(out.ops) == [free.hash]
    # a submitted op's paymaster does not hold others back (only reserved ones' do)
    submitted_pm = entry(7, 7, paymaster=PAYMASTER, paymaster_verification_gas_limit=10_000)
    assert same_paymaster.hash in hashes(propose([same_paymaster], submitted=[submitted_pm]).ops)


def test_one_eip7702_authorization_per_sender_and_bundle():
    auth = Authorization(chain_id=1337, address="0x" + "de" * 20, nonce=0, y_parity=0, r=1, s=1)
    first, second = entry(1, 1, eip7702_auth=auth), entry(2, 1, nonce=1, eip7702_auth=auth)
    assert hashes(propose([first, second]).ops) == [first.hash]


def test_sto_041_an_op_touching_another_senders_storage_waits():
    a, b = entry(1, 1, fee=5 * GWEI), entry(2, 2, fee=4 * GWEI)
    storage = {a.hash: frozenset({sender(2)}), b.hash: frozenset()}
    assert hashes(propose([a, b], others_storage=lambda e: storage[e.hash]).ops) == [a.hash]
    storage = {a.hash: frozenset(), b.hash: frozenset({sender(1)})}
    assert hashes(propose([a, b], others_storage=lambda e: storage[e.hash]).ops) == [a.hash]


def test_the_reputation_gate_drops_banned_and_caps_throttled_entities():
    rules = ReputationRules(ReputationBook(ReputationParams(throttled_entity_bundle_count=1), clock=lambda: 0.0),
                            StakePolicy(0, 0), Mempool())
    pm = dict(paymaster=PAYMASTER, paymaster_verification_gas_limit=10_000)
    a, b, c = entry(1, 1, fee=5 * GWEI, **pm), entry(2, 2, fee=4 * GWEI, **pm), entry(3, 3)
    rules.book.set(V07, PAYMASTER, ops_seen=200, ops_included=0)  # throttled: one op per bundle
    out = propose([a, b, c], gate=rules.bundle_gate(V07, HEAD.number))
    assert hashes(out.ops) == [a.hash, c.hash] and out.drops == []
    rules.book.set(V07, PAYMASTER, ops_seen=1000, ops_included=0)  # banned
    out = propose([a, b, c], gate=rules.bundle_gate(V07, HEAD.number))
    assert hashes(out.ops) == [c.hash]
    assert [(e.hash, code) for e, _r, code in out.drops] == [(a.hash, -32504), (b.hash, -32504)]


def test_other_entry_points_ops_are_not_candidates():
    other = PoolEntry(op=make_op(1, sender=sender(1), nonce=0), entry_point=V08, hash="0x" + "01" * 32)
    assert propose([other]).ops == []
