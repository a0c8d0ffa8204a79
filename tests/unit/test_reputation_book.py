"""The reputation rules without a node: ERC-7562's counters, decay on an injected clock, the
status thresholds, blame, the bundle-time gate and penalties (GREP-010/020/040, EREP-015/020/030,
SREP-050), persistence through a MemoryStore."""
from __future__ import annotations

import pytest

from bundler.entrypoint import V07, V08
from bundler.errors import EntityThrottled, StakeTooLow
from bundler.pool.mempool import Mempool, PoolEntry
from bundler.pool.reputation import (
    FACTORY, PAYMASTER, SENDER, EntityRef, OpEntities, ReputationBook, ReputationParams, ReputationRules, Status,
    Verdict, blame, failure_code,
)
from bundler.pool.staking import StakePolicy
from bundler.store import MemoryStore
from helpers.stores import make_op

PAYMASTER_ADDR = "0x" + "9a" * 20
FACTORY_ADDR = "0x" + "fa" * 20


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(i: int, ep=V07, *, paymaster: str | None = PAYMASTER_ADDR, staked: dict[str, bool] | None = None,
          block: int = 0, **changes) -> PoolEntry:
    op = make_op(i, paymaster=paymaster, paymaster_verification_gas_limit=50_000 if paymaster else 0,
                 **changes)
    staked = staked or {}
    refs = [EntityRef(SENDER, op.sender, staked.get(SENDER, False))]
    if op.deploys_account:
        refs.append(EntityRef(FACTORY, op.factory, staked.get(FACTORY, False)))
    if paymaster:
        refs.append(EntityRef(PAYMASTER, paymaster, staked.get(PAYMASTER, False)))
    return PoolEntry(op=op, entry_point=ep, hash="0x" + f"{i:064x}", entities=OpEntities(tuple(refs), block))


def rules(clock=None, mempool=None, **params) -> ReputationRules:
    book = ReputationBook(ReputationParams(**params), clock or FakeClock())
    return ReputationRules(book, StakePolicy(min_stake=10**18, min_unstake_delay=86400),
                           mempool if mempool is not None else Mempool())


def test_status_thresholds_follow_the_inclusion_rate():
    book = ReputationBook(ReputationParams(), FakeClock())
    # maxSeen = opsSeen // 10; throttled when it exceeds opsIncluded + 10, banned above opsIncluded + 50
    book.set(V07, PAYMASTER_ADDR, ops_seen=109, ops_included=0)
    assert book.status(V07, PAYMASTER_ADDR) is Status.OK
    book.set(V07, PAYMASTER_ADDR, ops_seen=110, ops_included=0)
    assert book.status(V07, PAYMASTER_ADDR) is Status.THROTTLED
    book.set(V07, PAYMASTER_ADDR, ops_seen=509, ops_included=0)
    assert book.status(V07, PAYMASTER_ADDR) is Status.THROTTLED
    book.set(V07, PAYMASTER_ADDR, ops_seen=510, ops_included=0)
    assert book.status(V07, PAYMASTER_ADDR) is Status.BANNED
    book.set(V07, PAYMASTER_ADDR, ops_seen=510, ops_included=1)
    assert book.status(V07, PAYMASTER_ADDR) is Status.THROTTLED
    # each EntryPoint keeps its own book
    assert book.status(V08, PAYMASTER_ADDR) is Status.OK and book.get(V08, PAYMASTER_ADDR).ops_seen == 0


