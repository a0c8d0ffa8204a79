"""The pool's one interface: what the builder, the chain watcher and the rpc handlers may ask of it.

`Pool` is the protocol; `LocalPool` implements it by composing the pool's internals
(admission, mempool, reputation rules, capacity guard, requeue, op fates). Callers outside
`pool/` hold a `Pool` (or a `PoolReader` where they only read) and never reach the internals:
every change of an op's status goes through one of these methods (and so through `OpFates`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Collection, Iterable, Protocol

from ..chain.reorgs import MinedBundle
from ..chain.types import ChainUpdate
from ..entrypoint import EntryPointVersion
from ..store.base import Store
from ..store.records import OpStatus
from ..userop.model import UserOperation
from .admission import Admission
from .chain_updates import ChainUpdates
from .fates import OpFates
from .mempool import Mempool, PoolEntry, PoolReader
from .reputation import BundleGate, ReputationRules, Status
from .requeue import Requeue, entry_from_record
from .shared import CLAIMED_ELSEWHERE
from .staking import StakePolicy

# (op hash, EntryPoint address) -> True when the op is found mined on chain (and so recorded)
FoundMined = Callable[[str, str], Awaitable[bool]]


@dataclass
class BundleOutcome:
    """A bundle transaction of ours, mined: in which block, whether it reverted, which of its
    ops the EntryPoint included (UserOperationEvent found in the receipt)."""
    tx_hash: str
    block_number: int
    block_hash: str
    reverted: bool = False
    included: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class OpState:
    """An op's status as the pool records it (the store row), for readers outside the pool."""
    status: OpStatus
    reason: str | None = None
    error_code: int | None = None
    tx_hash: str | None = None


@dataclass
class ReputationRow:
    address: str
    ops_seen: int
    ops_included: int
    status: Status


class Pool(PoolReader, Protocol):
    # -- admission --------------------------------------------------------------------------
    async def add(self, op: UserOperation, entry_point: EntryPointVersion) -> str:
        """Admit a new op: its hash, or a BundlerError with the ERC-7769 code of the refusal."""
        ...

    def op_state(self, op_hash: str) -> OpState | None:
        """The recorded status of any op this pool has seen (in the mempool or not); None: unknown."""
        ...

    # -- bundle selection -------------------------------------------------------------------
    def submitted(self, entry_point: EntryPointVersion) -> list[PoolEntry]:
        """Ops of `entry_point` carried by a bundle transaction in flight."""
        ...

    def bundle_gate(self, entry_point: EntryPointVersion, block_number: int) -> BundleGate | None:
        """The reputation rules' say on each candidate of one bundle (None: no rules)."""
        ...

    def blamed(self, entry: PoolEntry, code: str | None, second_validation: bool = False) -> list[PoolEntry]:
        """`entry` failed at bundle time with AA `code`: the reputation counters are updated and
        the other ops of an entity banned for it are returned (the caller drops them)."""
        ...

    # -- claims (a store shared by several instances) ---------------------------------------
    async def claim(self, entries: list[PoolEntry], owner: str) -> list[PoolEntry]:
        """The entries this instance may bundle (all of them unless the store is shared; the
        others are marked claimed elsewhere). Raises store.base.LeaseLost when fenced."""
        ...

    async def release(self, entries: list[PoolEntry], owner: str) -> None:
        """Claimed by `owner` but not sent: another instance may take them."""
        ...

    def claimable_again(self, op_hashes: Iterable[str]) -> None:
        """Claims of another instance released (it died): these ops may be bundled here."""
        ...

    # -- fates of ops in bundles ------------------------------------------------------------
    def mark_submitted(self, entries: Iterable[PoolEntry], tx_hash: str | None) -> None:
        """The ops went out in transaction `tx_hash` (the store row was written with it; None:
        an adopted in-flight row without an attempt)."""
        ...

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None: ...

    def pending_again(self, op_hash: str, entry: PoolEntry | None = None) -> None: ...

    def forget(self, op_hash: str) -> None: ...

    def recorded_mined(self, op_hash: str, tx_hash: str, block_number: int, block_hash: str) -> None: ...

    def resubmitted(self, op_hash: str, tx_hash: str, entry: PoolEntry | None = None) -> None: ...

    def adopt(self, entry: PoolEntry) -> None:
        """An op in flight in a transaction this instance took over (or found in flight at start):
        in this instance's mempool, its record left as it is."""
        ...

    def adopt_in_flight(self, op_hashes: Iterable[str], tx_hash: str | None) -> list[str]:
        """The ops of a transaction taken over from a dead instance (or found in flight at
        start): marked in it, and those not in this mempool yet (but pending or submitted in the
        store) added to it. Returns the hashes now in the pool marked in `tx_hash`."""
        ...

    async def restore_pending(self, skip: Collection[str]) -> int:
        """At start: the ops the store holds as pending or submitted, except `skip` (those of
        transactions in flight, adopted with `adopt_in_flight`), validated again into the pool
        (or recorded dropped). Returns how many were re-validated."""
        ...

    def mined_since(self, block_number: int) -> list[MinedBundle]:
        """At start: the bundles whose ops the store records mined at or after `block_number`,
        with those ops (for the chain watcher to follow through reorgs)."""
        ...

    def apply_bundle_result(self, op_hashes: list[str], outcome: BundleOutcome) -> list[str]:
        """Settle a mined bundle's ops: mined (entities credited), not included (pending again),
        or, when it reverted, pending again until max_bundle_reverts. Returns the mined hashes."""
        ...

    async def back_to_pool(self, op_hashes: list[str], context: str, found_mined: FoundMined) -> None:
        """Ops whose transaction will never be mined: not in flight any more; those
        `found_mined` on chain leave the pool (recorded mined by it), the others are validated
        again (pending or dropped). Ops unknown or dropped already are left alone."""
        ...

    async def flush(self) -> None:
        """The pool's records written durably (the store's write-behind flushed)."""
        ...

    async def apply_chain_update(self, update: ChainUpdate) -> dict[str, list[str]]:
        """The chain watcher's update (chain.types.ChainUpdate) applied: `mined` recorded where
        they landed, `pending` in flight again, `unmined` validated again: back in the pool
        (pending) or dropped. Returns {"pending": [...], "dropped": [...]} of the unmined."""
        ...

    # -- debug_bundler_* --------------------------------------------------------------------
    def dump(self, entry_point: EntryPointVersion | None = None) -> list[PoolEntry]: ...

    def clear(self) -> None:
        """Empty the mempool; ops not in a bundle are recorded dropped (they do not come back)."""
        ...

    def clear_state(self) -> None:
        """Mempool, store and reputation emptied (debug_bundler_clearState)."""
        ...

    def clear_reputation(self) -> None: ...

    def set_reputation(self, entry_point: EntryPointVersion, address: str, ops_seen: int,
                       ops_included: int) -> None: ...

    def dump_reputation(self, entry_point: EntryPointVersion) -> list[ReputationRow]: ...

    @property
    def stake_policy(self) -> StakePolicy: ...


