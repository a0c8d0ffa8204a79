"""The mempool's size cap (max_mempool_ops): when full, a new op paying a higher gas price
than the cheapest evictable op takes its place (that op is recorded dropped, with the
reason); an op paying no more is refused.

Price = the gas price the op pays at the current base fee (min(maxFee, baseFee + priority)),
the order the builder picks ops in. Evictable = not in a bundle transaction, and the last
pending op of its sender (evicting an earlier nonce would strand the later ones).
"""
from __future__ import annotations

import logging
from typing import Callable

from ..userop.model import UserOperation
from .fates import OpFates
from .mempool import Mempool, MempoolFull, PoolEntry

log = logging.getLogger(__name__)


class CapacityGuard:
    def __init__(self, mempool: Mempool, fates: OpFates, max_ops: int,
                 on_evicted: Callable[[PoolEntry], None] | None = None):
        self.mempool = mempool
        self.fates = fates
        self.max_ops = max_ops
        self.on_evicted = on_evicted

    def _victim(self, base_fee: int, sender: str) -> PoolEntry | None:
        last_of_sender: dict[tuple, PoolEntry] = {}
        for e in self.mempool.entries():
            if e.submitted_in is not None or e.op.sender == sender:  # the new op may follow it
                continue
            key = (e.entry_point.address, e.op.sender)
            cur = last_of_sender.get(key)
            if cur is None or e.op.nonce > cur.op.nonce:
                last_of_sender[key] = e
        if not last_of_sender:
            return None
        # cheapest; among equals the newest goes first
        return min(last_of_sender.values(), key=lambda e: (e.op.gas_price(base_fee), -e.received_at))

    def check(self, op: UserOperation, base_fee: int, replacing: PoolEntry | None) -> PoolEntry | None:
        """Raise MempoolFull if `op` may not enter a full pool; return the entry it would evict
        (None when there is room or `op` replaces a pending op)."""
        if replacing is not None or len(self.mempool) < self.max_ops:
            return None
        victim = self._victim(base_fee, op.sender)
        price = op.gas_price(base_fee)
        if victim is None:
            raise MempoolFull(
                f"mempool is full ({self.max_ops} UserOperations, none of which this op may evict); "
                f"retry shortly"
            )
        lowest = victim.op.gas_price(base_fee)
        if price <= lowest:
            raise MempoolFull(
                f"mempool is full ({self.max_ops} UserOperations) and this op's gas price {price} wei "
                f"does not exceed the lowest pending one ({lowest} wei at base fee {base_fee}); "
                f"raise maxFeePerGas and maxPriorityFeePerGas"
            )
        return victim

    def evict(self, victim: PoolEntry, by_hash: str, base_fee: int) -> None:
        if self.mempool.get(victim.hash) is not victim or victim.submitted_in is not None:
            return  # already gone or meanwhile sent in a bundle
        reason = (f"evicted: the mempool was full and {by_hash} paid a higher gas price "
                  f"than this op's {victim.op.gas_price(base_fee)} wei")
        self.fates.removed(victim, reason, MempoolFull.code)
        log.info("evicted op %s from the full mempool for %s", victim.hash, by_hash,
                 extra={"op_hash": victim.hash})
        if self.on_evicted:
            self.on_evicted(victim)
