"""Load benchmark of two source trees of our bundler, interleaved in one run.

    .venv/bin/python benchmarks/compare_revisions.py --old /tmp/oldtree [--new .] [--runs 3]
                     [--mode safe|unsafe] [load.py's workload flags: --ops, --concurrency, --ep, ...]

    git worktree add /tmp/oldtree <rev>     (and copy build/ into it: the contracts' artifacts)

Each tree is run as `bundler run` from its own src/ and sdk/python (load.SOURCE_TREE), on the same
workload as benchmarks/load.py (the same pre-signed ops, a fresh anvil per run). Rounds alternate
the order (round 1: old, new; round 2: new, old; ...), so neither tree always runs first. Printed:
per figure the median and range over the runs of each tree, and the new/old ratio of each round
(median and range; a round's two runs saw about the same machine load), with the load average
before each run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402

FIGURES = [  # label, getter, better
    ("accepted", lambda r: r["accepted"], None),
    ("accepted ops/s", lambda r: r["accepted_ops_per_s"], "hi"),
    ("send p50 ms", lambda r: 1000 * r["send_p50_s"], "lo"),
    ("send p95 ms", lambda r: 1000 * r["send_p95_s"], "lo"),
    ("all mined after s", lambda r: r["all_mined_after_s"], "lo"),
    ("bundler CPU ms/op", lambda r: r["bundler_cpu_ms_per_op"], "lo"),
    ("  main process ms/op", load._cpu_main, "lo"),
    ("  workers ms/op", load._cpu_other, "lo"),
    ("bundler+anvil CPU ms/op", lambda r: r["bundler_node_cpu_ms_per_op"], "lo"),
]


def _value(r: dict, get) -> float | None:
    try:
        return get(r)
    except (KeyError, TypeError):
        return None


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{load.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="the older source tree (a git worktree)")
    p.add_argument("--new", default=str(load.ROOT), help="the newer source tree (default: this checkout)")
    p.add_argument("--mode", choices=("safe", "unsafe"), default="safe")
    p.add_argument("--ops", "-n", type=int, default=200)
    p.add_argument("--concurrency", "-c", type=int, default=8)
    p.add_argument("--ep", choices=("0.7", "0.8"), default="0.7")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--executors", type=int, default=3)
    p.add_argument("--estimate-sample", type=int, default=20)
    p.add_argument("--mine-timeout", type=float, default=120)
    p.add_argument("--request-timeout", type=float, default=120)
    p.add_argument("--log-level", default="info")
    p.add_argument("--seed", default="load-bench")
    p.add_argument("--logdir")
    p.add_argument("--json", action="store_true")
    load.add_op_gas_args(p)
    args = p.parse_args(argv)
    # what load.run_target / start_ours read of the arguments
    args.ours_args, args.py_spy, args.py_spy_rate = [], None, 100

    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    for name, tree in trees.items():
        if not (tree / "src" / "bundler").is_dir():
            p.error(f"--{name} {tree}: no src/bundler there")
    ep = load.V07 if args.ep == "0.7" else load.V08
    logdir = Path(args.logdir) if args.logdir else Path(tempfile.mkdtemp(prefix="compare-revisions-"))
    for name in trees:
        (logdir / name).mkdir(parents=True, exist_ok=True)
    owners = load.make_owner_keys(args.ops, args.seed)
    owners_addr = [load.owner_address(k) for k in owners]
    wl = load.Workload(ep=ep, owners=owners)
    kind = "ours-unsafe" if args.mode == "unsafe" else "ours-safe"

    results: dict[str, list[dict]] = {"old": [], "new": []}
    rounds: list[dict[str, dict]] = []
    for rnd in range(args.runs):
        order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
        this_round = {}
        for name in order:
            load.SOURCE_TREE[0] = trees[name]
            before = os.getloadavg()
            load.log(f"== round {rnd + 1}/{args.runs}: {name} ({trees[name]}), load average {before[0]:.2f}")
            r = load.run_target(kind, wl, owners_addr, args, logdir / name, run=rnd)
            r["loadavg_before"] = tuple(round(x, 2) for x in before)
            r["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
            results[name].append(r)
            this_round[name] = r
        rounds.append(this_round)

    table = []
    for label, get, _better in FIGURES:
        old = [v for r in results["old"] if (v := _value(r, get)) is not None]
        new = [v for r in results["new"] if (v := _value(r, get)) is not None]
        ratios = []
        for rd in rounds:
            o, n = _value(rd["old"], get), _value(rd["new"], get)
            if o and n is not None:
                ratios.append(n / o)
        table.append({"figure": label, "old": old, "new": new, "ratios_new_over_old": ratios})
    report = {"trees": {k: str(v) for k, v in trees.items()}, "mode": args.mode, "ops": args.ops,
              "concurrency": args.concurrency, "ep": args.ep, "runs": args.runs,
              "loadavg_before": {k: [r["loadavg_before"] for r in v] for k, v in results.items()},
              "table": table}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{args.mode} mode, {args.ops} ops, {args.concurrency} clients, EntryPoint {args.ep}, "
          f"{args.runs} interleaved rounds; median [range]")
    print(f"old = {trees['old']}\nnew = {trees['new']}")
    print(f"{'figure':26} {'old':>24} {'new':>24} {'new/old per round':>24}")
    for t in table:
        print(f"{t['figure']:26} {_stats(t['old']):>24} {_stats(t['new']):>24} "
              f"{_stats(t['ratios_new_over_old']):>24}")
    for name, loads in report["loadavg_before"].items():
        print(f"load average before {name} runs: " + ", ".join(f"{x[0]:.2f}" for x in loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
