"""Settlement: what a resolved bundle transaction means for its ops, told to the pool, and the
in-flight row removed in the same commit. Also the transactions found in flight at start-up (or
adopted from a dead instance, or pending in the node again after a reorg): followed to the end,
then settled the same way.

It knows the pool only through `SettlementPool` (pool.pool.Pool: apply_bundle_result,
back_to_pool), the store only as its in-flight rows, the transaction tracker only as
`TxFollower`, and the chain watcher only as `Tracks` (mined bundles watched for reorgs).
"""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..chain.reorgs import MinedBundle
from ..chain.userop_logs import build_receipt
from ..metrics import NullMetrics
from ..pool.pool import BundleOutcome, FoundMined
from ..store.records import InflightTx
from .executor_key import Executor
from .tracker import FollowResult, InflightStore

log = logging.getLogger(__name__)


@dataclass
class SentBundle:
    entry_point: str
    tx_hash: str
    block_number: int | None
    status: str  # "mined" | "reverted" | "not_mined"
    included: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


class InflightRows(InflightStore, Protocol):
    """The store as the builder uses it: its in-flight transaction rows (the tracker's), and one
    commit for an op's fate and its row's removal (store.base.Store)."""

    def batch(self) -> AbstractContextManager[Any]: ...


class SettlementPool(Protocol):
    """The pool's side of a resolved transaction (pool.pool.Pool)."""

    def apply_bundle_result(self, op_hashes: list[str], outcome: BundleOutcome) -> list[str]: ...

    async def back_to_pool(self, op_hashes: list[str], context: str, found_mined: FoundMined) -> None: ...


class TxFollower(Protocol):
    """builder.tracker.TransactionTracker: follows a nonce until one attempt is mined (replacing
    it while stuck when it has the key), or resumes one found in the store."""

    async def follow(self, inflight: InflightTx, executor: Executor | None) -> FollowResult: ...

    async def resume(self, inflight: InflightTx, executor: Executor | None) -> FollowResult: ...


class Tracks(Protocol):
    """chain.reorgs.ChainWatcher: mined bundles watched for reorgs."""

    def track(self, bundle: MinedBundle) -> None: ...


class BundleMetrics(Protocol):
    def bundle(self, status: str, ops: int | None = None) -> None: ...


class Settlement:
    def __init__(self, *, pool: SettlementPool, rows: InflightRows, tracker: TxFollower,
                 executors: list[Executor], found_mined: FoundMined, metrics: BundleMetrics | None = None,
                 on_unsettled: Callable[[], None] = lambda: None):
        self.pool = pool
        self.rows = rows
        self.tracker = tracker
        self.executors = executors
        self.found_mined = found_mined  # (op hash, EntryPoint) -> mined on chain (and recorded so)
        self.metrics: BundleMetrics = metrics if metrics is not None else NullMetrics()
        self.on_unsettled = on_unsettled  # a resumed bundle not mined: its ops want bundling again
        self.watcher: Tracks | None = None  # set by the app (through Builder.watcher)

    async def settle(self, inflight: InflightTx, followed: FollowResult, dropped: dict[str, str] | None = None,
                     executor: Executor | None = None) -> SentBundle:
        """Record the fate of every op of an in-flight nonce once it is resolved, then forget it."""
        receipt = followed.receipt
        latest = inflight.latest.tx_hash if inflight.latest else ""
        if receipt is None:  # the nonce went to a transaction we never sent: ops are not mined
            if executor is not None:
                executor.forget_nonce()
            result = SentBundle(inflight.entry_point, latest, None, "not_mined", dropped=dropped or {})
            await self.pool.back_to_pool(inflight.op_hashes, "bundle nonce taken by another transaction",
                                         self.found_mined)
            self.rows.delete_inflight(inflight.executor, inflight.nonce)
            await self.rows.flush()
            return result
        tx_hash = receipt["transactionHash"]
        block = int(receipt["blockNumber"], 16)
        result = SentBundle(inflight.entry_point, tx_hash, block, "mined", dropped=dropped or {})
        reverted = receipt["status"] != "0x1"
        self.metrics.bundle("reverted" if reverted else "mined")
        outcome = BundleOutcome(tx_hash, block, receipt["blockHash"], reverted=reverted,
                                included=set() if reverted else
                                {h for h in inflight.op_hashes if build_receipt(h, receipt) is not None})
        # the ops' fate and the in-flight row's removal commit together
        with self.rows.batch():
            mined = self.pool.apply_bundle_result(inflight.op_hashes, outcome)
            if reverted:
                result.status = "reverted"
                log.warning("bundle %s reverted on chain (block %d); its ops are simulated again", tx_hash, block)
            else:
                result.included.extend(mined)
                log.info("bundle %s mined in block %d: %d op(s) included", tx_hash, block, len(mined))
                if self.watcher is not None and mined:
                    self.watcher.track(MinedBundle(tx_hash, block, receipt["blockHash"], mined, inflight.executor,
                                                   inflight.entry_point))
            self.rows.delete_inflight(inflight.executor, inflight.nonce)
        await self.rows.flush()
        return result

    # -- transactions found in flight ---------------------------------------------------------
    def _executor(self, address: str) -> Executor | None:
        return next((e for e in self.executors if e.address == address), None)

    async def resume(self, inflight: InflightTx) -> SentBundle:
        """Follow an in-flight nonce found in the store at start-up: same nonce, same signed
        bytes (broadcast again only if the node lost them), replaced with higher fees if stuck."""
        tx_hash = inflight.latest.tx_hash if inflight.latest else None
        executor = self._executor(inflight.executor)
        if executor is None:
            log.warning("in-flight bundle %s was sent by %s, which is not one of this instance's keys (no "
                        "longer configured, or its instance died): following its receipt without replacing it",
                        tx_hash, inflight.executor)
            followed = await self.tracker.resume(inflight, None)
            return await self.settle(inflight, followed)
        async with executor.lock:
            log.info("resuming in-flight bundle %s (executor %s nonce %d, %d ops, %d attempt(s))",
                     tx_hash, inflight.executor, inflight.nonce, len(inflight.op_hashes), len(inflight.attempts))
            followed = await self.tracker.resume(inflight, executor)
            executor.forget_nonce()
            result = await self.settle(inflight, followed, executor=executor)
        if result.status != "mined":
            self.on_unsettled()
        return result

    async def follow_again(self, inflight: InflightTx) -> SentBundle:
        """A transaction of ours pending in the node again (its block reorged out; its row
        written back by the caller): followed (not replaced: no key given) and settled."""
        followed = await self.tracker.follow(inflight, None)
        return await self.settle(inflight, followed)
