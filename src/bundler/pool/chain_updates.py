"""The pool's side of a reorg: the chain watcher's ChainUpdate applied to op status, through
OpFates (the one writer of op status) and Requeue (ops validated again before they are pending)."""
from __future__ import annotations

from ..chain.types import ChainUpdate
from ..store.base import Store
from ..store.records import OpStatus
from .fates import OpFates
from .requeue import Requeue, entry_from_record


class ChainUpdates:
    def __init__(self, store: Store, fates: OpFates, requeue: Requeue):
        self.store = store
        self.fates = fates
        self.requeue = requeue

    async def apply(self, update: ChainUpdate) -> dict[str, list[str]]:
        """Mined ops recorded where they landed; ops of a bundle pending in the node again in
        flight (in the pool, marked in that transaction); unmined ops validated again (pending
        or dropped). Ops the store does not know, and unmined ops already dropped, are left alone.
        Returns the unmined ops' fates: {"pending": [...], "dropped": [...]}."""
        for m in update.mined:
            if self.store.get(m.op_hash) is not None:
                self.fates.recorded_mined(m.op_hash, m.tx_hash, m.block_number, m.block_hash)
        for bundle in update.pending:
            for h in bundle.op_hashes:
                record = self.store.get(h)
                if record is not None:
                    self.fates.resubmitted(h, bundle.tx_hash, entry_from_record(record, submitted_in=bundle.tx_hash))
        records = [r for r in (self.store.get(h) for h in update.unmined)
                   if r is not None and r.status != OpStatus.DROPPED]
        fates: dict[str, list[str]] = {"pending": [], "dropped": []}
        if records:
            fates = await self.requeue.readmit(records, "reorged out")
        await self.store.flush()
        return fates
