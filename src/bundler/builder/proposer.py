"""The first step of proposing a bundle: which pending ops go in, as a value.

A pure function of the candidates (best paying first), the ops already in other bundles, the
inclusion window and the head block: no node, no store, no clock of its own. The ops it finds
expired or banned come back as drops for the caller to apply through the pool (OpFates); the
second validation and the simulate-and-drop rounds still live in Builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from ..chain.clock import InclusionWindow
from ..chain.types import PinnedBlock
from ..errors import EntityThrottled
from ..pool.mempool import PoolEntry
from ..pool.reputation import Verdict

# EntryPoint work per bundle outside the ops' own limits (loop, beneficiary payment)
BUNDLE_OVERHEAD_GAS = 60_000


class Gate(Protocol):
    """The reputation rules' say on one op for this bundle (pool.reputation.BundleGate)."""

    def check(self, entry: PoolEntry) -> tuple[Verdict, str | None]: ...


@dataclass
class Selection:
    ops: list[PoolEntry] = field(default_factory=list)
    # (entry, reason, error code) of ops that must leave the pool (expired, banned entity)
    drops: list[tuple[PoolEntry, str, int]] = field(default_factory=list)


def due(entry: PoolEntry, window: InclusionWindow) -> bool:
    """Valid in the next block: its validAfter, and a v0.9 block range's start, are behind it.
    Ops not due are held in the pool, not bundled."""
    return (window.due(entry.valid_after, entry.entry_point.valid_after_strict)
            and window.block_due(entry.valid_after_block))


def select_ops(candidates: Iterable[PoolEntry], *, reserved: Iterable[PoolEntry], submitted: Iterable[PoolEntry],
               window: InclusionWindow, header: PinnedBlock, max_gas: int, max_ops: int, gate: Gate | None = None,
               others_storage: Callable[[PoolEntry], frozenset[str]] = lambda _e: frozenset()) -> Selection:
    """The ops of one bundle. `reserved`: ops taken by other bundles being built or followed
    (their senders and paymasters wait for those to settle: a later nonce would fail before the
    earlier one is mined, a shared deposit could run out); `submitted`: ops in sent transactions
    (their senders wait)."""
    out = Selection()
    gas = BUNDLE_OVERHEAD_GAS
    limit = min(max_gas, header.gas_limit)
    taken = list(reserved)
    reserved_hashes = {e.hash for e in taken}
    busy = {e.op.sender for e in taken} | {e.op.sender for e in submitted}
    busy_paymasters = {e.op.paymaster for e in taken if e.op.paymaster}
    authorized: set[str] = set()  # senders with an EIP-7702 authorization in this bundle
    # STO-041: no op in the bundle touches the storage of another op's sender in it; the
    # later one (by fee order) waits for the next bundle instead of being refused
    senders: set[str] = set()
    touched: set[str] = set()
    for entry in candidates:
        op = entry.op
        if entry.hash in reserved_hashes or op.sender in busy or (op.paymaster and op.paymaster in busy_paymasters):
            continue
        # judged at the time the bundle will be included, not at the head block (chain.clock)
        if entry.valid_until and entry.valid_until < window.latest:
            out.drops.append((entry, f"expired: validUntil {entry.valid_until} is before the bundle's expected "
                                     f"inclusion (by timestamp {window.latest})", -32503))
            continue
        if entry.valid_until_block < window.last_block:
            out.drops.append((entry, f"expired: its block range ends at block {entry.valid_until_block}, before "
                                     f"the bundle's expected inclusion (by block {window.last_block})", -32503))
            continue
        if not due(entry, window):
            busy.add(op.sender)  # held until due, and the sender's later nonces with it
            continue
        if op.max_fee_per_gas < header.base_fee:
            continue  # cannot pay the current base fee; stays pending
        if gas + op.total_gas_limit() > limit:
            continue
        if op.eip7702_auth is not None and op.sender in authorized:
            continue  # one authorization per sender and bundle; the next one waits
        storage = others_storage(entry)
        if op.sender in touched or storage & senders:
            continue  # STO-041: stays pending for a later bundle
        if gate is not None:
            verdict, reason = gate.check(entry)
            if verdict == Verdict.DROP:
                out.drops.append((entry, reason or "dropped by the reputation rules", EntityThrottled.code))
                continue
            if verdict == Verdict.SKIP:
                continue
        if op.eip7702_auth is not None:
            authorized.add(op.sender)
        senders.add(op.sender)
        touched.update(storage)
        out.ops.append(entry)
        gas += op.total_gas_limit()
        if len(out.ops) >= max_ops:
            break
    return out
