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


_COUNT = 2  # bytes of the address count and of a slot's address index (a validation within a
# block's gas touches far fewer than 65,536 cold accounts: 2,600 gas each)
_ACCOUNT = 21  # 20-byte address + 1 byte of fields read
_SLOT = _COUNT + 32
_DIGEST = 32


@dataclass(frozen=True, slots=True)
class ReadSet:
    """What one validation read from the node (sim/readset.py makes and compares it).

    Kept per pending op, so packed into one bytes object (one object header instead of four,
    and each slot names its account by a 2-byte index instead of repeating the 20-byte address):
      count (2 bytes) | count x (address + fields read: BALANCE | NONCE | CODE of sim/state.py,
      0 for an account only its storage was read of) | per slot (address index + 32-byte slot)
      | digest of the values read (32 bytes)."""

    packed: bytes
    block_context: bool  # the validation read the block context: never reusable
    coinbase: str  # of the block it ran on (warm by EIP-3651, COINBASE): must be the same

    @classmethod
    def pack(cls, accounts: list[bytes], fields: bytes, slots: list[tuple[bytes, int]], digest: bytes,
             block_context: bool, coinbase: str) -> "ReadSet":
        """`accounts` (sorted, each with its nonzero `fields` byte) and `slots` (sorted) as packed."""
        read = dict(zip(accounts, fields))
        table = sorted(read.keys() | {address for address, _ in slots})
        index = {address: i for i, address in enumerate(table)}
        parts = [len(table).to_bytes(_COUNT, "big")]
        parts += [address + bytes([read.get(address, 0)]) for address in table]
        parts += [index[address].to_bytes(_COUNT, "big") + slot.to_bytes(32, "big") for address, slot in slots]
        parts.append(digest)
        return cls(b"".join(parts), block_context, coinbase)

    @property
    def reusable(self) -> bool:
        return not self.block_context

    @property
    def digest(self) -> bytes:
        return self.packed[-_DIGEST:]

    def _table(self) -> list[bytes]:
        """Each address with its fields byte, in the packed order."""
        p, n = self.packed, int.from_bytes(self.packed[:_COUNT], "big")
        return [p[i:i + _ACCOUNT] for i in range(_COUNT, _COUNT + n * _ACCOUNT, _ACCOUNT)]

    @property
    def fields(self) -> bytes:
        """Per account of account_keys(): which fields the validation read."""
        return bytes(entry[20] for entry in self._table() if entry[20])

    def account_keys(self) -> list[bytes]:
        return [entry[:20] for entry in self._table() if entry[20]]

    def slot_keys(self) -> list[tuple[bytes, int]]:
        table, p = self._table(), self.packed
        start = _COUNT + len(table) * _ACCOUNT
        return [(table[int.from_bytes(p[i:i + _COUNT], "big")][:20], int.from_bytes(p[i + _COUNT:i + _SLOT], "big"))
                for i in range(start, len(p) - _DIGEST, _SLOT)]
