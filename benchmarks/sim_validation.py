"""Per-op validation time: py-evm (tracer hook off / do-nothing tracer on) vs anvil's eth_call.

    .venv/bin/python benchmarks/sim_validation.py [--accounts 20] [--rounds 5] [--workers 2]

Starts its own anvil on a free port, deploys the EntryPoints, creates real SimpleAccounts
(v0.7 and v0.8), signs one op per account, then for each version measures:

  py-evm warm      SimWorker.simulate_validation in this process, block cache warm
  py-evm + tracer  the same with NoopTracer hooking every opcode an ERC-7562 tracer needs
  py-evm cold      first validation of each account in a fresh block (node reads included)
  new block each   a block mined before every validation (as under eager bundling): CPU of
                   this thread and node requests per validation, the worker's state cache
                   carried from block to block as in a sim worker
  anvil eth_call   eth_call of simulateValidation with EntryPointSimulations as code override
  pool             Simulator(workers=N) throughput with 8 validations in flight (warm)

With --opcodes-ab only this: py-evm's own opcode implementations (BUNDLER_SIM_STOCK_OPCODES)
against sim/fastops.py's, warm, with the ERC-7562 tracer as in safe mode and without a tracer,
interleaved per op (the order alternating by round): CPU of this thread per op, the ratio per
round, the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
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
from bundler.sim import NoopTracer, SimConfig, Simulator, SimWorker, ValidationResult  # noqa: E402
from bundler.sim import entrypoint_sim as eps  # noqa: E402
from bundler.sim import executor  # noqa: E402
from bundler.sim.erc7562.trace import TracerFactory  # noqa: E402
from helpers.accounts import DevChain, mine  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def bench_pyevm(worker: SimWorker, ops, ep, block, rounds: int) -> tuple[float, float, float]:
    """Mean seconds per op with the hook off and with NoopTracer, interleaved per op, and the
    mean CPU seconds (this thread) per op with the hook off: steadier on a shared machine."""
    off, on, cpu = [], [], []
    for op in ops:  # warm the block cache and code caches
        assert isinstance(worker.simulate_validation(op, ep, block), ValidationResult)
    for _ in range(rounds):
        for op in ops:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            worker.simulate_validation(op, ep, block)
            t1 = time.perf_counter()
            cpu.append(time.thread_time() - c0)
            worker.simulate_validation(op, ep, block, tracer=NoopTracer)
            t2 = time.perf_counter()
            off.append(t1 - t0)
            on.append(t2 - t1)
    return statistics.mean(off), statistics.mean(on), statistics.mean(cpu)


def bench_opcodes_ab(worker: SimWorker, ops, ep, block, rounds: int, traced: bool) -> tuple[float, float, list]:
    """Mean CPU seconds per op with stock and with fast opcodes, and each round's stock/fast."""
    tracers = [TracerFactory.for_op(op, ep.address) if traced else None for op in ops]

    def one(op, tracer, stock: bool) -> float:
        executor.STOCK_OPCODES = stock
        c0 = time.thread_time()
        result = worker.simulate_validation(op, ep, block, tracer=tracer)
        elapsed = time.thread_time() - c0
        assert isinstance(result, ValidationResult), result
        return elapsed

    for op, tracer in zip(ops, tracers):  # warm both
        one(op, tracer, True), one(op, tracer, False)
    stock_all, fast_all, ratios = [], [], []
    for r in range(rounds):
        stock_t = fast_t = 0.0
        for op, tracer in zip(ops, tracers):
            order = (True, False) if r % 2 == 0 else (False, True)
            for stock in order:
                t = one(op, tracer, stock)
                if stock:
                    stock_t += t
                else:
                    fast_t += t
        stock_all.append(stock_t / len(ops))
        fast_all.append(fast_t / len(ops))
        ratios.append(stock_t / fast_t)
    executor.STOCK_OPCODES = False
    return statistics.mean(stock_all), statistics.mean(fast_all), ratios


