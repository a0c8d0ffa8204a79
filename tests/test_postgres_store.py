"""PostgresStore: the Store interface, claims that never hand one op to two instances, atomic
reputation counters, one instance per executor key, and two bundler instances sharing one
mempool and op index on one chain without sending an op twice.

Needs a PostgreSQL server: `make test` installs Debian's postgresql package when it is missing
and these tests start a private cluster; they skip (saying why) only if that cannot be done."""
from __future__ import annotations

import asyncio
import os
import threading

import pytest

from bundler.devchain.anvil import rpc
from bundler.entrypoint import V07, V08
from bundler.store import OpStatus
from helpers.accounts import DevChain
from helpers.inproc import eventually, running_bundler, send_op
from test_store import record
from test_store import test_store_interface as store_interface_checks

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def pg():
    from helpers.pg import PostgresUnavailable, start_postgres

    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL tests skipped: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dsn(pg):
    return pg.database()


def open_store(dsn):
    from bundler.store.postgres import PostgresStore

    return PostgresStore(dsn)


async def test_postgres_store_interface(dsn):
    store = open_store(dsn)
    try:
        assert store.shared and store.durable
        await store_interface_checks(store)
    finally:
        store.close()


async def test_two_instances_see_the_same_ops_and_claim_disjoint_sets(dsn):
    a, b = open_store(dsn), open_store(dsn)
    try:
        records = [record(i) for i in range(1, 201)]
        for r in records:
            a.put(r)
        await a.flush()
        assert b.get(records[0].hash).op == records[0].op  # b reads what a wrote
        assert len(b.with_status(OpStatus.PENDING)) == 200

        hashes = [r.hash for r in records]
        got: dict[str, set[str]] = {}

        def race(name, store) -> None:  # each store on its own thread and loop, both at once
            async def claim_in_chunks():
                out = set()
                for i in range(0, len(hashes), 20):
                    out |= await store.claim(hashes[i:i + 40], owner=name)
                return out
            got[name] = asyncio.run(claim_in_chunks())

        threads = [threading.Thread(target=race, args=(n, s)) for n, s in (("0xaaaa", a), ("0xbbbb", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got["0xaaaa"].isdisjoint(got["0xbbbb"])
        assert got["0xaaaa"] | got["0xbbbb"] == set(hashes)
        assert await a.claim(hashes, owner="0xaaaa") == set()  # nothing left to take

        # a claim given back is claimable again; a write back to pending clears the claim too
        mine = sorted(got["0xaaaa"])[:3]
        await a.release(mine[:2], owner="0xaaaa")
        b.update(mine[2], status=OpStatus.PENDING)
        await b.flush()
        assert await b.claim(mine, owner="0xbbbb") == set(mine)
    finally:
        a.close()
        b.close()


async def test_reputation_counters_add_up_across_instances(dsn):
    a, b = open_store(dsn), open_store(dsn)
    try:
        for _ in range(50):
            a.add_reputation("0xAbC", ops_seen=1)
            b.add_reputation("0xabc", ops_seen=1, ops_included=1)
        await asyncio.gather(a.flush(), b.flush())
        row = a.get_reputation("0xabc")
        assert (row.ops_seen, row.ops_included) == (100, 50)
    finally:
        a.close()
        b.close()


async def test_one_instance_per_executor_key(dsn):
    from bundler.store.postgres import ExecutorInUse

    a, b = open_store(dsn), open_store(dsn)
    try:
        a.lock_executors(["0x" + "11" * 20])
        with pytest.raises(ExecutorInUse):
            b.lock_executors(["0x" + "11" * 20])
        b.lock_executors(["0x" + "22" * 20])
        a.close()  # released with the connection
        b.lock_executors(["0x" + "11" * 20])
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def chain():
    c = DevChain.start()
    try:
        yield c
    finally:
        c.stop()


def op_events(chain, op_hashes: list[str]) -> dict[str, int]:
    from bundler.chain.userop_logs import USER_OPERATION_EVENT_TOPIC

    logs = rpc(chain.url, "eth_getLogs", [{"address": [V07.address, V08.address], "fromBlock": "0x0",
                                           "toBlock": "latest", "topics": [USER_OPERATION_EVENT_TOPIC]}])
    counts = {h: 0 for h in op_hashes}
    for log in logs:
        if log["topics"][1] in counts:
            counts[log["topics"][1]] += 1
    return counts


async def test_two_bundlers_share_one_mempool_and_never_send_an_op_twice(chain, dsn):
    accts = [chain.account(V07) for _ in range(8)] + [chain.account(V08) for _ in range(8)]
    async with running_bundler(chain, store="postgres", postgres_dsn=dsn) as (a, ca), \
            running_bundler(chain, store="postgres", postgres_dsn=dsn) as (b, cb):
        # ops sent to A are bundled by B: one mempool
        first = [await send_op(ca, chain, acct) for acct in accts[:4]]
        await eventually(lambda: len(b.mempool) == 4, what="B to see A's ops")
        assert len(await cb.call("debug_bundler_dumpMempool", V07.address)) == 4
        tx_hash = await cb.call("debug_bundler_sendBundleNow")
        for h in first:
            receipt = await ca.call("eth_getUserOperationReceipt", h)  # A answers for B's bundle
            assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash
        await eventually(lambda: len(a.mempool) == 0, what="A to let go of the mined ops")

        # both instances take ops and bundle at the same time, several rounds
        rest = []
        for i, acct in enumerate(accts[4:]):
            rest.append(await send_op(ca if i % 2 else cb, chain, acct))
        await eventually(lambda: len(a.mempool) == len(b.mempool) == len(rest), what="both to see all ops")
        for _ in range(3):
            await asyncio.gather(ca.call("debug_bundler_sendBundleNow"), cb.call("debug_bundler_sendBundleNow"))
        for h in rest:
            receipt = await cb.call("eth_getUserOperationReceipt", h)
            assert receipt is not None and receipt["success"] is True, h
        counts = op_events(chain, first + rest)
        assert set(counts.values()) == {1}, counts  # every op mined exactly once
        senders = {r["receipt"]["from"].lower() for r in
                   [await ca.call("eth_getUserOperationReceipt", h) for h in rest]}
        assert senders <= {a.executors[0].address, b.executors[0].address}
        for bundler in (a, b):  # no bundle reverted, nothing dropped, nothing left
            address = bundler.executors[0].address
            assert not [r for r in bundler.store.with_status(OpStatus.DROPPED)], "an op was dropped"
            assert int(rpc(chain.url, "eth_getTransactionCount", [address, "latest"]), 16) <= 4
        await eventually(lambda: len(a.mempool) == len(b.mempool) == 0, what="both pools to empty")


async def test_an_executor_key_cannot_serve_two_instances(chain, dsn):
    key = "0x" + os.urandom(32).hex()
    async with running_bundler(chain, store="postgres", postgres_dsn=dsn, private_key=[key]):
        with pytest.raises(SystemExit, match="used by another bundler instance"):
            async with running_bundler(chain, store="postgres", postgres_dsn=dsn, private_key=[key]):
                pass


async def test_session_audit_log_is_shared_and_kept(dsn):
    """session_getActivity's log: written by one instance, read by another and after a restart."""
    from bundler.store import SessionActivity

    a = open_store(dsn)
    try:
        a.add_session_activity(SessionActivity(
            op_hash="0x" + "01" * 32, account="0x" + "aa" * 20, session_key="0x" + "bb" * 20,
            entry_point="0x" + "cc" * 20, nonce=7, mode="session", period_index=2,
            calls=[], consumed=[{"scope": 1, "policyIndex": 0, "constraintIndex": 1, "amount": 10**30}],
        ))
        assert [x.nonce for x in a.session_activity("0x" + "AA" * 20, "0x" + "BB" * 20)] == [7]
        await a.flush()
    finally:
        a.close()
    b = open_store(dsn)
    try:
        log = b.session_activity("0x" + "aa" * 20, "0x" + "bb" * 20)
        assert len(log) == 1 and log[0].consumed[0]["amount"] == 10**30 and log[0].period_index == 2
    finally:
        b.close()
