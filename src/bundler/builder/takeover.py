"""With a store shared by several instances (PostgreSQL): keep this instance's lease alive, and
take over the work of instances that died.

The lease is renewed on the database session that also holds this instance's executor locks.
If it cannot be renewed in time, other instances will consider this one dead and take its ops,
so it stops bundling at once (fenced) and the process exits: a supervisor restarts it with a
fresh lease. An instance whose lease expired or whose session is gone is dead: its claimed
but unsent ops become pending again (bundled by whoever claims them next) and its in-flight
transactions are adopted by one survivor, which follows them from the chain: the signed bytes
are broadcast again if the node lost them, a receipt records the ops mined, a nonce taken by
another transaction puts them back in the pool. The survivor holds no key of the dead
instance, so it cannot raise the fee of a stuck transaction; the same key restarted can.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Callable, Protocol

from ..store.base import LeaseLost, SharedStore

if TYPE_CHECKING:
    from ..pool.pool import Pool
    from ..store.records import InflightTx

log = logging.getLogger(__name__)


class TakeoverBuilder(Protocol):
    """What a take-over needs of the builder (builder.Builder has it): the pool it bundles
    from, following an adopted transaction, a wake-up, and the fence set when the lease is lost."""

    pool: Pool
    fenced: bool

    def start_resume(self, inflight: InflightTx) -> object: ...

    def notify_new_op(self) -> None: ...


class Takeover:
    def __init__(self, store: SharedStore, builder: TakeoverBuilder, on_lost: Callable[[str], None] | None = None):
        self.store = store
        self.builder = builder
        self.on_lost = on_lost  # called with the reason once the lease is lost
        self.renew_every = store.lease_s / 4
        self.scan_every = min(1.0, store.lease_s / 4)

    async def run(self) -> None:
        last_renewed = time.monotonic()
        next_renew = 0.0
        while True:
            now = time.monotonic()
            if now >= next_renew:
                try:
                    self.store.renew_lease()
                    last_renewed, next_renew = now, now + self.renew_every
                except LeaseLost as e:
                    self._lost(str(e))
                    await asyncio.Future()  # the instance is stopping; nothing more to do here
                except Exception as e:  # the database is unreachable: retry while the lease lasts
                    log.warning("could not renew this instance's lease: %s", e)
                    if now - last_renewed > self.store.lease_s * 0.75:
                        self._lost(f"the lease could not be renewed for {now - last_renewed:.1f} s ({e})")
                        await asyncio.Future()
                    next_renew = now + min(0.5, self.renew_every)
            try:
                self.take_over_once()
            except Exception as e:
                log.warning("taking over the work of dead instances failed: %s", e)
            await asyncio.sleep(self.scan_every)

    def take_over_once(self) -> tuple[list[str], list]:
        released, adopted = self.store.take_over()
        pool = self.builder.pool
        pool.claimable_again(released)  # no need to wait for the pool sync
        for inflight in adopted:
            tx_hash = inflight.latest.tx_hash if inflight.latest else None
            pool.adopt_in_flight(inflight.op_hashes, tx_hash)
            log.info("following in-flight bundle %s (executor %s nonce %d, %d ops) of a dead instance",
                     tx_hash, inflight.executor, inflight.nonce, len(inflight.op_hashes))
            self.builder.start_resume(inflight)
        if released:
            self.builder.notify_new_op()
        return released, adopted

    def _lost(self, reason: str) -> None:
        self.builder.fenced = True
        log.critical("lease lost, this instance stops bundling: %s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)
