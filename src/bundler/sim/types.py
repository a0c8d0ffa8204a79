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


@dataclass(frozen=True, slots=True)
class ReadSet:
    """What one validation read from the node (sim/readset.py makes and compares it)."""

    accounts: bytes  # concatenated 20-byte addresses
    fields: bytes  # per account: which of BALANCE | NONCE | CODE (sim/state.py) the validation read
    slots: bytes  # concatenated 20-byte address + 32-byte slot
    digest: bytes  # of the values read, in that order
    block_context: bool  # the validation read the block context: never reusable
    coinbase: str  # of the block it ran on (warm by EIP-3651, COINBASE): must be the same

    @property
    def reusable(self) -> bool:
        return not self.block_context

    def account_keys(self) -> list[bytes]:
        a = self.accounts
        return [a[i:i + 20] for i in range(0, len(a), 20)]

    def slot_keys(self) -> list[tuple[bytes, int]]:
        s = self.slots
        return [(s[i:i + 20], int.from_bytes(s[i + 20:i + 52], "big")) for i in range(0, len(s), 52)]
