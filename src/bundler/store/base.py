"""The one persistence interface the rest of the bundler talks to.

Reads and writes are plain synchronous calls that return at once (the durable stores keep
what is active in memory and write behind in batches); `await store.flush()` returns when
everything written before the call is durable. The admission path calls it before
eth_sendUserOperation answers, the builder before it broadcasts a transaction.

Implementations: MemoryStore (nothing survives the process), SqliteStore (default),
PostgresStore (several instances share one mempool and op index).
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from .records import (
    Budget, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, SlotVerdict, Sponsorship,
    SponsorshipState,
)


class ClaimLost(Exception):
    """A bundle's ops are no longer all claimed by this instance (its lease expired and another
    instance took them, or they finished meanwhile): its transaction must not be broadcast."""


class LeaseLost(Exception):
    """This instance's lease in a shared store expired or its session was lost: other instances
    may have taken its work over, so it must stop bundling."""


@runtime_checkable
class Store(Protocol):
    # -- op index (eth_getUserOperationByHash / Receipt) and the persisted mempool --------
    def put(self, record: OpRecord) -> None:
        """Insert or replace the record of one op."""

    def get(self, op_hash: str) -> OpRecord | None: ...

    async def admit(self, record: OpRecord, replacing: str | None, bump_percent: int) -> SlotVerdict:
        """Store a newly admitted op; `replacing` (the op it replaces in the local pool) is
        recorded dropped in the same commit. A shared store decides the (sender, nonce) slot
        across instances and may refuse (the verdict says why and who holds the slot)."""

    def batch(self):
        """Context manager: the writes issued inside commit together (or not at all)."""

    def update(self, op_hash: str, **fields: Any) -> OpRecord | None:
        """Change some fields of a record (None if unknown); returns the updated record."""

    def with_status(self, *statuses: OpStatus) -> list[OpRecord]: ...

    def mined_since(self, block_number: int) -> list[OpRecord]:
        """MINED records with block_number >= block_number (the reorg watcher's window)."""

    def clear(self) -> None:
        """Forget every op record (debug_bundler_clearState)."""

    # -- reputation: address -> counters, for the reputation engine ----------------------
    def get_reputation(self, address: str) -> ReputationRow | None: ...

    def put_reputation(self, row: ReputationRow) -> None: ...

    def add_reputation(self, address: str, ops_seen: int = 0, ops_included: int = 0) -> ReputationRow:
        """Add to the counters (atomic across instances sharing a store); returns the row."""

    def reputation_rows(self) -> list[ReputationRow]: ...

    def clear_reputation(self) -> None: ...

    # -- paymaster sponsorships: spend counters shared by the instances of a shared store -------
    def reserve_sponsorship(self, sponsorship: Sponsorship, budgets: list[Budget]) -> tuple[Budget, int] | None:
        """Record it if it fits every budget (atomic across instances); else (budget, spent)."""

    def sponsorship_spent(self, budget: Budget) -> int: ...

    def get_sponsorship(self, op_hash: str) -> Sponsorship | None: ...

    def open_sponsorships(self) -> list[Sponsorship]: ...

    def finish_sponsorship(self, op_hash: str, state: SponsorshipState, amount: int = 0) -> Sponsorship | None:
        """Settle or release a reserved sponsorship (None if it was not reserved)."""

    # -- the executors' in-flight transactions -----------------------------------------
    def put_inflight(self, tx: InflightTx) -> None:
        """Insert or replace by (executor, nonce)."""

    def delete_inflight(self, executor: str, nonce: int) -> None: ...

    def inflight(self) -> list[InflightTx]: ...

    async def record_bundle(self, inflight: InflightTx) -> None:
        """Before broadcasting: the in-flight record and its ops' submitted status (with the tx
        hash) in one durable commit. A shared store raises ClaimLost if any op is no longer
        claimed by this instance (its lease expired and another instance took it)."""

    # -- claims: which instance bundles an op (several instances on one shared store) -----
    async def claim(self, op_hashes: list[str], owner: str) -> set[str]:
        """Take pending ops for a bundle of `owner` (an executor address); returns those taken.
        Single-process stores take them all."""

    async def release(self, op_hashes: list[str], owner: str) -> None:
        """Give back ops claimed but not sent."""

    @property
    def shared(self) -> bool:
        """True if other bundler instances use the same store (PostgresStore, a SharedStore)."""

    # -- session audit log (session_getActivity, the pending-usage ledger's reload) ----------
    def add_session_activity(self, activity: SessionActivity) -> None:
        """Log one op of a session key (idempotent per op hash)."""

    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]:
        """Every logged op of that session, oldest first."""

    # -- durability ----------------------------------------------------------------
    def bind_chain(self, chain_id: int, genesis_hash: str) -> None:
        """Tie the store to one chain; raise if it holds another chain's data."""

    async def flush(self) -> None:
        """Return once every write issued before this call is durable (raises if it failed)."""

    def close(self) -> None:
        """Write what is pending and release the store (its files, its lock)."""

    @property
    def durable(self) -> bool:
        """False for MemoryStore: nothing survives a restart."""


@runtime_checkable
class SharedStore(Store, Protocol):
    """A store several bundler instances use at once (`shared` is True): executor locks, the
    instance lease, take-over of dead instances' work, the pool summary the others sync from."""
    instance_id: str
    lease_s: float

    def lock_executors(self, addresses: list[str]) -> None:
        """Hold each executor key for this instance (raises StoreError if another holds one)."""

    def retire_previous(self) -> int:
        """Instances that listed one of our executors are dead: retire them."""

    def renew_lease(self) -> float:
        """Extend this instance's lease; raises LeaseLost once it expired."""

    def take_over(self) -> tuple[list[str], list[InflightTx]]:
        """Dead instances' work: claimed-but-unsent ops released, in-flight txs adopted."""

    def adopt_own_inflight(self) -> list[InflightTx]:
        """At start-up: in-flight rows of our executor keys left by an earlier instance."""

    def owned_inflight(self) -> list[InflightTx]:
        """The in-flight rows this instance follows."""

    def active_summary(self, also: Sequence[str] = ...) -> dict[str, tuple[str, str | None, str | None]]:
        """hash -> (status, tx_hash, claim_owner) of every pending/submitted op (and of `also`)."""

    async def release_stale(self, owners: list[str]) -> int:
        """At start-up: give back ops claimed by these executors that were never sent."""


def as_shared(store: Store) -> SharedStore:
    """The store as a SharedStore; only for a store whose `shared` is True."""
    if not store.shared or not isinstance(store, SharedStore):
        raise TypeError(f"{type(store).__name__} is not a shared store")
    return store


def ops_in_order(records: Iterable[OpRecord]) -> list[OpRecord]:
    """Records sorted so each sender's ops come in nonce order (re-admission after a restart
    validates later nonces as if the earlier ones were mined)."""
    return sorted(records, key=lambda r: (r.entry_point, r.op.sender, r.op.nonce_key, r.op.nonce, r.received_at))
