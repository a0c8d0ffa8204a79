"""Async facade used by the event loop: simulations run in a pool of warm worker processes.

    sim = Simulator(node_url, chain_id, workers=2)
    await sim.start()                         # optional: spawn and warm the workers now
    block = PinnedBlock.from_rpc(header)       # the block every check of this round reads
    result = await sim.validate(op, V07, block)            # ValidationResult or raises
    estimate = await sim.estimate_gas(op, V08, block)      # GasEstimate or raises
    bundle = await sim.simulate_bundle(ops, V07, block, beneficiary=..., sender=...)
    await sim.close()

workers=0 runs everything in one thread of this process (for debugging and profiling).
"""
from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..entrypoint import EntryPointVersion
from ..errors import BundlerError, ExecutionReverted, NodeError
from ..userop import UserOperation
from .config import GasPolicy, SimConfig, TracerSpec
from .results import (
    BundleResult, GasEstimate, SimulationFailure, ValidationResult, failure_error, validation_error,
)
from .types import AccountOverride, PinnedBlock
from .limits import (
    SimulationDeadline, SimulationOutOfMemory, SimulationTimeout, init_limited_process, run_limited,
)

if TYPE_CHECKING:
    from .worker import SimWorker

# typed state overrides keyed by lower-case address (the RPC edge decodes the wire form:
# rpc/params.py decode_state_override)
Overrides = Mapping[str, AccountOverride] | None


def _parse(overrides: Overrides) -> dict[str, AccountOverride] | None:
    return dict(overrides) if overrides else None