def test_decay_is_23_of_24_per_interval_on_the_injected_clock():
    clock = FakeClock()
    book = ReputationBook(ReputationParams(decay_interval_s=3600), clock)
    book.set(V07, PAYMASTER_ADDR, ops_seen=2400, ops_included=240)
    clock.now += 3599
    assert book.get(V07, PAYMASTER_ADDR).ops_seen == 2400  # not a whole interval yet
    clock.now += 1
    e = book.get(V07, PAYMASTER_ADDR)
    assert (e.ops_seen, e.ops_included) == (2300, 230)
    clock.now += 2 * 3600  # two periods at once
    e = book.get(V07, PAYMASTER_ADDR)
    assert (e.ops_seen, e.ops_included) == (2300 * 23 // 24 * 23 // 24, 230 * 23 // 24 * 23 // 24)
    # entries that reach zero are forgotten
    book.set(V07, FACTORY_ADDR, ops_seen=1, ops_included=0)
    clock.now += 3600
    assert FACTORY_ADDR not in [a for a, _e, _s in book.dump(V07)]


def test_counters_are_written_through_and_reloaded_from_the_store():
    store = MemoryStore()
    book = ReputationBook(ReputationParams(), FakeClock())
    book.attach_store(store)
    book.seen(V07, PAYMASTER_ADDR)
    book.seen(V07, PAYMASTER_ADDR)
    book.included(V07, PAYMASTER_ADDR)
    book.penalize(V08, FACTORY_ADDR)
    again = ReputationBook(ReputationParams(), FakeClock())
    again.attach_store(store)
    assert (again.get(V07, PAYMASTER_ADDR).ops_seen, again.get(V07, PAYMASTER_ADDR).ops_included) == (2, 1)
    assert again.status(V08, FACTORY_ADDR) is Status.BANNED
    again.clear()
    assert store.reputation_rows() == []


@pytest.mark.parametrize("code, staked, at_fault", [
    ("AA13", {}, FACTORY),                     # AA1x: the factory
    ("AA23", {}, SENDER),                      # AA2x: the account...
    ("AA23", {FACTORY: True}, FACTORY),        # ...or its staked factory when it deploys it (EREP-020)
    ("AA33", {}, PAYMASTER),                   # AA3x: the paymaster...
    ("AA33", {SENDER: True}, SENDER),          # ...or a staked sender (EREP-030)
    ("AA25", {}, None),                        # races blame nobody
    ("AA10", {}, None),
    (None, {}, None),
])
def test_blame(code, staked, at_fault):
    e = entry(1, factory=FACTORY_ADDR, factory_data=b"\x01", staked=staked)
    ref = blame(e.entities, code)
    assert (ref.role if ref else None) == at_fault


def test_failure_code_reads_the_aa_code_or_the_phase_of_a_rule():
    assert failure_code("AA24 signature error") == "AA24"
    assert failure_code("rule OP-011 broken", {"rule": "OP-011", "entity": "paymaster"}) == "AA3"
    assert failure_code("rule OP-011 broken", {"rule": "OP-011", "entity": "factory"}) == "AA1"
    assert failure_code("something else") is None


def test_admission_refuses_banned_and_over_throttled_entities():
    mempool = Mempool()
    r = rules(mempool=mempool)
    op = entry(1).op
    r.check_before_validation(op, V07)  # unknown paymaster: fine
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=1000, ops_included=0)
    with pytest.raises(EntityThrottled, match="banned") as refused:
        r.check_before_validation(op, V07)
    assert refused.value.code == -32504
    # throttled: at most THROTTLED_ENTITY_MEMPOOL_COUNT of its ops pending
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=200, ops_included=0)
    for i in range(4):
        mempool.add(entry(10 + i))
    with pytest.raises(EntityThrottled, match="throttled"):
        r.check_before_validation(op, V07)
    # replacing one of its own pending ops does not count that op twice
    r.check_before_validation(op, V07, replacing=mempool.get(entry(10).hash))


def test_unstaked_entity_allowance_grows_with_its_inclusion_record():
    mempool = Mempool()
    r = rules(mempool=mempool, same_unstaked_entity_mempool_count=2)
    assert r.ops_allowed_unstaked(V07, PAYMASTER_ADDR) == 2
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=10, ops_included=10)
    assert r.ops_allowed_unstaked(V07, PAYMASTER_ADDR) == 2 + 10 * 10 // 10
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=0, ops_included=0)
    mempool.add(entry(1))
    mempool.add(entry(2))
    with pytest.raises(StakeTooLow) as refused:
        r._check_unstaked_allowance(V07, EntityRef(PAYMASTER, PAYMASTER_ADDR, False), None)
    assert refused.value.code == -32505 and refused.value.data["entity"] == "paymaster"


