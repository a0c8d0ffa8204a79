"""Dev chains only: anvil with automine mines a block when a transaction arrives and never
otherwise, so an op held for its validAfter would wait for a block that never comes (the
inclusion window only moves with the head, chain.clock). While such ops wait, this mines an
empty block (evm_mine) at most once a second, as if the chain had a one-second block time for
as long as something waits; each block moves the head's timestamp on by at least a second.

On by `dev_mine_when_held` (the default of `bundler dev` without --block-time), and even then
only against a node whose web3_clientVersion says anvil: a production node is never asked to
mine. A chain with its own block time needs none of this.
"""
from __future__ import annotations

import logging
import time

from ..chain.client import NodeClient

log = logging.getLogger(__name__)

MINE_EVERY_S = 1.0


class DevMiner:
    def __init__(self, node: NodeClient, every_s: float = MINE_EVERY_S, clock=time.monotonic):
        self.node = node
        self.every_s = every_s
        self.clock = clock
        self._anvil: bool | None = None
        self._last = float("-inf")
        self.mined = 0

    async def _is_anvil(self) -> bool:
        if self._anvil is None:
            try:
                version = await self.node.call("web3_clientVersion")
            except Exception as e:
                log.warning("dev_mine_when_held: cannot tell which node this is (%s); not mining", e)
                version = ""
            self._anvil = isinstance(version, str) and version.lower().startswith("anvil")
            if not self._anvil:
                log.warning("dev_mine_when_held is set but the node is %r, not anvil: ops held for their "
                            "validAfter wait for the chain's own blocks", version)
        return self._anvil

    async def nudge(self) -> bool:
        """Mine one empty block if the last one this mined is a second old; True if it did."""
        now = self.clock()
        if now - self._last < self.every_s or not await self._is_anvil():
            return False
        self._last = now
        await self.node.call("evm_mine")
        self.mined += 1
        log.debug("dev chain: mined an empty block for ops waiting for their validAfter")
        return True
