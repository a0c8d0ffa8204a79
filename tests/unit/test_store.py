"""The Store interface: MemoryStore and SqliteStore behave alike; SqliteStore keeps what was
flushed across a reopen (and across a SIGKILL of the writing process)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from bundler.store import InflightTx, MemoryStore, OpStatus, ReputationRow, TxAttempt
from bundler.store.sqlite import DataDirInUse, SqliteStore, WrongChain
from bundler.userop.model import Authorization
from helpers.stores import check_store_interface, make_op, record

pytestmark = pytest.mark.asyncio
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, where helpers/ lives


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "data")
    yield s
    s.close()


async def test_store_interface(store):
    await check_store_interface(store)


async def test_an_op_mined_while_it_was_simulated_is_not_admitted_again(store):
    r = record(1)
    assert (await store.admit(r, None, 10)).admitted
    store.update(r.hash, status=OpStatus.MINED, block_number=12)
    verdict = await store.admit(record(1), None, 10)
    assert (verdict.admitted, verdict.refusal, verdict.holder) == (False, "known", "mined")
    assert store.get(r.hash).status == OpStatus.MINED
    dropped = record(2)
    assert (await store.admit(dropped, None, 10)).admitted
    store.update(dropped.hash, status=OpStatus.DROPPED, reason="expired")
    assert (await store.admit(record(2), None, 10)).admitted  # a dropped op may come back


async def test_sqlite_reopen_keeps_everything(tmp_path):
    auth = Authorization(chain_id=1337, address="0x" + "12" * 20, nonce=3, y_parity=1, r=5, s=6)
    s = SqliteStore(tmp_path)
    s.bind_chain(1337, "0x" + "01" * 32)
    pending = record(1, op=make_op(1, factory="0x7702" + "00" * 18, eip7702_auth=auth), eip7702_delegate="0x" + "12" * 20)
    s.put(pending)
    s.put(record(2, status=OpStatus.SUBMITTED, tx_hash="0x99"))
    s.put(record(3, status=OpStatus.DROPPED, reason="expired", error_code=-32503))
    s.put_reputation(ReputationRow("0xabc", ops_seen=9, ops_included=4))
    s.put_inflight(InflightTx("0xexec", 4, pending.entry_point, [record(2).hash],
                              [TxAttempt("0x01", "0x02", 10**30, 1), TxAttempt("0x03", "0x04", 11, 2)]))
    await s.flush()
    s.close()

    s = SqliteStore(tmp_path)
    try:
        s.bind_chain(1337, "0x" + "01" * 32)
        with pytest.raises(WrongChain):
            s.bind_chain(1, "0x" + "01" * 32)
        got = s.get(pending.hash)
        assert got.op == pending.op and got.op.eip7702_auth == auth and got.eip7702_delegate == "0x" + "12" * 20
        assert got.valid_until == 2**47 and got.prefund == 3 * 10**30
        assert {r.hash for r in s.with_status(OpStatus.PENDING, OpStatus.SUBMITTED)} == {record(1).hash, record(2).hash}
        dropped = s.get(record(3).hash)
        assert dropped.reason == "expired" and dropped.error_code == -32503
        assert [r.hash for r in s.with_status(OpStatus.DROPPED)] == [record(3).hash]
        assert s.get_reputation("0xabc").ops_included == 4
        [t] = s.inflight()
        assert t.key == ("0xexec", 4) and t.tx_hashes == ["0x01", "0x03"] and t.attempts[0].max_fee == 10**30
    finally:
        s.close()


async def test_sqlite_status_updates_keep_the_op_without_caching_its_json(tmp_path):
    """A status change writes the other columns only (no per-op JSON kept in memory for it);
    the op survives in the file, and a row missing from the file is written whole again."""
    import sqlite3

    s = SqliteStore(tmp_path)
    first, second = record(1), record(2)
    s.put(first)
    s.put(second)
    s.update(second.hash, status=OpStatus.SUBMITTED, tx_hash="0x77")  # before the commit: coalesced
    await s.flush()
    s.update(first.hash, status=OpStatus.SUBMITTED, tx_hash="0x88")
    await s.flush()
    assert not hasattr(s, "_op_json")
    outside = sqlite3.connect(s.path)
    outside.execute("DELETE FROM ops WHERE hash = ?", (second.hash,))  # as the pruning would
    outside.commit()
    outside.close()
    s.update(second.hash, status=OpStatus.MINED, block_number=9)
    await s.flush()
    s.close()

    s = SqliteStore(tmp_path)
    try:
        got = s.get(first.hash)
        assert got.op == first.op and got.status == OpStatus.SUBMITTED and got.tx_hash == "0x88"
        got = s.get(second.hash)
        assert got.op == second.op and got.status == OpStatus.MINED and got.block_number == 9
        assert got.tx_hash == "0x77"
    finally:
        s.close()


async def test_sqlite_data_dir_is_locked(tmp_path):
    s = SqliteStore(tmp_path)
    try:
        with pytest.raises(DataDirInUse, match=str(os.getpid())):
            SqliteStore(tmp_path)
    finally:
        s.close()
    SqliteStore(tmp_path).close()  # free again after close


async def test_finished_records_are_evicted_from_memory_but_stay_readable(tmp_path):
    s = SqliteStore(tmp_path, max_finished_cached=10)
    try:
        for i in range(1, 51):
            s.put(record(i, status=OpStatus.MINED, tx_hash="0x01", block_number=i, block_hash="0x02"))
            if i % 7 == 0:
                await s.flush()
        await s.flush()
        s.put(record(99))  # any write triggers eviction of committed finished records
        assert len(s._records) < 50
        assert all(s.get(record(i).hash).block_number == i for i in range(1, 51))
        assert len(s.mined_since(41)) == 10
    finally:
        s.close()


async def test_a_new_hash_needs_no_query_and_finished_ops_are_still_found(tmp_path):
    """SqliteStore answers a lookup of a hash it never wrote without a query (every admission
    asks); an op written, finished and evicted from memory is still found in the file, in this
    process and after a restart."""
    s = SqliteStore(tmp_path, max_finished_cached=2)
    try:
        target = record(1)
        queries = []
        s._read.set_trace_callback(queries.append)
        assert s.get(target.hash) is None and s.get(target.hash) is None
        assert not [q for q in queries if "FROM ops" in q]
        s._read.set_trace_callback(None)
        assert (await s.admit(target, None, 10)).admitted
        await s.flush()
        s.update(target.hash, status=OpStatus.MINED, tx_hash="0x01", block_number=1, block_hash="0x02")
        for i in range(2, 8):  # push the mined record out of memory
            s.put(record(i, status=OpStatus.MINED, tx_hash="0x01", block_number=i, block_hash="0x02"))
        await s.flush()
        s.put(record(99, status=OpStatus.MINED, tx_hash="0x01", block_number=9, block_hash="0x02"))
        assert target.hash not in s._records
        again = s.get(target.hash)
        assert again is not None and again.status == OpStatus.MINED
        assert not (await s.admit(record(1), None, 10)).admitted
    finally:
        s.close()
    s = SqliteStore(tmp_path, max_finished_cached=2)  # the finished op is only in the file now
    try:
        assert target.hash not in s._records
        again = s.get(target.hash)
        assert again is not None and again.status == OpStatus.MINED
    finally:
        s.close()


async def test_acknowledged_writes_survive_sigkill(tmp_path):
    """A child process flushes, prints 'acked', and is killed at once: the reopened store has
    every record acknowledged before the kill."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {TESTS!r})
        from helpers.stores import record
        from bundler.store.sqlite import SqliteStore

        async def main():
            s = SqliteStore({str(tmp_path)!r})
            for i in range(1, 2001):
                s.put(record(i))
                if i % 100 == 0:
                    await s.flush()
                    print("acked", i, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked = 0
    for line in proc.stdout:
        acked = int(line.split()[1])
        if acked >= 1000:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    s = SqliteStore(tmp_path)
    try:
        assert all(s.get(record(i).hash) is not None for i in range(1, acked + 1))
    finally:
        s.close()


async def test_sqlite_keeps_the_session_audit_log(tmp_path):
    """session_getActivity is an audit log: it survives a restart (amounts above 64 bits too)."""
    from bundler.store import SessionActivity

    big = 10**30
    s = SqliteStore(tmp_path)
    for i in range(3):
        s.add_session_activity(SessionActivity(
            op_hash=f"0x{i:064x}", account="0x" + "aa" * 20, session_key="0x" + "bb" * 20,
            entry_point="0x" + "cc" * 20, nonce=i, mode="session", period_index=0,
            calls=[{"target": "0x" + "dd" * 20, "value": big, "data": "0x"}],
            consumed=[{"scope": 1, "policyIndex": 0, "constraintIndex": 1, "amount": big + i}],
            received_at=1000.0 + i,
        ))
    # readable before the writer committed, and after
    assert [a.nonce for a in s.session_activity("0x" + "AA" * 20, "0x" + "BB" * 20)] == [0, 1, 2]
    await s.flush()
    s.close()
    s = SqliteStore(tmp_path)
    log = s.session_activity("0x" + "aa" * 20, "0x" + "bb" * 20)
    assert [a.op_hash for a in log] == [f"0x{i:064x}" for i in range(3)]
    assert log[2].consumed[0]["amount"] == big + 2 and log[0].calls[0]["value"] == big
    assert s.session_activity("0x" + "aa" * 20, "0x" + "ee" * 20) == []
    s.clear()
    await s.flush()
    s.close()
    s = SqliteStore(tmp_path)
    assert s.session_activity("0x" + "aa" * 20, "0x" + "bb" * 20) == []
    s.close()


class _CommitLog:
    """Counts the op rows of each commit of a SqliteStore (the writer thread calls self._commit)."""

    def __init__(self, store: SqliteStore):
        self.ops_per_commit: list[int] = []
        self.done = threading.Event()
        self._real = store._commit
        store._commit = self  # type: ignore[method-assign]

    def __call__(self, conn, flags, tables):
        self.ops_per_commit.append(len(tables.get("ops", {})))
        self._real(conn, flags, tables)
        self.done.set()


async def test_admissions_of_one_loop_iteration_share_one_commit(tmp_path):
    """From the event loop the writer is woken once the loop has run what is ready: 32
    concurrent admissions queued in one iteration are one commit (one fsync), not one each,
    and every flush still returns only once its op is durable."""
    import sqlite3

    from coincurve import PrivateKey

    from bundler.sessions.recover import recover_signer

    key = PrivateKey(b"\x01" * 32)
    digest = b"\x02" * 32
    signature = key.sign_recoverable(digest, hasher=None)
    s = SqliteStore(tmp_path)
    log = _CommitLog(s)
    try:
        async def admit(i: int) -> None:
            # as on the fast path: a coincurve recovery releases the GIL, the writer could run
            assert recover_signer(digest, signature) is not None
            assert (await s.admit(record(i), None, 10)).admitted
            await s.flush()
            assert outside.execute("SELECT 1 FROM ops WHERE hash = ?", (record(i).hash,)).fetchone()

        outside = sqlite3.connect(s.path)
        await asyncio.gather(*(admit(i) for i in range(1, 33)))
        outside.close()
        assert log.ops_per_commit == [32]
    finally:
        s.close()


async def test_a_write_from_another_thread_wakes_the_writer_at_once(tmp_path):
    s = SqliteStore(tmp_path)
    log = _CommitLog(s)
    try:
        thread = threading.Thread(target=s.put, args=(record(1),))  # no event loop in that thread
        thread.start()
        thread.join()
        assert log.done.wait(timeout=10), "the writer was not woken"
        assert log.ops_per_commit == [1]
    finally:
        s.close()


async def test_a_wake_left_in_a_stopped_loop_does_not_hold_up_a_flush_in_another(tmp_path):
    """A write schedules the writer's wake in its loop; if that loop stops before running it,
    a flush from another loop still gets the write committed (not after the writer's 60 s nap)."""
    await asyncio.to_thread(_write_in_a_stopped_loop_then_flush_in_another, tmp_path)


def _write_in_a_stopped_loop_then_flush_in_another(tmp_path) -> None:
    s = SqliteStore(tmp_path)
    log = _CommitLog(s)
    try:
        first = asyncio.new_event_loop()

        async def write_then_stop() -> None:
            s.put(record(1))
            asyncio.get_running_loop().stop()  # the wake, queued after this step, never runs

        first.create_task(write_then_stop())
        first.run_forever()
        first.close()
        assert log.ops_per_commit == [] and s._committed < s._seq
        asyncio.run(asyncio.wait_for(s.flush(), timeout=10))
        assert log.ops_per_commit == [1]
    finally:
        s.close()