def test_seen_replaced_and_included_counts():
    r = rules()
    first, bumped = entry(1), entry(2)
    r.admitted(first)
    r.admitted(bumped)
    r.replaced(first)  # one op seen per replacement chain
    assert r.book.get(V07, PAYMASTER_ADDR).ops_seen == 1
    r.included(bumped)
    assert r.book.get(V07, PAYMASTER_ADDR).ops_included == 1
    # an unstaked sender is not tracked; a staked one is
    assert r.book.get(V07, bumped.op.sender).ops_seen == 0
    staked = entry(3, staked={SENDER: True})
    r.admitted(staked)
    assert r.book.get(V07, staked.op.sender).ops_seen == 1


def test_bundle_failure_penalizes_the_entity_at_fault_and_names_its_other_ops():
    mempool = Mempool()
    r = rules(mempool=mempool)
    failing, other, in_flight, unrelated = entry(1), entry(2), entry(3), entry(4, paymaster=None)
    for e in (failing, other, in_flight, unrelated):
        mempool.add(e)
        r.admitted(e)
    in_flight.submitted_in = "0x" + "77" * 32
    # GREP-040: a paymaster failing while the bundle is built is banned; its other pending ops
    # not in flight are returned for the caller to drop (GREP-010)
    to_drop = r.bundle_failure(failing, "AA33")
    assert r.book.status(V07, PAYMASTER_ADDR) is Status.BANNED
    assert to_drop == [other]


def test_second_validation_bans_only_staked_entities():
    r = rules()
    unstaked = entry(1)
    r.admitted(unstaked)
    assert r.bundle_failure(unstaked, "AA33", second_validation=True) == []
    assert r.book.status(V07, PAYMASTER_ADDR) is Status.OK  # EREP-030: the chain may have moved under it
    staked = entry(2, staked={PAYMASTER: True})
    r.bundle_failure(staked, "AA33", second_validation=True)
    assert r.book.status(V07, PAYMASTER_ADDR) is Status.BANNED  # SREP-050


def test_paymaster_gets_its_op_seen_back_when_another_entity_is_at_fault():
    r = rules()
    e = entry(1, factory=FACTORY_ADDR, factory_data=b"\x01")
    r.admitted(e)
    assert r.book.get(V07, PAYMASTER_ADDR).ops_seen == 1
    r.bundle_failure(e, "AA13")  # the factory's fault (EREP-015)
    assert r.book.get(V07, PAYMASTER_ADDR).ops_seen == 0
    assert r.book.status(V07, FACTORY_ADDR) is Status.BANNED


def test_bundle_gate_drops_banned_caps_throttled_and_expires_old_throttled_ops():
    r = rules(throttled_entity_bundle_count=2, throttled_entity_live_blocks=10)
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=200, ops_included=0)  # throttled
    gate = r.bundle_gate(V07, block_number=105)
    verdicts = [gate.check(entry(i, block=100))[0] for i in range(3)]
    assert verdicts == [Verdict.TAKE, Verdict.TAKE, Verdict.SKIP]  # two per bundle, the third waits
    verdict, reason = r.bundle_gate(V07, block_number=111).check(entry(9, block=100))
    assert verdict is Verdict.DROP and "10 blocks at most (this one: 11)" in reason
    r.book.set(V07, PAYMASTER_ADDR, ops_seen=1000, ops_included=0)  # banned
    verdict, reason = r.bundle_gate(V07, block_number=105).check(entry(5, block=100))
    assert verdict is Verdict.DROP and "banned" in reason
    assert r.bundle_gate(V07, 105).check(entry(6, paymaster=None))[0] is Verdict.TAKE
