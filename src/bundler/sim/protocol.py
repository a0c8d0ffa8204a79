"""What admission needs of the simulator (pool code and unit tests can pass a fake)."""
from __future__ import annotations

from typing import Protocol

from ..chain.types import PinnedBlock, StateOverrides
from ..entrypoint import EntryPointVersion
from ..userop import UserOperation
from .results import ValidationResult
from .config import TracerSpec


class Validator(Protocol):
    """`sim.simulator.Simulator.validate`: simulateValidation plus the bundler's checks,
    raising the ERC-7769 error."""

    async def validate(self, op: UserOperation, ep: EntryPointVersion, block: PinnedBlock, *,
                       overrides: StateOverrides | None = None, tracer: TracerSpec = None,
                       now: int | None = None, latest: int | None = None, max_wait: int = 0,
                       next_block: int | None = None, block_time: int = 1) -> ValidationResult: ...
