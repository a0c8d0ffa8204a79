"""Chain types: the pinned block a read or a simulation runs against, the next block's context, and
geth-style state overrides (picklable: they cross to the simulation worker processes)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping


ZERO_ADDRESS = "0x" + "00" * 20
UINT256_MAX = (1 << 256) - 1


@dataclass(frozen=True, slots=True)
class PinnedBlock:
    """The header of the block whose post-state the simulation reads (the node's view).

    Execution itself happens in "the next block": see BlockContext.after().
    """

    number: int
    timestamp: int
    base_fee: int
    gas_limit: int
    coinbase: str = ZERO_ADDRESS
    prev_randao: bytes = b"\x00" * 32
    hash: bytes = b""
    gas_used: int | None = None

    @classmethod
    def from_rpc(cls, block: Mapping[str, Any]) -> "PinnedBlock":
        """From an eth_getBlockByNumber answer."""
        mix = block.get("mixHash") or block.get("prevRandao") or "0x" + "00" * 32
        return cls(
            number=int(block["number"], 16),
            timestamp=int(block["timestamp"], 16),
            base_fee=int(block.get("baseFeePerGas") or "0x0", 16),
            gas_limit=int(block["gasLimit"], 16),
            coinbase=(block.get("miner") or ZERO_ADDRESS).lower(),
            prev_randao=bytes.fromhex(mix[2:]),
            hash=bytes.fromhex(block["hash"][2:]) if block.get("hash") else b"",
            gas_used=int(block["gasUsed"], 16) if block.get("gasUsed") else None,
        )

    @property
    def tag(self) -> str:
        return hex(self.number)

    @property
    def cache_key(self) -> tuple[int, bytes]:
        return (self.number, self.hash)

    def next_base_fee(self) -> int:
        """EIP-1559 base fee of the following block (the pinned one if gasUsed is unknown)."""
        if self.gas_used is None or self.gas_limit == 0:
            return self.base_fee
        target = self.gas_limit // 2
        if target == 0 or self.gas_used == target:
            return self.base_fee
        if self.gas_used > target:
            delta = max(self.base_fee * (self.gas_used - target) // target // 8, 1)
            return self.base_fee + delta
        delta = self.base_fee * (target - self.gas_used) // target // 8
        return max(self.base_fee - delta, 0)


@dataclass(frozen=True, slots=True)
class BlockContext:
    """Block environment the EVM sees (NUMBER, TIMESTAMP, BASEFEE, ...)."""

    number: int
    timestamp: int
    base_fee: int
    gas_limit: int
    coinbase: bytes
    prev_randao: bytes
    chain_id: int
    # hashes of previous blocks, newest first (BLOCKHASH); only the pinned block is known
    prev_hashes: tuple[bytes, ...] = ()

    @classmethod
    def after(cls, pinned: PinnedBlock, chain_id: int, timestamp: int | None = None) -> "BlockContext":
        """The block after the pinned one: what an op sent now would be included in."""
        if timestamp is None:
            timestamp = max(pinned.timestamp + 1, int(time.time()))
        return cls(
            number=pinned.number + 1,
            timestamp=timestamp,
            base_fee=pinned.next_base_fee(),
            gas_limit=pinned.gas_limit,
            coinbase=bytes.fromhex(pinned.coinbase[2:]),
            prev_randao=pinned.prev_randao,
            chain_id=chain_id,
            prev_hashes=(pinned.hash,) if pinned.hash else (),
        )


@dataclass(frozen=True, slots=True)
class AccountOverride:
    balance: int | None = None
    nonce: int | None = None
    code: bytes | None = None
    state: Mapping[int, int] | None = None  # replaces all storage
    state_diff: Mapping[int, int] | None = None  # patches single slots


# address (lower-case 0x) -> override
StateOverrides = Mapping[str, AccountOverride]


@dataclass
class MinedOp:
    """An op's UserOperationEvent on the canonical chain: where it landed."""

    op_hash: str
    tx_hash: str
    block_number: int
    block_hash: str


@dataclass
class PendingBundle:
    """A bundle transaction a reorg put back in the node's pool: it keeps its nonce and will be
    mined again; whoever sent it follows it."""

    tx_hash: str
    executor: str
    nonce: int
    entry_point: str
    raw: str
    max_fee: int
    priority: int
    op_hashes: list[str]


@dataclass
class ChainUpdate:
    """What the chain watcher saw happen to ops after a reorg, for the pool to apply (and the
    builder, for its own transactions): `mined` landed in the new chain, `unmined` are in no
    block and no pending transaction any more (validated again, back to pending or dropped),
    `pending` are in a bundle transaction the node holds again, `lost_txs` are bundle
    transactions gone from chain and node (their sender's nonce is free again)."""

    mined: list[MinedOp] = field(default_factory=list)
    unmined: list[str] = field(default_factory=list)
    pending: list[PendingBundle] = field(default_factory=list)
    lost_txs: list[str] = field(default_factory=list)
