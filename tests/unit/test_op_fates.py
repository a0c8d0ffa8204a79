"""The pool's writer of op status without a node: a MemoryStore, a Mempool and the reputation
rules kept in step for every fate an op can meet after admission."""
from __future__ import annotations

from bundler.entrypoint import V07
from bundler.pool.fates import OpFates
from bundler.pool.mempool import Mempool, PoolEntry
from bundler.pool.reputation import ReputationBook, ReputationParams, ReputationRules
from bundler.pool.staking import StakePolicy
from bundler.store import MemoryStore, OpStatus
from helpers.stores import make_op, record

PAYMASTER = "0x" + "9a" * 20
TX = "0x" + "77" * 32
BLOCK_HASH = "0x" + "b1" * 32


class CountingMetrics:
    def __init__(self):
        self.dropped: list[str] = []

    def op_dropped(self, label: str) -> None:
        self.dropped.append(label)


def world(max_bundle_reverts: int = 2):
    store, mempool, metrics = MemoryStore(), Mempool(), CountingMetrics()
    reputation = ReputationRules(ReputationBook(ReputationParams(), clock=lambda: 0.0), StakePolicy(0, 0), mempool)
    return OpFates(mempool, store, reputation, metrics, max_bundle_reverts), store, mempool, reputation, metrics


def admitted(fates: OpFates, i: int) -> PoolEntry:
    r = record(i, op=make_op(i, paymaster=PAYMASTER, paymaster_verification_gas_limit=50_000))
    fates.store.put(r)
    e = PoolEntry(op=r.op, entry_point=V07, hash=r.hash)
    fates.mempool.add(e)
    fates.reputation.admitted(e)
    e.submitted_in = TX
    fates.store.update(r.hash, status=OpStatus.SUBMITTED, tx_hash=TX)
    return e


def test_mined_leaves_the_pool_is_recorded_and_credits_the_entities():
    fates, store, mempool, reputation, _m = world()
    e = admitted(fates, 1)
    fates.mined(e.hash, e, TX, 12, BLOCK_HASH)
    got = store.get(e.hash)
    assert (got.status, got.tx_hash, got.block_number, got.block_hash) == (OpStatus.MINED, TX, 12, BLOCK_HASH)
    assert mempool.get(e.hash) is None
    assert reputation.book.get(V07, PAYMASTER).ops_included == 1


def test_a_reverted_bundle_puts_its_ops_back_until_the_limit_then_drops_them():
    fates, store, mempool, _r, metrics = world(max_bundle_reverts=2)
    e = admitted(fates, 1)
    fates.bundle_reverted(e.hash, e, TX)
    assert store.get(e.hash).status == OpStatus.PENDING and store.get(e.hash).tx_hash is None
    assert e.submitted_in is None and mempool.get(e.hash) is e and fates.reverts == {e.hash: 1}
    e.submitted_in = TX
    fates.bundle_reverted(e.hash, e, "0x" + "78" * 32)
    got = store.get(e.hash)
    assert got.status == OpStatus.DROPPED and got.error_code == -32500
    assert got.reason == f"dropped after 2 bundles carrying it reverted on chain (last 0x{'78' * 32})"
    assert mempool.get(e.hash) is None and fates.reverts == {} and len(metrics.dropped) == 1


def test_left_out_of_a_mined_bundle_is_pending_again_without_a_revert_count():
    fates, store, _mp, _r, _m = world()
    e = admitted(fates, 1)
    fates.reverts[e.hash] = 1
    fates.not_included(e.hash, e)
    assert store.get(e.hash).status == OpStatus.PENDING and e.submitted_in is None and fates.reverts == {}


def test_reorg_fates_touch_only_the_record():
    fates, store, mempool, reputation, _m = world()
    e = admitted(fates, 1)
    fates.recorded_mined(e.hash, TX, 20, BLOCK_HASH)
    assert store.get(e.hash).status == OpStatus.MINED and mempool.get(e.hash) is e
    fates.resubmitted(e.hash, TX)
    got = store.get(e.hash)
    assert (got.status, got.tx_hash, got.block_number, got.block_hash) == (OpStatus.SUBMITTED, TX, None, None)
    assert reputation.book.get(V07, PAYMASTER).ops_included == 0


def test_revert_counts_are_kept_only_for_ops_still_in_the_pool():
    fates, _s, mempool, _r, _m = world(max_bundle_reverts=5)
    kept, gone = admitted(fates, 1), admitted(fates, 2)
    fates.bundle_reverted(kept.hash, kept, TX)
    fates.bundle_reverted(gone.hash, gone, TX)
    mempool.remove(gone.hash)  # evicted, cleared or mined by another path
    fates.forget_gone()
    assert fates.reverts == {kept.hash: 1}
    fates.drop(kept, "expired", -32503)
    assert fates.reverts == {} and fates.store.get(kept.hash).error_code == -32503


def test_eviction_and_revoked_sessions_drop_without_the_drop_metric():
    fates, store, mempool, _r, metrics = world()
    e = admitted(fates, 1)
    fates.removed(e, "evicted: the mempool was full", -32602)
    got = store.get(e.hash)
    assert (got.status, got.reason, got.error_code) == (OpStatus.DROPPED, "evicted: the mempool was full", -32602)
    assert mempool.get(e.hash) is None and metrics.dropped == []


def test_requeue_fates_clear_the_transaction_fields():
    fates, store, mempool, _r, _m = world()
    e = admitted(fates, 1)
    mempool.remove(e.hash)  # what requeue does before validating it again
    store.update(e.hash, status=OpStatus.MINED, block_number=9, block_hash=BLOCK_HASH)
    e.valid_after, e.valid_until, e.prefund = 10, 20, 30
    fates.readmitted(e)
    got = store.get(e.hash)
    assert (got.status, got.tx_hash, got.block_number, got.block_hash) == (OpStatus.PENDING, None, None, None)
    assert (got.valid_after, got.valid_until, got.prefund) == (10, 20, 30) and mempool.get(e.hash) is e
    mempool.remove(e.hash)
    fates.recorded_dropped(e.hash, "reorged out, no longer valid: AA25 invalid account nonce", -32500)
    got = store.get(e.hash)
    assert (got.status, got.error_code, got.tx_hash, got.block_number) == (OpStatus.DROPPED, -32500, None, None)
