"""The synchronous side: one SimWorker per worker process (or per debugging thread).

A worker keeps its node connection and the state cache of the block(s) it was last asked
about; a request for a new pinned block starts a new cache (the previous one is kept for
requests still pinned to it, older ones are dropped).
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, cast

from ..entrypoint import EntryPointVersion
from ..userop import UserOperation
from . import entrypoint_sim as eps
from . import readset
from .executor import EvmSession, Tracer
from ..chain.sync_reader import NodeReader
from .results import BundleResult, GasEstimate, SimulationFailure, ValidationResult
from .state import BlockState, OverlayAccountDB
from .config import GasPolicy, SimConfig, TracerSpec  # noqa: F401  (re-exported)
from .types import ZERO_ADDRESS, AccountOverride, BlockContext, PinnedBlock

def _overrides_bytes(overrides: Mapping[str, AccountOverride] | None) -> dict[bytes, AccountOverride]:
    if not overrides:
        return {}
    return {bytes.fromhex(a[2:]): ov for a, ov in overrides.items()}


def _make_tracer(spec: TracerSpec) -> Tracer | None:
    if spec is None:
        return None
    # Tracer is a Protocol (no isinstance): an instance is what has its members and is no class
    if hasattr(spec, "opcodes") and hasattr(spec, "on_enter") and not isinstance(spec, type):
        return cast(Tracer, spec)
    return cast(Callable[[], Tracer], spec)()  # a class or factory


def _report(tracer: Tracer | None) -> Any:
    report = getattr(tracer, "report", None)
    return report() if callable(report) else None


class SimWorker:
    def __init__(self, node_url: str | None, config: SimConfig):
        self.config = config
        self.reader = NodeReader(node_url, timeout=config.node_timeout) if node_url else None
        self._blocks: OrderedDict[tuple, BlockState] = OrderedDict()
        self.pid = os.getpid()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()

    # -- state --
    def block_state(self, block: PinnedBlock) -> BlockState:
        key = block.cache_key
        bs = self._blocks.get(key)
        if bs is None:
            bs = BlockState(self.reader, block)
            if self._blocks:  # what the last block's simulations fetched one by one
                bs.hints = tuple(next(reversed(self._blocks.values())).on_demand)
            self._blocks[key] = bs
            while len(self._blocks) > self.config.cached_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return bs

    def session(
        self,
        block: PinnedBlock,
        overrides: Mapping[str, AccountOverride] | None = None,
        tracer: Tracer | None = None,
        timestamp: int | None = None,
    ) -> EvmSession:
        base = self.block_state(block)
        db = OverlayAccountDB(base, _overrides_bytes(overrides))
        ctx = BlockContext.after(block, self.config.chain_id, timestamp)
        return EvmSession(db, ctx, tracer)

    # -- tasks --
    def ping(self, delay: float = 0.0) -> int:
        if delay:
            time.sleep(delay)
        return self.pid

    def stats(self) -> dict:
        return {
            "pid": self.pid,
            "node_requests": self.reader.requests_sent if self.reader else 0,
            "blocks": [k[0] for k in self._blocks],
            "accounts": sum(len(b.accounts) for b in self._blocks.values()),
        }

    def simulate_validation(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        overrides: Mapping[str, AccountOverride] | None = None,
        tracer: TracerSpec = None,
        timestamp: int | None = None,
    ) -> ValidationResult | SimulationFailure:
        t = _make_tracer(tracer)
        session = self.session(block, overrides, t, timestamp)
        eps.prefetch_for_ops(session.db.base, (op,), ep)
        out = eps.simulate_validation(
            session, op, ep, caller=self.config.caller, gas=self.config.validation_call_gas,
            block_number=block.number,
        )
        if t is not None:
            trace = _report(t)
            if trace is not None:
                out = _with_trace(out, trace)
                if not overrides and isinstance(out, ValidationResult):
                    # what the second validation (safe mode: traced) needs to tell whether it
                    # would see the same; a tracer that reports nothing changes nothing in the result
                    out = replace(out, reads=readset.capture(session.db, session.state.execution_context.block_read))
        return out

    def reads_unchanged(self, block: PinnedBlock, read_sets: Sequence[readset.ReadSet]) -> list[bool]:
        """Whether each validation would read the same values at `block` (one node batch)."""
        return readset.unchanged(self.block_state(block), read_sets)

    def measure_gas(
        self,
        op: UserOperation,
        ep: EntryPointVersion,
        block: PinnedBlock,
        overrides: Mapping[str, AccountOverride] | None = None,
        fund: bool = True,
        timestamp: int | None = None,
        policy: eps.GasPolicy | None = None,
    ) -> GasEstimate | SimulationFailure:
        base = self.block_state(block)
        eps.prefetch_for_ops(base, (op,), ep)
        if timestamp is None:  # both runs must see the same block
            timestamp = BlockContext.after(block, self.config.chain_id).timestamp
        return eps.measure_gas(
            lambda: self.session(block, overrides, None, timestamp),
            op, ep, caller=self.config.caller, policy=policy or self.config.gas_policy, fund=fund,
            block_number=block.number,
        )

    def simulate_handle_ops(
        self,
        ops: Sequence[UserOperation],
        ep: EntryPointVersion,
        block: PinnedBlock,
        beneficiary: str,
        sender: str,
        gas: int | None = None,
        gas_price: int | None = None,
        overrides: Mapping[str, AccountOverride] | None = None,
        timestamp: int | None = None,
    ) -> BundleResult:
        session = self.session(block, overrides, None, timestamp)
        eps.prefetch_for_ops(session.db.base, ops, ep)
        # without an explicit price: GASPRICE reads the base fee and no fee is charged, so the
        # default gas (the block gas limit) does not require the executor to afford it
        charge = gas_price is not None
        return eps.simulate_handle_ops(
            session, ops, ep, beneficiary=beneficiary, sender=sender,
            gas=gas if gas is not None else block.gas_limit,
            gas_price=gas_price if gas_price is not None else session.block.base_fee, charge_fees=charge,
            block_number=block.number,
        )


def _with_trace(out, trace):
    return replace(out, trace=trace)


# -- process-pool plumbing: one SimWorker per process, built by the initializer --
_WORKER: SimWorker | None = None


def init_process(node_url: str, config: SimConfig) -> None:
    global _WORKER
    _WORKER = SimWorker(node_url, config)
    # warm up: artifacts parsed, code interned, opcode tables and decoders imported
    from ..entrypoint import ALL

    for ep in ALL:
        eps.simulation_code(ep)


def run_in_process(method: str, *args, **kwargs):
    if _WORKER is None:  # pragma: no cover - initializer always runs first
        raise RuntimeError("simulation worker not initialised")
    return getattr(_WORKER, method)(*args, **kwargs)
