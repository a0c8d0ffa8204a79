"""Follows the chain head: the latest header on demand (single-flight), and a signal per new
block for the builder and the receipt follower."""
from __future__ import annotations

import asyncio
import logging
import time

from .types import PinnedBlock
from .clock import InclusionClock, InclusionWindow
from .client import NodeClient

log = logging.getLogger(__name__)


class HeadTracker:
    def __init__(self, node: NodeClient, poll_interval: float = 0.25):
        self.node = node
        self.poll_interval = poll_interval
        self.latest: PinnedBlock | None = None
        self._inflight: asyncio.Future | None = None
        self._new_block = asyncio.Condition()
        self.clock = InclusionClock()  # block times and the chain's clock, from the headers seen
        self._confirmed_at = 0.0  # monotonic time the node last said `latest` is the head

    def window(self, header: PinnedBlock | None = None) -> InclusionWindow:
        """Bounds on the timestamp of the block that will include an op sent now (chain.clock)."""
        head = header or self.latest
        if head is None:
            raise RuntimeError("no header seen yet")
        return self.clock.window(head)

    async def fresh(self) -> PinnedBlock:
        """The node's latest header now; concurrent callers share one request."""
        if self._inflight is None:
            asked_at = time.monotonic()
            self._inflight = asyncio.ensure_future(self.node.header("latest"))
            self._inflight.add_done_callback(lambda f: self._fetched(f, asked_at))
        header = await asyncio.shield(self._inflight)
        await self._observe(header)
        return header

    def _fetched(self, future: asyncio.Future, asked_at: float) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is None:
            self._confirmed_at = max(self._confirmed_at, asked_at)

    def recent(self, max_age: float) -> PinnedBlock | None:
        """The latest header if the node confirmed it as its head at most `max_age` seconds ago
        (a fetch or a poll started since then), else None: the caller then asks fresh()."""
        if self.latest is None or max_age <= 0 or time.monotonic() - self._confirmed_at > max_age:
            return None
        return self.latest

    async def _observe(self, header: PinnedBlock) -> None:
        if self.latest is None or header.number != self.latest.number or header.hash != self.latest.hash:
            if self.latest is None or header.number >= self.latest.number:
                self.latest = header
                self.clock.observe(header.number, header.timestamp)
                async with self._new_block:
                    self._new_block.notify_all()

    async def wait_new_block(self, after: int | None, timeout: float) -> PinnedBlock | None:
        """Wait until a block newer than `after` is seen (or timeout); returns the head."""
        async def newer() -> None:
            async with self._new_block:
                await self._new_block.wait_for(
                    lambda: self.latest is not None and (after is None or self.latest.number > after)
                )
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the inner wait finishes, and a task that should stop goes on
            async with asyncio.timeout(timeout):
                await newer()
        except TimeoutError:
            return None
        return self.latest

    async def run(self) -> None:
        while True:
            try:
                asked_at = time.monotonic()
                number = await self.node.block_number()
                if self.latest is None or number != self.latest.number:
                    await self.fresh()
                else:  # still the head as of this poll
                    self._confirmed_at = max(self._confirmed_at, asked_at)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # node hiccup: keep following
                log.warning("head poll failed: %s", e)
            await asyncio.sleep(self.poll_interval)
