"""The set of admitted, not yet mined UserOperations, indexed the ways admission and the
builder need: by hash, by (entry point, sender, nonce), by sender."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..entrypoint import EntryPointVersion
from ..errors import InvalidParams
from ..sim.results import UINT48_MAX, VALIDITY_BLOCK_RANGE_MASK
from ..userop.model import UserOperation

REPLACEMENT_BUMP_PERCENT = 10


@dataclass(slots=True)
class PoolEntry:
    op: UserOperation
    entry_point: EntryPointVersion
    hash: str
    valid_after: int = 0
    valid_until: int = 0
    # EntryPoint v0.9 block-number range (sim.results.ValidationResult); not persisted: a
    # restart validates every op again (pool.requeue)
    valid_after_block: int = 0
    valid_until_block: int = VALIDITY_BLOCK_RANGE_MASK
    prefund: int = 0
    received_at: float = field(default_factory=time.time)
    # tx hash of the in-flight bundle carrying this op, if any
    submitted_in: str | None = None
    # EIP-7702 delegate the hash was computed with (v0.8 7702 ops)
    eip7702_delegate: str | None = None
    # the op's entities and their stake as admission saw them (pool.reputation.OpEntities)
    entities: Any = None
    # code hashes of the contracts its validation ran or inspected, at admission (ERC-7562 COD-010;
    # pool.safe.CodeHashes)
    code_hashes: Any = None
    # the last validation's result, its trace reduced to what later checks read (pool.safe
    # SafeMode.kept: sim.erc7562.CheckedTrace), and the hash of the block it read: on the same
    # block a second validation only applies the mempool rules again
    validation: Any = None
    validated_block: bytes = b""

    def __post_init__(self) -> None:
        # "no end" is the usual value: the one constant instead of a fresh int per op (32 bytes)
        if self.valid_until == UINT48_MAX:
            self.valid_until = UINT48_MAX
        if self.valid_until_block == VALIDITY_BLOCK_RANGE_MASK:
            self.valid_until_block = VALIDITY_BLOCK_RANGE_MASK

    @property
    def slot(self) -> tuple[str, str, int]:
        return (self.entry_point.address, self.op.sender, self.op.nonce)

    def addresses(self) -> set[str]:
        """sender, factory (when deploying) and paymaster: what the reputation rules count."""
        out = {self.op.sender}
        if self.op.deploying_factory is not None:
            out.add(self.op.deploying_factory)
        if self.op.paymaster is not None:
            out.add(self.op.paymaster)
        return out


class PoolReader(Protocol):
    """What the builder reads of the mempool. It changes the pool only through pool.fates.OpFates
    (typed so: the type checker refuses a builder that adds or removes entries itself)."""

    def __len__(self) -> int: ...

    def get(self, op_hash: str) -> PoolEntry | None: ...

    def entries(self, entry_point: EntryPointVersion | None = None) -> list[PoolEntry]: ...

    def for_sender(self, sender: str) -> list[PoolEntry]: ...

    def entity_users(self, address: str) -> list[PoolEntry]: ...

    def bundle_candidates(self, entry_point: EntryPointVersion, base_fee: int) -> list[PoolEntry]: ...


class PoolObserver(Protocol):
    """An index kept in step with the pool. `added` is called for every entry that enters, on
    every path (admission, restart recovery, re-queue after a reorg or a lost bundle nonce,
    the shared-store sync), so the index never depends on how the op came in."""

    def added(self, entry: PoolEntry) -> None: ...

    def removed(self, entry: PoolEntry, mined_block: int | None = None) -> None: ...

    def cleared(self) -> None: ...


class MempoolFull(InvalidParams):
    pass


def in_bundle_error() -> InvalidParams:
    return InvalidParams("replacement refused: the UserOperation with this sender and nonce is already "
                         "in a bundle transaction awaiting inclusion")


def underpriced_error(max_fee: int, max_priority: int) -> InvalidParams:
    return InvalidParams(
        f"replacement underpriced: a UserOperation with this sender and nonce is pending; "
        f"raise both maxFeePerGas and maxPriorityFeePerGas by at least "
        f"{REPLACEMENT_BUMP_PERCENT}% (pending: maxFeePerGas {hex(max_fee)}, "
        f"maxPriorityFeePerGas {hex(max_priority)})"
    )


def _bumped(old: int, new: int) -> bool:
    return new * 100 >= old * (100 + REPLACEMENT_BUMP_PERCENT)


def _entities(op: UserOperation) -> set[str]:
    """The op's factory (when deploying) and paymaster, lower-case."""
    out = set()
    if op.deploys_account and op.factory:
        out.add(op.factory.lower())
    if op.paymaster:
        out.add(op.paymaster.lower())
    return out


