"""Picklable outputs of the simulation package. Its inputs (the pinned block, the block context,
state overrides) are chain types, in chain/types.py; re-exported here for the sim modules."""
from __future__ import annotations

from dataclasses import dataclass

from ..chain.types import (  # noqa: F401  (re-exported)
    UINT256_MAX, ZERO_ADDRESS, AccountOverride, BlockContext, PinnedBlock,
)


@dataclass(frozen=True, slots=True)
class CallResult:
    """Outcome of one message call or transaction in the EVM."""

    success: bool
    output: bytes  # return data, or revert data when not success
    gas_used: int
    logs: tuple[tuple[str, tuple[int, ...], bytes], ...] = ()  # (address, topics, data)
    error: str | None = None  # VM error name when the call did not succeed (Revert, OutOfGas, ...)
    refund: int = 0

    @property
    def reverted(self) -> bool:
        return not self.success and self.error == "Revert"
