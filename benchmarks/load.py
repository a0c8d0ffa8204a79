"""Load benchmark: pre-signed UserOperations from many senders, sent concurrently to a bundler.

    .venv/bin/python benchmarks/load.py [--ops 200] [--concurrency 8] [--ep 0.7|0.8] [--runs 3]
                                        [--executors 3] [--ours both|safe|unsafe]
                                        [--alto auto|none|safe|unsafe|both] [--json]
    make bench                      (the defaults: 4 bundlers x 3 rounds, about 6-10 minutes)
    make bench ARGS="--ops 500 --concurrency 16"

Bundlers under test: ours in safe mode, ours with --unsafe, and Pimlico's Alto from npm in safe
and unsafe mode. Each runs --runs times, interleaved (round 1: each bundler once, round 2: each
once in a rotated order, ...), every one with the same --executors executor keys. The output
gives per figure the median and the range over the runs, the ratios between bundlers of the same
round (median and range: a round's runs saw about the same machine load), the load average
before each run, and issue 15's goals judged on those ratios.

For each run the same workload runs on its own fresh anvil:

  set-up     anvil on a free port (automine), EntryPoints + SimpleAccountFactories deployed,
             N SimpleAccounts deployed through the factory in a few blocks (automine off, all
             creation transactions sent in JSON-RPC batches, then mined), funded with
             anvil_setBalance. Owners are derived from a fixed seed, so the accounts, the ops,
             their hashes and signatures are identical on every fresh chain: the ops are signed
             once and replayed against each bundler.
  bundler    started as a subprocess (`bundler run --rpc-url ... --port ...`, auto bundling,
             executor key funded; Alto with its own executor and utility keys).
  estimate   eth_estimateUserOperationGas, sequential, over a sample (dummy signatures), before
             the load.
  load       one op per sender (execute(): a small ETH transfer), C concurrent aiohttp clients
             calling eth_sendUserOperation; latency of each call measured at the client.
  mined      UserOperationEvent logs polled from anvil directly (not through the bundler under
             test), so "all mined" is the same clock for every bundler; then every accepted
             op's eth_getUserOperationReceipt is read back through the bundler.

  CPU        user+system CPU seconds of the bundler's processes (main + sim workers), of anvil
             and of this client, from the first send until all are mined. The machine is small
             and shared, so rates and latencies are noisy; CPU ms per op is the steadier figure.
             Alto validates through the node (eth_call, or debug_traceCall with a JS tracer in
             safe mode), so "bundler+anvil CPU per op" is the fair comparison.

Only 127.0.0.1 is used. Every loop is bounded in count and time (--mine-timeout).
Alto is optional: it is installed with `npm install` into benchmarks/.alto/<version>
(git-ignored) on first use; when that or its start fails, the output says so and our figures
still print. Version 0.0.18 by default: 0.0.19 and 0.0.20 refuse every op in safe mode on anvil
(they cannot decode the DelegateAndRevert revert in the trace). Alto gets
--max-gas-per-bundle 5000000: with its default it builds bundles above anvil's 30M block gas
limit (its AA95 gas floor adds the whole bundle's calldata cost once per op) and never lands them.

--py-spy FILE records our bundler (all processes, threads, idle included, raw collapsed
stacks) from just before the load until all ops are mined; --py-spy-summary prints where the
time went per process/thread.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests
from eth_abi import decode, encode
from eth_hash.auto import keccak

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from bundler.devchain import deploy_all, free_port, start_anvil  # noqa: E402
from bundler.devchain.anvil import ANVIL_ACCOUNT0  # noqa: E402
from bundler.entrypoint import V07, V08  # noqa: E402
from bundler.userop import UserOperation  # noqa: E402
from bundler.userop.codec import format_user_operation  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402
from helpers.accounts import (  # noqa: E402
    DUMMY_SIGNATURE, SEL_CREATE_ACCOUNT, SEL_GET_ADDRESS, USER_OPERATION_EVENT_TOPIC, SimpleAccountHelper,
    sender_creator, sign_user_op,
)

ALTO_PACKAGE = "@pimlico/alto"
ALTO_DIR = ROOT / "benchmarks" / ".alto"
ALTO_VERSION = ["latest"]  # set by ensure_alto
RECIPIENT = "0x" + "be" * 20
TRANSFER_WEI = 10**12
ACCOUNT_FUNDS = 10**18
KEY_EXECUTOR = "0x" + keccak(b"load bench executor").hex()
# every bundler gets the same executor keys (--executors N takes the first N)
KEY_EXECUTORS = [KEY_EXECUTOR] + ["0x" + keccak(f"load bench executor {i}".encode()).hex() for i in range(1, 16)]
KEY_UTILITY = "0x" + keccak(b"load bench utility").hex()
CHAIN_ID = 1337


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# synchronous JSON-RPC with batches (set-up only)
class Rpc:
    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()
        self._id = 0

    def call(self, method: str, *params):
        self._id += 1
        answer = self.session.post(self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method,
                                                   "params": list(params)}, timeout=60).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def batch(self, calls: list[tuple[str, list]], chunk: int = 250) -> list:
        out = []
        for start in range(0, len(calls), chunk):
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                    for i, (m, p) in enumerate(calls[start:start + chunk])]
            answers = self.session.post(self.url, json=body, timeout=120).json()
            answers = sorted(answers, key=lambda a: a["id"])
            for a in answers:
                if "error" in a:
                    raise RuntimeError(f"{body[a['id']]['method']}: {a['error']}")
                out.append(a["result"])
        return out


# ---------------------------------------------------------------------------------------------
# workload: accounts and signed ops (identical on every fresh chain)
def add_op_gas_args(p: argparse.ArgumentParser) -> None:
    """The gas fields every benchmark's pre-signed ops carry (the same defaults everywhere)."""
    p.add_argument("--verification-gas", type=int, default=100_000)
    p.add_argument("--call-gas", type=int, default=50_000)
    p.add_argument("--pre-verification-gas", type=int, default=55_000)
    p.add_argument("--max-fee-gwei", type=int, default=10)
    p.add_argument("--priority-fee-gwei", type=int, default=2)


