"""Simulation of UserOperations in py-evm against a node's state at a pinned block.

Layers (each usable on its own):
    node.NodeReader          eth_* reads (batched through pjrpc), no debug/trace API
    state.BlockState         per-block read cache;  state.OverlayAccountDB  journaled writes
    executor.EvmSession      message calls / transactions in Prague, optional Tracer hook
    entrypoint_sim           simulateValidation, gas measurement, real handleOps
    worker.SimWorker         the synchronous API one worker process serves
    simulator.Simulator      async facade over a process pool (workers=0: one thread)
"""
from .entrypoint_sim import GasPolicy
from .executor import ERC7562_OPCODES, EvmSession, NoopTracer, Tracer
from .results import (
    BundleResult, GasEstimate, OpOutcome, SimulationFailure, StakeInfo, ValidationData,
    ValidationResult, describe_revert, failure_error, validation_error,
)
from .simulator import Simulator
from .types import AccountOverride, BlockContext, CallResult, PinnedBlock
from .worker import SimConfig, SimWorker

__all__ = [
    "AccountOverride", "BlockContext", "BundleResult", "CallResult", "ERC7562_OPCODES", "EvmSession",
    "GasEstimate", "GasPolicy", "NoopTracer", "OpOutcome", "PinnedBlock", "SimConfig", "SimWorker",
    "SimulationFailure", "Simulator", "StakeInfo", "Tracer", "ValidationData", "ValidationResult",
    "describe_revert", "failure_error", "validation_error",
]
