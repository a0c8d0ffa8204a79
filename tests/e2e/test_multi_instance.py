"""Several bundler instances as users run them: real `bundler run --store postgres` processes on
one PostgreSQL and one anvil mining a block every second, several executor keys each, ops sent
to all of them at once. What is checked comes from the chain (UserOperationEvent logs, bundle
receipts): every acknowledged op is mined exactly once, no bundle reverts, nothing is lost,
also when one instance is killed with SIGKILL while it has bundles in flight."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from helpers.fleet import (
    addresses, block_number, block_time_chain, bundle_receipts, deployed_accounts, first_op, fresh_account,
    fresh_ops, new_keys, op_events, send, start_instance,
)
from helpers.procs import RpcFailure, wait_for
from bundler.entrypoint import V07, V08


@pytest.fixture(scope="module")
def chain():
    c = block_time_chain(1.0)
    try:
        yield c
    finally:
        c.stop()


def start_fleet(chain, dsn, tmp_path, n: int, keys_each: int):
    keys = [new_keys(chain, keys_each) for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(start_instance, chain, dsn, tmp_path, k) for k in keys]
        procs = []
        for f in futures:  # stop those that started if one did not
            try:
                procs.append(f.result())
            except BaseException:
                for p in procs:
                    p.kill()
                raise
    return procs, set().union(*(addresses(k) for k in keys))


def acked(result) -> bool:
    return isinstance(result, str)


def assert_all_mined_once(chain, start_block: int, expected: set[str], executors: set[str], procs,
                          timeout: float = 120.0) -> None:
    def all_mined():
        events = op_events(chain, start_block)
        return all(events[h] >= 1 for h in expected) and events
    try:
        events = wait_for(all_mined, timeout=timeout, interval=0.5, what="every acknowledged op to be mined")
    except TimeoutError:
        events = op_events(chain, start_block)
        missing = [h for h in expected if not events[h]]
        raise AssertionError(f"{len(missing)} acknowledged op(s) never mined, e.g. {missing[:3]}\n"
                             + "\n".join(p.log()[-3000:] for p in procs)) from None
    twice = {h: n for h, n in events.items() if n > 1}
    assert not twice, f"ops mined more than once: {twice}"
    receipts = bundle_receipts(chain, start_block, executors)
    reverted = [r["transactionHash"] for r in receipts if r["status"] != "0x1"]
    assert not reverted, f"{len(reverted)} of {len(receipts)} bundle(s) reverted: {reverted}"


def live_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT hash, status, claim_owner FROM bundler_ops "
                            "WHERE status IN ('pending', 'submitted')").fetchall()


def test_three_instances_same_op_and_conflicting_ops_sent_to_all(chain, pg, tmp_path):
    dsn = pg.database()
    procs, executors = start_fleet(chain, dsn, tmp_path, n=3, keys_each=2)
    try:
        start_block = block_number(chain)
        same = fresh_ops(chain, 15)  # each sent to all three instances at once
        conflicting = []  # two different ops for one sender and nonce, equal fees, to two instances
        for i in range(15):
            acct = fresh_account(chain, (V07, V08)[i % 2])
            conflicting.append((first_op(chain, acct), first_op(chain, acct)))
        with ThreadPoolExecutor(16) as pool:
            same_results = [[pool.submit(send, p.url, op) for p in procs] for op in same]
            conflict_results = [[pool.submit(send, procs[i % 3].url, x), pool.submit(send, procs[(i + 1) % 3].url, y)]
                                for i, (x, y) in enumerate(conflicting)]
            same_results = [[f.result() for f in fs] for fs in same_results]
            conflict_results = [[f.result() for f in fs] for fs in conflict_results]
        expected: set[str] = set()
        for op, results in zip(same, same_results):
            assert [r for r in results if acked(r)] == [op.hash], results  # acknowledged exactly once
            assert all(r.code == -32602 for r in results if not acked(r)), results
            expected.add(op.hash)
        for (x, y), results in zip(conflicting, conflict_results):
            winners = [r for r in results if acked(r)]
            assert len(winners) == 1, results  # one slot, one op
            loser = next(r for r in results if not acked(r))
            assert loser.code == -32602 and ("already known" in loser.message or "underpriced" in loser.message
                                             or "bundle" in loser.message), loser.message
            expected.add(winners[0])

        # a replacement with higher fees sent to another instance than the op it replaces: the
        # op (nonce 1) waits while its sender's nonce 0 is in a bundle, so it is still pending
        replaced: dict[str, str] = {}
        lock = threading.Lock()

        def replace_elsewhere(i_acct) -> None:
            i, acct = i_acct
            here, there = procs[i % 3], procs[(i + 1) % 3]
            zero, x = first_op(chain, acct, deployed=True), first_op(chain, acct, nonce=1, deployed=True)
            y = first_op(chain, acct, fee=3 * 10**9, tip=15 * 10**8, nonce=1, deployed=True)
            assert send(here.url, zero) == zero.hash and send(here.url, x) == x.hash
            # `there` validates y on top of the ops it sees: wait until the pool sync shows it x
            wait_for(lambda: any(o["sender"].lower() == acct.address and o["nonce"] == "0x1"
                                 for o in there.call("debug_bundler_dumpMempool", V07.address)),
                     timeout=10, interval=0.05, what="the other instance to see the op")
            result = send(there.url, y)
            with lock:
                expected.add(zero.hash)
                if acked(result):  # replaced where it was: the pending op is gone everywhere
                    replaced[x.hash] = y.hash
                    expected.add(y.hash)
                else:  # claimed for a bundle by then (or nonce 0 mined and not yet seen there)
                    assert (result.code == -32602 and "bundle" in result.message) or "AA25" in result.message, \
                        result.message
                    expected.add(x.hash)

        with ThreadPoolExecutor(9) as pool:
            list(pool.map(replace_elsewhere, enumerate(deployed_accounts(chain, 9))))
        assert replaced, "no replacement reached an op pending on another instance"

        assert_all_mined_once(chain, start_block, expected, executors, procs)
        events = op_events(chain, start_block)
        assert all(events[x] == 0 for x in replaced), "a replaced op was mined"
        wait_for(lambda: not live_rows(dsn), timeout=30, what="no op left pending or submitted in the store")
        with psycopg.connect(dsn) as conn:
            dropped = conn.execute("SELECT hash, reason FROM bundler_ops WHERE status = 'dropped'").fetchall()
            statuses = dict(conn.execute("SELECT hash, status FROM bundler_ops").fetchall())
        assert {h for h, _ in dropped} == set(replaced), dropped
        assert all(reason == f"replaced by {replaced[h]} with higher fees" for h, reason in dropped)
        assert all(statuses[h] == "mined" for h in expected)
        print(f"{len(expected)} ops mined once each; {len(replaced)} of 9 replacements took effect across "
              f"instances, the others came after the op was claimed")
        for p in procs:  # every instance answers for every op, whoever bundled it
            receipt = p.call("eth_getUserOperationReceipt", next(iter(expected)))
            assert receipt is not None and receipt["success"] is True
    finally:
        for p in procs:
            p.stop()


def instance_of(conn, executors: set[str]) -> str | None:
    row = conn.execute("SELECT id FROM bundler_instances WHERE executors && %s", (sorted(executors),)).fetchone()
    return row[0] if row else None


def test_kill_9_under_load_the_survivor_takes_over(chain, pg, tmp_path):
    dsn = pg.database()
    ka, kb = new_keys(chain, 3), new_keys(chain, 3)
    with ThreadPoolExecutor(2) as pool:
        fa, fb = pool.submit(start_instance, chain, dsn, tmp_path, ka), pool.submit(start_instance, chain, dsn, tmp_path, kb)
        a, b = fa.result(), fb.result()
    executors = addresses(ka) | addresses(kb)
    try:
        start_block = block_number(chain)
        ops = fresh_ops(chain, 80)
        results: dict[str, object] = {}
        killed = threading.Event()

        def load() -> None:  # a steady stream to both, to the survivor only once A is dead
            def one(i_op):
                i, op = i_op
                target = b if killed.is_set() or i % 2 else a
                try:
                    results[op.hash] = send(target.url, op)
                except OSError as e:  # A died while answering: not acknowledged
                    results[op.hash] = e
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(one, enumerate(ops)))

        loader = threading.Thread(target=load)
        loader.start()
        conn = psycopg.connect(dsn, autocommit=True)
        try:
            a_id = wait_for(lambda: instance_of(conn, addresses(ka)), what="A's lease row")

            def a_has_bundles_in_flight():
                n = conn.execute("SELECT count(*) FROM bundler_inflight WHERE owner = %s", (a_id,)).fetchone()[0]
                return n > 0 and sum(acked(r) for r in results.values()) >= 20
            wait_for(a_has_bundles_in_flight, timeout=60, interval=0.02, what="A to have a bundle in flight under load")
            a.kill()  # SIGKILL: nothing flushed, nothing cleaned up
            killed_at = time.monotonic()
            killed.set()
            left = conn.execute(  # A's work the moment it died: only a survivor can finish it now
                "SELECT hash FROM bundler_ops WHERE claim_owner = %s AND status = 'submitted'", (a_id,)).fetchall()
            left_inflight = conn.execute("SELECT count(*) FROM bundler_inflight WHERE owner = %s",
                                         (a_id,)).fetchone()[0]
        finally:
            conn.close()
        loader.join(timeout=180)
        assert not loader.is_alive(), "sending the ops did not finish"
        expected = {h for h, r in results.items() if acked(r)}
        refused = {h: r for h, r in results.items() if isinstance(r, RpcFailure)}
        assert not refused, f"valid ops refused: {list(refused.values())[:3]}"
        assert len(expected) >= 40

        assert_all_mined_once(chain, start_block, expected | {h for (h,) in left}, executors, [a, b])
        took_over_s = time.monotonic() - killed_at
        wait_for(lambda: not live_rows(dsn), timeout=30, what="no op left pending or submitted in the store")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM bundler_inflight").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM bundler_ops WHERE status = 'dropped'").fetchone()[0] == 0
        if left_inflight:  # the survivor followed A's transactions from the chain
            b.log()  # flushes
            full_log = b.log_path.read_text(errors="replace")
            assert "of a dead instance" in full_log, full_log[-3000:]
        print(f"A killed with {len(left)} claimed op(s) in {left_inflight} in-flight bundle(s); all "
              f"{len(expected)} acknowledged ops mined {took_over_s:.1f} s after the kill")
    finally:
        a.kill()
        b.stop()
