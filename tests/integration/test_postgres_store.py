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
from helpers.stores import check_store_interface as store_interface_checks
from helpers.stores import record

pytestmark = pytest.mark.asyncio


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

        # a claim given back is claimable again, and so is one its owner writes back to pending;
        # another instance's write never takes a claim away (it is skipped, the row unchanged)
        mine = sorted(got["0xaaaa"])[:4]
        b.update(mine[3], status=OpStatus.PENDING)
        b.update(mine[2], status=OpStatus.DROPPED, reason="b thinks so")
        await b.flush()
        assert a.get(mine[2]).status == a.get(mine[3]).status == OpStatus.SUBMITTED
        assert await b.claim(mine, owner="0xbbbb") == set()
        await a.release(mine[:2], owner="0xaaaa")
        a.update(mine[2], status=OpStatus.PENDING)
        await a.flush()
        assert await b.claim(mine, owner="0xbbbb") == set(mine[:3])
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


def slot_op(i: int, slot: int, fee: int = 2 * 10**9, tip: int = 10**9):
    """Record i for the sender/nonce slot `slot` (several records may share one slot)."""
    from helpers.stores import make_op

    return record(i, op=make_op(i, sender="0x" + f"{slot:040x}", nonce=slot, max_fee_per_gas=fee,
                                max_priority_fee_per_gas=tip))


