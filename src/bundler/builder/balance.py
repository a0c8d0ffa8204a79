"""Executor balances: read before every bundle and every `interval` seconds; below the minimum
the builder refuses to send from that key (its ops stay pending) and says so in the log.

For /health and metrics: `BalanceGuard.status()` (one dict per key) and `.all_low`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import asyncio
import logging
import time

from ..chain.client import NodeClient
from ..errors import BundlerError

if TYPE_CHECKING:
    from ..builder.executor_key import Executor

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0


class ExecutorBalanceLow(BundlerError):
    """Every executor key is below the configured minimum balance: nothing can be sent."""


class BalanceGuard:
    def __init__(self, node: NodeClient, executors: list[Executor], min_balance: int, interval: float = 15.0):
        self.node = node
        self.executors = executors
        self.min_balance = min_balance
        self.interval = interval
        self.balances: dict[str, int] = {}
        self.checked_at: dict[str, float] = {}
        self._warned_at: dict[str, float] = {}

    def is_low(self, address: str) -> bool:
        balance = self.balances.get(address)
        return balance is not None and balance < self.min_balance

    @property
    def all_low(self) -> bool:
        return bool(self.executors) and all(self.is_low(e.address) for e in self.executors)

    def status(self) -> list[dict]:
        return [{
            "address": e.address,
            "balance": self.balances.get(e.address),
            "minBalance": self.min_balance,
            "ok": not self.is_low(e.address),
            "checkedAt": self.checked_at.get(e.address),
        } for e in self.executors]

    async def refresh(self, executor: Executor) -> int:
        balance = await self.node.get_balance(executor.address, "latest")
        was_low = self.is_low(executor.address)
        self.balances[executor.address] = balance
        self.checked_at[executor.address] = time.time()
        if balance < self.min_balance:
            now = time.monotonic()
            if not was_low or now - self._warned_at.get(executor.address, 0.0) > WARN_EVERY_S:
                self._warned_at[executor.address] = now
                log.warning("executor %s balance %d wei is below the minimum %d wei (--min-executor-balance): "
                            "no bundles are sent from it until it is funded; ops stay pending",
                            executor.address, balance, self.min_balance)
        elif was_low:
            log.warning("executor %s funded again (balance %d wei); bundling resumes", executor.address, balance)
        return balance

    async def check(self, executor: Executor) -> None:
        """Raise ExecutorBalanceLow if `executor` may not send now."""
        if self.min_balance <= 0:
            return
        balance = await self.refresh(executor)
        if balance < self.min_balance:
            raise ExecutorBalanceLow(
                f"executor {executor.address} has {balance} wei, below the minimum {self.min_balance} wei; "
                f"bundles are not sent until it is funded (the ops stay pending)"
            )

    async def run(self) -> None:
        while True:
            for e in self.executors:
                try:
                    await self.refresh(e)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("balance poll of %s failed: %s", e.address, exc)
            await asyncio.sleep(self.interval)
