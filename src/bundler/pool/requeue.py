"""Ops that come back to the mempool without a client sending them: after a restart (loaded
from the store), after a reorg removed the block that mined them, after their bundle's nonce
was taken by another transaction. Each is validated again against the current head (later
nonces of a sender as if the earlier ones were mined); those that fail are recorded dropped
with the validation error, so the by-hash and receipt methods say why."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from .. import entrypoint as eps
from ..errors import BundlerError, NodeError
from ..store.base import Store, ops_in_order
from ..store.records import OpRecord
from .admission import Admission
from .fates import OpFates
from .mempool import PoolEntry

log = logging.getLogger(__name__)


def entry_from_record(record: OpRecord, submitted_in: str | None = None) -> PoolEntry | None:
    ep = eps.by_address(record.entry_point)
    if ep is None:
        return None
    return PoolEntry(op=record.op, entry_point=ep, hash=record.hash, valid_after=record.valid_after,
                     valid_until=record.valid_until, prefund=record.prefund, received_at=record.received_at,
                     submitted_in=submitted_in, eip7702_delegate=record.eip7702_delegate)


class Requeue:
    def __init__(self, admission: Admission, store: Store, fates: OpFates, concurrency: int = 4):
        self.admission = admission
        self.store = store
        self.fates = fates  # writes the fate of every op it handles
        self.concurrency = concurrency

    async def readmit(self, records: list[OpRecord], context: str) -> dict[str, list[str]]:
        """Validate each op again and put it back in the pool (status pending) or record it
        dropped. Returns {"pending": [...], "dropped": [...]}."""
        by_sender: dict[tuple, list[OpRecord]] = defaultdict(list)
        for r in ops_in_order(records):
            by_sender[(r.entry_point, r.op.sender)].append(r)
        out: dict[str, list[str]] = {"pending": [], "dropped": []}
        sem = asyncio.Semaphore(self.concurrency)

        async def one_sender(rs: list[OpRecord]) -> None:
            async with sem:
                for r in rs:
                    out["pending" if await self._one(r, context) else "dropped"].append(r.hash)

        await asyncio.gather(*(one_sender(rs) for rs in by_sender.values()))
        await self.store.flush()
        if records:
            log.info("%s: %d op(s) back in the pool, %d dropped", context, len(out["pending"]), len(out["dropped"]))
        return out

    async def _one(self, record: OpRecord, context: str) -> bool:
        mempool = self.admission.mempool
        entry = entry_from_record(record)
        if entry is None:
            self.fates.recorded_dropped(record.hash, f"{context}: EntryPoint {record.entry_point} is not served",
                                        -32602)
            return False
        ep = entry.entry_point
        existing = mempool.get(record.hash)
        if existing is not None:
            mempool.remove(record.hash)
        try:
            header = await self.admission.head.fresh()
            outcome = await self.admission.simulator.validate(
                record.op, ep, header, overrides=self.admission.nonce_override(record.op, ep),
                **self.admission.timing(self.admission.head.window(header)))
            entry.valid_after, entry.valid_until, entry.prefund = (
                outcome.valid_after, outcome.valid_until, outcome.prefund)
            entry.valid_after_block, entry.valid_until_block = outcome.valid_after_block, outcome.valid_until_block
        except NodeError as e:  # cannot tell now: keep it; the bundle simulation re-checks it anyway
            log.warning("%s: could not re-validate %s (%s); kept pending", context, record.hash, e.message)
        except BundlerError as e:
            log.info("%s: op %s no longer valid: %s", context, record.hash, e.message)
            self.fates.recorded_dropped(record.hash, f"{context}, no longer valid: {e.message}", e.code)
            return False
        clash = mempool.at_slot(*entry.slot)
        if clash is not None and clash.hash != entry.hash:
            if clash.submitted_in is not None or clash.op.max_fee_per_gas >= entry.op.max_fee_per_gas:
                self.fates.recorded_dropped(record.hash, f"{context}: replaced by {clash.hash}", -32602)
                return False
        self.fates.readmitted(entry)
        return True