@dataclass
class Workload:
    ep: object
    owners: list[str]            # private keys
    accounts: list[str] = field(default_factory=list)  # lower-case addresses
    ops: list[dict] = field(default_factory=list)       # RPC form, signed
    estimate_ops: list[dict] = field(default_factory=list)  # RPC form, dummy signature
    hashes: list[str] = field(default_factory=list)


def make_owner_keys(n: int, seed: str) -> list[str]:
    return ["0x" + keccak(f"{seed} owner {i}".encode()).hex() for i in range(n)]


def owner_address(key: str) -> str:
    from coincurve import PrivateKey

    pub = PrivateKey(bytes.fromhex(key[2:])).public_key.format(compressed=False)[1:]
    return "0x" + keccak(pub)[12:].hex()


@dataclass
class Chain:
    node: object
    url: str
    factory: str
    setup_s: dict


def start_chain(wl: Workload, owners_addr: list[str]) -> Chain:
    """Fresh anvil, EntryPoints, and every account deployed and funded."""
    t0 = time.perf_counter()
    node = start_anvil(chain_id=CHAIN_ID)
    try:
        deployment = deploy_all(node.url)
        rpc = Rpc(node.url)
        factory = deployment.factories[wl.ep.version].lower()
        t1 = time.perf_counter()
        addrs = rpc.batch([("eth_call", [{"to": factory, "data": "0x" + (
            SEL_GET_ADDRESS + encode(["address", "uint256"], [o, 0])).hex()}, "latest"]) for o in owners_addr])
        accounts = ["0x" + a[-40:] for a in addrs]
        if wl.accounts and accounts != wl.accounts:
            raise RuntimeError("account addresses differ between fresh chains")
        wl.accounts = accounts
        # v0.7's factory takes anyone's call; v0.8's only the EntryPoint's SenderCreator
        if wl.ep.version == "0.7":
            deployer = ANVIL_ACCOUNT0
        else:
            deployer = sender_creator(node.url, wl.ep)
            rpc.call("anvil_impersonateAccount", deployer)
            rpc.call("anvil_setBalance", deployer, hex(10**21))
        rpc.call("evm_setAutomine", False)
        try:
            # explicit nonces: anvil answers a batch concurrently, auto-nonces would collide
            base = int(rpc.call("eth_getTransactionCount", deployer, "pending"), 16)
            txs = rpc.batch([("eth_sendTransaction", [{
                "from": deployer, "to": factory, "gas": hex(400_000), "nonce": hex(base + i),
                "data": "0x" + (SEL_CREATE_ACCOUNT + encode(["address", "uint256"], [o, 0])).hex(),
            }]) for i, o in enumerate(owners_addr)])
            for _ in range(10 + len(txs) // 20):  # ~75 creations fit a 30M block
                rpc.call("evm_mine")
                status = rpc.call("txpool_status")
                if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                    break
            else:
                raise RuntimeError("account creations still pending after mining")
        finally:
            rpc.call("evm_setAutomine", True)
        receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in txs])
        bad = [h for h, r in zip(txs, receipts) if not r or r["status"] != "0x1"]
        if bad:
            raise RuntimeError(f"{len(bad)} account creations failed, e.g. {bad[0]}")
        rpc.batch([("anvil_setBalance", [a, hex(ACCOUNT_FUNDS)]) for a in accounts])
        for key in (*KEY_EXECUTORS, KEY_UTILITY):
            rpc.call("anvil_setBalance", owner_address(key), hex(10_000 * 10**18))
        rpc.call("evm_mine")
        codes = rpc.batch([("eth_getCode", [a, "latest"]) for a in accounts])
        if any(c in ("0x", "") for c in codes):
            raise RuntimeError("some accounts have no code after deployment")
        t2 = time.perf_counter()
        return Chain(node, node.url, factory, {"chain": t1 - t0, "accounts": t2 - t1})
    except BaseException:
        node.stop()
        raise


def build_ops(wl: Workload, args, factory: str) -> None:
    """One signed op per sender (nonce 0, a small transfer), plus dummy-signed copies for
    estimation."""
    call_data = SimpleAccountHelper.execute(RECIPIENT, TRANSFER_WEI, b"")
    for key, sender in zip(wl.owners, wl.accounts):
        op = UserOperation(
            sender=sender, nonce=0, call_data=call_data,
            call_gas_limit=args.call_gas, verification_gas_limit=args.verification_gas,
            pre_verification_gas=args.pre_verification_gas,
            max_fee_per_gas=args.max_fee_gwei * 10**9, max_priority_fee_per_gas=args.priority_fee_gwei * 10**9,
            signature=DUMMY_SIGNATURE,
        )
        signed = op.with_changes(signature=sign_user_op(op, wl.ep, CHAIN_ID, key))
        wl.estimate_ops.append(format_user_operation(op))
        wl.ops.append(format_user_operation(signed))
        wl.hashes.append("0x" + wl.ep.user_op_hash(signed, CHAIN_ID).hex())


# ---------------------------------------------------------------------------------------------
# bundlers under test
@dataclass
class Target:
    name: str
    url: str
    proc: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: itself and its workers
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_ready(name: str, url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{tail}")
        try:
            r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_supportedEntryPoints",
                                         "params": []}, timeout=2)
            if r.status_code == 200 and "result" in r.json():
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer within {timeout:.0f} s (log: {log_path})")


SOURCE_TREE = [ROOT]  # whose src/ and sdk/python the bundler under test runs (compare_revisions.py sets it)


