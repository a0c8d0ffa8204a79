"""With a shared store (PostgreSQL), other instances admit ops too: every `interval` seconds the
local mempool takes in the pending ops it does not have, marks those another instance has
claimed for a bundle, and lets go of those mined or dropped elsewhere. Which instance bundles an
op is decided by the store's claim (row locks), not by this view, so a stale view costs at
most a refused claim."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol, Sequence

from .. import entrypoint as eps
from ..entrypoint import EntryPointVersion
from ..store.records import OpRecord
from .mempool import Mempool
from .requeue import entry_from_record

log = logging.getLogger(__name__)

# submitted_in of an op another instance claimed and has not sent yet
CLAIMED_ELSEWHERE = "claimed"


class ActiveOps(Protocol):
    """What the sync reads of the shared store (store.base.SharedStore has it): the status, tx
    hash and owner of every active op, and an op's record."""

    instance_id: str

    def active_summary(self, also: Sequence[str] = ...) -> dict[str, tuple[str, str | None, str | None]]: ...

    def get(self, op_hash: str) -> OpRecord | None: ...


class SharedPoolSync:
    def __init__(self, store: ActiveOps, mempool: Mempool, entry_points: list[EntryPointVersion], interval: float = 0.5, on_new: Callable[[], None] | None = None):
        self.store = store
        self.mempool = mempool
        self.served = {ep.address for ep in entry_points}
        self.interval = interval
        self.on_new = on_new

    async def run(self) -> None:
        while True:
            try:
                self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("shared pool sync failed: %s", e)
            await asyncio.sleep(self.interval)

    def sync_once(self) -> int:
        local = {e.hash: e for e in self.mempool.entries()}
        summary = self.store.active_summary(also=list(local))
        me = self.store.instance_id
        # removals first: an op replaced elsewhere frees its slot for the op that replaced it
        for h, entry in list(local.items()):
            if h not in summary:
                continue
            status, _tx_hash, owner = summary[h]
            if status not in ("pending", "submitted"):
                if entry.submitted_in in (None, CLAIMED_ELSEWHERE):
                    self.mempool.remove(h)  # mined, dropped or replaced by another instance
                    del local[h]
            elif status == "submitted" and entry.submitted_in is None and owner != me:
                entry.submitted_in = CLAIMED_ELSEWHERE  # ours carry their tx hash or are reserved
            elif status == "pending" and entry.submitted_in == CLAIMED_ELSEWHERE:
                entry.submitted_in = None  # released (or taken back from a dead instance)
        added = 0
        for h, (status, _tx_hash, owner) in summary.items():
            if h in local or status not in ("pending", "submitted"):
                continue
            record = self.store.get(h)
            if record is None or record.entry_point not in self.served:
                continue
            new = entry_from_record(record, submitted_in=CLAIMED_ELSEWHERE if status == "submitted" else None)
            if new is None or self.mempool.at_slot(*new.slot) is not None:
                continue
            self.mempool.add(new)
            added += 1
        if added and self.on_new is not None:
            self.on_new()
        return added


__all__ = ["CLAIMED_ELSEWHERE", "SharedPoolSync", "eps"]
