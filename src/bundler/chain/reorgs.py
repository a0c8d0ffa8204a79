"""Chain watcher: keeps the hashes of the recent canonical blocks (linked by parentHash) and the
blocks that mined our bundles; when such a block leaves the canonical chain it finds out where
the bundle's ops are now (in the new chain, in a bundle transaction the node holds again, or
nowhere) and emits that as a ChainUpdate: the pool applies it to op status, the builder follows
its own transactions. The watcher writes no op status and knows no pool or builder.

Cost: one eth_getBlockByNumber("latest") per new block (and one a second while idle, which also
catches a replacement at the same height); after a reorg, one eth_getBlockByHash per replaced
block, at most `depth`; per reorged bundle, its receipt and transaction (and, when gone, one
eth_getLogs per op).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .. import faults
from ..errors import NodeError
from .client import NodeClient
from .head import HeadTracker
from .types import ChainUpdate, MinedOp, PendingBundle
from .userop_logs import build_receipt, find_event_log

log = logging.getLogger(__name__)

# after a reorg, how long a vanished bundle transaction gets to reappear in the node's pool
REINJECT_GRACE_S = 1.0


@dataclass
class MinedBundle:
    tx_hash: str
    block_number: int
    block_hash: str
    op_hashes: list[str] = field(default_factory=list)
    executor: str | None = None
    entry_point: str = ""  # where its ops' UserOperationEvents are looked for


class ChainWatcher:
    def __init__(self, node: NodeClient, head: HeadTracker, depth: int,
                 on_update: Callable[[ChainUpdate], Awaitable[None]], idle_poll: float = 1.0,
                 lookback_blocks: int = 10_000, reinject_grace_s: float = REINJECT_GRACE_S):
        self.node = node
        self.head = head
        self.depth = depth
        self.on_update = on_update  # the pool applies it, then the builder (app wires both)
        self.idle_poll = idle_poll
        self.lookback_blocks = lookback_blocks  # how far back an op's event is looked for
        self.reinject_grace_s = reinject_grace_s
        self.hashes: dict[int, str] = {}          # block number -> canonical hash
        self.bundles: dict[str, MinedBundle] = {}  # tx hash -> where it was mined
        self.reorgs_seen = 0
        self._head_hash: str | None = None

    def track(self, bundle: MinedBundle) -> None:
        known = self.bundles.get(bundle.tx_hash)
        if known is not None and known.block_hash == bundle.block_hash:
            known.op_hashes.extend(h for h in bundle.op_hashes if h not in known.op_hashes)
        else:
            self.bundles[bundle.tx_hash] = bundle

    def untrack(self, tx_hash: str) -> None:
        self.bundles.pop(tx_hash, None)

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep watching through node hiccups
                log.warning("chain watcher: %s", getattr(e, "message", e))
            faults.fail_point("chain-watcher", scope=self)  # a bug here would end the loop: supervised
            latest = self.head.latest.number if self.head.latest else None
            await self.head.wait_new_block(latest, self.idle_poll)

    async def _block(self, tag_or_hash: str) -> dict | None:
        if tag_or_hash.startswith("0x") and len(tag_or_hash) == 66:
            return await self.node.call("eth_getBlockByHash", tag_or_hash, False)
        return await self.node.call("eth_getBlockByNumber", tag_or_hash, False)

    async def check(self) -> list[MinedBundle]:
        """Update the canonical hashes from the node's head; report and return the bundles
        whose block is no longer canonical."""
        block = await self._block("latest")
        if block is None:
            raise NodeError("node returned no latest block")
        number, block_hash = int(block["number"], 16), block["hash"]
        if block_hash == self._head_hash and not self._needs_backfill(number):
            return []
        self._head_hash = block_hash
        floor = max(0, number - self.depth)
        lowest_needed = min([b.block_number for b in self.bundles.values()] + [number])
        new = {number: block_hash}
        m, parent = number - 1, block["parentHash"]
        while m >= max(floor, lowest_needed):
            if self.hashes.get(m) == parent:
                break  # the rest below is the chain we already hold
            new[m] = parent
            blk = await self._block(parent)
            if blk is None:  # the node dropped it meanwhile: try again next round
                self._head_hash = None
                return []
            parent = blk["parentHash"]
            m -= 1
        replaced = [n for n in new if n in self.hashes and self.hashes[n] != new[n]]
        shortened = [n for n in self.hashes if n > number]
        if replaced or shortened:
            self.reorgs_seen += 1
            log.warning("reorg: %d block(s) replaced from %d (head now %d %s)", len(replaced) + len(shortened),
                        min(replaced + shortened), number, block_hash)
        for n in shortened:
            del self.hashes[n]
        self.hashes.update(new)
        for n in [n for n in self.hashes if n < floor]:
            del self.hashes[n]

        reorged = []
        for b in list(self.bundles.values()):
            canonical = self.hashes.get(b.block_number)
            if b.block_number < floor:
                self.untrack(b.tx_hash)  # deep enough to be final
            elif canonical is not None and canonical != b.block_hash:
                reorged.append(b)
        if reorged and not (replaced or shortened):
            self.reorgs_seen += 1  # replaced before we ever saw the old block as head
        for b in reorged:
            self.untrack(b.tx_hash)
            log.warning("bundle %s mined in block %d (%s) was reorged out; %d op(s) to re-check",
                        b.tx_hash, b.block_number, b.block_hash, len(b.op_hashes))
        results = await asyncio.gather(*(self._reorged(b) for b in reorged), return_exceptions=True)
        for b, r in zip(reorged, results):
            if isinstance(r, BaseException):
                log.error("handling reorged bundle %s failed (%r); trying again", b.tx_hash, r)
                self.track(b)
        return reorged

    def _needs_backfill(self, number: int) -> bool:
        """A newly tracked bundle below the hashes we hold."""
        low = min(self.hashes) if self.hashes else number
        return any(low > b.block_number >= number - self.depth for b in self.bundles.values())

    async def _reorged(self, bundle: MinedBundle) -> None:
        await self.on_update(await self.resolve(bundle))

    async def resolve(self, bundle: MinedBundle) -> ChainUpdate:
        """Where the ops of a bundle whose block left the canonical chain are now."""
        for check in range(2):
            update = await self._found_again(bundle)
            if update is not None:
                return update
            if check == 0:  # nodes put the transactions of dropped blocks back in their pool
                await asyncio.sleep(self.reinject_grace_s)  # a moment after the new head
        # gone from the chain and from the node: unmined, unless another transaction mined them
        update = ChainUpdate(lost_txs=[bundle.tx_hash])
        for h in bundle.op_hashes:
            event = await self._mined_event(h, bundle.entry_point)
            if event is None:
                update.unmined.append(h)
            else:
                update.mined.append(MinedOp(h, event["transactionHash"], int(event["blockNumber"], 16),
                                            event["blockHash"]))
        return update

    async def _mined_event(self, op_hash: str, entry_point: str) -> dict | None:
        if not entry_point:
            return None
        try:
            head = self.head.latest.number if self.head.latest else 0
            return await find_event_log(self.node, op_hash, [entry_point], head - self.lookback_blocks)
        except Exception as e:
            log.warning("could not look up the UserOperationEvent of %s: %s", op_hash, getattr(e, "message", e))
            return None

    async def _found_again(self, bundle: MinedBundle) -> ChainUpdate | None:
        """The update if the reorged bundle is in the new chain or pending in the node again."""
        receipt = await self.node.get_receipt(bundle.tx_hash)
        if receipt is not None and receipt.get("blockHash"):
            # the same transaction is in the new chain too
            block = int(receipt["blockNumber"], 16)
            update = ChainUpdate()
            for h in bundle.op_hashes:
                if receipt["status"] == "0x1" and build_receipt(h, receipt) is not None:
                    update.mined.append(MinedOp(h, bundle.tx_hash, block, receipt["blockHash"]))
                else:
                    update.unmined.append(h)
            log.info("bundle %s is in the new chain too (block %d %s): %d op(s) mined again", bundle.tx_hash,
                     block, receipt["blockHash"], len(update.mined))
            if update.mined:
                self.track(MinedBundle(bundle.tx_hash, block, receipt["blockHash"], [m.op_hash for m in update.mined],
                                       bundle.executor, bundle.entry_point))
            return update
        tx = await self.node.get_transaction(bundle.tx_hash)
        if tx is not None and tx.get("blockHash") is None:
            # the node put it back in its pool: it will be mined again with the same nonce
            log.info("bundle %s is pending again after the reorg", bundle.tx_hash)
            raw = ""
            try:
                raw = await self.node.call("eth_getRawTransactionByHash", bundle.tx_hash) or ""
            except Exception:
                pass
            return ChainUpdate(pending=[PendingBundle(
                tx_hash=bundle.tx_hash, executor=(tx.get("from") or bundle.executor or "").lower(),
                nonce=int(tx["nonce"], 16), entry_point=(tx.get("to") or "").lower(), raw=raw,
                max_fee=int(tx.get("maxFeePerGas") or tx.get("gasPrice") or "0x0", 16),
                priority=int(tx.get("maxPriorityFeePerGas") or "0x0", 16), op_hashes=list(bundle.op_hashes))])
        return None