class LocalPool:
    """The pool of one process (its mempool in memory, its records in `store`)."""

    def __init__(self, *, mempool: Mempool, store: Store, fates: OpFates, admission: Admission,
                 reputation: ReputationRules, requeue: Requeue | None = None):
        self._mempool = mempool
        self._store = store
        self._fates = fates
        self._admission = admission
        self._reputation = reputation
        self._requeue = requeue

    # -- reading (PoolReader) ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._mempool)

    def get(self, op_hash: str) -> PoolEntry | None:
        return self._mempool.get(op_hash)

    def entries(self, entry_point: EntryPointVersion | None = None) -> list[PoolEntry]:
        return self._mempool.entries(entry_point)

    def for_sender(self, sender: str) -> list[PoolEntry]:
        return self._mempool.for_sender(sender)

    def entity_users(self, address: str) -> list[PoolEntry]:
        return self._mempool.entity_users(address)

    def bundle_candidates(self, entry_point: EntryPointVersion, base_fee: int) -> list[PoolEntry]:
        return self._mempool.bundle_candidates(entry_point, base_fee)

    # -- admission --------------------------------------------------------------------------
    async def add(self, op: UserOperation, entry_point: EntryPointVersion) -> str:
        return await self._admission.submit(op, entry_point)

    def op_state(self, op_hash: str) -> OpState | None:
        record = self._store.get(op_hash)
        if record is None:
            return None
        return OpState(record.status, record.reason, record.error_code, record.tx_hash)

    # -- bundle selection -------------------------------------------------------------------
    def submitted(self, entry_point: EntryPointVersion) -> list[PoolEntry]:
        return [e for e in self._mempool.entries(entry_point) if e.submitted_in is not None]

    def bundle_gate(self, entry_point: EntryPointVersion, block_number: int) -> BundleGate | None:
        return self._reputation.bundle_gate(entry_point, block_number)

    def blamed(self, entry: PoolEntry, code: str | None, second_validation: bool = False) -> list[PoolEntry]:
        return self._reputation.bundle_failure(entry, code, second_validation=second_validation)

    # -- claims -----------------------------------------------------------------------------
    async def claim(self, entries: list[PoolEntry], owner: str) -> list[PoolEntry]:
        if not entries or not self._store.shared:
            return entries
        got = await self._store.claim([e.hash for e in entries], owner)
        for e in entries:
            if e.hash not in got:
                e.submitted_in = CLAIMED_ELSEWHERE
        return [e for e in entries if e.hash in got]

    async def release(self, entries: list[PoolEntry], owner: str) -> None:
        if entries and self._store.shared:
            await self._store.release([e.hash for e in entries], owner)

    def claimable_again(self, op_hashes: Iterable[str]) -> None:
        for h in op_hashes:
            entry = self._mempool.get(h)
            if entry is not None and entry.submitted_in == CLAIMED_ELSEWHERE:
                entry.submitted_in = None

    # -- fates ------------------------------------------------------------------------------
    def mark_submitted(self, entries: Iterable[PoolEntry], tx_hash: str | None) -> None:
        for e in entries:
            e.submitted_in = tx_hash

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        self._fates.drop(entry, reason, code)

    def pending_again(self, op_hash: str, entry: PoolEntry | None = None) -> None:
        self._fates.pending_again(op_hash, entry)

    def forget(self, op_hash: str) -> None:
        self._fates.forget(op_hash)

    def recorded_mined(self, op_hash: str, tx_hash: str, block_number: int, block_hash: str) -> None:
        self._fates.recorded_mined(op_hash, tx_hash, block_number, block_hash)

    def resubmitted(self, op_hash: str, tx_hash: str, entry: PoolEntry | None = None) -> None:
        self._fates.resubmitted(op_hash, tx_hash, entry)

    def adopt(self, entry: PoolEntry) -> None:
        self._mempool.add(entry)

    def adopt_in_flight(self, op_hashes: Iterable[str], tx_hash: str | None) -> list[str]:
        held = []
        for h in op_hashes:
            entry = self._mempool.get(h)
            if entry is not None:
                entry.submitted_in = tx_hash
                held.append(h)
                continue
            record = self._store.get(h)
            if record is None or record.status not in (OpStatus.PENDING, OpStatus.SUBMITTED):
                continue
            adopted = entry_from_record(record, submitted_in=tx_hash)
            if adopted is not None:
                self._mempool.add(adopted)
                held.append(h)
        return held

    async def restore_pending(self, skip: Collection[str]) -> int:
        if self._requeue is None:
            raise RuntimeError("this pool has no requeue: restoring pending ops needs one")
        pending = [r for r in self._store.with_status(OpStatus.PENDING, OpStatus.SUBMITTED) if r.hash not in skip]
        if pending:
            await self._requeue.readmit(pending, "re-validated after restart")
        return len(pending)

    def mined_since(self, block_number: int) -> list[MinedBundle]:
        bundles: dict[str, MinedBundle] = {}
        for r in self._store.mined_since(block_number):
            if r.tx_hash and r.block_hash and r.block_number is not None:
                b = bundles.setdefault(r.tx_hash, MinedBundle(r.tx_hash, r.block_number, r.block_hash,
                                                              entry_point=r.entry_point))
                b.op_hashes.append(r.hash)
        return list(bundles.values())

    @property
    def reverts(self) -> dict[str, int]:
        """Bundles carrying each pending op that reverted on chain."""
        return self._fates.reverts

    def apply_bundle_result(self, op_hashes: list[str], outcome: BundleOutcome) -> list[str]:
        fates = self._fates
        entries = [self._mempool.get(h) for h in op_hashes]
        fates.forget_gone()
        mined: list[str] = []
        for h, e in zip(op_hashes, entries):
            if outcome.reverted:
                fates.bundle_reverted(h, e, outcome.tx_hash)
            elif h in outcome.included:
                fates.mined(h, e, outcome.tx_hash, outcome.block_number, outcome.block_hash)
                mined.append(h)
            else:
                fates.not_included(h, e)
        return mined

    async def back_to_pool(self, op_hashes: list[str], context: str, found_mined: FoundMined) -> None:
        records = []
        for h in op_hashes:
            entry = self._mempool.get(h)
            if entry is not None:
                entry.submitted_in = None
            record = self._store.get(h)
            if record is None or record.status == OpStatus.DROPPED:
                continue
            if await found_mined(record.hash, record.entry_point):  # mined after all
                if entry is not None:
                    self._fates.forget(h)
                continue
            records.append(record)
        if self._requeue is not None:
            await self._requeue.readmit(records, context)
        else:
            for r in records:
                self._fates.pending_again(r.hash)

    async def flush(self) -> None:
        await self._store.flush()

    async def apply_chain_update(self, update: ChainUpdate) -> dict[str, list[str]]:
        if self._requeue is None:
            raise RuntimeError("this pool has no requeue: chain updates need one")
        return await ChainUpdates(self._store, self._fates, self._requeue).apply(update)

    # -- debug ------------------------------------------------------------------------------
    def dump(self, entry_point: EntryPointVersion | None = None) -> list[PoolEntry]:
        return self._mempool.entries(entry_point)

    def clear(self) -> None:
        for e in self._mempool.entries():
            if e.submitted_in is None:
                self._fates.recorded_dropped(e.hash, "removed by debug_bundler_clearMempool")
        self._mempool.clear()

    def clear_state(self) -> None:
        self._mempool.clear()
        self._store.clear()
        self._reputation.clear()

    def clear_reputation(self) -> None:
        self._reputation.clear()

    def set_reputation(self, entry_point: EntryPointVersion, address: str, ops_seen: int,
                       ops_included: int) -> None:
        self._reputation.book.set(entry_point, address, ops_seen, ops_included)

    def dump_reputation(self, entry_point: EntryPointVersion) -> list[ReputationRow]:
        return [ReputationRow(address, e.ops_seen, e.ops_included, status)
                for address, e, status in self._reputation.book.dump(entry_point)]

    @property
    def stake_policy(self) -> StakePolicy:
        return self._reputation.policy


def _local_pool_is_a_pool(pool: LocalPool) -> Pool:
    return pool  # mypy checks LocalPool against the protocol here