def opcodes_ab(worker: SimWorker, ops: dict, block, rounds: int) -> None:
    print()
    print("version | tracer | stock opcodes | fastops | stock/fast (per-round range)")
    for ep in (V07, V08):
        for traced in (True, False):
            stock, fast, ratios = bench_opcodes_ab(worker, ops[ep.version], ep, block, rounds, traced)
            print(f"  v{ep.version} | {'ERC-7562' if traced else 'none    '} | {ms(stock)} | {ms(fast)} | "
                  f"{stock / fast:5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    print(f"  load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def bench_cold(worker: SimWorker, chain: DevChain, ops, ep) -> tuple[float, int]:
    mine(chain.url)
    block = chain.pinned()
    before = worker.reader.requests_sent
    t0 = time.perf_counter()
    for op in ops:
        worker.simulate_validation(op, ep, block)
    return (time.perf_counter() - t0) / len(ops), worker.reader.requests_sent - before


def bench_new_block_each(worker: SimWorker, chain: DevChain, ops, ep) -> tuple[float, float]:
    cpu, requests_made = 0.0, 0
    for op in ops:
        mine(chain.url)
        block = chain.pinned()
        before = worker.reader.requests_sent
        t0 = time.process_time()
        worker.simulate_validation(op, ep, block)
        cpu += time.process_time() - t0
        requests_made += worker.reader.requests_sent - before
    return cpu / len(ops), requests_made / len(ops)


def bench_anvil(url: str, ops, ep, block_number: int, rounds: int) -> float:
    session = requests.Session()
    override = {ep.address: {"code": "0x" + eps.simulation_code(ep).hex()}}
    bodies = []
    for i, op in enumerate(ops):
        data = eps.SEL_SIMULATE_VALIDATION + encode([eps.PACKED_USEROP_TYPE], [eps.pack(op)])
        bodies.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [
            {"to": ep.address, "data": "0x" + data.hex(), "gas": hex(30_000_000)}, hex(block_number), override]}))
    headers = {"Content-Type": "application/json"}
    for body in bodies:  # warm
        answer = session.post(url, data=body, headers=headers).json()
        assert "result" in answer, answer
    times = []
    for _ in range(rounds):
        for body in bodies:
            t0 = time.perf_counter()
            session.post(url, data=body, headers=headers).json()
            times.append(time.perf_counter() - t0)
    return statistics.mean(times)


async def bench_pool(url: str, chain_id: int, workers: int, jobs, block, concurrency: int = 8) -> float:
    async with Simulator(url, chain_id, workers=workers) as sim:
        sem = asyncio.Semaphore(concurrency)

        async def one(op, ep):
            async with sem:
                return await sim.simulate_validation(op, ep, block)

        for _ in range(3):  # each worker has its own block cache: warm them all
            await asyncio.gather(*(one(op, ep) for op, ep in jobs))
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(op, ep) for op, ep in jobs * 3))
        elapsed = time.perf_counter() - t0
        assert all(isinstance(r, ValidationResult) for r in results)
        return len(results) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=20, help="accounts (= ops) per EntryPoint version")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--opcodes-ab", action="store_true",
                    help="only py-evm's stock opcodes against sim/fastops.py, interleaved")
    args = ap.parse_args()

    chain = DevChain.start()
    try:
        print(f"anvil at {chain.url}; {args.accounts} SimpleAccounts per version, {args.rounds} rounds")
        ops = {}
        for ep in (V07, V08):
            accts = [chain.account(ep) for _ in range(args.accounts)]
            ops[ep.version] = [a.sign(a.op(a.execute(a.owner, 1, b"")), chain.chain_id) for a in accts]
        mine(chain.url)
        block = chain.pinned()
        worker = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
        gc.collect()
        if args.opcodes_ab:
            opcodes_ab(worker, ops, block, args.rounds)
            worker.close()
            return

        rows = []
        each: list[tuple[str, float, float]] = []
        for ep in (V07, V08):
            version_ops = ops[ep.version]
            off, on, cpu = bench_pyevm(worker, version_ops, ep, block, args.rounds)
            cold, cold_requests = bench_cold(worker, chain, version_ops, ep)
            anvil = bench_anvil(chain.url, version_ops, ep, block.number, args.rounds)
            rows.append((ep.version, off, on, cold, cold_requests / len(version_ops), anvil, cpu))
            each.append((ep.version, *bench_new_block_each(worker, chain, version_ops, ep)))

        jobs = [(op, V07) for op in ops["0.7"]] + [(op, V08) for op in ops["0.8"]]
        rate = asyncio.run(bench_pool(chain.url, chain.chain_id, args.workers, jobs, chain.pinned()))

        print()
        print("version | py-evm warm | +NoopTracer | tracer/off | py-evm cold (node reads/op) | anvil eth_call | py-evm/anvil")
        for version, off, on, cold, reads, anvil, _cpu in rows:
            print(f"  v{version} | {ms(off)} | {ms(on)} | {on / off:9.2f}x | {ms(cold)} ({reads:.1f})"
                  f"            | {ms(anvil)}    | {off / anvil:9.2f}x")
        for version, *_rest, cpu in rows:
            print(f"  v{version}: py-evm warm validation, CPU of this thread: {ms(cpu)} per op")
        for version, cpu, reads in each:
            print(f"  v{version}: a new block before each validation: CPU of this thread {ms(cpu)} per op, "
                  f"{reads:.2f} node requests per op")
        print(f"  load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print(f"Simulator pool ({args.workers} workers, 8 in flight, v0.7+v0.8 mixed, warm): {rate:.0f} validations/s")
        worker.close()
    finally:
        chain.stop()


if __name__ == "__main__":
    main()