class HashIndex:
    """key -> the hashes of the ops filed under it. Most keys hold one op (a sender, its
    address), so a key's value is that hash itself until a second one comes (then a set): a
    one-element set costs 216 bytes, which was a fifth of a pending op's memory."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[Any, str | set[str]] = {}

    def add(self, key: Any, op_hash: str) -> None:
        cur = self._d.get(key)
        if cur is None or cur == op_hash:
            self._d[key] = op_hash
        elif isinstance(cur, str):
            self._d[key] = {cur, op_hash}
        else:
            cur.add(op_hash)

    def discard(self, key: Any, op_hash: str) -> None:
        cur = self._d.get(key)
        if cur is None:
            return
        if isinstance(cur, str):
            if cur == op_hash:
                del self._d[key]
            return
        cur.discard(op_hash)
        if len(cur) == 1:
            self._d[key] = next(iter(cur))
        elif not cur:
            del self._d[key]

    def get(self, key: Any) -> tuple[str, ...]:
        cur = self._d.get(key)
        if cur is None:
            return ()
        return (cur,) if isinstance(cur, str) else tuple(cur)

    def count(self, key: Any) -> int:
        cur = self._d.get(key)
        return 0 if cur is None else 1 if isinstance(cur, str) else len(cur)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        self._d.clear()


class Mempool:
    def __init__(self, max_ops_per_sender: int = 4):
        self.max_ops_per_sender = max_ops_per_sender
        self._by_hash: dict[str, PoolEntry] = {}
        # sender -> hashes of its ops (any EntryPoint); also finds the op in a (entry point,
        # sender, nonce) slot (at_slot): a sender has few ops, and a slot dict with its tuple
        # keys cost about 100 bytes per pending op
        self._by_sender = HashIndex()
        # entry point -> address -> hashes of ops using that address as sender/factory/paymaster
        # (nested: a (entry point, address) tuple key cost 64 bytes per op)
        self._by_address: dict[str, HashIndex] = {}
        # lower-case address -> hashes of ops (any EntryPoint) with it as factory or paymaster:
        # admission asks it once per op (STO-041) instead of a pass over the whole pool
        self._by_entity = HashIndex()
        # told about every entry that comes and goes (PoolObserver)
        self._observers: list[PoolObserver] = []

    def observe(self, observer: "PoolObserver") -> None:
        """Register an index kept in step with the pool (e.g. the session pending-usage ledger)."""
        self._observers.append(observer)

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, op_hash: str) -> PoolEntry | None:
        return self._by_hash.get(op_hash)

    def entries(self, entry_point: EntryPointVersion | None = None) -> list[PoolEntry]:
        return [e for e in self._by_hash.values() if entry_point is None or e.entry_point == entry_point]

    def at_slot(self, entry_point_address: str, sender: str, nonce: int) -> PoolEntry | None:
        """The pending op of `sender` with `nonce` for that EntryPoint, if any (at most one:
        add() replaces the slot's op)."""
        for h in self._by_sender.get(sender):
            e = self._by_hash[h]
            if e.op.nonce == nonce and e.entry_point.address == entry_point_address:
                return e
        return None

    def for_sender(self, sender: str) -> list[PoolEntry]:
        return [self._by_hash[h] for h in self._by_sender.get(sender)]

    def entity_users(self, address: str) -> list[PoolEntry]:
        """Pending ops of any EntryPoint with `address` as their factory or paymaster."""
        return [self._by_hash[h] for h in self._by_entity.get(address.lower())]

    def count_using(self, entry_point: EntryPointVersion, address: str) -> int:
        """Pending ops of this EntryPoint with `address` as sender, factory or paymaster."""
        index = self._by_address.get(entry_point.address)
        return index.count(address) if index is not None else 0

    def entries_using(self, entry_point: EntryPointVersion, address: str) -> list[PoolEntry]:
        index = self._by_address.get(entry_point.address)
        return [self._by_hash[h] for h in index.get(address)] if index is not None else []

    def check_admissible(self, op: UserOperation, entry_point: EntryPointVersion, sender_staked: bool = False,
                         max_ops: int | None = None) -> PoolEntry | None:
        """Raise if `op` may not enter; return the entry it would replace, if any. `max_ops`
        overrides the per-sender cap for this op (session ops whose policy the bundler verified)."""
        existing = self.at_slot(entry_point.address, op.sender, op.nonce)
        if existing is not None:
            if existing.submitted_in is not None:
                raise in_bundle_error()
            old = existing.op
            if not (_bumped(old.max_fee_per_gas, op.max_fee_per_gas)
                    and _bumped(old.max_priority_fee_per_gas, op.max_priority_fee_per_gas)):
                raise underpriced_error(old.max_fee_per_gas, old.max_priority_fee_per_gas)
            return existing
        cap = self.max_ops_per_sender if max_ops is None else max_ops
        if not sender_staked and self._by_sender.count(op.sender) >= cap:
            raise MempoolFull(
                f"sender {op.sender} already has {cap} UserOperations pending "
                f"(the limit for an unstaked sender); wait for them to be mined"
            )
        return None

    def add(self, entry: PoolEntry) -> PoolEntry | None:
        replaced = self.at_slot(*entry.slot)
        if replaced is not None:
            self.remove(replaced.hash)
        self._by_hash[entry.hash] = entry
        self._by_sender.add(entry.op.sender, entry.hash)
        by_address = self._by_address.get(entry.entry_point.address)
        if by_address is None:
            by_address = self._by_address[entry.entry_point.address] = HashIndex()
        for address in entry.addresses():
            by_address.add(address, entry.hash)
        for address in _entities(entry.op):
            self._by_entity.add(address, entry.hash)
        for observer in self._observers:
            observer.added(entry)
        return replaced

    def remove(self, op_hash: str, mined_block: int | None = None) -> PoolEntry | None:
        """Take an entry out; mined_block says it left because it was mined in that block."""
        entry = self._by_hash.pop(op_hash, None)
        if entry is None:
            return None
        self._by_sender.discard(entry.op.sender, op_hash)
        by_address = self._by_address.get(entry.entry_point.address)
        if by_address is not None:
            for address in entry.addresses():
                by_address.discard(address, op_hash)
        for address in _entities(entry.op):
            self._by_entity.discard(address, op_hash)
        for observer in self._observers:
            observer.removed(entry, mined_block)
        return entry

    def clear(self) -> None:
        self._by_hash.clear()
        self._by_sender.clear()
        self._by_address.clear()
        self._by_entity.clear()
        for observer in self._observers:
            observer.cleared()

    def bundle_candidates(self, entry_point: EntryPointVersion, base_fee: int) -> list[PoolEntry]:
        """Ops not yet in flight, best paying first, each sender's ops in nonce order."""
        ready = [e for e in self._by_hash.values()
                 if e.entry_point == entry_point and e.submitted_in is None]
        ready.sort(key=lambda e: (-e.op.gas_price(base_fee), e.op.sender, e.op.nonce))
        # keep nonce order within a sender while ordering senders by their best op
        by_sender: dict[str, list[PoolEntry]] = defaultdict(list)
        order: list[str] = []
        for e in ready:
            if e.op.sender not in by_sender:
                order.append(e.op.sender)
            by_sender[e.op.sender].append(e)
        out: list[PoolEntry] = []
        for sender in order:
            out.extend(sorted(by_sender[sender], key=lambda e: e.op.nonce))
        return out
