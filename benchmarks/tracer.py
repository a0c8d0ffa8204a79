"""Safe validation per op: our py-evm ERC-7562 tracer vs anvil's debug_traceCall with a JS tracer.

    .venv/bin/python benchmarks/tracer.py [--accounts 20] [--rounds 5]

Starts its own anvil on a free port, deploys the EntryPoints, creates real SimpleAccounts (v0.7
and v0.8; half of the ops deploy their account through the factory, so the factory phase is
traced too), signs one op per account, then measures per op, all warm:

  py-evm            SimWorker.simulate_validation, no tracer (unsafe mode)
  py-evm safe       the same with ValidationTracer, plus report() and check() of the rules:
                    everything safe mode adds at admission
  pool              Simulator(workers=N) throughput, 8 validations in flight, unsafe vs safe
                    (the trace crosses the process boundary, the rules run in the caller)
  anvil JS tracer   debug_traceCall of simulateValidation (EntryPointSimulations as a state
                    override) with a small JavaScript tracer collecting the same raw data: opcodes
                    of interest, storage/transient accesses per contract and slot, keccak
                    preimages, calls (type, target, value, selector), EXTCODE* targets and code
                    sizes, out-of-gas, per top-level call of the EntryPoint. Only the node call is
                    timed: parsing its answer and applying the rules would come on top.

and prints the ratios. Every number comes from one run of this script.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import requests
from eth_abi import encode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from bundler.entrypoint import V07, V08  # noqa: E402
from bundler.sim import SimConfig, Simulator, SimWorker, ValidationResult  # noqa: E402
from bundler.sim import entrypoint_sim as eps  # noqa: E402
from bundler.sim.erc7562 import RuleContext, TracerFactory, check  # noqa: E402
from helpers.accounts import DevChain, mine  # noqa: E402

# Collects per top-level call of the EntryPoint (phase) what our tracer collects. Written for
# anvil's JS tracer: memory.slice is only called with a non-zero length inside memory (anvil
# 1.7.1 throws otherwise, and a throw inside step makes the traced call revert silently).
JS_TRACER = r"""{
  phases: [], phase: null, depth: 0, lastOp: "", keccak: [],
  watched: {"GASPRICE":1,"GASLIMIT":1,"DIFFICULTY":1,"PREVRANDAO":1,"TIMESTAMP":1,"BASEFEE":1,
            "BLOCKHASH":1,"NUMBER":1,"SELFBALANCE":1,"BALANCE":1,"ORIGIN":1,"COINBASE":1,
            "SELFDESTRUCT":1,"CREATE":1,"CREATE2":1,"BLOBHASH":1,"BLOBBASEFEE":1,"INVALID":1},
  calls: {"CALL":1,"CALLCODE":1,"DELEGATECALL":1,"STATICCALL":1},
  enter: function(frame) {
    if (this.depth === 0) {
      this.phase = {to: toHex(frame.getTo()), input: toHex(frame.getInput()).slice(0, 10),
                    opcodes: {}, storage: {}, calls: [], extcode: {}, oog: 0, gasMisuse: 0};
      this.phases.push(this.phase);
    }
    this.depth++;
  },
  exit: function(res) {
    this.depth--;
    var err = res.getError();
    if (this.phase && err && err.indexOf("out of gas") >= 0) this.phase.oog++;
  },
  fault: function(log, db) {},
  step: function(log, db) {
    var op = log.op.toString();
    var last = this.lastOp;
    this.lastOp = op;
    var ph = this.phase;
    if (this.depth === 0 || ph === null) return;
    if (last === "GAS" && !this.calls[op]) ph.gasMisuse++;
    if (this.watched[op]) { ph.opcodes[op] = (ph.opcodes[op] || 0) + 1; return; }
    if (op === "SLOAD" || op === "SSTORE" || op === "TLOAD" || op === "TSTORE") {
      var addr = toHex(log.contract.getAddress());
      var slots = ph.storage[addr] || (ph.storage[addr] = {});
      var slot = log.stack.peek(0).toString(16);
      slots[slot] = (slots[slot] || "") + op.charAt(0) + op.charAt(1);
      return;
    }
    if (op === "KECCAK256" || op === "SHA3") {
      var ofs = Number(log.stack.peek(0).valueOf()), len = Number(log.stack.peek(1).valueOf());
      if (len >= 20 && len <= 512 && ofs + len <= log.memory.length())
        this.keccak.push(toHex(log.memory.slice(ofs, ofs + len)));
      return;
    }
    if (op === "EXTCODESIZE" || op === "EXTCODEHASH" || op === "EXTCODECOPY") {
      var target = toAddress(log.stack.peek(0).toString(16));
      ph.extcode[toHex(target)] = db.getCode(target).length;
      return;
    }
    if (this.calls[op]) {
      var to = toAddress(log.stack.peek(1).toString(16));
      var withValue = op === "CALL" || op === "CALLCODE";
      var value = withValue ? log.stack.peek(2).toString(16) : "0";
      var inOfs = Number(log.stack.peek(withValue ? 3 : 2).valueOf());
      var inLen = Number(log.stack.peek(withValue ? 4 : 3).valueOf());
      var sel = "";
      if (inLen >= 4 && inOfs + 4 <= log.memory.length()) sel = toHex(log.memory.slice(inOfs, inOfs + 4));
      ph.calls.push({op: op, to: toHex(to), value: value, sel: sel, code: db.getCode(to).length});
    }
  },
  result: function(ctx, db) { return {phases: this.phases, keccak: this.keccak}; }
}"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def bench_pyevm(worker: SimWorker, ops, ep, block, rounds: int) -> tuple[float, float, int]:
    """Mean seconds per op without and with the safe path (tracer + rules), interleaved."""
    plain, safe = [], []
    violations = 0
    for op in ops:  # warm caches
        assert isinstance(worker.simulate_validation(op, ep, block), ValidationResult)
    for _ in range(rounds):
        for op in ops:
            t0 = time.perf_counter()
            worker.simulate_validation(op, ep, block)
            t1 = time.perf_counter()
            res = worker.simulate_validation(op, ep, block, tracer=TracerFactory.for_op(op, ep.address))
            found = check(res.trace, RuleContext.for_op(op, ep.address, res))
            t2 = time.perf_counter()
            violations += len(found)
            plain.append(t1 - t0)
            safe.append(t2 - t1)
    return statistics.mean(plain), statistics.mean(safe), violations


