"""Sponsorship spend counters in every store: reserve within budgets (the refusal names the
budget and its spend), settle at the actual cost, release, survive a restart (SQLite), and are
shared by two instances on one PostgreSQL database, where racing reservations never overspend."""
from __future__ import annotations

import asyncio

import pytest

from bundler.store import Budget, MemoryStore, Sponsorship, SponsorshipState
from bundler.store.sqlite import SqliteStore

POLICY, PERIOD = "app", 1_700_000_000
SENDER_A, SENDER_B = "0x" + "aa" * 20, "0x" + "bb" * 20
GLOBAL = Budget(POLICY, PERIOD, 1000)


def sponsorship(i: int, amount: int, sender: str = SENDER_A, period: int = PERIOD) -> Sponsorship:
    return Sponsorship(op_hash="0x" + f"{i:064x}", policy_id=POLICY, sender=sender, entry_point="0x" + "e7" * 20,
                       period_start=period, amount=amount, valid_until=PERIOD + 600)


def account(sender: str) -> Budget:
    return Budget(POLICY, PERIOD, 600, sender)


async def check_counters(store) -> None:
    budgets = lambda s: [GLOBAL, account(s)]  # noqa: E731
    assert store.reserve_sponsorship(sponsorship(1, 400), budgets(SENDER_A)) is None
    assert store.reserve_sponsorship(sponsorship(2, 150), budgets(SENDER_A)) is None
    # sender A has 50 left of 600; the refusal says which budget and what was spent
    refused = store.reserve_sponsorship(sponsorship(3, 100), budgets(SENDER_A))
    assert refused == (account(SENDER_A), 550)
    assert store.get_sponsorship("0x" + f"{3:064x}") is None
    assert store.reserve_sponsorship(sponsorship(4, 400, SENDER_B), budgets(SENDER_B)) is None
    refused = store.reserve_sponsorship(sponsorship(5, 100, SENDER_B), budgets(SENDER_B))
    assert refused == (GLOBAL, 950)
    # re-reserving the same op replaces its amount instead of adding it
    assert store.reserve_sponsorship(sponsorship(2, 100), budgets(SENDER_A)) is None
    assert store.sponsorship_spent(account(SENDER_A)) == 500 and store.sponsorship_spent(GLOBAL) == 900
    # another period counts apart
    assert store.sponsorship_spent(Budget(POLICY, PERIOD + 86400, 1000)) == 0

    settled = store.finish_sponsorship("0x" + f"{1:064x}", SponsorshipState.SETTLED, 123)
    assert settled.state == SponsorshipState.SETTLED and settled.amount == 123
    assert store.finish_sponsorship("0x" + f"{1:064x}", SponsorshipState.RELEASED) is None  # only once
    store.finish_sponsorship("0x" + f"{4:064x}", SponsorshipState.RELEASED)
    assert store.sponsorship_spent(GLOBAL) == 123 + 100
    assert store.sponsorship_spent(account(SENDER_B)) == 0
    assert {s.op_hash for s in store.open_sponsorships()} == {"0x" + f"{2:064x}"}
    await store.flush()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_counters(kind, tmp_path):
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "data")
    try:
        await check_counters(store)
    finally:
        store.close()


async def test_sqlite_counters_survive_a_restart(tmp_path):
    store = SqliteStore(tmp_path / "data")
    await check_counters(store)
    store.close()
    store = SqliteStore(tmp_path / "data")
    try:
        assert store.sponsorship_spent(GLOBAL) == 223
        assert store.sponsorship_spent(account(SENDER_A)) == 223
        assert [s.amount for s in store.open_sponsorships()] == [100]
    finally:
        store.close()


async def test_postgres_counters_are_shared_and_never_overspent(pg):  # pg: tests/conftest.py
    from bundler.store.postgres import PostgresStore

    dsn = pg.database()
    one, two = PostgresStore(dsn), PostgresStore(dsn)
    try:
        await check_counters(one)
        assert two.sponsorship_spent(GLOBAL) == 223  # the other instance counts the same spend
        assert two.finish_sponsorship("0x" + f"{2:064x}", SponsorshipState.RELEASED) is not None
        assert one.finish_sponsorship("0x" + f"{2:064x}", SponsorshipState.SETTLED, 5) is None  # settled once
        # both instances race for a budget of 1000 (123 spent): 20 reservations of 100 each
        fresh = Budget(POLICY, PERIOD, 1000)

        def take(store, first: int) -> list:
            return [store.reserve_sponsorship(sponsorship(100 + i, 100, sender="0x" + f"{i:040x}"), [fresh])
                    for i in range(first, first + 10)]
        results = sum(await asyncio.gather(asyncio.to_thread(take, one, 0), asyncio.to_thread(take, two, 10)), [])
        assert sum(r is None for r in results) == 8  # (1000 - 123) // 100
        assert one.sponsorship_spent(fresh) == two.sponsorship_spent(fresh) == 923
    finally:
        one.close()
        two.close()
