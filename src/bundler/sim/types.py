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


_FLAG = 1  # the leading byte: 1 when the validation read the block context (never reusable)
_COUNT = 2  # bytes of the address count and of a slot's address index (a validation within a
# block's gas touches far fewer than 65,536 cold accounts: 2,600 gas each)
_ACCOUNT = 21  # 20-byte address + 1 byte of fields read
_DIGEST = 32


class ReadSet(bytes):
    """What one validation read from the node (sim/readset.py makes and compares it).

    Kept per pending op, so it is one bytes object (a bytes subclass without slots: 16 bytes
    more than plain bytes, where a dataclass around one was 56; each slot names its account by
    a 2-byte index instead of repeating the 20-byte address, and its key in as few bytes as it
    needs: about half the slots a validation reads are small numbers, the EntryPoint's and the
    account's own variables, not mapping keys):
      block context read (1 byte: 1 or 0) | count (2 bytes) | count x (address + fields read:
      BALANCE | NONCE | CODE of sim/state.py, 0 for an account only its storage was read of) |
      per slot (address index, 1-byte length, the slot big-endian in that many bytes) | digest
      of the values read and of the block's coinbase (32 bytes; sim/readset.py)."""

    __slots__ = ()

    @classmethod
    def pack(cls, accounts: list[bytes], fields: bytes, slots: list[tuple[bytes, int]], digest: bytes,
             block_context: bool) -> "ReadSet":
        """`accounts` (sorted, each with its nonzero `fields` byte) and `slots` (sorted) as packed."""
        read = dict(zip(accounts, fields))
        table = sorted(read.keys() | {address for address, _ in slots})
        index = {address: i for i, address in enumerate(table)}
        parts = [bytes([1 if block_context else 0]), len(table).to_bytes(_COUNT, "big")]
        parts += [address + bytes([read.get(address, 0)]) for address in table]
        parts += [index[address].to_bytes(_COUNT, "big") + _minimal(slot) for address, slot in slots]
        parts.append(digest)
        return cls(b"".join(parts))

    @property
    def block_context(self) -> bool:
        """The validation read the block context (TIMESTAMP, NUMBER, ...): never reusable."""
        return self[0] != 0

    @property
    def reusable(self) -> bool:
        return not self.block_context

    @property
    def digest(self) -> bytes:
        return self[-_DIGEST:]

    def _table(self) -> list[bytes]:
        """Each address with its fields byte, in the packed order."""
        p = self
        n, start = int.from_bytes(p[_FLAG:_FLAG + _COUNT], "big"), _FLAG + _COUNT
        return [p[i:i + _ACCOUNT] for i in range(start, start + n * _ACCOUNT, _ACCOUNT)]

    @property
    def fields(self) -> bytes:
        """Per account of account_keys(): which fields the validation read."""
        return bytes(entry[20] for entry in self._table() if entry[20])

    def account_keys(self) -> list[bytes]:
        return [entry[:20] for entry in self._table() if entry[20]]

    def slot_keys(self) -> list[tuple[bytes, int]]:
        table, p = self._table(), self
        i, end, out = _FLAG + _COUNT + len(table) * _ACCOUNT, len(p) - _DIGEST, []
        while i < end:
            address = table[int.from_bytes(p[i:i + _COUNT], "big")][:20]
            size = p[i + _COUNT]
            i += _COUNT + 1
            out.append((address, int.from_bytes(p[i:i + size], "big")))
            i += size
        return out


def _minimal(slot: int) -> bytes:
    """A slot key as its length byte and its big-endian bytes without leading zeros."""
    size = (slot.bit_length() + 7) // 8
    return bytes([size]) + slot.to_bytes(size, "big")