async def test_one_live_op_per_sender_and_nonce_across_instances(dsn):
    """The slot is decided in the database: known ops, underpriced replacements and replacements
    of an op in a bundle are refused whichever instance holds it; a bumped one replaces it."""
    a, b, c = open_store(dsn), open_store(dsn), open_store(dsn)
    try:
        x1, x2, x3, x4 = slot_op(1, 1), slot_op(2, 1), slot_op(3, 1, 22 * 10**8, 11 * 10**8), slot_op(4, 1, 10**10, 10**10)
        assert (await a.admit(x1, None, 10)).admitted
        same_fees = await b.admit(x2, None, 10)
        assert (same_fees.admitted, same_fees.refusal, same_fees.holder) == (False, "underpriced", x1.hash)
        assert same_fees.holder_fees == (2 * 10**9, 10**9)
        known = await b.admit(slot_op(1, 1), None, 10)
        assert (known.admitted, known.refusal, known.holder) == (False, "known", "pending")
        bumped = await b.admit(x3, None, 10)  # B knew nothing of x1: the database replaces it anyway
        assert bumped.admitted and bumped.replaced == x1.hash
        assert a.get(x1.hash).status == OpStatus.DROPPED and x3.hash in a.get(x1.hash).reason
        assert await a.claim([x3.hash], owner="0xaaaa") == {x3.hash}
        in_bundle = await c.admit(x4, None, 10)
        assert (in_bundle.admitted, in_bundle.refusal, in_bundle.holder) == (False, "in_bundle", x3.hash)

        # two instances racing with different ops for the same 40 slots: one wins each slot
        wins: dict[str, list[str]] = {}

        def race(name, store, offset) -> None:
            async def admit_all():
                return [r.hash for r in [slot_op(1000 * offset + s, s) for s in range(100, 140)]
                        if (await store.admit(r, None, 10)).admitted]
            wins[name] = asyncio.run(admit_all())

        threads = [threading.Thread(target=race, args=(n, s, o)) for n, s, o in (("a", a, 1), ("c", c, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins["a"]) + len(wins["c"]) == 40
        live = a._read.execute("SELECT count(*), count(DISTINCT sender) FROM bundler_ops WHERE status IN "
                               "('pending', 'submitted') AND nonce::numeric BETWEEN 100 AND 139").fetchone()
        assert live == (40, 40)
    finally:
        for s in (a, b, c):
            s.close()


async def test_a_mined_op_is_not_admitted_again_by_an_instance_that_simulated_it_earlier(dsn):
    """Instance B validated the op before A's bundle with it landed: B must not put it back
    to pending (its nonce is used), nor acknowledge it a second time."""
    a, b = open_store(dsn), open_store(dsn)
    try:
        x = slot_op(7, 7)
        assert (await a.admit(x, None, 10)).admitted
        a.update(x.hash, status=OpStatus.MINED, block_number=12, tx_hash="0x" + "66" * 32)
        await a.flush()
        again = await b.admit(slot_op(7, 7), None, 10)
        assert (again.admitted, again.refusal, again.holder) == (False, "known", "mined")
        assert b.get(x.hash).status == OpStatus.MINED
    finally:
        for s in (a, b):
            s.close()


async def test_claims_keep_a_sender_in_one_bundle_and_its_nonces_in_order(dsn):
    from helpers.stores import make_op

    a, b = open_store(dsn), open_store(dsn)
    try:
        sender = "0x" + "5e" * 20
        ops = [record(50 + n, op=make_op(50 + n, sender=sender, nonce=n)) for n in range(3)]
        for r in ops:
            assert (await a.admit(r, None, 10)).admitted
        # nonce 1 without nonce 0 would fail on chain (AA25): not claimable alone
        assert await b.claim([ops[1].hash, ops[2].hash], owner="0xbbbb") == set()
        assert await a.claim([ops[0].hash], owner="0xaaaa") == {ops[0].hash}
        # the sender has an op in A's bundle: B waits until it is settled
        assert await b.claim([ops[1].hash], owner="0xbbbb") == set()
        a.update(ops[0].hash, status=OpStatus.MINED, tx_hash="0x01", block_number=1, block_hash="0x02")
        await a.flush()
        assert await b.claim([ops[1].hash, ops[2].hash], owner="0xbbbb") == {ops[1].hash, ops[2].hash}
    finally:
        a.close()
        b.close()


def inflight_of(executor: str, nonce: int, hashes: list[str], tx_hash: str = "0x" + "77" * 32):
    from bundler.store import InflightTx, TxAttempt

    return InflightTx(executor, nonce, "0x0000000071727de22e5e9d8baf0edac6f37da032", hashes,
                      [TxAttempt(tx_hash, "0x02", 10, 1)])


async def test_bundle_record_is_one_transaction_and_needs_the_claims(dsn):
    from bundler.store import ClaimLost

    a, b = open_store(dsn), open_store(dsn)
    try:
        rs = [slot_op(200 + i, 200 + i) for i in range(4)]
        for r in rs:
            assert (await a.admit(r, None, 10)).admitted
        assert await a.claim([r.hash for r in rs[:3]], owner="0xaaaa") == {r.hash for r in rs[:3]}
        # one op is not ours: nothing at all is recorded
        with pytest.raises(ClaimLost):
            await a.record_bundle(inflight_of("0xaaaa", 0, [r.hash for r in rs]))
        assert b.inflight() == [] and {b.get(r.hash).tx_hash for r in rs} == {None}
        await a.record_bundle(inflight_of("0xaaaa", 0, [r.hash for r in rs[:3]]))
        [t] = b.inflight()
        assert t.op_hashes == [r.hash for r in rs[:3]]
        assert [b.get(r.hash).tx_hash for r in rs[:3]] == ["0x" + "77" * 32] * 3
        assert b.get(rs[3].hash).status == OpStatus.PENDING
    finally:
        a.close()
        b.close()


async def test_a_dead_instances_work_is_taken_over(dsn):
    """A killed instance (its session gone) and a stalled one (its lease run out): survivors put
    its unsent claims back to pending and adopt its in-flight rows, exactly once between them;
    the stalled one can then record, claim and renew nothing."""
    from bundler.store import ClaimLost, LeaseLost
    from bundler.store.postgres import PostgresStore

    killed, stalled = open_store(dsn), PostgresStore(dsn, lease_s=1.0)
    b, c = open_store(dsn), open_store(dsn)
    try:
        rs = [slot_op(300 + i, 300 + i) for i in range(8)]
        for r in rs:
            assert (await killed.admit(r, None, 10)).admitted
        stalled.lock_executors(["0x5ta1"])  # its lease (1 s) runs from here
        for owner, store, part in (("0xdead", killed, rs[:4]), ("0x5ta1", stalled, rs[4:])):
            assert await store.claim([r.hash for r in part], owner=owner) == {r.hash for r in part}
            await store.record_bundle(inflight_of(owner, 0, [part[0].hash, part[1].hash], "0x" + owner[2:] * 16))
        killed._read.close()  # like kill -9: the session ends, nothing is cleaned up
        released, adopted = [], []

        def scan():
            for store in (b, c):
                got = store.take_over()
                released.extend(got[0])
                adopted.extend((store, t) for t in got[1])
            return len(adopted) == 2  # the stalled one's lease runs out about a second later
        from helpers.procs import wait_for
        wait_for(scan, timeout=15, what="both dead instances' work to be taken over")
        assert sorted(released) == sorted(r.hash for r in (rs[2], rs[3], rs[6], rs[7]))
        assert {t.executor for _s, t in adopted} == {"0xdead", "0x5ta1"}
        for store, t in adopted:  # the adopter now owns the claims of the ops it follows
            for h in t.op_hashes:
                row = b._read.execute("SELECT status, claim_owner, tx_hash FROM bundler_ops WHERE hash = %s",
                                      (h,)).fetchone()
                assert row[0] == "submitted" and row[1] == store.instance_id and row[2] == t.latest.tx_hash
        assert b.take_over() == ([], []) and c.take_over() == ([], [])
        assert await b.claim([r.hash for r in rs], owner="0xbbbb") == {rs[2].hash, rs[3].hash, rs[6].hash, rs[7].hash}
        with pytest.raises(LeaseLost):
            stalled.renew_lease()
        with pytest.raises(LeaseLost):
            await stalled.claim([rs[0].hash], owner="0x5ta1")
        with pytest.raises(ClaimLost):
            await stalled.record_bundle(inflight_of("0x5ta1", 1, [rs[6].hash]))
    finally:
        for s in (stalled, b, c):
            s.close()
        killed._stop_writer()
