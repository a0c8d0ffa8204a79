"""In-process store: the Store interface with nothing surviving the process (`--store memory`,
and the write-through cache the durable stores build on)."""
from __future__ import annotations

import contextlib
import time
from typing import Any
from collections import OrderedDict

from .records import (
    FINISHED, Budget, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, SlotVerdict, Sponsorship,
    SponsorshipState,
)


class MemoryStore:
    durable = False
    shared = False  # one process owns everything: claims always succeed

    def __init__(self, max_finished: int = 100_000, max_activity_per_session: int = 10_000):
        self._records: dict[str, OpRecord] = {}
        # finished (mined/dropped) hashes, oldest first: only these are ever evicted
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._max_finished = max_finished
        self._reputation: dict[str, ReputationRow] = {}
        self._inflight: dict[tuple[str, int], InflightTx] = {}
        # (account, session key) -> {op hash -> activity}, oldest first
        self._activity: dict[tuple[str, str], dict[str, SessionActivity]] = {}
        self._max_activity = max_activity_per_session
        # paymaster sponsorships by op hash, and what counts against each budget:
        # (policy id, period start, sender or "") -> wei
        self._sponsorships: dict[str, Sponsorship] = {}
        self._spent: dict[tuple[str, int, str], int] = {}

    # -- ops --------------------------------------------------------------------------
    def put(self, record: OpRecord) -> None:
        record.updated_at = time.time()
        self._records[record.hash] = record
        self._track(record)
        self._written(record)

    def get(self, op_hash: str) -> OpRecord | None:
        return self._records.get(op_hash)

    def batch(self):
        """Writes inside `with store.batch():` become durable in one commit (nothing to group here)."""
        return contextlib.nullcontext()

    async def admit(self, record: OpRecord, replacing: str | None, bump_percent: int) -> SlotVerdict:
        """Store a newly admitted op (and the op it replaces, dropped) in one commit. One process
        owns the pool: the mempool has decided the slot already, but the op may have been mined
        while it was simulated (its nonce is then used)."""
        known = self.get(record.hash)
        if known is not None and known.status in (OpStatus.SUBMITTED, OpStatus.MINED):
            return SlotVerdict(False, refusal="known", holder=known.status.value)
        with self.batch():
            if replacing is not None:
                self.update(replacing, status=OpStatus.DROPPED, reason=f"replaced by {record.hash} with higher fees")
            self.put(record)
        return SlotVerdict(True, replaced=replacing)

    async def record_bundle(self, inflight: InflightTx) -> None:
        """The bundle's in-flight record and its ops' `submitted` status, durable in one commit,
        before the transaction is broadcast."""
        with self.batch():
            self.put_inflight(inflight)
            for h in inflight.op_hashes:
                self.update(h, status=OpStatus.SUBMITTED, tx_hash=inflight.current.tx_hash)
        await self.flush()

    def update(self, op_hash: str, **fields: Any) -> OpRecord | None:
        record = self.get(op_hash)
        if record is None:
            return None
        for k, v in fields.items():
            setattr(record, k, v)
        record.updated_at = time.time()
        self._records[op_hash] = record
        self._track(record)
        self._written(record, op_changed="op" in fields)
        return record

    def with_status(self, *statuses: OpStatus) -> list[OpRecord]:
        return [r for r in self._records.values() if r.status in statuses]

    def mined_since(self, block_number: int) -> list[OpRecord]:
        return [r for r in self._records.values()
                if r.status == OpStatus.MINED and r.block_number is not None and r.block_number >= block_number]

    def clear(self) -> None:
        self._records.clear()
        self._finished.clear()
        self._activity.clear()

    # -- session audit log (session_getActivity) --
    def add_session_activity(self, activity: SessionActivity) -> None:
        """Log one op of a session key. Idempotent per op hash (a re-add replaces the entry).
        Keeps the newest max_activity_per_session entries per (account, session key)."""
        log = self._activity.setdefault((activity.account, activity.session_key), {})
        log.pop(activity.op_hash, None)
        log[activity.op_hash] = activity
        while len(log) > self._max_activity:
            del log[next(iter(log))]

    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]:
        """Every logged op of that session, oldest first (addresses lower-case)."""
        return list(self._activity.get((account.lower(), session_key.lower()), {}).values())

    def _track(self, record: OpRecord) -> None:
        if record.status in FINISHED:
            self._finished[record.hash] = None
            self._finished.move_to_end(record.hash)
            if len(self._finished) > self._max_finished:
                self._evict()
        else:
            self._finished.pop(record.hash, None)

    def _evict(self) -> None:
        while len(self._finished) > self._max_finished:
            victim = next(iter(self._finished))
            if not self._evictable(victim):
                break
            del self._finished[victim]
            self._records.pop(victim, None)

    def _evictable(self, op_hash: str) -> bool:  # the durable stores keep unwritten rows
        return True

    def _written(self, record: OpRecord, op_changed: bool = True) -> None:  # hook for write-behind stores
        pass

    # -- reputation ---------------------------------------------------------------------
    def get_reputation(self, address: str) -> ReputationRow | None:
        return self._reputation.get(address.lower())

    def put_reputation(self, row: ReputationRow) -> None:
        row.address = row.address.lower()
        row.updated_at = time.time()
        self._reputation[row.address] = row

    def add_reputation(self, address: str, ops_seen: int = 0, ops_included: int = 0) -> ReputationRow:
        """Add to an address's counters (atomic also when several instances share the store)."""
        address = address.lower()
        row = self._reputation.get(address) or ReputationRow(address)
        row.ops_seen += ops_seen
        row.ops_included += ops_included
        row.updated_at = time.time()
        self._reputation[address] = row
        return row

    def reputation_rows(self) -> list[ReputationRow]:
        return list(self._reputation.values())

    def clear_reputation(self) -> None:
        self._reputation.clear()

    # -- in-flight transactions -----------------------------------------------------------
    def put_inflight(self, tx: InflightTx) -> None:
        self._inflight[tx.key] = tx

    def delete_inflight(self, executor: str, nonce: int) -> None:
        self._inflight.pop((executor, nonce), None)

    def inflight(self) -> list[InflightTx]:
        return sorted(self._inflight.values(), key=lambda t: (t.executor, t.nonce))

    # -- paymaster sponsorships and their budgets --------------------------------------------
    def reserve_sponsorship(self, sponsorship: Sponsorship, budgets: list[Budget]) -> tuple[Budget, int] | None:
        """Record `sponsorship` if it fits in every budget (atomically, also across instances
        sharing the store); else record nothing and return (the budget it exceeds, its spend).
        Reserving an op hash again replaces the earlier reservation."""
        previous = self._sponsorships.get(sponsorship.op_hash)
        for budget in budgets:
            spent = self.sponsorship_spent(budget)
            if previous is not None and _counts_in(previous, budget):
                spent -= _counted(previous)
            if spent + sponsorship.amount > budget.limit:
                return budget, spent
        self._put_sponsorship(sponsorship)
        return None

    def sponsorship_spent(self, budget: Budget) -> int:
        """Wei counted against `budget`: reserved maxima plus settled actual costs."""
        return self._spent.get((budget.policy_id, budget.period_start, budget.sender or ""), 0)

    def get_sponsorship(self, op_hash: str) -> Sponsorship | None:
        return self._sponsorships.get(op_hash)

    def open_sponsorships(self) -> list[Sponsorship]:
        """Reservations whose op's fate is not known yet."""
        return [s for s in self._sponsorships.values() if s.state == SponsorshipState.RESERVED]

    def finish_sponsorship(self, op_hash: str, state: SponsorshipState, amount: int = 0) -> Sponsorship | None:
        """Settle (mined, `amount` = its actual cost) or release a reservation; only a reserved
        one changes (None otherwise, e.g. another instance settled it first)."""
        current = self._sponsorships.get(op_hash)
        if current is None or current.state != SponsorshipState.RESERVED:
            return None
        finished = Sponsorship(**{**current.__dict__, "state": state,
                                  "amount": amount if state == SponsorshipState.SETTLED else current.amount})
        self._put_sponsorship(finished)
        return finished

    def _put_sponsorship(self, sponsorship: Sponsorship) -> None:
        previous = self._sponsorships.get(sponsorship.op_hash)
        for s, sign in ((previous, -1), (sponsorship, 1)):
            if s is None:
                continue
            for key in ((s.policy_id, s.period_start, ""), (s.policy_id, s.period_start, s.sender)):
                self._spent[key] = self._spent.get(key, 0) + sign * _counted(s)
        self._sponsorships[sponsorship.op_hash] = sponsorship
        self._written_sponsorship(sponsorship)

    def _written_sponsorship(self, sponsorship: Sponsorship) -> None:  # hook for write-behind stores
        pass

    # -- claims (only a shared store can refuse) -----------------------------------------
    async def claim(self, op_hashes: list[str], owner: str) -> set[str]:
        return set(op_hashes)

    async def release(self, op_hashes: list[str], owner: str) -> None:
        return None

    # -- durability -------------------------------------------------------------------
    def bind_chain(self, chain_id: int, genesis_hash: str) -> None:
        return None

    async def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _counted(s: Sponsorship) -> int:
    return 0 if s.state == SponsorshipState.RELEASED else s.amount


def _counts_in(s: Sponsorship, budget: Budget) -> bool:
    return (s.policy_id == budget.policy_id and s.period_start == budget.period_start
            and (budget.sender is None or budget.sender == s.sender))
