"""GET /health and GET /metrics on the bundler's HTTP server, and the periodic refresh of the
gauges that need the node (executor balances, node reachability).

/health answers 200 with {"status": "ok", ...} or 503 with {"status": "unhealthy",
"problems": [...], ...}: the node does not answer, an executor's balance is below
--min-executor-balance, or a background task died (supervise.py). A sponsoring paymaster's
EntryPoint deposit below --paymaster-min-deposit makes it 200 with {"status": "degraded",
"warnings": [...]}: bundling goes on, sponsored ops will soon fail. The body never holds the
node URL (it may carry an API key).
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Sized

from aiohttp import web

from ..chain.client import NodeRpcError
from ..builder.executor_key import Executor
from ..chain.client import NodeClient
from ..config import Config
from ..metrics import CONTENT_TYPE_LATEST, Metrics
from ..pool.mempool import PoolReader
from ..supervise import Supervisor

if TYPE_CHECKING:
    from ..paymaster.deposit import DepositWatcher

log = logging.getLogger(__name__)

NODE_CHECK_TIMEOUT = 3.0
HEALTH_CACHE_S = 1.0  # /health answers from a check at most this old (probes may be frequent)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)
_KIND = re.compile(r"node unreachable: (\w+)")


def _describe(exc: BaseException) -> str:
    """What went wrong, without host names or URLs (the full text goes to the log only)."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {NODE_CHECK_TIMEOUT:g} s"
    if isinstance(exc, NodeRpcError):
        return f"the node answered error {exc.code}: {_URL.sub('<url>', exc.message)[:200]}"
    kind = _KIND.match(getattr(exc, "message", "") or "")
    return f"cannot reach the node ({kind.group(1) if kind else type(exc).__name__})"


class Monitor:
    def __init__(self, *, node: NodeClient, executors: list[Executor], metrics: Metrics, config: Config,
                 mempool: Sized, tasks: Supervisor | None = None):
        self.node = node
        self.tasks = tasks  # supervise.Supervisor: its dead or failing tasks are problems
        self.executors = executors
        self.metrics = metrics
        self.config = config
        self.mempool = mempool  # only its size is read (the pool's len)
        self.deposits: DepositWatcher | None = None  # when the bundler sponsors gas
        self.last: dict[str, Any] | None = None
        self._last_at = 0.0
        metrics.mempool_ops.set_function(lambda: len(self.mempool))
        metrics.mempool_capacity.set(config.max_mempool_ops)

    async def check(self) -> dict[str, Any]:
        """Ask the node now (one batch: block number and every executor's balance)."""
        problems: list[str] = []
        report: dict[str, Any] = {"node": {"reachable": False}, "executors": []}
        minimum = self.config.min_executor_balance
        try:
            calls: list[tuple[str, list]] = [("eth_blockNumber", [])]
            calls += [("eth_getBalance", [e.address, "latest"]) for e in self.executors]
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives as the call completes, and the bundler would then never stop
            async with asyncio.timeout(NODE_CHECK_TIMEOUT):
                results = await self.node.batch(calls)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.metrics.node_up.set(0)
            log.warning("health: node check failed: %s", e)
            problems.append(f"node unreachable: {_describe(e)}")
            for ex in self.executors:
                report["executors"].append({"address": ex.address, "balance": None})
        else:
            self.metrics.node_up.set(1)
            report["node"] = {"reachable": True, "blockNumber": int(results[0], 16)}
            for ex, raw in zip(self.executors, results[1:]):
                balance = int(raw, 16)
                self.metrics.executor_balance.labels(ex.address).set(balance)
                low = bool(minimum) and balance < minimum
                report["executors"].append({"address": ex.address, "balance": str(balance), "belowMinimum": low})
                if low:
                    problems.append(
                        f"executor {ex.address} has {balance} wei, below the minimum {minimum} "
                        f"(--min-executor-balance)"
                    )
        warnings: list[str] = []
        if self.deposits is not None and report["node"]["reachable"]:
            report["paymasters"], warnings = await self.deposits.check()
        if self.tasks is not None:
            problems.extend(self.tasks.problems())
            report["tasks"] = self.tasks.report()
        report["minExecutorBalance"] = str(minimum)
        report["mempool"] = {"ops": len(self.mempool), "capacity": self.config.max_mempool_ops}
        report["status"] = "unhealthy" if problems else "degraded" if warnings else "ok"
        if problems:
            report["problems"] = problems
        if warnings:
            report["warnings"] = warnings
        report["checkedAt"] = int(time.time())
        self.last, self._last_at = report, time.monotonic()
        return report

    async def run(self) -> None:
        """Refresh the node-dependent gauges every balance_refresh_s."""
        interval = max(self.config.balance_refresh_s, 0.5)
        while True:
            try:
                report = await self.check()
                if report["status"] != "ok":
                    log.warning("health: %s", "; ".join(report.get("problems", []) + report.get("warnings", [])))
            except asyncio.CancelledError:
                raise
            except Exception:  # never let monitoring stop the bundler
                log.exception("health check failed")
            await asyncio.sleep(interval)

    # -- HTTP ---------------------------------------------------------------
    async def handle_health(self, _request: web.Request) -> web.Response:
        last = self.last
        fresh = last is not None and time.monotonic() - self._last_at < HEALTH_CACHE_S
        report = last if last is not None and fresh else await self.check()
        return web.json_response(report, status=503 if report["status"] == "unhealthy" else 200)

    async def handle_metrics(self, _request: web.Request) -> web.Response:
        body = self.metrics.expose()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