def bench_js_tracer(url: str, ops, ep, block_number: int, rounds: int) -> tuple[float, dict]:
    session = requests.Session()
    override = {ep.address: {"code": "0x" + eps.simulation_code(ep).hex()}}
    headers = {"Content-Type": "application/json"}
    bodies = []
    for i, op in enumerate(ops):
        data = eps.SEL_SIMULATE_VALIDATION + encode([eps.PACKED_USEROP_TYPE], [eps.pack(op)])
        bodies.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "debug_traceCall", "params": [
            {"to": ep.address, "data": "0x" + data.hex(), "gas": hex(30_000_000)}, hex(block_number),
            {"tracer": JS_TRACER, "stateOverrides": override}]}))
    sample = None
    for body in bodies:  # warm, and check the tracer really ran
        answer = session.post(url, data=body, headers=headers).json()
        assert "result" in answer, answer
        phases = answer["result"]["phases"]
        assert phases and any(p["storage"] for p in phases), answer["result"]
        sample = sample or answer["result"]
    times = []
    for _ in range(rounds):
        for body in bodies:
            t0 = time.perf_counter()
            session.post(url, data=body, headers=headers).json()
            times.append(time.perf_counter() - t0)
    return statistics.mean(times), sample


async def bench_pool(url: str, chain_id: int, workers: int, jobs, block) -> tuple[float, float]:
    """validations/s through the worker pool without and with the safe path."""
    async with Simulator(url, chain_id, workers=workers) as sim:
        sem = asyncio.Semaphore(8)

        async def one(op, ep, safe):
            async with sem:
                if not safe:
                    return await sim.simulate_validation(op, ep, block)
                res = await sim.simulate_validation(op, ep, block, tracer=TracerFactory.for_op(op, ep.address))
                assert not check(res.trace, RuleContext.for_op(op, ep.address, res))
                return res

        for safe in (False, True):
            for _ in range(3):  # each worker has its own caches: warm them all
                await asyncio.gather(*(one(op, ep, safe) for op, ep in jobs))
        elapsed = {False: 0.0, True: 0.0}
        count = {False: 0, True: 0}
        for _ in range(3):  # alternate, so load changes on the machine hit both alike
            for safe in (False, True):
                t0 = time.perf_counter()
                results = await asyncio.gather(*(one(op, ep, safe) for op, ep in jobs))
                elapsed[safe] += time.perf_counter() - t0
                count[safe] += len(results)
        return count[False] / elapsed[False], count[True] / elapsed[True]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=20, help="ops per EntryPoint version")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    chain = DevChain.start()
    try:
        print(f"anvil at {chain.url}; {args.accounts} ops per version (half deploy their account), "
              f"{args.rounds} rounds")
        ops = {}
        for ep in (V07, V08):
            accts = [chain.account(ep, deployed=i % 2 == 0) for i in range(args.accounts)]
            ops[ep.version] = [a.sign(a.op(a.execute(a.owner, 1, b"")), chain.chain_id) for a in accts]
        mine(chain.url)
        block = chain.pinned()
        worker = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
        gc.collect()

        rows = []
        for ep in (V07, V08):
            plain, safe, violations = bench_pyevm(worker, ops[ep.version], ep, block, args.rounds)
            assert violations == 0, "SimpleAccount ops must be clean"
            js, sample = bench_js_tracer(chain.url, ops[ep.version], ep, block.number, args.rounds)
            rows.append((ep.version, plain, safe, js))
        jobs = [(op, V07) for op in ops["0.7"]] + [(op, V08) for op in ops["0.8"]]
        pool_unsafe, pool_safe = asyncio.run(bench_pool(chain.url, chain.chain_id, args.workers, jobs, block))
        print()
        print("version | py-evm (unsafe) | py-evm safe | safe/unsafe | anvil JS tracer | JS/py-evm safe")
        for version, plain, safe, js in rows:
            print(f"  v{version} | {ms(plain)}      | {ms(safe)}  | {safe / plain:10.2f}x | "
                  f"{ms(js)}      | {js / safe:12.1f}x")
        print()
        print(f"Simulator pool ({args.workers} workers, 8 in flight, v0.7+v0.8 mixed): unsafe "
              f"{pool_unsafe:.0f}/s, safe {pool_safe:.0f}/s ({pool_safe / pool_unsafe:.2f}x)")
        worker.close()
    finally:
        chain.stop()


if __name__ == "__main__":
    main()
