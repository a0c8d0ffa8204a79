"""What durability costs on the admission path.

    .venv/bin/python benchmarks/store_admission.py [--accounts 200] [--concurrency 8] [--writes 20000]

1. store only: `concurrency` tasks each doing put(record) + `await flush()` (what admission does
   per op before it answers), for MemoryStore, SqliteStore with synchronous=normal / full, and
   PostgresStore on a private cluster (tests/helpers/pg.py, fsync off) when one can be started.
   Reports durable acknowledgements per second and the mean commit batch size.
2. end to end: a bundler in this process (2 simulation workers, manual bundling so nothing is
   mined) on its own anvil; `accounts` pre-signed ops from as many deployed SimpleAccounts v0.7
   sent over HTTP with `concurrency` in flight; the same ops to a fresh bundler per store.
   Reports accepted ops/s and latency percentiles of eth_sendUserOperation.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from bundler import config as cfg  # noqa: E402
from bundler.devchain import free_port, fund  # noqa: E402
from bundler.entrypoint import V07  # noqa: E402
from bundler.store import MemoryStore, OpRecord  # noqa: E402
from bundler.store.sqlite import SqliteStore  # noqa: E402
from bundler.userop import UserOperation, format_user_operation  # noqa: E402
from helpers.accounts import DevChain  # noqa: E402

EXECUTOR_KEY = "0x" + "7b" * 32


def fake_record(i: int) -> OpRecord:
    op = UserOperation(sender="0x" + os.urandom(20).hex(), nonce=i, call_data=os.urandom(196), call_gas_limit=100_000,
                       verification_gas_limit=200_000, pre_verification_gas=50_000, max_fee_per_gas=2 * 10**9,
                       max_priority_fee_per_gas=10**9, signature=os.urandom(65))
    return OpRecord(hash="0x" + os.urandom(32).hex(), entry_point=V07.address, op=op, valid_until=2**40,
                    prefund=10**16)


async def bench_store(make_store, writes: int, concurrency: int) -> tuple[float, float]:
    store = make_store()
    records = [fake_record(i) for i in range(writes)]
    commits = 0
    if hasattr(store, "_commit"):
        original = store._commit

        def counting(*a):
            nonlocal commits
            commits += 1
            return original(*a)

        store._commit = counting
    queue = iter(records)

    async def worker() -> None:
        for r in queue:
            store.put(r)
            await store.flush()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    store.close()
    return writes / elapsed, (writes / commits if commits else float("nan"))


async def bench_e2e(chain: DevChain, ops: list[UserOperation], store: str, concurrency: int, sync: str,
                    dsn: str = "") -> dict:
    from bundler.app import Bundler

    data_dir = tempfile.mkdtemp(prefix="bench-store-")
    config = cfg.Config(rpc_url=chain.url, port=free_port(), private_key=[EXECUTOR_KEY], bundle_mode="manual",
                        sim_workers=2, store=store, data_dir=data_dir, store_sync=sync, max_ops_per_sender=4,
                        postgres_dsn=dsn)
    b = Bundler(config)
    await b.start()
    latencies: list[float] = []
    errors = 0
    try:
        async with aiohttp.ClientSession() as session:
            async def send(op: UserOperation) -> None:
                nonlocal errors
                body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation",
                        "params": [format_user_operation(op), V07.address]}
                t = time.perf_counter()
                async with session.post(b.url, json=body) as resp:
                    answer = await resp.json()
                latencies.append(time.perf_counter() - t)
                if "error" in answer:
                    errors += 1

            queue = iter(ops)

            async def worker() -> None:
                for op in queue:
                    await send(op)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - t0
    finally:
        await b.stop()
    latencies.sort()
    return {
        "ops_per_s": len(ops) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "errors": errors,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--writes", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5, help="end-to-end rounds per store (median is shown)")
    args = ap.parse_args()

    print(f"1. store only: {args.writes} put+flush, {args.concurrency} and 64 concurrent")
    stores = [
        ("memory", MemoryStore),
        ("sqlite normal", lambda: SqliteStore(tempfile.mkdtemp(prefix="bench-store-"), synchronous="normal")),
        ("sqlite full", lambda: SqliteStore(tempfile.mkdtemp(prefix="bench-store-"), synchronous="full")),
    ]
    pg = None
    try:
        from helpers.pg import PostgresUnavailable, start_postgres
        from bundler.store.postgres import PostgresStore

        pg = start_postgres()  # a private cluster with fsync off: measures our overhead, not the disk
        stores.append(("postgres", lambda: PostgresStore(pg.database())))
    except (ImportError, PostgresUnavailable) as e:
        print(f"   (postgres left out: {e})")
    try:
        for conc in (args.concurrency, 64):
            for name, make in stores:
                rate, batch = await bench_store(make, args.writes, conc)
                print(f"   {name:14s} concurrency {conc:3d}: {rate:9.0f} acks/s  (mean commit batch {batch:.1f})")
        await end_to_end(args, pg)
    finally:
        if pg is not None:
            pg.stop()


async def end_to_end(args, pg) -> None:
    print(f"2. end to end: {args.accounts} ops from as many SimpleAccounts v0.7, {args.concurrency} in flight")
    chain = DevChain.start()
    try:
        from eth_account import Account

        fund(chain.url, Account.from_key(EXECUTOR_KEY).address, 10**21)
        accts = [chain.account(V07) for _ in range(args.accounts)]
        ops = [a.sign(a.op(a.execute("0x" + os.urandom(20).hex(), 1)), chain.chain_id) for a in accts]
        kinds = [("memory", "full"), ("sqlite", "normal"), ("sqlite", "full")]
        if pg is not None:
            kinds.append(("postgres", "full"))
        runs: dict[tuple, list[dict]] = {k: [] for k in kinds}
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every store alike
            for store, sync in kinds:
                runs[(store, sync)].append(await bench_e2e(chain, ops, store, args.concurrency, sync,
                                                           pg.database() if store == "postgres" else ""))
        for (store, sync), rs in runs.items():
            label = f"{store} {sync}" if store == "sqlite" else store
            med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
            print(f"   {label:14s}: median of {len(rs)}: {med('ops_per_s'):6.1f} ops/s accepted "
                  f"(runs {', '.join('%.0f' % r['ops_per_s'] for r in rs)}), p50 {med('p50_ms'):6.1f} ms, "
                  f"p95 {med('p95_ms'):6.1f} ms, errors {sum(r['errors'] for r in rs)}")
    finally:
        chain.stop()


if __name__ == "__main__":
    asyncio.run(main())