def bundler_command() -> tuple[list[str], dict]:
    """`bundler` from this checkout's sources (a worktree shares the venv, whose console script
    would import another checkout's package), with the environment that makes it so."""
    tree = SOURCE_TREE[0]
    paths = [str(tree / "src"), str(tree / "sdk" / "python")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return [sys.executable, "-c", "import sys; from bundler.cli import main; sys.exit(main())"], env


def start_ours(chain: Chain, logdir: Path, args, unsafe: bool = False, run: int = 0,
               reuse: bool = True) -> Target:
    port = free_port()
    name = "ours-unsafe" if unsafe else "ours-safe" if reuse else "ours-safe-noreuse"
    log_path = logdir / f"{name}-{run}.log"
    exe, env = bundler_command()
    env["BUNDLER_PRIVATE_KEY"] = ",".join(KEY_EXECUTORS[:args.executors])
    cmd = exe + ["run", "--rpc-url", chain.url, "--port", str(port),
                 "--bundle-mode", "auto", "--log-level", args.log_level,
                 # the load comes from this machine on purpose: no per-IP rate limit (50/s default)
                 "--rate-limit-exempt-loopback",
                 # a fresh chain each run: a fresh data dir too (the store is bound to one chain)
                 "--data-dir", tempfile.mkdtemp(prefix="bench-data-", dir=logdir)] + args.ours_args
    if unsafe:
        cmd.append("--unsafe")
    if not reuse:
        cmd.append("--no-readset-reuse")
    fh = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t = Target(name, url, proc, log_path)
    try:
        wait_ready("our bundler", url, proc, log_path)
    except BaseException:
        t.stop()
        raise
    return t


def alto_dir() -> Path:
    return ALTO_DIR / ALTO_VERSION[0]


def alto_binary() -> Path:
    return alto_dir() / "node_modules" / ".bin" / "alto"


def ensure_alto(version: str) -> tuple[bool, str]:
    """Install @pimlico/alto@version into benchmarks/.alto/<version> unless already there."""
    ALTO_VERSION[0] = version or "latest"
    if alto_binary().exists():
        return True, "already installed"
    if shutil.which("npm") is None:
        return False, "npm is not on PATH"
    alto_dir().mkdir(parents=True, exist_ok=True)
    pkg = alto_dir() / "package.json"
    if not pkg.exists():
        pkg.write_text('{"name": "alto-bench", "private": true}\n')
    spec = f"{ALTO_PACKAGE}@{version}" if version else ALTO_PACKAGE
    log(f"installing {spec} into {alto_dir()} ...")
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", spec], cwd=alto_dir(),
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, "npm install timed out"
    if r.returncode != 0 or not alto_binary().exists():
        return False, f"npm install {spec} failed: {(r.stderr or r.stdout).strip()[-400:]}"
    return True, "installed"


def alto_version() -> str:
    try:
        return json.loads((alto_dir() / "node_modules" / "@pimlico" / "alto" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def start_alto(chain: Chain, logdir: Path, safe: bool, ep, args, run: int = 0) -> Target:
    port = free_port()
    name = f"alto-{'safe' if safe else 'unsafe'}"
    log_path = logdir / f"{name}-{run}.log"
    cmd = [
        str(alto_binary()),
        "--entrypoints", to_checksum_address(ep.address),
        "--executor-private-keys", ",".join(KEY_EXECUTORS[:args.executors]),
        "--utility-private-key", KEY_UTILITY,
        "--rpc-url", chain.url,
        "--port", str(port),
        "--safe-mode", "true" if safe else "false",
        "--min-entity-stake", "1",
        "--min-entity-unstake-delay", "1",
        "--log-level", args.alto_log_level,
        # Alto sizes bundles by the ops' verification+call gas only, then adds an AA95 gas floor
        # that counts the whole bundle's calldata once per op: with its default 20M it builds
        # bundles whose gas limit exceeds anvil's 30M block, which the node refuses, forever.
        # 5M keeps its bundles (~33 of these ops) minable; ours is capped at 10M / 64 ops.
        "--max-gas-per-bundle", str(args.alto_max_bundle_gas),
    ] + args.alto_args
    fh = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=alto_dir())
    url = f"http://127.0.0.1:{port}/rpc"
    t = Target(name, url, proc, log_path)
    try:
        wait_ready(name, url, proc, log_path)
    except BaseException:
        t.stop()
        raise
    return t


# ---------------------------------------------------------------------------------------------
# CPU accounting: the machine is shared and small, so CPU seconds per op are steadier than rates
_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu(sid: int) -> dict[int, float]:
    """user+system CPU seconds of each live process of session `sid` (a bundler started with
    start_new_session: itself and its workers; anvil likewise)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields_ = stat[stat.rindex(")") + 2:].split()
        # fields_[0] is field 3 (state): session is field 6, utime/stime fields 14/15
        if int(fields_[3]) == sid:
            out[int(entry)] = (int(fields_[11]) + int(fields_[12])) / _TICK
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float], main_pid: int) -> tuple[float, float]:
    """(main process, all other processes of the session) CPU seconds spent in between."""
    main = after.get(main_pid, 0.0) - before.get(main_pid, 0.0)
    rest = sum(v - before.get(pid, 0.0) for pid, v in after.items() if pid != main_pid)
    return main, rest


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------------------------------------
# measurement
def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def error_key(answer) -> str:
    if isinstance(answer, dict) and "error" in answer:
        e = answer["error"]
        msg = str(e.get("message", ""))
        return f"{e.get('code')}: {msg[:100]}"
    return str(answer)[:120]


async def post(session: aiohttp.ClientSession, url: str, method: str, params: list, timeout: float = 60):
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        return await resp.json(content_type=None)


async def measure_estimates(session, url: str, ep_addr: str, ops: list[dict]) -> dict:
    lat, failures = [], Counter()
    estimates = []
    for i, op in enumerate(ops):
        t0 = time.perf_counter()
        try:
            answer = await post(session, url, "eth_estimateUserOperationGas", [op, ep_addr])
        except Exception as e:  # noqa: BLE001 - any transport failure is a data point
            answer = {"error": {"code": "transport", "message": f"{type(e).__name__}: {e}"}}
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt  # warm-up, not counted
            if "result" in answer:
                estimates.append(answer["result"])
            else:
                failures[error_key(answer)] += 1
            continue
        if "result" in answer:
            lat.append(dt)
            estimates.append(answer["result"])
        else:
            failures[error_key(answer)] += 1
    return {"count": len(lat), "first_s": first if ops else None, "p50_s": pct(lat, 50), "p99_s": pct(lat, 99),
            "failures": dict(failures), "sample_result": estimates[0] if estimates else None}


async def watch_mined(node_url: str, ep_addr: str, from_block: int, wanted: set[str], seen: dict,
                      bundles: Counter, failed_exec: set, stop_when_all: asyncio.Event,
                      deadline: float, interval: float = 0.1) -> None:
    """Poll anvil for UserOperationEvent logs; record when each op hash was first seen."""
    next_block = from_block
    async with aiohttp.ClientSession() as s:
        while time.perf_counter() < deadline:
            try:
                head = int((await post(s, node_url, "eth_blockNumber", []))["result"], 16)
                if head >= next_block:
                    answer = await post(s, node_url, "eth_getLogs", [{
                        "address": ep_addr, "topics": [USER_OPERATION_EVENT_TOPIC],
                        "fromBlock": hex(next_block), "toBlock": hex(head)}])
                    now = time.perf_counter()
                    for lg in answer.get("result", []):
                        h = lg["topics"][1]
                        if h not in seen:
                            seen[h] = now
                            bundles[lg["transactionHash"]] += 1
                            success = decode(["uint256", "bool", "uint256", "uint256"],
                                             bytes.fromhex(lg["data"][2:]))[1]
                            if not success:
                                failed_exec.add(h)
                    next_block = head + 1
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError):
                pass
            if stop_when_all.is_set() and wanted <= seen.keys():
                return
            await asyncio.sleep(interval)


async def run_load(target_url: str, node_url: str, wl: Workload, args, on_load_start=None,
                   cpu_sids: dict[str, int] | None = None) -> dict:
    ep_addr = to_checksum_address(wl.ep.address)
    conn = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=conn) as session:
        # warm the connections and the server's handlers (not measured)
        await asyncio.gather(*(post(session, target_url, "eth_supportedEntryPoints", [])
                               for _ in range(args.concurrency)))
        est_ops = wl.estimate_ops[:args.estimate_sample + 1]
        estimate = await measure_estimates(session, target_url, ep_addr, est_ops)

        rpc = Rpc(node_url)
        from_block = int(rpc.call("eth_blockNumber"), 16) + 1
        if on_load_start:
            on_load_start()
        n = len(wl.ops)
        next_index = 0
        results: list[tuple | None] = [None] * n
        seen: dict[str, float] = {}
        bundles: Counter = Counter()
        failed_exec: set = set()
        sending_done = asyncio.Event()
        accepted: set[str] = set()

        async def client() -> None:
            nonlocal next_index
            while next_index < n:
                i = next_index
                next_index += 1
                t_send = time.perf_counter()
                try:
                    answer = await post(session, target_url, "eth_sendUserOperation", [wl.ops[i], ep_addr],
                                        timeout=args.request_timeout)
                except Exception as e:  # noqa: BLE001
                    answer = {"error": {"code": "transport", "message": f"{type(e).__name__}: {e}"}}
                t_done = time.perf_counter()
                ok = "result" in answer
                if ok:
                    accepted.add(str(answer["result"]).lower())
                    if str(answer["result"]).lower() != wl.hashes[i]:
                        answer = {"error": {"code": "bench", "message": "returned hash differs from ours"}}
                        ok = False
                results[i] = (t_send, t_done, ok, None if ok else error_key(answer))

        cpu_sids = cpu_sids or {}
        cpu_before = {k: session_cpu(v) for k, v in cpu_sids.items()}
        cpu_before["load client"] = self_cpu()
        t_start = time.perf_counter()
        deadline = t_start + args.mine_timeout
        watcher = asyncio.create_task(watch_mined(node_url, wl.ep.address, from_block, accepted, seen, bundles,
                                                  failed_exec, sending_done, deadline))
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        t_sent = time.perf_counter()
        sending_done.set()
        await watcher
        t_end = time.perf_counter()
        cpu = {}
        for k, sid in cpu_sids.items():
            main, rest = cpu_delta(cpu_before[k], session_cpu(sid), sid)
            cpu[k] = main + rest
            if k == "bundler":
                cpu["bundler main process"], cpu["bundler other processes"] = main, rest
        cpu["load client"] = self_cpu() - cpu_before["load client"]

        lat = [r[1] - r[0] for r in results]
        ok_lat = [r[1] - r[0] for r in results if r[2]]
        failures = Counter(r[3] for r in results if not r[2])
        mined = [h for h in accepted if h in seen]
        all_mined = len(mined) == len(accepted) and accepted
        last_mined = max((seen[h] for h in mined), default=None)
        send_time_by_hash = {wl.hashes[i]: results[i][0] for i in range(n) if results[i][2]}
        inclusion = [seen[h] - send_time_by_hash[h] for h in mined if h in send_time_by_hash]

        # receipts through the bundler under test, every accepted op
        rec_lat, rec_missing, rec_fail = [], 0, Counter()
        sem = asyncio.Semaphore(args.concurrency)

        async def receipt(h: str) -> None:
            nonlocal rec_missing
            async with sem:
                t0 = time.perf_counter()
                try:
                    answer = await post(session, target_url, "eth_getUserOperationReceipt", [h])
                except Exception as e:  # noqa: BLE001
                    answer = {"error": {"code": "transport", "message": f"{type(e).__name__}: {e}"}}
                dt = time.perf_counter() - t0
                if "result" not in answer:
                    rec_fail[error_key(answer)] += 1
                elif answer["result"] is None:
                    rec_missing += 1
                else:
                    rec_lat.append(dt)
                    if not answer["result"].get("success"):
                        rec_fail["receipt success=false"] += 1

        await asyncio.gather(*(receipt(h) for h in mined))

    send_window = t_sent - t_start
    n_ok = len(ok_lat)
    return {
        "ops": n,
        "concurrency": args.concurrency,
        "accepted": n_ok,
        "accepted_ops_per_s": n_ok / send_window if send_window > 0 else None,
        "send_window_s": send_window,
        "send_p50_s": pct(ok_lat, 50),
        "send_p95_s": pct(ok_lat, 95),
        "send_p99_s": pct(ok_lat, 99),
        "send_all_p50_s": pct(lat, 50),
        "failures": dict(failures),
        "mined": len(mined),
        "all_mined": bool(all_mined),
        "all_mined_after_s": (last_mined - t_start) if (all_mined and last_mined) else None,
        "mined_after_last_accept_s": (last_mined - t_sent) if (all_mined and last_mined) else None,
        "waited_s": t_end - t_start,
        "inclusion_p50_s": pct(inclusion, 50),
        "inclusion_p99_s": pct(inclusion, 99),
        "bundles": len(bundles),
        "ops_per_bundle_max": max(bundles.values(), default=0),
        "execution_failed": len(failed_exec),
        "estimate": estimate,
        "cpu_s": cpu,  # CPU seconds from the first send until all mined (or the timeout)
        "bundler_cpu_ms_per_op": (1000 * cpu["bundler"] / n_ok) if n_ok and "bundler" in cpu else None,
        # Alto leaves validation to the node (eth_call, or debug_traceCall in safe mode): count both
        "bundler_node_cpu_ms_per_op": (1000 * (cpu["bundler"] + cpu["anvil"]) / n_ok)
        if n_ok and "bundler" in cpu and "anvil" in cpu else None,
        "receipt_p50_s": pct(rec_lat, 50),
        "receipts_found": len(rec_lat),
        "receipts_missing": rec_missing,
        "receipt_failures": dict(rec_fail),
    }


# ---------------------------------------------------------------------------------------------
# py-spy
def start_py_spy(pid: int, out: str, rate: int) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(exe).exists():
        log("py-spy not found (pip install py-spy into .venv); not profiling")
        return None
    cmd = [exe, "record", "--pid", str(pid), "--subprocesses", "--threads", "--idle", "--rate", str(rate),
           "--format", "raw", "--output", out, "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach
    return proc


def stop_py_spy(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# leaf frames of a thread that waits (py-spy --idle records those samples too)
WAIT_LEAVES = ("Runner.run (asyncio/runners.py", "SemLock.__enter__", "select (selectors.py",
               "poll (selectors.py", "wait (threading.py", "_wait_for_tstate_lock", "get (queue.py",
               "_recv (multiprocessing/connection.py", "_recv_bytes (multiprocessing", "_worker (concurrent",
               "main (multiprocessing/resource_tracker.py", "_handle_workers", "_feed (multiprocessing/queues.py")
# a sim worker waiting for the node: the stack goes through NodeReader and ends in socket I/O
NODE_IO_LEAVES = ("HTTPConnection.send", "SocketIO.readinto", "recv_into", "sendall", "_send_output",
                  "create_connection")
WORKER_TASKS = ("SimWorker.simulate_validation", "SimWorker.simulate_handle_ops", "SimWorker.measure_gas",
                "SimWorker.ping")


def _role(cmd: str) -> str:
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "spawn_main" in cmd or "multiprocessing-fork" in cmd:
        return "sim worker"
    return "main"


def summarize_py_spy(path: str, rate: int, top: int = 12) -> str:
    """Where the recorded time went: per process/thread the share spent waiting, waiting for the
    node (sim workers' state reads) and on CPU; per sim worker the split by task; the hottest
    frames of the busy samples."""
    threads: dict[str, Counter] = defaultdict(Counter)     # key -> category -> samples
    tasks: dict[str, Counter] = defaultdict(Counter)       # worker key -> task/category -> samples
    self_frames: dict[str, Counter] = defaultdict(Counter)
    incl_frames: dict[str, Counter] = defaultdict(Counter)
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            try:
                count = int(count)
            except ValueError:
                continue
            frames = stack.split(";")
            procs = [f for f in frames if f.startswith("process ")]
            proc = procs[-1] if procs else "process ?"
            pid = proc.split()[1].rstrip(":").split(":")[0]
            thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
            tname = thread.split(":")[-1].strip()
            role = _role(proc)
            if role == "resource tracker":
                continue
            code = [f for f in frames if not (f.startswith("process ") or f.startswith("thread "))]
            key = f"{role} pid {pid}, {tname}"
            leaf = code[-1] if code else "?"
            if any(leaf.startswith(w) or w in leaf for w in WAIT_LEAVES):
                cat = "wait"
            elif any("NodeReader." in f for f in code) and any(t in leaf for t in NODE_IO_LEAVES):
                cat = "node I/O"
            else:
                cat = "cpu"
            threads[key][cat] += count
            if role == "sim worker":
                task = next((t for t in WORKER_TASKS if any(f.startswith(t) for f in code)), "other")
                tasks[key][(task.split(".")[-1], cat)] += count
            if cat == "cpu":
                self_frames[key][leaf] += count
                for f in set(code):
                    incl_frames[key][f] += count
    out = [f"py-spy ({rate} Hz, idle included): per thread, share of samples waiting / waiting for the "
           f"node / on CPU"]
    for key, cats in sorted(threads.items(), key=lambda kv: -kv[1]["cpu"]):
        total = sum(cats.values())
        if total == 0:
            continue
        out.append(f"  {key:<42} {total / rate:6.1f} s sampled: wait {100 * cats['wait'] / total:5.1f}%, "
                   f"node I/O {100 * cats['node I/O'] / total:5.1f}%, cpu {100 * cats['cpu'] / total:5.1f}%")
    for key, split in tasks.items():
        total = sum(split.values())
        parts = ", ".join(f"{t} {c} {100 * n / total:.1f}%" for (t, c), n in split.most_common() if n / total > 0.01)
        out.append(f"  {key}: {parts}")
    busiest = [k for k, c in sorted(threads.items(), key=lambda kv: -kv[1]["cpu"])][:3]
    for key in busiest:
        busy = threads[key]["cpu"] or 1
        out.append(f"\n  {key}: hottest frames on CPU (self)")
        for f, c in self_frames[key].most_common(top):
            out.append(f"    {100 * c / busy:5.1f}%  {f[:140]}")
        out.append(f"  {key}: project frames on CPU (inclusive)")
        proj = [(f, c) for f, c in incl_frames[key].most_common() if "bundler/" in f]
        for f, c in proj[:top]:
            out.append(f"    {100 * c / busy:5.1f}%  {f[:140]}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# one target end to end
def run_target(kind: str, wl: Workload, owners_addr: list[str], args, logdir: Path, run: int = 0) -> dict:
    log(f"[{kind}] fresh anvil, EntryPoints, {len(wl.owners)} accounts ...")
    chain = start_chain(wl, owners_addr)
    target = None
    spy = None
    try:
        if not wl.ops:
            t0 = time.perf_counter()
            build_ops(wl, args, chain.factory)
            chain.setup_s["signing"] = time.perf_counter() - t0
        log(f"[{kind}] set-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in chain.setup_s.items()))
        t0 = time.perf_counter()
        if kind.startswith("ours"):
            target = start_ours(chain, logdir, args, unsafe=kind == "ours-unsafe", run=run,
                                reuse=kind != "ours-safe-noreuse")
        else:
            target = start_alto(chain, logdir, kind == "alto-safe", wl.ep, args, run=run)
        start_s = time.perf_counter() - t0
        log(f"[{kind}] listening at {target.url} after {start_s:.1f} s; estimating, then sending "
            f"{len(wl.ops)} ops with {args.concurrency} clients ...")

        def on_load_start():
            nonlocal spy
            if kind == "ours-safe" and args.py_spy and run == 0:
                spy = start_py_spy(target.proc.pid, args.py_spy, args.py_spy_rate)

        sids = {"bundler": target.proc.pid, "anvil": chain.node.process.pid}
        result = asyncio.run(run_load(target.url, chain.url, wl, args, on_load_start, sids))
        stop_py_spy(spy)
        if kind.startswith("ours"):
            result["second_validations"] = second_validations(target.url)
        result["setup_s"] = chain.setup_s
        result["start_s"] = start_s
        result["log"] = str(target.log_path)
        return result
    finally:
        stop_py_spy(spy)
        if target is not None:
            target.stop()
        chain.node.stop()


def second_validations(url: str) -> dict[str, float]:
    """Our bundler's second validations by how they were decided (its /metrics counter
    bundler_second_validations_total{how=same_block|reused|simulated})."""
    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bundler_second_validations_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('how="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def _second(how: str):
    return lambda r: r["second_validations"].get(how, 0)


def _reuse_rate(r):
    sv = r["second_validations"]
    total = sum(sv.values())
    return 100 * (sv.get("reused", 0) + sv.get("same_block", 0)) / total if total else None


# ---------------------------------------------------------------------------------------------
# output: median and range over the runs of each bundler, ratios between bundlers run in the same
# round (rounds are interleaved, so a ratio compares runs that saw the same machine load)
def fmt_s(v, unit="ms") -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if unit == "ms" else f"{v:.2f} s"


def _cpu_main(r):
    return 1000 * r["cpu_s"].get("bundler main process", 0) / max(r["accepted"], 1)


def _cpu_other(r):
    return 1000 * r["cpu_s"].get("bundler other processes", 0) / max(r["accepted"], 1)


def _num(fmt: str):
    return lambda v: "-" if v is None else fmt.format(v)


ROWS = [  # label, getter (None = not measured), format of one value, better ("hi" | "lo" | None)
    ("accepted", lambda r: r["accepted"], _num("{:.0f}"), None),
    ("accepted ops/s", lambda r: r["accepted_ops_per_s"], _num("{:.1f}"), "hi"),
    ("sendUserOperation p50", lambda r: r["send_p50_s"], fmt_s, "lo"),
    ("sendUserOperation p99", lambda r: r["send_p99_s"], fmt_s, "lo"),
    ("mined within --mine-timeout", lambda r: r["mined"], _num("{:.0f}"), None),
    ("all mined after", lambda r: r["all_mined_after_s"], lambda v: fmt_s(v, "s"), "lo"),
    ("  of which after last accept", lambda r: r["mined_after_last_accept_s"], lambda v: fmt_s(v, "s"), "lo"),
    ("send -> mined p50", lambda r: r["inclusion_p50_s"], lambda v: fmt_s(v, "s"), "lo"),
    ("send -> mined p99", lambda r: r["inclusion_p99_s"], lambda v: fmt_s(v, "s"), "lo"),
    ("bundles", lambda r: r["bundles"], _num("{:.0f}"), None),
    ("max ops in one bundle", lambda r: r["ops_per_bundle_max"], _num("{:.0f}"), None),
    ("ops reverted in execution", lambda r: r["execution_failed"], _num("{:.0f}"), None),
    ("estimateUserOpGas p50", lambda r: r["estimate"]["p50_s"], fmt_s, "lo"),
    ("getUserOpReceipt p50", lambda r: r["receipt_p50_s"], fmt_s, "lo"),
    ("bundler CPU ms per op", lambda r: r["bundler_cpu_ms_per_op"], _num("{:.1f}"), "lo"),
    ("  main process", _cpu_main, _num("{:.1f}"), "lo"),
    ("  other processes (workers)", _cpu_other, _num("{:.1f}"), "lo"),
    ("bundler+anvil CPU ms per op", lambda r: r["bundler_node_cpu_ms_per_op"], _num("{:.1f}"), "lo"),
    ("anvil CPU s", lambda r: r["cpu_s"].get("anvil"), _num("{:.1f}"), None),
    ("bundler start s", lambda r: r["start_s"], _num("{:.1f}"), None),
    ("second validations", lambda r: sum(r["second_validations"].values()), _num("{:.0f}"), None),
    ("  reused (read set unchanged)", _second("reused"), _num("{:.0f}"), None),
    ("  same block as admission", _second("same_block"), _num("{:.0f}"), None),
    ("  simulated again", _second("simulated"), _num("{:.0f}"), None),
    ("  not simulated again %", _reuse_rate, _num("{:.0f}"), "hi"),
]

# (ours, theirs) pairs whose ratio is printed; the goals of issue 15 are read from these
PAIRS = [("ours-safe", "alto-safe"), ("ours-safe", "alto-unsafe"), ("ours-unsafe", "alto-unsafe"),
         ("ours-safe", "ours-unsafe"), ("ours-safe", "ours-safe-noreuse")]


def row(label: str):
    return next(get for name, get, _show, _better in ROWS if name == label)


def median(values: list[float]) -> float | None:
    return pct(values, 50)


def values_of(runs: list[dict], get) -> list[float]:
    out = []
    for r in runs:
        try:
            v = get(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            out.append(v)
    return out


def cell(runs: list[dict], get, show) -> str:
    vals = values_of(runs, get)
    if not vals:
        return "-"
    if len(vals) == 1:
        return show(vals[0])
    text = f"{show(median(vals))} [{show(min(vals))}-{show(max(vals))}]"
    if len(vals) < len(runs):
        text += f" n={len(vals)}"
    return text


def round_ratios(rounds: list[dict], ours: str, theirs: str, get, better: str) -> list[float]:
    """ours vs theirs within each round (>1: ours better)."""
    out = []
    for rnd in rounds:
        a, b = rnd.get(ours), rnd.get(theirs)
        if a is None or b is None:
            continue
        try:
            va, vb = get(a), get(b)
        except (KeyError, TypeError):
            continue
        if va is None or vb is None or va == 0 or vb == 0:
            continue
        out.append(va / vb if better == "hi" else vb / va)
    return out


def fmt_ratio(vals: list[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}x"
    return f"{median(vals):.2f}x [{min(vals):.2f}-{max(vals):.2f}]"


def goals(report: dict) -> list[str]:
    """Issue 15's goals on this workload, judged on the medians of the per-round ratios."""
    rounds = report["rounds"]
    res = report["results"]
    out = []

    def judge(label: str, vals: list[float], ok) -> None:
        if not vals:
            out.append(f"  {label}: not measured")
        else:
            out.append(f"  {label}: {fmt_ratio(vals)} -> {'met' if ok(median(vals)) else 'NOT met'}")

    judge("ours safe accepted ops/s >= 1.0x Alto unsafe",
          round_ratios(rounds, "ours-safe", "alto-unsafe", row("accepted ops/s"), "hi"), lambda m: m >= 1.0)
    judge("ours safe send p50 below Alto unsafe's (ratio > 1)",
          round_ratios(rounds, "ours-safe", "alto-unsafe", row("sendUserOperation p50"), "lo"), lambda m: m > 1.0)
    judge("ours unsafe accepted ops/s >= 1.3x Alto unsafe",
          round_ratios(rounds, "ours-unsafe", "alto-unsafe", row("accepted ops/s"), "hi"), lambda m: m >= 1.3)
    mined = values_of(res.get("ours-safe", []), row("all mined after"))
    runs = len(res.get("ours-safe", []))
    if mined:
        m = median(mined)
        out.append(f"  ours safe: all {report['ops']} mined within 1.5 s: median {m:.2f} s "
                   f"[{min(mined):.2f}-{max(mined):.2f}] ({len(mined)}/{runs} runs mined all) -> "
                   f"{'met' if m <= 1.5 and len(mined) == runs else 'NOT met'}")
    else:
        out.append("  ours safe: all mined within 1.5 s: not measured")
    return out


def print_report(report: dict) -> None:
    res = report["results"]
    names = [k for k in KINDS if k in res]
    w0, w = 30, 27
    print(f"\nload: {report['ops']} ops from {report['ops']} deployed SimpleAccounts, EntryPoint v{report['ep']}, "
          f"{report['concurrency']} concurrent clients, {report['executors']} executor keys per bundler, "
          f"{report['runs']} interleaved rounds (ops: vgl {report['gas']['verification']}, "
          f"cgl {report['gas']['call']}, pvg {report['gas']['pre_verification']})")
    print(f"machine: {report['machine']['cpus']} CPUs; load average (1/5/15 min) at start "
          f"{report['loadavg_start']}, at end {report['loadavg_end']}; per run: "
          + ", ".join(f"{r['kind']}#{r['round']} {r['loadavg_before'][0]:.2f}" for r in report["log"]))
    print("each cell: median [min-max] over the runs")
    header = f"{'':{w0}}" + "".join(f"{n:>{w}}" for n in names)
    print(header)
    print("-" * len(header))
    for label, get, show, _better in ROWS:
        print(f"{label:{w0}}" + "".join(f"{cell(res[n], get, show):>{w}}" for n in names))
    pairs = [(a, b) for a, b in PAIRS if a in res and b in res]
    if pairs:
        print("\nratios within each round, median [min-max] (>1: the first is better; "
              "throughput first/second, times second/first)")
        header = f"{'':{w0}}" + "".join(f"{a + ' / ' + b:>{w + 4}}" for a, b in pairs)
        print(header)
        print("-" * len(header))
        for label, get, _show, better in ROWS:
            if better is None:
                continue
            print(f"{label:{w0}}" + "".join(
                f"{fmt_ratio(round_ratios(report['rounds'], a, b, get, better)):>{w + 4}}" for a, b in pairs))
    print("\ngoals (issue 15):")
    for line in goals(report):
        print(line)
    for n in names:
        failures, est_failures, receipt_failures, missing = Counter(), Counter(), Counter(), 0
        for r in res[n]:
            failures.update(r["failures"])
            est_failures.update(r["estimate"]["failures"])
            receipt_failures.update(r["receipt_failures"])
            missing += r["receipts_missing"]
        lines = [f"  send failure x{c}: {e}" for e, c in failures.most_common()]
        lines += [f"  estimate failure x{c}: {e}" for e, c in est_failures.items()]
        lines += [f"  receipt problem x{c}: {e}" for e, c in receipt_failures.items()]
        if missing:
            lines.append(f"  receipts missing through the bundler: {missing}")
        not_mined = [r for r in res[n] if r["all_mined_after_s"] is None]
        if not_mined:
            lines.append(f"  {len(not_mined)} run(s) did not mine every accepted op within --mine-timeout")
        if lines:
            print(f"\n{n} (over {len(res[n])} runs; logs {', '.join(r['log'] for r in res[n])}):")
            print("\n".join(lines))
    for note in report["notes"]:
        print(f"note: {note}")


# ---------------------------------------------------------------------------------------------
KINDS = ("ours-safe", "ours-safe-noreuse", "ours-unsafe", "alto-safe", "alto-unsafe")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", "-n", type=int, default=200, help="ops = senders (one op each), default 200")
    p.add_argument("--concurrency", "-c", type=int, default=8, help="concurrent clients, default 8")
    p.add_argument("--ep", choices=("0.7", "0.8"), default="0.7", help="EntryPoint version, default 0.7")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds; each bundler runs once per round")
    p.add_argument("--executors", type=int, default=3,
                   help=f"executor keys given to every bundler (1-{len(KEY_EXECUTORS)}), default 3")
    p.add_argument("--ours", choices=("both", "safe", "unsafe"), default="both", help="our modes to run")
    p.add_argument("--without-reuse", action="store_true",
                   help="also run our safe mode with --no-readset-reuse each round (ours-safe-noreuse: "
                        "every second validation simulated again), to compare in the same window")
    p.add_argument("--alto", choices=("auto", "none", "safe", "unsafe", "both"), default="auto",
                   help="compare with Pimlico's Alto (auto = both modes when it installs)")
    p.add_argument("--alto-version", default="0.0.18",
                   help="@pimlico/alto version to install (0.0.19 and 0.0.20 refuse every op in safe mode on anvil)")
    p.add_argument("--alto-args", default="", help="extra Alto flags, space-separated")
    p.add_argument("--alto-max-bundle-gas", type=int, default=5_000_000,
                   help="Alto's --max-gas-per-bundle (its default 20M builds bundles anvil refuses)")
    p.add_argument("--alto-log-level", default="warn", help="Alto's log level (default warn)")
    p.add_argument("--ours-args", default="", help="extra `bundler run` flags, space-separated")
    p.add_argument("--estimate-sample", type=int, default=20, help="estimates measured (after 1 warm-up)")
    add_op_gas_args(p)
    p.add_argument("--mine-timeout", type=float, default=120, help="give up waiting for inclusion after (s)")
    p.add_argument("--request-timeout", type=float, default=120)
    p.add_argument("--log-level", default="info", help="our bundler's log level")
    p.add_argument("--seed", default="load-bench", help="owner keys are derived from it")
    p.add_argument("--py-spy", metavar="FILE", help="record our safe bundler's first run with py-spy (raw collapsed stacks)")
    p.add_argument("--py-spy-rate", type=int, default=100)
    p.add_argument("--py-spy-summary", action="store_true", help="print where the recorded time went")
    p.add_argument("--logdir", help="keep bundler logs here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    args = p.parse_args(argv)
    args.alto_args = args.alto_args.split()
    args.ours_args = args.ours_args.split()
    if args.ops < 1 or args.concurrency < 1 or args.runs < 1:
        p.error("--ops, --concurrency and --runs must be positive")
    if not 1 <= args.executors <= len(KEY_EXECUTORS):
        p.error(f"--executors must be between 1 and {len(KEY_EXECUTORS)}")

    ep = V07 if args.ep == "0.7" else V08
    logdir = Path(args.logdir) if args.logdir else Path(tempfile.mkdtemp(prefix="load-bench-"))
    logdir.mkdir(parents=True, exist_ok=True)
    owners = make_owner_keys(args.ops, args.seed)
    owners_addr = [owner_address(k) for k in owners]
    wl = Workload(ep=ep, owners=owners)

    notes: list[str] = []
    kinds = [k for k in ("ours-safe", "ours-unsafe") if args.ours in ("both", k.split("-")[1])]
    if args.without_reuse and "ours-safe" in kinds:
        kinds.insert(1, "ours-safe-noreuse")
    if args.alto != "none":
        ok, why = ensure_alto(args.alto_version)
        if ok:
            if args.alto in ("auto", "both", "safe"):
                kinds.append("alto-safe")
            if args.alto in ("auto", "both", "unsafe"):
                kinds.append("alto-unsafe")
            notes.append(f"Alto {alto_version()} from npm ({ALTO_PACKAGE}), {why}, flags: defaults + "
                         f"--min-entity-stake 1 --min-entity-unstake-delay 1 --max-gas-per-bundle "
                         f"{args.alto_max_bundle_gas} {' '.join(args.alto_args)}".rstrip())
        else:
            notes.append(f"Alto not compared (skipped): {why}")
            log(f"Alto skipped: {why}")

    loadavg_start = tuple(round(x, 2) for x in os.getloadavg())
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    rounds: list[dict] = []
    run_log: list[dict] = []
    failed: set[str] = set()
    t_bench = time.perf_counter()
    for rnd in range(args.runs):
        this_round: dict[str, dict] = {}
        # rotate the order each round: no bundler always runs first (or right after Alto safe)
        order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
        for kind in order:
            if kind in failed:
                continue
            before = tuple(round(x, 2) for x in os.getloadavg())
            log(f"== round {rnd + 1}/{args.runs}: {kind} (load average {before[0]:.2f}, "
                f"{time.perf_counter() - t_bench:.0f} s into the benchmark)")
            try:
                r = run_target(kind, wl, owners_addr, args, logdir, run=rnd)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                if kind.startswith("ours"):
                    raise
                failed.add(kind)
                notes.append(f"{kind} could not be run: {type(e).__name__}: {str(e)[:600]}")
                log(f"[{kind}] failed: {e}")
                continue
            r["loadavg_before"] = before
            r["loadavg_after"] = tuple(round(x, 2) for x in os.getloadavg())
            results[kind].append(r)
            this_round[kind] = r
            run_log.append({"kind": kind, "round": rnd + 1, "loadavg_before": before,
                            "loadavg_after": r["loadavg_after"]})
        rounds.append(this_round)
    results = {k: v for k, v in results.items() if v}

    for kind, runs in results.items():
        if kind.startswith("alto") and any("0x99410554" in e for r in runs for e in r["failures"]):
            notes.append(f"{kind}: this Alto version's safe mode cannot decode the trace anvil returns "
                         f"(DelegateAndRevert 0x99410554 is not in its ABI) and refuses every op; "
                         f"0.0.18 works (--alto-version 0.0.18)")
    report = {
        "ops": args.ops, "concurrency": args.concurrency, "ep": args.ep, "runs": args.runs,
        "executors": args.executors,
        "gas": {"verification": args.verification_gas, "call": args.call_gas,
                "pre_verification": args.pre_verification_gas,
                "max_fee_gwei": args.max_fee_gwei, "priority_fee_gwei": args.priority_fee_gwei},
        "machine": {"cpus": os.cpu_count()},
        "loadavg_start": loadavg_start, "loadavg_end": tuple(round(x, 2) for x in os.getloadavg()),
        "wall_s": time.perf_counter() - t_bench,
        "results": results, "rounds": rounds, "log": run_log, "notes": notes,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
        print(f"benchmark wall time {report['wall_s']:.0f} s")
    if args.py_spy and args.py_spy_summary and Path(args.py_spy).exists():
        print("\n" + summarize_py_spy(args.py_spy, args.py_spy_rate), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
