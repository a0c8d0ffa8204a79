"""What the rest of the bundler needs of the simulator, one Protocol per need, so a caller names
only what it uses and unit tests can pass a fake. `sim.simulator.Simulator` implements them all
(`Simulator` below is their sum: what the composition root holds)."""
from __future__ import annotations

from typing import Protocol, Sequence

from ..chain.types import PinnedBlock, StateOverrides
from ..entrypoint import EntryPointVersion
from ..userop import UserOperation
from .config import GasPolicy, TracerSpec
from .results import BundleResult, GasEstimate, SimulationFailure, ValidationResult


class Validator(Protocol):
    """`Simulator.validate`: simulateValidation plus the bundler's checks, raising the ERC-7769
    error (admission, requeue)."""

    async def validate(self, op: UserOperation, ep: EntryPointVersion, block: PinnedBlock, *,
                       overrides: StateOverrides | None = None, tracer: TracerSpec = None,
                       now: int | None = None, latest: int | None = None, max_wait: int = 0,
                       next_block: int | None = None, block_time: int = 1) -> ValidationResult: ...


class RawValidator(Protocol):
    """`Simulator.simulate_validation`: the decoded result or failure, nothing judged (the
    second validation before a bundle judges it itself)."""

    async def simulate_validation(self, op: UserOperation, ep: EntryPointVersion, block: PinnedBlock, *,
                                  overrides: StateOverrides | None = None, tracer: TracerSpec = None,
                                  timestamp: int | None = None) -> ValidationResult | SimulationFailure: ...


class BundleSimulator(Protocol):
    """`Simulator.simulate_bundle`: handleOps as a transaction of `sender` (the bundle check)."""

    async def simulate_bundle(self, ops: Sequence[UserOperation], ep: EntryPointVersion, block: PinnedBlock, *,
                              beneficiary: str, sender: str, gas: int | None = None, gas_price: int | None = None,
                              overrides: StateOverrides | None = None,
                              timestamp: int | None = None) -> BundleResult: ...


class GasEstimator(Protocol):
    """`Simulator.estimate_gas`: measured and confirmed limits, or the ERC-7769 error."""

    async def estimate_gas(self, op: UserOperation, ep: EntryPointVersion, block: PinnedBlock, *,
                           overrides: StateOverrides | None = None,
                           policy: GasPolicy | None = None) -> GasEstimate: ...


class Simulator(Validator, RawValidator, BundleSimulator, GasEstimator, Protocol):
    """The whole simulator with its life cycle (workers started and stopped by the app)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...
