"""Several instances on one PostgreSQL: one vs two `bundler run --store postgres` processes on
one private PostgreSQL cluster and one anvil mining a block every second, then the time until a
killed instance's ops are mined by the survivor.

    .venv/bin/python benchmarks/multi_instance.py [--ops 120] [--concurrency 8] [--keys 3]
                                                  [--lease 10] [--json]

  set-up     PostgreSQL from Debian's package (tests/helpers/pg.py: a throwaway cluster, fsync
             off), anvil with --block-time 1 and the EntryPoints; every scenario gets a fresh
             database. Ops: the first op (initCode, a 1 wei transfer) of a fresh funded
             SimpleAccount each, v0.7 and v0.8 in turn, signed before the clock starts.
  one / two  N ops sent by C concurrent clients, round-robin over the instances (each with its
             own K executor keys, auto bundling, one simulation worker). Figures: accepted ops/s
             (first send to last answer), p50/p95 of eth_sendUserOperation at the client,
             seconds until every op's UserOperationEvent is on chain, and CPU ms per op of all
             bundler processes (main + simulation workers, /proc) from the first send until all
             are mined. On this 2-core machine two instances share the cores with anvil,
             PostgreSQL and the client, so throughput need not double: CPU per op says what an
             instance costs.
  takeover   two instances; the same load; A is killed with SIGKILL as soon as it has a bundle
             in flight (seen in bundler_inflight); the figure is the time from the kill until
             every op A had acknowledged is mined (by B, which finds A dead from its closed
             database session, releases A's unsent claims and follows its in-flight
             transactions from the chain). The lease (--lease) only matters for stalled or
             partitioned instances, not killed ones.

The machine is shared and noisy: compare runs made one after the other, not across days.
Every wait is bounded.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import cpu_delta, session_cpu  # noqa: E402  (load.py also puts src/ and tests/ on sys.path)

import psycopg  # noqa: E402

from helpers.fleet import (  # noqa: E402
    addresses, block_number, block_time_chain, fresh_ops, new_keys, op_events, send, start_instance,
)
from helpers.pg import start_postgres  # noqa: E402
from helpers.procs import wait_for  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def bundler_cpu(procs) -> dict[int, float]:
    out: dict[int, float] = {}
    for p in procs:
        out.update(session_cpu(p.proc.pid))
    return out


def run_load(chain, procs, ops, concurrency: int, on_sent=None):
    """Send every op (round-robin over procs); returns (results by hash, latencies, t0, t_last_answer)."""
    results: dict[str, object] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i_op):
        i, op = i_op
        target = procs[i % len(procs)] if on_sent is None else on_sent(i)
        t = time.monotonic()
        try:
            r = send(target.url, op)
        except OSError as e:  # the instance was killed while answering
            r = e
        with lock:
            results[op.hash] = r
            if isinstance(r, str):
                latencies.append(time.monotonic() - t)

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, enumerate(ops)))
    return results, latencies, t0, time.monotonic()


def wait_mined(chain, start_block: int, hashes: set[str], timeout: float) -> float:
    wait_for(lambda: all(op_events(chain, start_block)[h] for h in hashes), timeout=timeout, interval=0.25,
             what="every acknowledged op to be mined")
    return time.monotonic()


def scenario(chain, pg, workdir: Path, n_instances: int, args) -> dict:
    dsn = pg.database()
    keys = [new_keys(chain, args.keys) for _ in range(n_instances)]
    with ThreadPoolExecutor(n_instances) as pool:
        procs = list(pool.map(lambda k: start_instance(chain, dsn, workdir, k, args.lease), keys))
    try:
        ops = fresh_ops(chain, args.ops)
        start_block = block_number(chain)
        cpu0 = bundler_cpu(procs)
        results, latencies, t0, t_answered = run_load(chain, procs, ops, args.concurrency)
        accepted = {h for h, r in results.items() if isinstance(r, str)}
        t_mined = wait_mined(chain, start_block, accepted, args.mine_timeout)
        cpu1 = bundler_cpu(procs)
        cpu = sum(sum(cpu_delta(cpu0, {pid: v for pid, v in cpu1.items() if pid in
                                       session_cpu(p.proc.pid)}, p.proc.pid)) for p in procs)
        twice = [h for h, n in op_events(chain, start_block).items() if n > 1]
        return {
            "instances": n_instances, "ops": len(ops), "accepted": len(accepted),
            "accepted_per_s": round(len(accepted) / (t_answered - t0), 1),
            "p50_ms": round(1000 * statistics.median(latencies)), "p95_ms": round(1000 * pct(latencies, 95)),
            "all_mined_s": round(t_mined - t0, 1), "cpu_ms_per_op": round(1000 * cpu / max(1, len(accepted)), 1),
            "mined_twice": len(twice),
        }
    finally:
        for p in procs:
            p.stop()


def takeover(chain, pg, workdir: Path, args) -> dict:
    dsn = pg.database()
    ka, kb = new_keys(chain, args.keys), new_keys(chain, args.keys)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda k: start_instance(chain, dsn, workdir, k, args.lease), (ka, kb))
    killed = threading.Event()
    try:
        ops = fresh_ops(chain, args.ops)
        start_block = block_number(chain)
        out: dict = {}

        def killer():
            with psycopg.connect(dsn, autocommit=True) as conn:
                a_id = wait_for(lambda: (conn.execute("SELECT id FROM bundler_instances WHERE executors && %s",
                                                      (sorted(addresses(ka)),)).fetchone() or [None])[0],
                                what="A's lease row")
                wait_for(lambda: conn.execute("SELECT count(*) FROM bundler_inflight WHERE owner = %s",
                                              (a_id,)).fetchone()[0] > 0,
                         timeout=args.mine_timeout, interval=0.02, what="A to have a bundle in flight")
                a.kill()
                out["killed_at"] = time.monotonic()
                killed.set()
                out["claimed"] = conn.execute("SELECT count(*) FROM bundler_ops WHERE claim_owner = %s AND "
                                              "status = 'submitted'", (a_id,)).fetchone()[0]
                out["in_flight"] = conn.execute("SELECT count(*) FROM bundler_inflight WHERE owner = %s",
                                                (a_id,)).fetchone()[0]
                out["a_ops"] = [r[0] for r in conn.execute(
                    "SELECT hash FROM bundler_ops WHERE claim_owner = %s AND status = 'submitted'", (a_id,))]

        kt = threading.Thread(target=killer)
        kt.start()
        results, _lat, _t0, _t1 = run_load(chain, [a, b], ops, args.concurrency,
                                           on_sent=lambda i: b if killed.is_set() or i % 2 else a)
        kt.join(timeout=args.mine_timeout)
        if "killed_at" not in out:
            return {"error": "A never had a bundle in flight"}
        a_ops = set(out["a_ops"])
        t_a_mined = wait_mined(chain, start_block, a_ops, args.mine_timeout)
        accepted = {h for h, r in results.items() if isinstance(r, str)}
        t_all = wait_mined(chain, start_block, accepted, args.mine_timeout)
        events = op_events(chain, start_block)
        return {
            "lease_s": args.lease, "a_claimed_at_kill": out["claimed"], "a_in_flight_bundles_at_kill": out["in_flight"],
            "a_ops_mined_after_kill_s": round(t_a_mined - out["killed_at"], 1),
            "all_accepted_mined_after_kill_s": round(t_all - out["killed_at"], 1),
            "accepted": len(accepted), "lost": sum(1 for h in accepted if not events[h]),
            "mined_twice": sum(1 for n in events.values() if n > 1),
        }
    finally:
        a.kill()
        b.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=120)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--keys", type=int, default=3, help="executor keys per instance")
    ap.add_argument("--lease", type=float, default=10.0, help="--instance-lease-s of the instances")
    ap.add_argument("--mine-timeout", type=float, default=180.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pg = start_postgres()
    chain = block_time_chain(1.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-multi-"))
    try:
        figures = {"one": scenario(chain, pg, workdir, 1, args), "two": scenario(chain, pg, workdir, 2, args),
                   "takeover": takeover(chain, pg, workdir, args)}
    finally:
        chain.stop()
        pg.stop()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.ops} ops, {args.concurrency} concurrent clients, {args.keys} keys per instance, anvil 1 s blocks")
    print(f"{'':6} {'acc/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'mined s':>8} {'CPU ms/op':>10} {'twice':>6}")
    for name in ("one", "two"):
        f = figures[name]
        print(f"{name:6} {f['accepted_per_s']:7} {f['p50_ms']:7} {f['p95_ms']:7} {f['all_mined_s']:8} "
              f"{f['cpu_ms_per_op']:10} {f['mined_twice']:6}")
    t = figures["takeover"]
    if "error" in t:
        print("takeover:", t["error"])
    else:
        print(f"takeover (lease {t['lease_s']} s): A killed with {t['a_claimed_at_kill']} claimed op(s) in "
              f"{t['a_in_flight_bundles_at_kill']} in-flight bundle(s); those mined {t['a_ops_mined_after_kill_s']} s "
              f"after the kill, all {t['accepted']} accepted ops {t['all_accepted_mined_after_kill_s']} s after; "
              f"lost {t['lost']}, mined twice {t['mined_twice']}")


if __name__ == "__main__":
    main()