class Simulator:
    def __init__(
        self,
        node_url: str,
        chain_id: int,
        *,
        workers: int = 2,
        config: SimConfig | None = None,
        min_valid_for: int = 30,
        mp_start_method: str = "spawn",
        timeout: float = 0.0,
        memory_mb: int = 0,
    ):
        self.node_url = node_url
        self.config = config or SimConfig(chain_id=chain_id)
        if self.config.chain_id != chain_id:
            raise ValueError("config.chain_id differs from chain_id")
        self.workers = workers
        self.min_valid_for = min_valid_for
        self._mp_start_method = mp_start_method
        self.timeout = timeout  # seconds per simulation (0: unbounded); see sim/limits.py
        self.memory_mb = memory_mb  # address-space limit per worker process (0: none)
        self._pool: Executor | None = None
        self._local: SimWorker | None = None
        self._started = False

    # -- lifecycle --
    def _make_pool(self) -> Executor:
        if self.workers <= 0:
            from .worker import SimWorker  # py-evm, in this process only when it simulates itself

            self._local = SimWorker(self.node_url, self.config)
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim")
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(self._mp_start_method),
            initializer=init_limited_process,
            initargs=(self.node_url, self.config, self.memory_mb, os.getpid()),
        )

    async def start(self) -> None:
        """Spawn and warm all workers (otherwise done lazily by the first requests)."""
        if self._pool is None:
            self._pool = self._make_pool()
        if not self._started:
            self._started = True
            n = max(self.workers, 1)
            # concurrent pings that each hold their worker a moment, so every process spawns
            await asyncio.gather(*(self._run("ping", 0.05 if n > 1 else 0.0) for _ in range(n)))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._started = False
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )
        if self._local is not None:
            self._local.close()
            self._local = None

    async def __aenter__(self) -> "Simulator":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _time_budget(self, method: str, args: tuple) -> float:
        if self.timeout <= 0 or method in ("ping", "stats"):
            return 0.0
        if method == "measure_gas":  # a measuring run and a confirming run
            return 2 * self.timeout
        if method == "simulate_handle_ops":
            return self.timeout * max(1, len(args[0]))
        return self.timeout

    async def _run(self, method: str, *args, **kwargs):
        if self._pool is None:
            self._pool = self._make_pool()
        loop = asyncio.get_running_loop()
        budget = self._time_budget(method, args)
        what = "bundle simulation" if method == "simulate_handle_ops" else "simulation"
        for attempt in (0, 1):
            if self._local is not None:
                call = functools.partial(getattr(self._local, method), *args, **kwargs)
            else:
                call = functools.partial(run_limited, budget, method, *args, **kwargs)
            try:
                future = loop.run_in_executor(self._pool, call)
                if not budget:
                    return await future
                # the worker stops itself at `budget`; this backstop also bounds thread mode
                # (asyncio.timeout, not wait_for, which in 3.11 may swallow a cancellation)
                async with asyncio.timeout(budget + 2.0):
                    return await future
            except (SimulationDeadline, TimeoutError):
                raise SimulationTimeout(budget, what) from None
            except MemoryError:
                raise SimulationOutOfMemory(self.memory_mb, what) from None
            except BrokenProcessPool:
                if attempt:
                    raise NodeError("simulation worker pool broke twice in a row") from None
                # a worker died (OOM, signal): start a fresh pool and retry once
                broken, self._pool = self._pool, self._make_pool()
                broken.shutdown(wait=False, cancel_futures=True)

    # -- raw results --
    async def simulate_validation(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        *,
        overrides: Overrides = None,
        tracer: TracerSpec = None,
        timestamp: int | None = None,
    ) -> ValidationResult | SimulationFailure:
        """simulateValidation as is: the decoded result, or the decoded failure."""
        return await self._run("simulate_validation", op, ep, block, _parse(overrides), tracer, timestamp)

    async def reads_unchanged(self, block: PinnedBlock, read_sets: Sequence[Any]) -> list[bool]:
        """For each sim.readset.ReadSet: are the values it holds the same at `block`? (one
        worker call, one node batch)"""
        if not read_sets:
            return []
        return await self._run("reads_unchanged", block, tuple(read_sets))

    async def measure_gas(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        *,
        overrides: Overrides = None,
        fund: bool = True,
        timestamp: int | None = None,
        policy: GasPolicy | None = None,
    ) -> GasEstimate | SimulationFailure:
        """One simulateHandleOp run with generous limits (the payer is funded by a state override
        unless fund=False), limits proposed from the measured frames, one confirming run."""
        return await self._run("measure_gas", op, ep, block, _parse(overrides), fund, timestamp, policy)

    async def simulate_bundle(
        self,
        ops: Sequence[UserOperation],
        ep: EntryPointVersion,
        block: PinnedBlock,
        *,
        beneficiary: str,
        sender: str,
        gas: int | None = None,
        gas_price: int | None = None,
        overrides: Overrides = None,
        timestamp: int | None = None,
    ) -> BundleResult:
        """handleOps(ops, beneficiary) on the real EntryPoint as a transaction from `sender`
        (gas defaults to the block gas limit; with gas_price given, `sender` must afford
        gas * gas_price like a node would require, without it no fee is charged)."""
        return await self._run(
            "simulate_handle_ops", tuple(ops), ep, block, beneficiary, sender, gas, gas_price,
            _parse(overrides), timestamp,
        )

    # -- checked forms, raising bundler.errors --
    async def validate(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        *,
        overrides: Overrides = None,
        tracer: TracerSpec = None,
        now: int | None = None,
        latest: int | None = None,
        max_wait: int = 0,
        next_block: int | None = None,
        block_time: int = 1,
    ) -> ValidationResult:
        """simulateValidation plus the checks the EntryPoint leaves to the bundler; raises the
        ERC-7769 error (ValidationRejected, SignatureInvalid, TimeRangeInvalid, ...). The time
        range is judged against the inclusion window [now, latest] and a v0.9 block range against
        `next_block` (sim.results.validation_error)."""
        now = int(time.time()) if now is None else now
        out = await self.simulate_validation(op, ep, block, overrides=overrides, tracer=tracer)
        if isinstance(out, SimulationFailure):
            raise failure_error(out, op.paymaster)
        err = validation_error(out, now=now, min_valid_for=self.min_valid_for, paymaster=op.paymaster,
                               latest=latest, max_wait=max_wait, strict=ep.valid_after_strict,
                               next_block=next_block, block_time=block_time)
        if err is not None:
            raise err
        return out

    async def estimate_gas(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        *,
        overrides: Overrides = None,
        policy: GasPolicy | None = None,
    ) -> GasEstimate:
        """measure_gas, raising on a validation failure or a reverting execution."""
        out = await self.measure_gas(op, ep, block, overrides=overrides, policy=policy)
        if isinstance(out, SimulationFailure):
            raise failure_error(out, op.paymaster)
        if not out.execution_success:
            raise ExecutionReverted(
                f"UserOperation execution reverted: {out.execution_revert_reason}",
                {"revertData": "0x" + out.execution_revert.hex()},
            )
        if not out.confirmed:
            failure = out.confirm_failure
            raise BundlerError(
                "gas estimation could not confirm its own limits"
                + (f": {failure.message}" if failure else "")
            )
        return out

    async def stats(self) -> dict:
        """Counters of one worker (whichever answers)."""
        return await self._run("stats")
