"""What happens to an op once it is in the pool: in a bundle, mined, back to pending, dropped.

The pool is the owner of op status. The builder (and whoever settles a bundle or a reorg) says
what happened through these methods; they keep the mempool, the store record, the reputation
counters and the revert counts in step, so no caller writes an op's status by hand.
"""
from __future__ import annotations

import logging

from ..metrics import Metrics, NullMetrics, drop_reason_label
from ..store.base import Store
from ..store.records import OpStatus
from .mempool import Mempool, PoolEntry
from .reputation import ReputationRules

log = logging.getLogger(__name__)


class OpFates:
    def __init__(self, mempool: Mempool, store: Store, reputation: ReputationRules | None = None,
                 metrics: Metrics | NullMetrics | None = None, max_bundle_reverts: int = 3):
        self.mempool = mempool
        self.store = store
        self.reputation = reputation
        self.metrics = metrics if metrics is not None else NullMetrics()
        self.max_bundle_reverts = max_bundle_reverts
        # op hash -> bundles carrying it that reverted on chain (pool state: kept only for ops
        # still in the pool, see forget_gone)
        self.reverts: dict[str, int] = {}

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        """Out of the pool for good, with the reason eth_getUserOperationByHash reports (counted
        in the drop metric by reason)."""
        log.info("dropping op %s: %s", entry.hash, reason, extra={"op_hash": entry.hash})
        self.metrics.op_dropped(drop_reason_label(reason))
        self.removed(entry, reason, code)

    def removed(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        """Out of the pool for good, recorded dropped, without the drop metric (the caller counts
        it its own way: an eviction, a revoked session)."""
        self.reverts.pop(entry.hash, None)
        self.mempool.remove(entry.hash)
        self.store.update(entry.hash, status=OpStatus.DROPPED, reason=reason, error_code=code)

    def recorded_dropped(self, op_hash: str, reason: str, code: int | None = None) -> None:
        """An op that is not in the mempool (back from a bundle, a reorg or a restart) and will not
        come back: recorded dropped, its transaction and block cleared."""
        self.reverts.pop(op_hash, None)
        self.store.update(op_hash, status=OpStatus.DROPPED, tx_hash=None, block_number=None, block_hash=None,
                          reason=reason, error_code=code)

    def readmitted(self, entry: PoolEntry) -> None:
        """Validated again after a lost bundle, a reorg or a restart: in the pool, pending, with
        the new validation's window and prefund."""
        self.mempool.add(entry)
        self.store.update(entry.hash, status=OpStatus.PENDING, tx_hash=None, block_number=None, block_hash=None,
                          valid_after=entry.valid_after, valid_until=entry.valid_until, prefund=entry.prefund)

    def mined(self, op_hash: str, entry: PoolEntry | None, tx_hash: str, block_number: int, block_hash: str) -> None:
        """Included by a bundle of ours: out of the pool, recorded mined, its entities credited."""
        self.reverts.pop(op_hash, None)
        self.mempool.remove(op_hash, mined_block=block_number)
        self.recorded_mined(op_hash, tx_hash, block_number, block_hash)
        if self.reputation is not None and entry is not None:
            self.reputation.included(entry)

    def recorded_mined(self, op_hash: str, tx_hash: str, block_number: int, block_hash: str) -> None:
        """Found mined on chain (a transaction we lost track of, a reorg that kept it): the record only."""
        self.store.update(op_hash, status=OpStatus.MINED, tx_hash=tx_hash, block_number=block_number,
                          block_hash=block_hash)

    def pending_again(self, op_hash: str, entry: PoolEntry | None = None) -> None:
        """Not in any transaction any more (not sent, or its bundle left it out): bundled again."""
        if entry is not None:
            entry.submitted_in = None
        self.store.update(op_hash, status=OpStatus.PENDING, tx_hash=None)

    def resubmitted(self, op_hash: str, tx_hash: str, entry: PoolEntry | None = None) -> None:
        """Its bundle, mined in a block a reorg removed, is pending in the node again: in flight
        (and back in the pool as `entry`, marked in that transaction)."""
        self.store.update(op_hash, status=OpStatus.SUBMITTED, tx_hash=tx_hash, block_number=None, block_hash=None)
        if entry is not None:
            self.mempool.add(entry)

    def forget(self, op_hash: str) -> None:
        """Out of the mempool, its record left as it is (found mined on chain meanwhile)."""
        self.reverts.pop(op_hash, None)
        self.mempool.remove(op_hash)

    def not_included(self, op_hash: str, entry: PoolEntry | None) -> None:
        """Its bundle was mined without it: pending again (it keeps no revert count)."""
        self.reverts.pop(op_hash, None)
        self.pending_again(op_hash, entry)

    def bundle_reverted(self, op_hash: str, entry: PoolEntry | None, tx_hash: str) -> None:
        """A bundle carrying it reverted on chain: pending again, or dropped once
        max_bundle_reverts bundles carrying it reverted."""
        count = self.reverts[op_hash] = self.reverts.get(op_hash, 0) + 1
        if entry is not None and count >= self.max_bundle_reverts:
            entry.submitted_in = None
            self.drop(entry, f"dropped after {count} bundles carrying it reverted on chain (last {tx_hash})", -32500)
            return
        self.pending_again(op_hash, entry)

    def forget_gone(self) -> None:
        """Revert counts only of ops still in the pool: the others were dropped, evicted,
        cleared or mined meanwhile, by whichever path (the count would be kept forever)."""
        for h in [h for h in self.reverts if self.mempool.get(h) is None]:
            del self.reverts[h]
