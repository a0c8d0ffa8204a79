"""Does admission get dearer as the mempool grows? (issue 15, goal "throughput holds as the
mempool grows: CPU per op flat within 10%").

    .venv/bin/python benchmarks/mempool_growth.py [--ops 1000] [--concurrency 8] [--ep 0.7|0.8] [--json]

  set-up   a fresh anvil (127.0.0.1, free port) with the EntryPoints, --ops SimpleAccounts deployed
           and funded (benchmarks/load.py helpers), one signed op per account (nonce 0, a small
           transfer), so every op costs the same to validate whatever its place in the run.
  fill     `bundler run --bundle-mode manual` (and debug_bundler_setBundlingMode manual), then the
           ops are sent in deciles of --ops/10, --concurrency at a time. Around each decile the
           CPU seconds (user+system, /proc/<pid>/stat) of the bundler's processes (main + sim
           workers: its whole session) are read: CPU per admitted op per decile.
  bundle   one debug_bundler_sendBundleNow: its CPU, wall time and the ops it took out of the pool.

Prints CPU per op per decile, last decile / first decile, and the goal verdict (within 10%).
The machine is shared: CPU per op is steadier than wall time, and the ratio is within one run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (  # noqa: E402  (load.py also puts src/ and tests/ on sys.path)
    add_op_gas_args,
    Workload, cpu_delta, error_key, free_port, log, make_owner_keys, owner_address, post,
    session_cpu, start_chain, wait_ready,
)
from sustained import build_sequenced_ops, kill_hard, mempool_size, rss_split, start_bundler  # noqa: E402
from bundler.entrypoint import V07, V08  # noqa: E402

GOAL_RATIO = 1.10


async def fill_and_bundle(node_url: str, wl: Workload, args, logdir: Path) -> dict:
    port = free_port()
    t = start_bundler(node_url, port, tempfile.mkdtemp(prefix="growth-data-", dir=logdir),
                      logdir / "bundler.log", "manual", args)
    try:
        await asyncio.to_thread(wait_ready, "bundler", t.url, t.proc, t.log_path)
        ep_addr = to_checksum_address(wl.ep.address)
        failures: Counter = Counter()
        deciles: list[dict] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
            mode = await post(s, t.url, "debug_bundler_setBundlingMode", ["manual"])
            if mode.get("result") != "ok":
                raise RuntimeError(f"debug_bundler_setBundlingMode manual: {mode}")
            # a few warm-up requests (connections, first-call imports) outside the measurement
            await asyncio.gather(*(post(s, t.url, "eth_supportedEntryPoints", []) for _ in range(8)))

            async def send_range(lo: int, hi: int) -> int:
                idx = iter(range(lo, hi))
                ok = 0

                async def worker():
                    nonlocal ok
                    for i in idx:
                        try:
                            a = await post(s, t.url, "eth_sendUserOperation", [wl.ops[i], ep_addr], 60)
                        except Exception as e:  # noqa: BLE001
                            a = {"error": {"code": "transport", "message": type(e).__name__}}
                        if "result" in a:
                            ok += 1
                        else:
                            failures[error_key(a)] += 1
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                return ok

            # warm-up ops (first validations in each worker, lazy imports) outside the windows
            warm = await send_range(0, args.warmup)
            n = len(wl.ops)
            step = max(1, (n - args.warmup) // args.deciles)
            for lo in range(args.warmup, n, step):
                hi = min(n, lo + step)
                c0, w0 = session_cpu(t.proc.pid), time.perf_counter()
                ok = await send_range(lo, hi)
                c1, w1 = session_cpu(t.proc.pid), time.perf_counter()
                main_s, other_s = cpu_delta(c0, c1, t.proc.pid)
                deciles.append({"from": lo, "to": hi, "admitted": ok, "wall_s": w1 - w0,
                                "cpu_main_s": main_s, "cpu_workers_s": other_s,
                                "pool_after": await mempool_size(s, t.url)})
            pool_before = await mempool_size(s, t.url)
            rss_main, rss_others, _ = rss_split(t.proc.pid)
            c0, w0 = session_cpu(t.proc.pid), time.perf_counter()
            answer = await post(s, t.url, "debug_bundler_sendBundleNow", [], 300)
            c1, w1 = session_cpu(t.proc.pid), time.perf_counter()
            main_s, other_s = cpu_delta(c0, c1, t.proc.pid)
            pool_after = await mempool_size(s, t.url)
        if "result" not in answer:
            raise RuntimeError(f"debug_bundler_sendBundleNow: {answer}")
        txs = answer["result"]
        n_txs = 0 if txs == "ok" else (len(txs) if isinstance(txs, list) else 1)
        bundle = {"wall_s": w1 - w0, "cpu_main_s": main_s, "cpu_workers_s": other_s, "transactions": n_txs,
                  "pool_before": pool_before, "pool_after": pool_after,
                  "ops_bundled": (pool_before or 0) - (pool_after or 0)}
        return {"warmup_admitted": warm, "deciles": deciles, "bundle": bundle, "failures": dict(failures),
                "rss_full_pool": {"main": rss_main, "others": rss_others}}
    finally:
        kill_hard(t)


def per_op_ms(d: dict) -> float | None:
    if not d["admitted"]:
        return None
    return 1000 * (d["cpu_main_s"] + d["cpu_workers_s"]) / d["admitted"]


def print_report(rep: dict, emit) -> bool:
    emit(f"mempool growth: {rep['ops']} ops after {rep['warmup_admitted']} warm-up ops (one op per account, "
         f"EntryPoint {rep['ep']}), manual bundling, {rep['concurrency']} concurrent clients")
    emit(f"{'ops':>11} {'admitted':>8} {'pool':>6} {'CPU/op ms':>9} {'main':>6} {'workers':>7} {'ops/s':>7}")
    for d in rep["deciles"]:
        v = per_op_ms(d)
        n = max(1, d["admitted"])
        emit(f"{d['from']:>5}-{d['to']:<5} {d['admitted']:>8} {d['pool_after'] or 0:>6} "
             f"{'-' if v is None else f'{v:.2f}':>9} {1000 * d['cpu_main_s'] / n:>6.2f} "
             f"{1000 * d['cpu_workers_s'] / n:>7.2f} {d['admitted'] / d['wall_s']:>7.1f}")
    first, last = per_op_ms(rep["deciles"][0]), per_op_ms(rep["deciles"][-1])
    b = rep["bundle"]
    bundled = b["ops_bundled"]
    emit(f"bundle round (debug_bundler_sendBundleNow): {b['transactions']} transaction(s), {bundled} ops out of "
         f"{b['pool_before']} pending, {b['wall_s'] * 1000:.0f} ms wall, CPU main {b['cpu_main_s'] * 1000:.0f} ms "
         f"+ workers {b['cpu_workers_s'] * 1000:.0f} ms"
         + (f" = {1000 * (b['cpu_main_s'] + b['cpu_workers_s']) / bundled:.2f} ms per bundled op" if bundled else ""))
    r = rep["rss_full_pool"]
    emit(f"RSS with the pool full: main {r['main'] / 2**20:.0f} MB, other processes {r['others'] / 2**20:.0f} MB")
    for e, c in rep["failures"].items():
        emit(f"  send failure x{c}: {e}")
    ok = first is not None and last is not None
    ratio = last / first if ok else None
    d0, d9 = rep["deciles"][0], rep["deciles"][-1]
    if d0["admitted"] and d9["admitted"] and d0["cpu_main_s"]:
        # the pool's indices live in the main process: growth there is what a scan would show
        emit(f"main process CPU per op: first {1000 * d0['cpu_main_s'] / d0['admitted']:.2f} ms, last "
             f"{1000 * d9['cpu_main_s'] / d9['admitted']:.2f} ms, ratio "
             f"{(d9['cpu_main_s'] / d9['admitted']) / (d0['cpu_main_s'] / d0['admitted']):.3f}")
    verdict = ok and ratio <= GOAL_RATIO
    emit(f"CPU per op: first decile {first if first is None else f'{first:.2f}'} ms, last decile "
         f"{last if last is None else f'{last:.2f}'} ms, ratio last/first "
         f"{'-' if ratio is None else f'{ratio:.3f}'}")
    emit(f"goal (CPU per op flat within 10% as the pool grows to {rep['ops']}): {'MET' if verdict else 'NOT MET'}")
    emit(f"load average {', '.join(f'{x:.2f}' for x in rep['loadavg'])}")
    return bool(verdict)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=1000, help="ops admitted (one account each), default 1000")
    p.add_argument("--warmup", type=int, default=20, help="ops admitted before the first window, default 20")
    p.add_argument("--deciles", type=int, default=10, help="measurement windows, default 10")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--ep", choices=("0.7", "0.8"), default="0.7")
    p.add_argument("--ours-args", default="", help="extra `bundler run` flags, space-separated")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--seed", default="growth-bench")
    add_op_gas_args(p)
    p.add_argument("--logdir", help="keep logs and data dirs here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout (progress on stderr)")
    args = p.parse_args(argv)
    # load from this machine on purpose: no per-IP rate limit (as load.py); debug_bundler_* served
    args.ours_args = ["--rate-limit-exempt-loopback", "--debug-api"] + args.ours_args.split()

    def emit(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    logdir = Path(args.logdir) if args.logdir else Path(tempfile.mkdtemp(prefix="growth-bench-"))
    logdir.mkdir(parents=True, exist_ok=True)
    ep = V07 if args.ep == "0.7" else V08
    owners = make_owner_keys(args.ops + args.warmup, args.seed)
    wl = Workload(ep=ep, owners=owners)
    log(f"fresh anvil, EntryPoints, {args.ops + args.warmup} accounts ...")
    chain = start_chain(wl, [owner_address(k) for k in owners])
    try:
        build_sequenced_ops(wl, args.ops + args.warmup, args)
        log(f"filling the pool in manual mode ({args.deciles} windows) ...")
        rep = asyncio.run(fill_and_bundle(chain.url, wl, args, logdir))
    finally:
        chain.node.stop()
    rep.update({"ops": args.ops, "ep": args.ep, "concurrency": args.concurrency, "loadavg": os.getloadavg(),
                "setup_s": chain.setup_s})
    met = print_report(rep, emit)
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
