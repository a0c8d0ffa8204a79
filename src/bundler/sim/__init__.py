"""Simulation of UserOperations in py-evm against a node's state at a pinned block.

Layers (each usable on its own):
    node.NodeReader          eth_* reads (batched through pjrpc), no debug/trace API
    state.BlockState         per-block read cache;  state.OverlayAccountDB  journaled writes
    executor.EvmSession      message calls / transactions in Prague, optional Tracer hook
    entrypoint_sim           simulateValidation, gas measurement, real handleOps
    worker.SimWorker         the synchronous API one worker process serves
    simulator.Simulator      async facade over a process pool (workers=0: one thread)
"""
import importlib

from .config import GasPolicy, SimConfig
from .results import (
    BundleResult, GasEstimate, OpOutcome, SimulationFailure, StakeInfo, ValidationData,
    ValidationResult, describe_revert, failure_error, validation_error,
)
from .simulator import Simulator
from .types import AccountOverride, BlockContext, CallResult, PinnedBlock

# py-evm's side, loaded on first use: the main process (the Simulator facade, the result types)
# never imports py-evm, which cost it about 6 MB of RSS
_IN_WORKER_MODULES = {
    "ERC7562_OPCODES": "executor", "EvmSession": "executor", "NoopTracer": "executor", "Tracer": "executor",
    "SimWorker": "worker",
}


def __getattr__(name: str):
    module = _IN_WORKER_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "AccountOverride", "BlockContext", "BundleResult", "CallResult", "ERC7562_OPCODES", "EvmSession",
    "GasEstimate", "GasPolicy", "NoopTracer", "OpOutcome", "PinnedBlock", "SimConfig", "SimWorker",
    "SimulationFailure", "Simulator", "StakeInfo", "Tracer", "ValidationData", "ValidationResult",
    "describe_revert", "failure_error", "validation_error",
]
