"""Composition root: builds every service from a Config and runs them in one event loop."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from . import entrypoint as eps
from .builder.builder import Builder
from .builder.executor import Executor
from .chain.client import NodeClient
from .chain.head import HeadTracker
from .chain.lookup import UserOpLookup
from .config import Config
from .gas.estimate import Estimator
from .health import Monitor
from .metrics import Metrics
from .pool.admission import Admission
from .pool.capacity import CapacityGuard
from .pool.mempool import Mempool
from .rpc.methods import debug_registry, eth_registry
from .rpc.ratelimit import ClientRateLimiter
from .rpc.server import build_app
from .sim import Simulator
from .store.memory import MemoryStore

log = logging.getLogger(__name__)


class Bundler:
    def __init__(self, config: Config):
        self.config = config
        self.node = NodeClient(config.rpc_url)
        self.entry_points = [ep for ep in eps.ALL if ep.version in config.entry_points]
        keys = config.executor_keys()
        if not keys:
            raise SystemExit("no executor key: pass --private-key, BUNDLER_PRIVATE_KEY or --private-key-file")
        self.executors = [Executor(k) for k in keys]
        del keys
        self.chain_id: int = 0
        self.metrics = Metrics()
        self.store = MemoryStore()
        self.mempool = Mempool(config.max_ops_per_sender)
        self.capacity = CapacityGuard(self.mempool, self.store, config.max_mempool_ops,
                                      on_evicted=lambda _entry: self.metrics.op_dropped("evicted"))
        self.monitor = Monitor(node=self.node, executors=self.executors, metrics=self.metrics, config=config,
                               mempool=self.mempool)
        self.rate_limiter = ClientRateLimiter(
            config.rate_limit_per_s, config.rate_limit_burst, exempt_loopback=config.rate_limit_exempt_loopback,
            forwarded_for=config.rate_limit_forwarded_for, on_refused=self.metrics.rate_limited.inc,
        )
        self.head = HeadTracker(self.node, config.head_poll_interval)
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> None:
        self.chain_id = await self.node.chain_id()
        if self.config.expected_chain_id and self.chain_id != self.config.expected_chain_id:
            raise SystemExit(
                f"the node at {self.config.rpc_url} is on chain {self.chain_id}, "
                f"expected {self.config.expected_chain_id}"
            )
        for ep in self.entry_points:
            if not await self.node.get_code(ep.address):
                raise SystemExit(f"EntryPoint v{ep.version} has no code at {ep.address} on {self.config.rpc_url}")
        await self.head.fresh()
        self.simulator = Simulator(self.config.rpc_url, self.chain_id, workers=self.config.sim_workers,
                                   min_valid_for=self.config.valid_until_margin,
                                   timeout=self.config.sim_timeout_s, memory_mb=self.config.sim_memory_mb)
        await self.simulator.start()
        self.builder = Builder(
            node=self.node, head=self.head, simulator=self.simulator, mempool=self.mempool,
            store=self.store, executors=self.executors, entry_points=self.entry_points,
            chain_id=self.chain_id, config=self.config, metrics=self.metrics,
        )
        self.admission = Admission(
            head=self.head, simulator=self.simulator, mempool=self.mempool, store=self.store,
            config=self.config, chain_id=self.chain_id,
            on_admitted=lambda _entry: self.builder.notify_new_op(), capacity=self.capacity,
        )
        self.estimator = Estimator(head=self.head, simulator=self.simulator, config=self.config,
                                   chain_id=self.chain_id)
        self.lookup = UserOpLookup(self.node, self.store, self.entry_points, self.chain_id,
                                   self.config.receipt_lookback_blocks)
        registry = eth_registry(self)
        if self.config.debug_api:
            registry.merge(debug_registry(self))
        app = build_app(registry, self.node, self.config.max_body_bytes, self.config.max_batch,
                        extra_routes=self.monitor.add_routes, rate_limiter=self.rate_limiter)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.config.host}:{port}"
        self._tasks = [
            asyncio.create_task(self.head.run(), name="head"),
            asyncio.create_task(self.builder.run(), name="builder"),
            asyncio.create_task(self.monitor.run(), name="monitor"),
        ]
        log.info("bundler listening on %s (chain %d, node %s)", self.url, self.chain_id, self.config.rpc_url)
        log.info("executors: %s", ", ".join(e.address for e in self.executors))
        log.debug("settings: %s", self.config.redacted())

    def clear_state(self) -> None:
        self.mempool.clear()
        self.store.clear()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if getattr(self, "simulator", None) is not None:
            await self.simulator.close()
        await self.node.close()


async def serve(config: Config, ready=None) -> None:
    """Run until cancelled (SIGINT/SIGTERM are turned into cancellation by the CLI)."""
    bundler = Bundler(config)
    try:
        await bundler.start()
    except BaseException:
        await bundler.stop()  # close what was opened (node session, workers) before saying why
        raise
    try:
        if ready:
            ready(bundler)
        await asyncio.Event().wait()
    finally:
        await bundler.stop()
