"""The pool through its one interface (pool.pool.Pool), without a node: a LocalPool made of the
real admission, mempool, reputation rules, capacity guard, requeue and op fates over a
MemoryStore, with a fake node (headers only), a fake simulator and an injected clock."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from bundler.chain.head import HeadTracker
from bundler.chain.types import PinnedBlock
from bundler.entrypoint import V07, V08
from bundler.errors import BundlerError, EntityThrottled, InvalidParams, ValidationRejected
from bundler.pool.admission import Admission
from bundler.pool.capacity import CapacityGuard
from bundler.pool.fates import OpFates
from bundler.pool.mempool import Mempool, MempoolFull, PoolReader
from bundler.chain.types import ChainUpdate, MinedOp
from bundler.pool.pool import BundleOutcome, LocalPool, Pool
from bundler.pool.reputation import ReputationBook, ReputationParams, ReputationRules, Status
from bundler.pool.requeue import Requeue
from bundler.pool.safe import SafeMode
from bundler.pool.shared import CLAIMED_ELSEWHERE
from bundler.pool.staking import StakePolicy
from bundler.sim.results import VALIDITY_BLOCK_RANGE_MASK, StakeInfo
from bundler.store import MemoryStore, OpStatus
from helpers.stores import make_op

FACTORY = "0x" + "fa" * 20
TX = "0x" + "77" * 32
BLOCK_HASH = "0x" + "b1" * 32
STAKED = StakeInfo(stake=10**18, unstake_delay_sec=86400)
UNSTAKED = StakeInfo(stake=0, unstake_delay_sec=0)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeNode:
    """Only what HeadTracker asks: the latest header."""

    def __init__(self):
        self.block = PinnedBlock(number=100, timestamp=1_000_000, base_fee=10**8, gas_limit=30_000_000,
                                 hash=b"\x11" * 32)

    async def header(self, tag: str) -> PinnedBlock:
        return self.block


@dataclass
class Outcome:
    """What admission reads of a ValidationResult."""
    prefund: int = 10**15
    valid_after: int = 0
    valid_until: int = 0
    valid_after_block: int = 0
    valid_until_block: int = VALIDITY_BLOCK_RANGE_MASK
    sender_info: StakeInfo = UNSTAKED
    factory_info: StakeInfo = UNSTAKED
    paymaster_info: StakeInfo = UNSTAKED
    aggregator: str | None = None
    aggregator_info: StakeInfo | None = None
    trace: None = None


class FakeSimulator:
    """validate() answers from a table by sender; a sender mapped to an exception fails."""

    def __init__(self):
        self.by_sender: dict[str, Outcome | BundlerError] = {}
        self.calls: list[str] = []

    async def validate(self, op, ep, header, **_kw):
        self.calls.append(op.sender)
        answer = self.by_sender.get(op.sender, Outcome())
        if isinstance(answer, BundlerError):
            raise answer
        return answer


def config(**changes):
    values = dict(max_verification_gas=5_000_000, max_bundle_gas=10_000_000, min_priority_fee=0,
                  valid_after_max_wait=0, unsafe=True)
    values.update(changes)
    return SimpleNamespace(**values)


@dataclass
class World:
    pool: LocalPool
    store: MemoryStore
    simulator: FakeSimulator
    node: FakeNode
    clock: FakeClock
    admitted: list[str]


def world(max_ops: int = 100, max_bundle_reverts: int = 2) -> World:
    store, mempool, node, simulator, clock = MemoryStore(), Mempool(), FakeNode(), FakeSimulator(), FakeClock()
    reputation = ReputationRules(ReputationBook(ReputationParams(), clock), StakePolicy(10**18, 86400), mempool)
    fates = OpFates(mempool, store, reputation, max_bundle_reverts=max_bundle_reverts)
    capacity = CapacityGuard(mempool, fates, max_ops)
    admitted: list[str] = []
    admission = Admission(head=HeadTracker(node), simulator=simulator, mempool=mempool, store=store,  # type: ignore[arg-type]
                          config=config(), chain_id=31337, safe=SafeMode(config(), mempool),
                          reputation=reputation, capacity=capacity,
                          on_admitted=lambda e: admitted.append(e.hash))
    requeue = Requeue(admission, store, fates)
    pool = LocalPool(mempool=mempool, store=store, fates=fates, admission=admission, reputation=reputation,
                     requeue=requeue)
    return World(pool, store, simulator, node, clock, admitted)


def op(i: int, **changes):
    return make_op(i, **changes)


def deploying(i: int, **changes):
    """An op whose factory is tracked by the reputation rules (when staked)."""
    return make_op(i, factory=FACTORY, factory_data=b"\x01", **changes)


def test_local_pool_is_a_pool_and_a_pool_reader():
    w = world()
    pool: Pool = w.pool  # (mypy holds LocalPool to the protocol: pool.pool._local_pool_is_a_pool)
    reader: PoolReader = pool
    assert len(reader) == 0


async def test_add_admits_an_op_pending_in_the_store_and_the_pool():
    w = world()
    h = await w.pool.add(op(1), V07)
    assert h == "0x" + V07.user_op_hash(op(1), 31337, None).hex()
    assert w.pool.get(h).op == op(1) and w.store.get(h).status is OpStatus.PENDING
    assert w.admitted == [h]
    assert [e.hash for e in w.pool.dump(V07)] == [h] and w.pool.dump(V08) == []
    with pytest.raises(InvalidParams, match="already known and pending") as known:
        await w.pool.add(op(1), V07)
    assert known.value.code == -32602


async def test_add_refuses_with_the_rpc_codes():
    w = world()
    with pytest.raises(InvalidParams, match="maxPriorityFeePerGas is higher") as bad:
        await w.pool.add(op(1, max_priority_fee_per_gas=3 * 10**9), V07)
    assert bad.value.code == -32602
    w.simulator.by_sender[op(2).sender] = ValidationRejected("AA23 reverted")
    with pytest.raises(BundlerError, match="AA23") as failed:
        await w.pool.add(op(2), V07)
    assert failed.value.code == -32500
    assert len(w.pool) == 0 and w.admitted == []


async def test_replacement_needs_a_fee_bump_and_replaces_the_record():
    w = world()
    first = await w.pool.add(op(1), V07)
    with pytest.raises(InvalidParams, match="underpriced|replacement") as low:
        await w.pool.add(op(1, max_fee_per_gas=2 * 10**9 + 1, max_priority_fee_per_gas=10**9 + 1), V07)
    assert low.value.code == -32602
    bumped = await w.pool.add(op(1, max_fee_per_gas=3 * 10**9, max_priority_fee_per_gas=2 * 10**9), V07)
    assert bumped != first
    assert [e.hash for e in w.pool.entries()] == [bumped]
    assert w.store.get(bumped).status is OpStatus.PENDING
    assert w.store.get(first).status is OpStatus.DROPPED


async def test_a_full_pool_evicts_the_cheapest_op_for_a_better_paying_one():
    w = world(max_ops=2)
    cheap = await w.pool.add(op(1), V07)
    await w.pool.add(op(2, max_fee_per_gas=3 * 10**9, max_priority_fee_per_gas=2 * 10**9), V07)
    with pytest.raises(MempoolFull) as full:
        await w.pool.add(op(3, max_fee_per_gas=2 * 10**9, max_priority_fee_per_gas=10**9), V07)
    assert full.value.code == MempoolFull.code
    rich = await w.pool.add(op(4, max_fee_per_gas=5 * 10**9, max_priority_fee_per_gas=4 * 10**9), V07)
    assert w.pool.get(cheap) is None and w.pool.get(rich) is not None
    assert w.store.get(cheap).status is OpStatus.DROPPED and "evicted" in w.store.get(cheap).reason


async def test_selection_best_paying_first_and_submitted_ops_are_not_candidates():
    w = world()
    low = await w.pool.add(op(1), V07)
    high = await w.pool.add(op(2, max_fee_per_gas=4 * 10**9, max_priority_fee_per_gas=3 * 10**9), V07)
    base_fee = w.node.block.base_fee
    assert [e.hash for e in w.pool.bundle_candidates(V07, base_fee)] == [high, low]
    w.pool.mark_submitted([w.pool.get(high)], TX)
    assert [e.hash for e in w.pool.submitted(V07)] == [high]
    assert [e.hash for e in w.pool.bundle_candidates(V07, base_fee)] == [low]
    w.pool.pending_again(high, w.pool.get(high))
    assert w.pool.submitted(V07) == []


async def test_apply_bundle_result_mined_and_not_included():
    w = world()
    a, b = await w.pool.add(op(1), V07), await w.pool.add(op(2), V07)
    w.pool.mark_submitted(w.pool.entries(), TX)
    mined = w.pool.apply_bundle_result([a, b], BundleOutcome(TX, 101, BLOCK_HASH, included={a}))
    assert mined == [a]
    ra, rb = w.store.get(a), w.store.get(b)
    assert (ra.status, ra.tx_hash, ra.block_number, ra.block_hash) == (OpStatus.MINED, TX, 101, BLOCK_HASH)
    assert w.pool.get(a) is None
    assert rb.status is OpStatus.PENDING and rb.tx_hash is None
    assert w.pool.get(b).submitted_in is None  # a candidate again


async def test_apply_bundle_result_reverted_drops_after_max_bundle_reverts():
    w = world(max_bundle_reverts=2)
    h = await w.pool.add(op(1), V07)
    reverted = BundleOutcome(TX, 101, BLOCK_HASH, reverted=True)
    assert w.pool.apply_bundle_result([h], reverted) == []
    assert w.store.get(h).status is OpStatus.PENDING and w.pool.reverts == {h: 1}
    assert w.pool.apply_bundle_result([h], reverted) == []
    assert w.pool.get(h) is None and w.pool.reverts == {}
    record = w.store.get(h)
    assert record.status is OpStatus.DROPPED and record.error_code == -32500 and "2 bundles" in record.reason


async def test_chain_update_records_mined_and_revalidates_unmined_ops():
    w = world()
    kept, lost, invalid = [await w.pool.add(op(i), V07) for i in (1, 2, 3)]
    w.pool.mark_submitted(w.pool.entries(), TX)
    w.pool.apply_bundle_result([kept, lost, invalid], BundleOutcome(TX, 101, BLOCK_HASH, included={kept, lost, invalid}))
    assert len(w.pool) == 0
    # a reorg: `kept` is in the new chain's block too, the others left the chain; op 3 no longer validates
    w.simulator.by_sender[op(3).sender] = ValidationRejected("AA25 invalid account nonce")
    w.simulator.calls.clear()
    new_block = "0x" + "b2" * 32
    out = await w.pool.apply_chain_update(ChainUpdate(
        mined=[MinedOp(kept, TX, 102, new_block)], unmined=[lost, invalid]))
    assert out == {"pending": [lost], "dropped": [invalid]}
    assert sorted(w.simulator.calls) == sorted([op(2).sender, op(3).sender])  # validated again
    assert (w.store.get(kept).status, w.store.get(kept).block_hash) == (OpStatus.MINED, new_block)
    r = w.store.get(lost)
    assert (r.status, r.tx_hash, r.block_number) == (OpStatus.PENDING, None, None)
    assert w.pool.get(lost) is not None and w.pool.get(lost).submitted_in is None
    bad = w.store.get(invalid)
    assert bad.status is OpStatus.DROPPED and "reorged out" in bad.reason and "AA25" in bad.reason
    assert w.pool.get(invalid) is None


async def test_reputation_seen_included_and_ban_through_the_pool():
    w = world()
    w.simulator.by_sender = {deploying(i).sender: Outcome(factory_info=STAKED) for i in range(1, 4)}
    hashes = [await w.pool.add(deploying(i), V07) for i in (1, 2)]
    assert sorted(e.hash for e in w.pool.entity_users(FACTORY)) == sorted(hashes)
    row = {r.address: r for r in w.pool.dump_reputation(V07)}[FACTORY]
    assert (row.ops_seen, row.ops_included, row.status) == (2, 0, Status.OK)
    w.pool.mark_submitted(w.pool.entries(), TX)
    w.pool.apply_bundle_result(hashes[:1], BundleOutcome(TX, 101, BLOCK_HASH, included={hashes[0]}))
    assert {r.address: r for r in w.pool.dump_reputation(V07)}[FACTORY].ops_included == 1
    # a staked factory at fault in a bundle (AA1x) is banned: its other ops are named for dropping
    w.pool.pending_again(hashes[1], w.pool.get(hashes[1]))
    other = w.pool.get(hashes[1])
    third = await w.pool.add(deploying(3), V07)
    assert [e.hash for e in w.pool.blamed(w.pool.get(third), "AA1")] == [other.hash]
    assert {r.address: r for r in w.pool.dump_reputation(V07)}[FACTORY].status is Status.BANNED
    with pytest.raises(EntityThrottled, match="banned") as banned:
        await w.pool.add(deploying(4), V07)
    assert banned.value.code == -32504
    # debug: set and clear
    w.pool.set_reputation(V07, FACTORY, 0, 0)
    assert {r.address: r for r in w.pool.dump_reputation(V07)}[FACTORY].status is Status.OK
    w.pool.clear_reputation()
    assert w.pool.dump_reputation(V07) == []


async def test_reputation_decays_on_the_injected_clock():
    w = world()
    w.simulator.by_sender = {deploying(1).sender: Outcome(factory_info=STAKED)}
    await w.pool.add(deploying(1), V07)
    w.pool.set_reputation(V07, FACTORY, 240, 0)
    w.pool._reputation.book.decay()  # the first call starts the decay clock
    w.clock.now += 3600 * 5  # five hourly decays: opsSeen * 23/24 each
    w.pool._reputation.book.decay()
    seen = {r.address: r for r in w.pool.dump_reputation(V07)}[FACTORY].ops_seen
    assert 0 < seen < 240


async def test_clear_records_unsent_ops_dropped_and_keeps_submitted_records():
    w = world()
    waiting, sent = await w.pool.add(op(1), V07), await w.pool.add(op(2), V07)
    w.pool.mark_submitted([w.pool.get(sent)], TX)
    w.store.update(sent, status=OpStatus.SUBMITTED, tx_hash=TX)  # as the sender's record_bundle does
    w.pool.clear()
    assert len(w.pool) == 0
    assert w.store.get(waiting).status is OpStatus.DROPPED
    assert "clearMempool" in w.store.get(waiting).reason
    assert w.store.get(sent).status is OpStatus.SUBMITTED
    w.pool.clear_state()
    assert w.store.get(sent) is None


class ClaimingStore(MemoryStore):
    """A store shared with another instance that already claimed `theirs`."""

    def __init__(self, theirs: set[str]):
        super().__init__()
        self.theirs = theirs
        self.released: list[tuple[list[str], str]] = []

    @property
    def shared(self) -> bool:
        return True

    async def claim(self, op_hashes: list[str], owner: str) -> set[str]:
        return {h for h in op_hashes if h not in self.theirs}

    async def release(self, op_hashes: list[str], owner: str) -> None:
        self.released.append((op_hashes, owner))


async def test_claims_in_a_shared_store_mark_the_others_ops_and_release_gives_back():
    w = world()
    a, b = await w.pool.add(op(1), V07), await w.pool.add(op(2), V07)
    entries = w.pool.entries()
    # not shared: every op is this instance's, nothing to release
    assert await w.pool.claim(entries, "0xexec") == entries
    await w.pool.release(entries, "0xexec")
    shared = ClaimingStore(theirs={b})
    pool = LocalPool(mempool=w.pool._mempool, store=shared, fates=w.pool._fates, admission=w.pool._admission,
                     reputation=w.pool._reputation)
    assert [e.hash for e in await pool.claim(entries, "0xexec")] == [a]
    assert pool.get(b).submitted_in == CLAIMED_ELSEWHERE  # not a candidate here
    assert [e.hash for e in pool.bundle_candidates(V07, w.node.block.base_fee)] == [a]
    await pool.release([pool.get(a)], "0xexec")
    assert shared.released == [([a], "0xexec")]
    pool.claimable_again([b, a])  # the other instance died: its claim was released
    assert pool.get(b).submitted_in is None and pool.get(a).submitted_in is None


async def test_back_to_pool_validates_again_forgets_the_mined_and_leaves_the_dropped():
    w = world()
    kept, mined, failing, dropped = [await w.pool.add(op(i), V07) for i in (1, 2, 3, 4)]
    for h in (kept, mined, failing, dropped):
        w.pool.mark_submitted([w.pool.get(h)], TX)
    w.pool.drop(w.pool.get(dropped), "dropped meanwhile", -32500)
    w.simulator.by_sender[op(3).sender] = ValidationRejected("AA23 reverted")
    w.simulator.calls.clear()
    looked_up: list[tuple[str, str]] = []

    async def found_mined(op_hash: str, entry_point: str) -> bool:
        looked_up.append((op_hash, entry_point))
        if op_hash == mined:
            w.pool.recorded_mined(mined, TX, 101, BLOCK_HASH)  # what the builder's lookup does
            return True
        return False

    await w.pool.back_to_pool([kept, mined, failing, dropped], "bundle nonce taken", found_mined)
    assert {h for h, _ep in looked_up} == {kept, mined, failing}  # not the dropped one
    assert w.pool.get(kept).submitted_in is None and w.store.get(kept).status is OpStatus.PENDING
    assert w.pool.get(mined) is None and w.store.get(mined).status is OpStatus.MINED
    assert w.pool.get(failing) is None and w.store.get(failing).status is OpStatus.DROPPED
    assert "bundle nonce taken, no longer valid: AA23" in w.store.get(failing).reason
    assert w.store.get(dropped).reason == "dropped meanwhile"
    assert sorted(w.simulator.calls) == sorted([op(1).sender, op(3).sender])  # validated again


async def test_op_state_reads_the_recorded_status_in_and_out_of_the_mempool():
    w = world()
    assert w.pool.op_state("0x" + "00" * 32) is None
    h = await w.pool.add(op(1), V07)
    assert w.pool.op_state(h).status is OpStatus.PENDING
    w.pool.drop(w.pool.get(h), "no longer valid: AA23", -32500)
    state = w.pool.op_state(h)
    assert (state.status, state.reason, state.error_code) == (OpStatus.DROPPED, "no longer valid: AA23", -32500)
    mined = await w.pool.add(op(2), V07)
    w.pool.mark_submitted([w.pool.get(mined)], TX)
    w.pool.apply_bundle_result([mined], BundleOutcome(TX, 101, BLOCK_HASH, included={mined}))
    assert w.pool.get(mined) is None
    assert (w.pool.op_state(mined).status, w.pool.op_state(mined).tx_hash) == (OpStatus.MINED, TX)


async def test_adopt_in_flight_marks_the_ops_it_holds_and_takes_in_the_live_ones_it_does_not():
    """A dead instance's transaction taken over: ops already in this mempool are marked in it,
    pending/submitted ones known only to the store come in, mined or dropped ones stay out."""
    w = world()
    here, elsewhere, mined, dropped = [await w.pool.add(op(i), V07) for i in (1, 2, 3, 4)]
    for h in (elsewhere, mined, dropped):
        w.pool._mempool.remove(h)  # only in the store, as the other instance's ops are
    w.store.update(mined, status=OpStatus.MINED)
    w.store.update(dropped, status=OpStatus.DROPPED)
    assert w.pool.adopt_in_flight([here, elsewhere, mined, dropped, "0x" + "99" * 32], TX) == [here, elsewhere]
    assert w.pool.get(here).submitted_in == TX and w.pool.get(elsewhere).submitted_in == TX
    assert w.pool.get(elsewhere).op == op(2)
    assert w.pool.get(mined) is None and w.pool.get(dropped) is None
    assert {e.hash for e in w.pool.submitted(V07)} == {here, elsewhere}


async def test_restore_pending_and_mined_since_rebuild_the_pool_from_the_store_at_start():
    """What the app's start-up asks of the pool: the store's pending and submitted ops (but not
    those of transactions in flight) validated again into an empty mempool, and the recently
    mined ones grouped by bundle for the chain watcher."""
    w = world()
    pending, submitted, in_flight, failing = [await w.pool.add(op(i), V07) for i in (1, 2, 3, 4)]
    w.pool.mark_submitted([w.pool.get(submitted)], TX)
    old, new = [await w.pool.add(op(i), V07) for i in (5, 6)]
    w.pool.mark_submitted([w.pool.get(old), w.pool.get(new)], TX)
    w.pool.apply_bundle_result([old], BundleOutcome(TX, 90, BLOCK_HASH, included={old}))
    other_tx, other_block = "0x" + "c3" * 32, "0x" + "b3" * 32
    w.pool.apply_bundle_result([new], BundleOutcome(other_tx, 101, other_block, included={new}))
    for e in w.pool.entries():  # a restart: the records stay, the mempool is empty
        w.pool._mempool.remove(e.hash)
    w.simulator.by_sender[op(4).sender] = ValidationRejected("AA25 invalid account nonce")
    w.simulator.calls.clear()
    assert await w.pool.restore_pending(skip={in_flight}) == 3
    assert sorted(w.simulator.calls) == sorted([op(1).sender, op(2).sender, op(4).sender])
    assert {e.hash for e in w.pool.entries()} == {pending, submitted}
    assert all(w.pool.get(h).submitted_in is None for h in (pending, submitted))
    assert w.store.get(failing).status is OpStatus.DROPPED
    assert w.pool.get(in_flight) is None and w.store.get(in_flight).status is OpStatus.PENDING
    bundles = w.pool.mined_since(95)
    assert [(b.tx_hash, b.block_number, b.block_hash, b.op_hashes, b.entry_point) for b in bundles] == [
        (other_tx, 101, other_block, [new], V07.address)]
    assert {b.tx_hash for b in w.pool.mined_since(0)} == {TX, other_tx}
