"""What a pending op costs in memory, part by part, and what an idle bundler's RSS is made of
(issue 15: "at most 2 KB per pending op", "an idle RSS a small node operator accepts").

    .venv/bin/python benchmarks/memory.py [--ops 500] [--ep 0.7|0.8] [--values both|repeated|distinct]
                                          [--skip-idle] [--top N]

  per op   a fresh anvil (127.0.0.1, free port), --ops + 20 SimpleAccounts (load.py helpers), one
           signed op each; an in-process bundler (safe mode, manual bundling, SQLite store in a
           temp dir, 2 sim workers) takes 20 warm-up ops over HTTP, then tracemalloc traces the main
           process while --ops more are sent over HTTP. Python heap growth / ops = bytes per
           pending op (traced; RSS adds allocator slack, see sustained.py --memory-only). The
           breakdown sizes each new pool entry's parts with a deep size that counts every object
           once (in this order: op, pool entry fields, validation result without its trace, the
           ERC-7562 trace, COD-010 code hashes, entities), then the mempool's indices per entry;
           the rest of the growth (store caches, reputation, session ledger, ...) is "other".
  values   "repeated": every op has the same gas limits and fees (as one wallet's estimate for one
           kind of op); "distinct": op j adds j to each gas limit and j wei to each fee, so no
           two ops share a value (what userop/sharing.py saves on the first it cannot save on
           this one). "both" (the default) runs each in its own interpreter and fresh anvil, and
           the goal is met only when both are within it.
  idle     RSS of `bundler run` (2 sim workers) per process after start, and the RSS a fresh
           interpreter reaches importing each heavy package alone (what each import costs).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

import aiohttp
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (  # noqa: E402  (load.py also puts src/ and tests/ on sys.path)
    KEY_EXECUTOR, Workload, error_key, free_port, log, make_owner_keys, owner_address, post,
    start_chain, wait_ready,
)
from sustained import build_sequenced_ops, kill_hard, session_rss, start_bundler  # noqa: E402
from bundler.entrypoint import V07, V08, EntryPointVersion  # noqa: E402

GOAL_BYTES = 2048
WARMUP = 20
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
         EntryPointVersion)


def deep_size(obj, seen: set[int]) -> int:
    """Bytes of `obj` and everything it references that `seen` does not hold yet (then added):
    shared objects count once, for the part that reached them first."""
    total, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _SKIP) or o is None or isinstance(o, bool):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def breakdown(entries, pool, seen: set[int]) -> dict[str, int]:
    parts = {"op (UserOperation)": 0, "pool entry fields": 0, "validation result (no trace)": 0,
             "ERC-7562 trace": 0, "read set (sim/readset.py)": 0, "code hashes (COD-010)": 0,
             "entities (stake info)": 0}
    for e in entries:
        parts["op (UserOperation)"] += deep_size(e.op, seen)
    for e in entries:
        v, ch, ent = e.validation, e.code_hashes, e.entities
        trace = getattr(v, "trace", None)
        # the entry itself without the parts counted below (set aside only those not counted
        # yet: an object shared with an earlier entry, e.g. the one empty CheckedTrace, counts once)
        aside = [id(h) for h in (v, trace, ch, ent) if h is not None and id(h) not in seen]
        seen.update(aside)
        parts["pool entry fields"] += deep_size(e, seen)
        seen.difference_update(aside)
        if v is not None:
            reads = getattr(v, "reads", None)
            aside = [id(h) for h in (trace, reads) if h is not None and id(h) not in seen]
            seen.update(aside)
            parts["validation result (no trace)"] += deep_size(v, seen)
            seen.difference_update(aside)
            if trace is not None:
                parts["ERC-7562 trace"] += deep_size(trace, seen)
            if reads is not None:
                parts["read set (sim/readset.py)"] += deep_size(reads, seen)
        if ch is not None:
            parts["code hashes (COD-010)"] += deep_size(ch, seen)
        if ent is not None:
            parts["entities (stake info)"] += deep_size(ent, seen)
    indices = sum(deep_size(getattr(pool, name), seen)
                  for name in vars(pool) if name.startswith("_by_"))
    parts["mempool indices (per entry of the pool)"] = indices * len(entries) // max(1, len(pool))
    return parts


def store_breakdown(entries, store, seen: set[int]) -> dict[str, int]:
    """The store's in-memory tables keyed by op hash, for the new entries: each value's deep size
    (what the pool entries hold already counts once, above) plus its share of the table."""
    parts: dict[str, int] = {}
    hashes = [e.hash for e in entries]
    for name, table in sorted(vars(store).items()):
        if not isinstance(table, dict) or not any(h in table for h in hashes[:5]):
            continue
        share = sys.getsizeof(table) * len(hashes) // max(1, len(table))
        parts[f"store {name} (per op)"] = share + sum(deep_size(table[h], seen) for h in hashes if h in table)
    return parts


async def per_op(node_url: str, wl: Workload, args, data_dir: str) -> dict:
    from bundler import config as cfg
    from bundler.app import Bundler

    conf = cfg.Config(rpc_url=node_url, port=free_port(), private_key=[KEY_EXECUTOR], debug_api=True,
                      sim_workers=2, bundle_mode="manual", rate_limit_exempt_loopback=True, data_dir=data_dir)
    b = Bundler(conf)
    await b.start()
    try:
        ep_addr = to_checksum_address(wl.ep.address)
        failures: dict[str, int] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as s:
            async def send_range(lo: int, hi: int) -> None:
                idx = iter(range(lo, hi))

                async def worker():
                    for i in idx:
                        a = await post(s, b.url, "eth_sendUserOperation", [wl.ops[i], ep_addr], 60)
                        if "result" not in a:
                            failures[error_key(a)] = failures.get(error_key(a), 0) + 1
                await asyncio.gather(*(worker() for _ in range(8)))

            await send_range(0, WARMUP)
            before = set(e.hash for e in b.mempool.entries())
            await b.store.flush() if hasattr(b.store, "flush") else None
            gc.collect()
            tracemalloc.start(1)
            heap0 = tracemalloc.get_traced_memory()[0]
            snap0 = tracemalloc.take_snapshot() if args.top else None
            await send_range(WARMUP, len(wl.ops))
            if hasattr(b.store, "flush"):
                await b.store.flush()
            gc.collect()
            heap1 = tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:args.top] if args.top else []
            tracemalloc.stop()
        new = [e for e in b.mempool.entries() if e.hash not in before]
        seen: set[int] = set()
        parts = breakdown(new, b.mempool, seen)
        parts.update(store_breakdown(new, b.store, seen))
        n = len(new)
        read_sets = [e.validation.reads for e in new if getattr(e.validation, "reads", None) is not None]
        keys = (sum(len(r.account_keys()) for r in read_sets), sum(len(r.slot_keys()) for r in read_sets))
        return {"ops": n, "heap_bytes": heap1 - heap0, "read_sets": len(read_sets), "read_keys": keys, "parts": parts, "failures": failures, "top": top}
    finally:
        await b.stop()


IMPORTS = {
    "python alone": "pass",
    "py-evm (eth)": "import eth.vm.forks.prague",
    "aiohttp": "import aiohttp",
    "eth_abi + eth_utils + coincurve": "import eth_abi, eth_utils, coincurve",
    "bundler.sim.worker (a worker's imports)": "import bundler.sim.worker",
    "bundler.app (the main process's imports)": "import bundler.app",
}


def import_rss(env: dict) -> dict[str, int]:
    out = {}
    for name, code in IMPORTS.items():
        # VmRSS of the child itself (ru_maxrss would carry the forking parent's peak across exec)
        probe = ("\nfor line in open('/proc/self/status'):\n"
                 "    if line.startswith('VmRSS:'): print(int(line.split()[1]) * 1024)")
        r = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, env=env, timeout=120)
        out[name] = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else -1
    return out


def idle(node_url: str, args, logdir: Path) -> dict:
    ns = argparse.Namespace(log_level="warning", ours_args=[])
    t = start_bundler(node_url, free_port(), tempfile.mkdtemp(prefix="idle-data-", dir=logdir),
                      logdir / "idle.log", "manual", ns)
    try:
        wait_ready("bundler (idle)", t.url, t.proc, t.log_path)
        time.sleep(2)
        parts = session_rss(t.proc.pid)
        names = {}
        for pid in parts:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            names[pid] = ("main" if pid == t.proc.pid else
                          "resource tracker" if "resource_tracker" in cmd else f"sim worker {pid}")
        return {names[p]: v for p, v in parts.items()}
    finally:
        kill_hard(t)


RESULT_TAG = "per-op-bytes:"


def both(argv: list[str], args) -> int:
    """Each workload in its own interpreter (no cache or shared-value table carries from one to
    the other), then both figures side by side; idle RSS once, with the second."""
    figures = {}
    rest = [a for i, a in enumerate(argv) if a != "--values" and (i == 0 or argv[i - 1] != "--values")
            and not a.startswith("--values=")]
    for i, kind in enumerate(("repeated", "distinct")):
        cmd = [sys.executable, __file__, *rest, "--values", kind]
        if i == 0 and "--skip-idle" not in cmd:
            cmd.append("--skip-idle")
        r = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        out = [line for line in r.stdout.splitlines() if not line.startswith(RESULT_TAG)]
        print("\n".join(out))
        got = [line.split()[2] for line in r.stdout.splitlines() if line.startswith(RESULT_TAG)]
        if r.returncode != 0 or not got:
            print(f"{kind} workload failed (exit {r.returncode})")
            return 1
        figures[kind] = float(got[0])
    print("per pending op: " + ", ".join(f"{k} values {v:,.0f} B" for k, v in figures.items())
          + f" (distinct / repeated {figures['distinct'] / figures['repeated']:.3f}); goal (at most "
          f"{GOAL_BYTES} B in both): {'MET' if max(figures.values()) <= GOAL_BYTES else 'NOT MET'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--ep", choices=("0.7", "0.8"), default="0.7")
    p.add_argument("--values", choices=("both", "repeated", "distinct"), default="both",
                   help="gas/fee values the same for every op, all different, or both workloads (default)")
    p.add_argument("--skip-idle", action="store_true")
    p.add_argument("--top", type=int, default=0, help="also print the N source lines whose allocations grew most")
    p.add_argument("--seed", default="memory-bench")
    p.add_argument("--verification-gas", type=int, default=100_000)
    p.add_argument("--call-gas", type=int, default=50_000)
    p.add_argument("--pre-verification-gas", type=int, default=55_000)
    p.add_argument("--max-fee-gwei", type=int, default=10)
    p.add_argument("--priority-fee-gwei", type=int, default=2)
    args = p.parse_args(argv)
    if args.values == "both":
        return both(sys.argv[1:] if argv is None else list(argv), args)
    logdir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    ep = V07 if args.ep == "0.7" else V08
    owners = make_owner_keys(args.ops + WARMUP, args.seed)
    wl = Workload(ep=ep, owners=owners)
    log(f"fresh anvil, EntryPoints, {args.ops + WARMUP} accounts ...")
    chain = start_chain(wl, [owner_address(k) for k in owners])
    try:
        build_sequenced_ops(wl, args.ops + WARMUP, args, distinct=args.values == "distinct")
        rep = asyncio.run(per_op(chain.url, wl, args, tempfile.mkdtemp(prefix="mem-data-", dir=logdir)))
        idle_rss = None if args.skip_idle else idle(chain.url, args, logdir)
    finally:
        chain.node.stop()
    n = max(1, rep["ops"])
    per = rep["heap_bytes"] / n
    print(f"memory per pending op ({args.values} gas/fee values, EntryPoint {args.ep}, safe mode, {rep['ops']} ops added to {WARMUP} pending, "
          f"main process Python heap by tracemalloc): {per:,.0f} bytes ({per / 1024:.2f} KiB)")
    counted = 0
    for name, v in rep["parts"].items():
        counted += v
        print(f"  {name:<42} {v / n:>8,.0f} B")
    print(f"  {'other (reputation, ledger, allocator...)':<42} {(rep['heap_bytes'] - counted) / n:>8,.0f} B")
    if rep["read_sets"]:
        accounts, slots = (k / rep["read_sets"] for k in rep["read_keys"])
        print(f"  (a read set holds {accounts:.1f} accounts and {slots:.1f} storage slots on average)")
    if rep["top"]:
        print(f"top {len(rep['top'])} allocation sites by growth (bytes per op):")
        for stat in rep["top"]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / n:>8,.0f} B  {frame.filename.split('/src/')[-1]}:{frame.lineno}")
    for e, c in rep["failures"].items():
        print(f"  send failure x{c}: {e}")
    print(f"goal (at most {GOAL_BYTES} bytes per pending op): {'MET' if per <= GOAL_BYTES else 'NOT MET'}")
    print(f"{RESULT_TAG} {args.values} {per:.1f}")
    if idle_rss is not None:
        print("idle RSS of `bundler run` (2 sim workers), per process:")
        for name, v in sorted(idle_rss.items()):
            print(f"  {name:<42} {v / 2**20:>6.1f} MB")
        print(f"  {'total':<42} {sum(idle_rss.values()) / 2**20:>6.1f} MB")
        from load import bundler_command
        _exe, env = bundler_command()
        print("RSS of a fresh interpreter after importing only (VmRSS; each includes 'python alone'):")
        for name, v in import_rss(env).items():
            print(f"  {name:<42} {v / 2**20:>6.1f} MB")
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
