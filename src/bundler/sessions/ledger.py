"""The pending-usage ledger: what the session ops waiting in the mempool will take from their
sessions' limits once the EntryPoint validates them.

Keyed by (account, session key); each entry is one op (its hash, nonce, allowance period and
the amounts it consumes per limit), so totals per (account, session key, period) are a sum over
at most a handful of entries (`totals`).

Kept in step with the mempool (sessions.keeper.LedgerKeeper observes it):
  admission       SessionService.admitted -> add(), right before Mempool.add
  any other way   Mempool.add of an op the ledger does not hold (restart recovery, reorg and
  into the pool   lost-nonce re-queue, shared-store sync) -> add() from the op's activity record;
                  of a mined op back after a reorg -> unmined()
  replacement     Mempool.add removes the replaced entry -> removed(entry, None)
  drop            Mempool.remove -> removed(entry, None)
  mining          Mempool.remove(hash, mined_block=B) -> removed(entry, B): the entry stays, marked
                  mined in block B, and still counts for evaluations against state read at a block
                  before B (that state does not show its consumption yet); prune_mined() forgets it
                  once every reader has moved past B
  clear           Mempool.clear -> cleared()

It holds no chain state and never talks to the node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .policy import LimitKey, PendingUse

if TYPE_CHECKING:
    from ..pool.mempool import PoolEntry


@dataclass(slots=True)
class LedgerEntry:
    use: PendingUse
    account: str
    signer: str
    entry_point: str
    valid_after: int = 0
    valid_until: int = 0  # 0 = unbounded
    mined_block: int | None = None

    @property
    def op_hash(self) -> str:
        return self.use.op_hash


class SessionLedger:
    def __init__(self) -> None:
        self._by_hash: dict[str, LedgerEntry] = {}
        self._by_session: dict[tuple[str, str], dict[str, LedgerEntry]] = {}
        self.version = 0  # bumped by every change (admission re-evaluates when it moved)

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, op_hash: str) -> bool:
        return op_hash in self._by_hash

    def get(self, op_hash: str) -> LedgerEntry | None:
        return self._by_hash.get(op_hash)

    # -- updates --
    def add(self, entry: LedgerEntry) -> None:
        self.discard(entry.op_hash)
        self.version += 1
        self._by_hash[entry.op_hash] = entry
        self._by_session.setdefault((entry.account, entry.signer), {})[entry.op_hash] = entry

    def discard(self, op_hash: str) -> LedgerEntry | None:
        entry = self._by_hash.pop(op_hash, None)
        if entry is None:
            return None
        self.version += 1
        key = (entry.account, entry.signer)
        ops = self._by_session.get(key)
        if ops is not None:
            ops.pop(op_hash, None)
            if not ops:
                del self._by_session[key]
        return entry

    def unmined(self, op_hash: str) -> None:
        """A mined op is back in the mempool (its block was reorged out): it is pending again."""
        entry = self._by_hash.get(op_hash)
        if entry is not None and entry.mined_block is not None:
            entry.mined_block = None
            self.version += 1

    # what LedgerKeeper passes on from the mempool
    def removed(self, pool_entry: PoolEntry, mined_block: int | None = None) -> None:
        entry = self._by_hash.get(pool_entry.hash)
        if entry is None:
            return
        if mined_block is None:
            self.discard(entry.op_hash)
        else:
            entry.mined_block = mined_block
            self.version += 1

    def cleared(self) -> None:
        self.version += 1
        self._by_hash.clear()
        self._by_session.clear()

    def prune_mined(self, state_block: int) -> int:
        """Forget ops mined at or before `state_block` (state read there includes them)."""
        gone = [h for h, e in self._by_hash.items() if e.mined_block is not None and e.mined_block <= state_block]
        for h in gone:
            self.discard(h)
        return len(gone)

    # -- queries --
    def entries(self, account: str, signer: str, *, include_mined: bool = False) -> list[LedgerEntry]:
        """The session's ops, in the order the EntryPoint would validate them (nonce order)."""
        ops = self._by_session.get((account, signer), {}).values()
        return sorted((e for e in ops if include_mined or e.mined_block is None), key=lambda e: e.use.nonce)

    def pending_for(self, account: str, signer: str, state_block: int, exclude: str | None = None,
                    chain_nonce: int | None = None) -> list[PendingUse]:
        """What the EntryPoint will have validated for this session before a new op, given chain
        state read at `state_block`: ops still in the mempool, plus ops mined after that block;
        `exclude` is the op a replacement takes the place of. `chain_nonce` is the account's
        EntryPoint nonce (key ‖ sequence) at `state_block` for the new op's nonce key: an op of
        that key below it was validated on chain already, so its use is in the state read there
        even when the builder has not settled its bundle yet (it must not count twice)."""
        ops = self._by_session.get((account, signer))
        if not ops:
            return []

        def used_on_chain(e: LedgerEntry) -> bool:
            n = e.use.nonce
            return chain_nonce is not None and n >> 64 == chain_nonce >> 64 and n < chain_nonce

        chosen = [e for e in ops.values()
                  if e.op_hash != exclude and (e.mined_block is None or e.mined_block > state_block)
                  and not used_on_chain(e)]
        chosen.sort(key=lambda e: (e.mined_block is None, e.use.nonce))
        return [e.use for e in chosen]

    def totals(self, account: str, signer: str) -> tuple[int, dict[LimitKey, dict[int, int]]]:
        """(number of ops, {limit: {allowance period: amount}}) of the session's ops still in the
        mempool: the pending usage per (account, session key, period)."""
        count = 0
        out: dict[LimitKey, dict[int, int]] = {}
        for e in self.entries(account, signer):
            count += 1
            for c in e.use.consumed:
                per_period = out.setdefault(c.key, {})
                per_period[e.use.period_index] = per_period.get(e.use.period_index, 0) + c.amount
        return count, out

    def sessions(self) -> list[tuple[str, str]]:
        return list(self._by_session)

    def accounts(self) -> set[str]:
        return {account for account, _ in self._by_session}

    def all_entries(self) -> Iterable[LedgerEntry]:
        return list(self._by_hash.values())
