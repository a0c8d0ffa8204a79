"""Sustained load at a fixed rate, with a SIGKILL restart in the middle, then a no-loss check.

    .venv/bin/python benchmarks/sustained.py [--duration 180] [--rate 40] [--restart-at S]
                                             [--mem-ops 2000] [--ops-per-account 5] [--ep 0.7|0.8] [--json]

Not run by CI (minutes long). Only 127.0.0.1 is used; every loop is bounded in count and time.

  set-up     one fresh anvil, EntryPoints, rate x duration / --ops-per-account SimpleAccounts
             (at most --max-accounts: anvil's pool drops creations beyond ~1,500 queued from one
             deployer), created and funded with the helpers of benchmarks/load.py. Op j is account
             j % A with nonce j // A (a small transfer), so an account's consecutive nonces are sent
             A / rate seconds apart; all ops are signed up front. When an op is not acknowledged
             (e.g. during the restart), that account's later ops are not sent (they could only fail
             on their nonce) and are counted apart.
  memory     a separate short phase first: `bundler run --bundle-mode manual` on its own data dir,
             RSS of its processes with a few warm-up ops pending, then with --mem-ops more pending;
             (delta RSS) / ops = memory per pending op. That bundler is then SIGKILLed: nothing was
             bundled, so the same accounts (still at nonce 0) serve the sustained phase.
  sustained  `bundler run` (auto bundling, SQLite store in a fresh temp data dir), ops sent
             open-loop at --rate ops/s (op i at t0 + i/rate, whatever the latency of the others;
             at most --max-inflight requests outstanding). Every 10 s a line: accepted ops/s,
             p50/p99 latency of eth_sendUserOperation (accepted calls that completed in that
             window), mempool size (bundler_mempool_ops from /metrics), RSS of the bundler's main
             process and of its other processes (sim workers, resource tracker; from /proc).
  restart    at --restart-at s (default half-way) the bundler's whole process group gets SIGKILL
             and is started again on the same data dir and port; sending goes on. Calls refused or
             cut while it is down are counted as failures ("during restart"), not as acknowledged.
  check      after the last send, every op whose eth_sendUserOperation was acknowledged is polled
             through the bundler (eth_getUserOperationReceipt, eth_getUserOperationByHash) until it
             is mined or reported dropped with a reason (bounded by --drain-timeout). "lost" = an
             acknowledged op the bundler no longer knows at all; ops still pending at the timeout
             are listed apart. UserOperationEvent logs read from anvil directly cross-check "mined".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
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
    KEY_EXECUTOR, ROOT, Rpc, Target, Workload, error_key, free_port, log, make_owner_keys,
    owner_address, pct, post, start_chain, wait_ready,
)
from bundler.entrypoint import V07, V08  # noqa: E402
from bundler.userop import UserOperation  # noqa: E402
from bundler.userop.codec import format_user_operation  # noqa: E402
from helpers.accounts import (  # noqa: E402
    DUMMY_SIGNATURE, USER_OPERATION_EVENT_TOPIC, SimpleAccountHelper, sign_user_op,
)
from load import CHAIN_ID, RECIPIENT, TRANSFER_WEI, bundler_command  # noqa: E402

WINDOW_S = 10.0


# ---------------------------------------------------------------------------------------------
# workload: op j = account j % A, nonce j // A (an account's consecutive nonces are A / rate s apart)
def build_sequenced_ops(wl: Workload, n_ops: int, args, distinct: bool = False) -> list[tuple[int, int]]:
    """Sign n_ops ops over the deployed accounts; returns (account, nonce) per op. With
    `distinct`, op j adds j to each gas limit and j wei to each fee, so no two ops share a
    gas or fee value (as real traffic, where wallets estimate per op; benchmarks/memory.py)."""
    call_data = SimpleAccountHelper.execute(RECIPIENT, TRANSFER_WEI, b"")
    a = len(wl.accounts)
    slots = []
    for j in range(n_ops):
        acct, nonce = j % a, j // a
        d = j if distinct else 0
        op = UserOperation(
            sender=wl.accounts[acct], nonce=nonce, call_data=call_data,
            call_gas_limit=args.call_gas + d, verification_gas_limit=args.verification_gas + d,
            pre_verification_gas=args.pre_verification_gas + d,
            max_fee_per_gas=args.max_fee_gwei * 10**9 + d, max_priority_fee_per_gas=args.priority_fee_gwei * 10**9 + d,
            signature=DUMMY_SIGNATURE,
        )
        signed = op.with_changes(signature=sign_user_op(op, wl.ep, CHAIN_ID, wl.owners[acct]))
        wl.ops.append(format_user_operation(signed))
        wl.hashes.append("0x" + wl.ep.user_op_hash(signed, CHAIN_ID).hex())
        slots.append((acct, nonce))
    return slots


# ---------------------------------------------------------------------------------------------
# processes and memory
def session_rss(sid: int) -> dict[int, int]:
    """RSS in bytes of each live process of session `sid` (the bundler is started with
    start_new_session: itself, its sim workers, the multiprocessing resource tracker)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            if int(stat[stat.rindex(")") + 2:].split()[3]) != sid:
                continue
            with open(f"/proc/{entry}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        out[int(entry)] = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return out


def rss_split(sid: int) -> tuple[int, int, int]:
    """(main process bytes, other processes bytes, number of other processes)."""
    r = session_rss(sid)
    main = r.pop(sid, 0)
    return main, sum(r.values()), len(r)


def mb(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:.0f}"


def start_bundler(node_url: str, port: int, data_dir: str, log_path: Path, mode: str, args) -> Target:
    exe, env = bundler_command()  # this checkout's sources (a worktree shares the venv)
    env["BUNDLER_PRIVATE_KEY"] = KEY_EXECUTOR
    cmd = exe + ["run", "--rpc-url", node_url, "--port", str(port),
                 "--bundle-mode", mode, "--log-level", args.log_level, "--data-dir", data_dir,
                 ] + args.ours_args
    fh = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    fh.close()
    return Target("ours", f"http://127.0.0.1:{port}", proc, log_path)


def kill_hard(t: Target) -> None:
    try:
        os.killpg(t.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    t.proc.wait(timeout=30)


async def mempool_size(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            text = await resp.text()
    except Exception:  # noqa: BLE001 - down during the restart
        return None
    for line in text.splitlines():
        if line.startswith("bundler_mempool_ops "):
            return int(float(line.split()[1]))
    return None


# ---------------------------------------------------------------------------------------------
# memory per pending op (manual mode)
async def memory_phase(node_url: str, wl: Workload, args, logdir: Path) -> dict:
    n_warm = min(20, args.mem_ops)
    n = min(args.mem_ops, len(wl.ops)) - n_warm
    port = free_port()
    t = start_bundler(node_url, port, tempfile.mkdtemp(prefix="mem-data-", dir=logdir), logdir / "memory.log",
                      "manual", args)
    try:
        await asyncio.to_thread(wait_ready, "bundler (memory phase)", t.url, t.proc, t.log_path)
        ep_addr = to_checksum_address(wl.ep.address)
        failures: Counter = Counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
            async def send_range(lo: int, hi: int) -> None:
                idx = iter(range(lo, hi))

                async def worker():
                    for i in idx:
                        try:
                            a = await post(s, t.url, "eth_sendUserOperation", [wl.ops[i], ep_addr], 60)
                        except Exception as e:  # noqa: BLE001
                            a = {"error": {"code": "transport", "message": type(e).__name__}}
                        if "result" not in a:
                            failures[error_key(a)] += 1
                await asyncio.gather(*(worker() for _ in range(16)))

            await send_range(0, n_warm)
            await asyncio.sleep(2)
            pool0 = await mempool_size(s, t.url)
            m0, o0, k0 = rss_split(t.proc.pid)
            parts0 = session_rss(t.proc.pid)
            t0 = time.perf_counter()
            await send_range(n_warm, n_warm + n)
            fill_s = time.perf_counter() - t0
            await asyncio.sleep(2)
            pool1 = await mempool_size(s, t.url)
            m1, o1, k1 = rss_split(t.proc.pid)
        added = (pool1 or 0) - (pool0 or 0)
        return {
            "pending_before": pool0, "pending_after": pool1, "added": added, "fill_s": fill_s,
            "rss_before": {"main": m0, "others": o0, "other_procs": k0},
            "rss_parts_before": {("main" if pid == t.proc.pid else f"pid {pid}"): v for pid, v in parts0.items()},
            "rss_after": {"main": m1, "others": o1, "other_procs": k1},
            "bytes_per_op_main": (m1 - m0) / added if added > 0 else None,
            "bytes_per_op_total": (m1 + o1 - m0 - o0) / added if added > 0 else None,
            "failures": dict(failures),
        }
    finally:
        kill_hard(t)  # nothing was bundled: the accounts stay at nonce 0 for the sustained phase


# ---------------------------------------------------------------------------------------------
# sustained phase
async def sustained_phase(node_url: str, wl: Workload, slots: list[tuple[int, int]], args, logdir: Path,
                          emit) -> dict:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="sustained-data-", dir=logdir)
    log_path = logdir / "sustained.log"
    holder = {"t": start_bundler(node_url, port, data_dir, log_path, "auto", args)}
    await asyncio.to_thread(wait_ready, "bundler", holder["t"].url, holder["t"].proc, log_path)
    url = holder["t"].url
    ep_addr = to_checksum_address(wl.ep.address)
    rpc = Rpc(node_url)
    from_block = int(rpc.call("eth_blockNumber"), 16) + 1

    n_total = min(len(wl.ops), int(math.ceil(args.rate * args.duration)))
    results: list[tuple | None] = [None] * n_total  # (t_start, t_done, ok, error, during_restart)
    acked: dict[str, int] = {}  # hash -> op index
    down = {"since": None}      # perf_counter of the kill while the bundler is down
    restart_info: dict = {}
    windows: list[dict] = []
    inflight = 0
    skipped = 0
    unacked_accounts: set[int] = set()  # an op of theirs was not acknowledged: later nonces would gap
    skipped_gap = 0

    conn = aiohttp.TCPConnector(limit=args.max_inflight)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(post(session, url, "eth_supportedEntryPoints", []) for _ in range(8)))

        async def send(i: int) -> None:
            nonlocal inflight
            inflight += 1
            t_s = time.perf_counter()
            was_down = down["since"] is not None
            try:
                a = await post(session, url, "eth_sendUserOperation", [wl.ops[i], ep_addr], args.request_timeout)
            except Exception as e:  # noqa: BLE001 - a transport failure is a data point
                a = {"error": {"code": "transport", "message": type(e).__name__}}
            t_d = time.perf_counter()
            inflight -= 1
            ok = "result" in a
            if ok:
                h = str(a["result"]).lower()
                acked[h] = i
                if h != wl.hashes[i]:
                    ok, a = False, {"error": {"code": "bench", "message": "returned hash differs from ours"}}
            if not ok:
                unacked_accounts.add(slots[i][0])
            results[i] = (t_s, t_d, ok, None if ok else error_key(a),
                          was_down or down["since"] is not None)

        async def restarter(t0: float) -> None:
            await asyncio.sleep(max(0.0, t0 + args.restart_at - time.perf_counter()))
            old = holder["t"]
            t_kill = time.perf_counter()
            down["since"] = t_kill
            pre = rss_split(old.proc.pid)
            await asyncio.to_thread(kill_hard, old)
            emit(f"  -- t={t_kill - t0:5.1f} s: SIGKILL to the bundler (pid {old.proc.pid}, main RSS "
                 f"{mb(pre[0])} MB); starting it again on the same data dir and port")
            new = start_bundler(node_url, port, data_dir, log_path, "auto", args)
            holder["t"] = new
            try:
                await asyncio.to_thread(wait_ready, "bundler (restarted)", url, new.proc, log_path, args.start_timeout)
            finally:
                down["since"] = None
            t_up = time.perf_counter()
            restart_info.update({"killed_at_s": t_kill - t0, "ready_at_s": t_up - t0, "gap_s": t_up - t_kill,
                                 "old_pid": old.proc.pid, "new_pid": new.proc.pid})
            emit(f"  -- t={t_up - t0:5.1f} s: bundler serving again (pid {new.proc.pid}) after "
                 f"{t_up - t_kill:.1f} s")

        async def reporter(t0: float, stop: asyncio.Event) -> None:
            k = 0
            while not stop.is_set():
                k += 1
                w_end = t0 + k * WINDOW_S
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, w_end - time.perf_counter()))
                except asyncio.TimeoutError:
                    pass
                w_end = min(w_end, time.perf_counter())
                w_start = t0 + (k - 1) * WINDOW_S
                if w_end - w_start < 1.0:
                    break  # the sending ended right at a window boundary: no partial window
                done = [r for r in results if r is not None and w_start <= r[1] < w_end]
                ok_lat = [r[1] - r[0] for r in done if r[2]]
                pool = await mempool_size(session, url)
                t = holder["t"]
                # while the restart is under way the old process may be half dead: no RSS figure
                m, o, np_ = (rss_split(t.proc.pid) if t.proc.poll() is None and down["since"] is None
                             else (None, None, 0))
                w = {"t_s": round(w_end - t0, 1), "accepted": len(ok_lat),
                     "accepted_per_s": len(ok_lat) / max(w_end - w_start, 1e-9),
                     "failed": len(done) - len(ok_lat),
                     "p50_s": pct(ok_lat, 50), "p99_s": pct(ok_lat, 99), "mempool": pool,
                     "rss_main": m, "rss_others": o, "other_procs": np_, "inflight": inflight}
                windows.append(w)
                emit(fmt_window(w))

        emit(f"sustained: {args.rate:g} ops/s for {args.duration:g} s ({n_total} ops over {len(wl.accounts)} accounts), "
             f"SIGKILL restart at {args.restart_at:g} s, bundler {url}")
        emit(WINDOW_HEADER)
        t0 = time.perf_counter()
        stop = asyncio.Event()
        rep = asyncio.create_task(reporter(t0, stop))
        rst = asyncio.create_task(restarter(t0)) if 0 < args.restart_at < args.duration else None
        tasks = set()
        for i in range(n_total):
            due = t0 + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - t0 > args.duration + 5:
                break
            if inflight >= args.max_inflight:
                skipped += 1  # client-side backlog bound: not sent
                unacked_accounts.add(slots[i][0])
                continue
            if slots[i][0] in unacked_accounts:
                skipped_gap += 1  # an earlier nonce of this account was refused: this one cannot be valid
                continue
            task = asyncio.create_task(send(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        t_last_send = time.perf_counter()
        if tasks:
            await asyncio.wait(list(tasks), timeout=args.request_timeout + 5)
        if rst is not None:
            await rst
        stop.set()
        await rep
        t_sent = time.perf_counter()

        # -------- no-loss check, through the (restarted) bundler
        emit(f"checking the {len(acked)} acknowledged ops through the bundler (up to {args.drain_timeout:g} s) ...")
        status: dict[str, tuple[str, str]] = {}
        deadline = time.perf_counter() + args.drain_timeout
        sem = asyncio.Semaphore(16)

        async def check(h: str) -> None:
            async with sem:
                try:
                    a = await post(session, url, "eth_getUserOperationReceipt", [h], 30)
                except Exception as e:  # noqa: BLE001
                    status[h] = ("unknown", f"transport {type(e).__name__}")
                    return
                if "error" in a:
                    msg = str(a["error"].get("message", ""))
                    if "dropped" in msg:
                        status[h] = ("dropped", f"{a['error'].get('code')}: {drop_reason(msg)}")
                    else:
                        status[h] = ("unknown", error_key(a))
                    return
                if a.get("result"):
                    status[h] = ("mined", "success" if a["result"].get("success") else "execution reverted")
                    return
                try:
                    b = await post(session, url, "eth_getUserOperationByHash", [h], 30)
                except Exception as e:  # noqa: BLE001
                    status[h] = ("unknown", f"transport {type(e).__name__}")
                    return
                status[h] = ("pending", "") if b.get("result") else ("lost", "unknown to the bundler")

        todo = list(acked)
        while todo:
            await asyncio.gather(*(check(h) for h in todo))
            todo = [h for h in todo if status[h][0] not in ("mined", "dropped")]
            if not todo or time.perf_counter() > deadline:
                break
            await asyncio.sleep(2)
        t_settled = time.perf_counter()
        final_t = holder["t"]
        final_rss = rss_split(final_t.proc.pid)
        final_pool = await mempool_size(session, url)

    # cross-check on chain: UserOperationEvent logs from anvil directly
    head = int(rpc.call("eth_blockNumber"), 16)
    on_chain: dict[str, bool] = {}
    for lo in range(from_block, head + 1, 2000):
        for lg in rpc.call("eth_getLogs", {"address": wl.ep.address, "topics": [USER_OPERATION_EVENT_TOPIC],
                                           "fromBlock": hex(lo), "toBlock": hex(min(head, lo + 1999))}):
            on_chain[lg["topics"][1].lower()] = True
    kill_hard(final_t)

    sent = [r for r in results if r is not None]
    ok_lat = [r[1] - r[0] for r in sent if r[2]]
    fail = Counter()
    for r in sent:
        if not r[2]:
            fail[("during restart: " if r[4] else "") + r[3]] += 1
    outcome = Counter(s[0] for s in status.values())
    reasons = Counter(f"{s[0]}: {s[1]}" for s in status.values() if s[0] != "mined" or s[1] != "success")
    mined_hashes = {h for h, s in status.items() if s[0] == "mined"}
    return {
        "rate": args.rate, "duration_s": args.duration, "planned_ops": n_total, "sent": len(sent),
        "skipped_client_backlog": skipped, "skipped_nonce_gap": skipped_gap, "send_span_s": t_last_send - t0,
        "acknowledged": len(acked), "failed": len(sent) - len(ok_lat),
        "accepted_per_s_overall": len(ok_lat) / max(t_last_send - t0, 1e-9),
        "send_p50_s": pct(ok_lat, 50), "send_p99_s": pct(ok_lat, 99), "send_max_s": max(ok_lat, default=None),
        "failures": dict(fail.most_common()), "restart": restart_info, "windows": windows,
        "outcome": dict(outcome), "not_mined_success": dict(reasons.most_common()),
        "lost": sorted(h for h, s in status.items() if s[0] in ("lost", "unknown")),
        "still_pending": sorted(h for h, s in status.items() if s[0] == "pending"),
        "settled_after_last_send_s": t_settled - t_sent,
        "on_chain_acked": sum(1 for h in acked if h in on_chain),
        "mined_not_on_chain": sorted(h for h in mined_hashes if h not in on_chain),
        "on_chain_not_acked": sum(1 for h in on_chain if h not in acked),
        "final_rss": {"main": final_rss[0], "others": final_rss[1], "other_procs": final_rss[2]},
        "final_mempool": final_pool, "log": str(log_path), "data_dir": data_dir,
    }


def drop_reason(msg: str) -> str:
    return msg.split("was dropped:", 1)[-1].strip()[:160] if "was dropped:" in msg else msg[:160]


WINDOW_HEADER = (f"{'t (s)':>6} {'acc/s':>6} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} {'mempool':>7} "
                 f"{'RSS main MB':>11} {'RSS workers MB':>15} {'in flight':>9}")


def fmt_window(w: dict) -> str:
    ms = lambda v: "-" if v is None else f"{v * 1000:.0f}"  # noqa: E731
    return (f"{w['t_s']:6.1f} {w['accepted_per_s']:6.1f} {w['failed']:6d} {ms(w['p50_s']):>7} {ms(w['p99_s']):>7} "
            f"{'-' if w['mempool'] is None else w['mempool']:>7} {mb(w['rss_main']):>11} "
            f"{mb(w['rss_others']) + ' (' + str(w['other_procs']) + ')':>15} {w['inflight']:>9}")


def print_summary(rep: dict, emit) -> None:
    s, m = rep["sustained"], rep.get("memory")
    ms = lambda v: "-" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
    emit("")
    emit(f"set-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep["setup_s"].items())
         + f"; {rep['accounts']} accounts, EntryPoint v{rep['ep']}, {rep['machine']['cpus']} CPUs")
    if m:
        emit(f"memory per pending op (manual mode, {m['added']} ops added to {m['pending_before']} pending, "
             f"filled in {m['fill_s']:.1f} s):")
        emit(f"  RSS main  {mb(m['rss_before']['main'])} -> {mb(m['rss_after']['main'])} MB: "
             f"{(m['bytes_per_op_main'] or 0) / 1024:.1f} KiB per op")
        emit(f"  RSS total {mb(m['rss_before']['main'] + m['rss_before']['others'])} -> "
             f"{mb(m['rss_after']['main'] + m['rss_after']['others'])} MB (main + {m['rss_after']['other_procs']} "
             f"other processes): {(m['bytes_per_op_total'] or 0) / 1024:.1f} KiB per op")
        parts = ", ".join(f"{k} {mb(v)} MB" for k, v in m.get("rss_parts_before", {}).items())
        emit(f"  RSS per process with {m['pending_before']} ops pending (about idle): {parts} "
             f"(the others: sim workers and multiprocessing's resource tracker)")
        for e, c in m["failures"].items():
            emit(f"  memory phase send failure x{c}: {e}")
    if s is None:  # --memory-only
        return
    r = s["restart"]
    rows = [
        ("planned / sent", f"{s['planned_ops']} / {s['sent']}"),
        ("not sent: earlier nonce unacknowledged", f"{s['skipped_nonce_gap']}"),
        ("not sent: client backlog", f"{s['skipped_client_backlog']}"),
        ("acknowledged", f"{s['acknowledged']}"),
        ("failed sends", f"{s['failed']}"),
        ("accepted ops/s (whole run)", f"{s['accepted_per_s_overall']:.1f} over {s['send_span_s']:.0f} s"),
        ("sendUserOperation p50 / p99 / max", f"{ms(s['send_p50_s'])} / {ms(s['send_p99_s'])} / {ms(s['send_max_s'])}"),
        ("restart: killed at / serving at / gap",
         f"{r['killed_at_s']:.1f} s / {r['ready_at_s']:.1f} s / {r['gap_s']:.1f} s" if r else "no restart"),
        ("outcome of acknowledged ops", ", ".join(f"{k} {v}" for k, v in sorted(s["outcome"].items()))),
        ("settled after last send", f"{s['settled_after_last_send_s']:.1f} s"),
        ("acknowledged ops on chain (anvil logs)", f"{s['on_chain_acked']}"),
        ("on chain but not acknowledged", f"{s['on_chain_not_acked']}"),
        ("final RSS main / others", f"{mb(s['final_rss']['main'])} / {mb(s['final_rss']['others'])} MB "
                                    f"(after the restart)"),
        ("final mempool", f"{s['final_mempool']}"),
    ]
    emit("")
    for k, v in rows:
        emit(f"{k:<42} {v}")
    for e, c in s["failures"].items():
        emit(f"  send failure x{c}: {e}")
    for e, c in s["not_mined_success"].items():
        emit(f"  not mined with success x{c}: {e}")
    if s["mined_not_on_chain"]:
        emit(f"  receipt says mined but no UserOperationEvent on chain: {s['mined_not_on_chain'][:10]}")
    if s["still_pending"]:
        emit(f"still pending at the end (not lost, not settled): {len(s['still_pending'])}, e.g. "
             f"{s['still_pending'][:5]}")
    emit(f"lost: {len(s['lost'])}" + (f" {s['lost']}" if s["lost"] else ""))
    emit(f"bundler log: {s['log']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180, help="seconds of load, default 180")
    p.add_argument("--rate", type=float, default=40, help="ops per second, default 40")
    p.add_argument("--restart-at", type=float, default=None,
                   help="SIGKILL + restart the bundler after this many seconds (default: half-way; 0: never)")
    p.add_argument("--mem-ops", type=int, default=2000, help="pending ops for the memory phase (0: skip)")
    p.add_argument("--memory-only", action="store_true", help="only the memory phase (no sustained load)")
    p.add_argument("--ep", choices=("0.7", "0.8"), default="0.7")
    p.add_argument("--ops-per-account", type=int, default=5,
                   help="consecutive nonces per account (accounts = ops / this), default 5")
    p.add_argument("--max-accounts", type=int, default=1500,
                   help="anvil's pool takes ~1,500 creations from one deployer at once, default 1500")
    p.add_argument("--max-inflight", type=int, default=256, help="outstanding requests at most")
    p.add_argument("--request-timeout", type=float, default=30)
    p.add_argument("--start-timeout", type=float, default=120, help="restarted bundler must serve within")
    p.add_argument("--drain-timeout", type=float, default=180, help="wait this long for all to settle")
    p.add_argument("--ours-args", default="", help="extra `bundler run` flags, space-separated")
    p.add_argument("--log-level", default="info")
    p.add_argument("--seed", default="sustained-bench")
    add_op_gas_args(p)
    p.add_argument("--logdir", help="keep logs and data dirs here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout (progress on stderr)")
    args = p.parse_args(argv)
    args.ours_args = args.ours_args.split()
    if args.restart_at is None:
        args.restart_at = args.duration / 2
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")

    def emit(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    logdir = Path(args.logdir) if args.logdir else Path(tempfile.mkdtemp(prefix="sustained-bench-"))
    logdir.mkdir(parents=True, exist_ok=True)
    n_ops = int(math.ceil(args.rate * args.duration))
    n_accounts = max(1, min(int(math.ceil(max(n_ops, args.mem_ops) / args.ops_per_account)), args.max_accounts))
    ep = V07 if args.ep == "0.7" else V08
    t0 = time.perf_counter()
    owners = make_owner_keys(n_accounts, args.seed)
    owners_addr = [owner_address(k) for k in owners]
    wl = Workload(ep=ep, owners=owners)
    log(f"fresh anvil, EntryPoints, {n_accounts} accounts ...")
    chain = start_chain(wl, owners_addr)
    try:
        t1 = time.perf_counter()
        slots = build_sequenced_ops(wl, max(n_ops, args.mem_ops), args)
        chain.setup_s["signing"] = time.perf_counter() - t1
        log("set-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in chain.setup_s.items()))
        memory = None
        if args.mem_ops > 0:
            log(f"memory phase: {args.mem_ops} ops pending in manual mode ...")
            memory = asyncio.run(memory_phase(chain.url, wl, args, logdir))
        if args.memory_only:
            if memory:
                print_summary({"ep": args.ep, "accounts": n_accounts, "setup_s": chain.setup_s,
                               "machine": {"cpus": os.cpu_count()}, "memory": memory, "sustained": None}, emit)
            emit(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
            return 0
        sustained = asyncio.run(sustained_phase(chain.url, wl, slots, args, logdir, emit))
    finally:
        chain.node.stop()
    report = {"ep": args.ep, "accounts": n_accounts, "setup_s": chain.setup_s, "machine": {"cpus": os.cpu_count()},
              "memory": memory, "sustained": sustained, "total_s": time.perf_counter() - t0}
    print_summary(report, emit)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    return 0 if not sustained["lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
