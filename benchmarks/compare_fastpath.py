"""benchmarks/session_fastpath.py for two source trees, interleaved in one invocation.

    .venv/bin/python benchmarks/compare_fastpath.py --old /tmp/oldtree [--new .] [--rounds 4]
                     [--repeat 3] [session_fastpath.py's flags after --, e.g. -- --loop asyncio]

    git archive <rev> | tar -x -C /tmp/oldtree     (and copy build/ into it: the contracts' artifacts)

Each round runs each tree's own benchmarks/session_fastpath.py once (a fresh anvil, its own
src/ and sdk/python first on the path); rounds alternate the order (old, new; new, old; ...), so
neither tree always runs first. Printed: per figure (bundler CPU per op: Python API, next block,
HTTP) each tree's median and range over the rounds, and the new/old ratio of each round (a
round's two runs saw about the same machine load), with the load average before each run.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {  # label: the session_fastpath.py line whose 4th number is the CPU us/op
    "Python API us/op": "fast path, Python API",
    "next block us/op": "same, next block",
    "HTTP us/op": "fast path, RPC",
}


def parse(output: str) -> dict[str, float]:
    out = {}
    for label, prefix in FIGURES.items():
        for line in output.splitlines():
            if line.strip().startswith(prefix):
                numbers = re.findall(r"[\d.]+", line.split(":", 1)[1])
                out[label] = float(numbers[3])
    return out


def run(tree: Path, repeat: int, extra: list[str]) -> tuple[dict[str, float], str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}:{tree / 'sdk' / 'python'}"}
    proc = subprocess.run([sys.executable, str(tree / "benchmarks" / "session_fastpath.py"), "--repeat", str(repeat),
                           *extra], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    figures = parse(proc.stdout)
    if len(figures) != len(FIGURES):
        raise SystemExit(f"{tree}: could not read the figures from\n{proc.stdout[-3000:]}")
    return figures, load


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="the older source tree")
    p.add_argument("--new", default=str(ROOT), help="the newer source tree (default: this checkout)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3, help="session_fastpath.py --repeat (its median of runs)")
    p.add_argument("extra", nargs="*", help="more session_fastpath.py flags (after --)")
    args = p.parse_args(argv)
    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for i in range(args.rounds):
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            figures, load = run(trees[name], args.repeat, args.extra)
            results[name].append(figures)
            print(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items())
                  + f"  (load average before: {load})", flush=True)
    print()
    print(f"old {trees['old']}, new {trees['new']}; {args.rounds} rounds, session_fastpath.py --repeat {args.repeat}"
          f" {' '.join(args.extra)}")
    for label in FIGURES:
        old = [r[label] for r in results["old"]]
        new = [r[label] for r in results["new"]]
        ratios = [n / o for n, o in zip(new, old)]
        print(f"  {label:18s} old {statistics.median(old):5.0f} [{min(old):.0f}-{max(old):.0f}]"
              f"  new {statistics.median(new):5.0f} [{min(new):.0f}-{max(new):.0f}]"
              f"  new/old per round {' '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")
    print(f"  load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
