"""Composition root: builds every service from a Config and runs them in one event loop."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from typing import TYPE_CHECKING

from aiohttp import web

from . import entrypoint as eps
from .builder.builder import Builder
from .builder.executor_key import Executor
from .builder.takeover import Takeover
from .chain.client import NodeClient
from .chain.head import HeadTracker
from .chain.lookup import UserOpLookup
from .config import Config
from .gas.estimate import Estimator
from .rpc.health import Monitor
from .metrics import Metrics
from .paymaster import setup as paymaster_setup
from .paymaster.signer import load_signer
from .pool.admission import Admission
from .pool.eip7702 import Eip7702Checker
from .pool.fates import OpFates
from .pool.capacity import CapacityGuard
from .pool.mempool import Mempool
from .pool.pool import LocalPool
from .pool.reputation import ReputationRules
from .pool.safe import SafeMode
from .rpc.handlers.debug import DebugServices, debug_registry
from .rpc.handlers.eth import EthServices, eth_registry
from .rpc.handlers.fees import FeeServices, fee_registry
from .rpc.handlers.paymaster import PaymasterServices, paymaster_registry
from .rpc.handlers.session import SessionServices, session_registry
from .rpc.edge import EdgePolicy
from .rpc.forward import ForwardPolicy
from .rpc.ratelimit import ClientRateLimiter
from .rpc.server import build_app
from .sessions.service import SessionService
from .sim import Simulator
from .chain.reorgs import ChainWatcher
from .chain.types import ChainUpdate
from .pool.requeue import Requeue
from .pool.shared import SharedPoolSync
from .store import Store, as_shared, open_store
from .store.records import InflightTx
from .supervise import Supervisor
from .store.sqlite import StoreError

if TYPE_CHECKING:
    from .paymaster.service import SponsorService
    from .relay import Relay

log = logging.getLogger(__name__)


class Bundler:
    def __init__(self, config: Config, *, dev: bool = False):
        self.config = config
        self.dev = dev  # on the embedded dev chain: e.g. a throwaway relay master key is made
        self.node = NodeClient(config.rpc_url)
        self.entry_points = [ep for ep in eps.ALL if ep.version in config.entry_points]
        keys = config.executor_keys()
        if not keys:
            raise SystemExit("no executor key: pass --private-key, BUNDLER_PRIVATE_KEY or --private-key-file")
        self.executors = [Executor(k) for k in keys]
        del keys
        self._paymaster_signer = load_signer(config)  # None: no gas sponsorship
        self.paymaster: SponsorService | None = None  # made by start() when a signer is configured
        self.chain_id: int = 0
        self.metrics = Metrics()
        self.store: Store | None = None  # opened by start(): it locks the data dir
        self._temp_data_dir: str | None = None
        self.mempool = Mempool(config.max_ops_per_sender)
        self.capacity: CapacityGuard | None = None  # needs the store: made by start()
        self.fates: OpFates | None = None  # the pool's writer of op status; needs the store too
        self.reputation = ReputationRules.from_config(config, self.mempool, self.node)
        self.supervisor = Supervisor(self.metrics)
        self.monitor = Monitor(node=self.node, executors=self.executors, metrics=self.metrics, config=config,
                               mempool=self.mempool, tasks=self.supervisor)
        self.rate_limiter = ClientRateLimiter(
            config.rate_limit_per_s, config.rate_limit_burst, exempt_loopback=config.rate_limit_exempt_loopback,
            forwarded_for=config.rate_limit_forwarded_for, on_refused=self.metrics.rate_limited.inc,
        )
        self.head = HeadTracker(self.node, config.head_poll_interval)
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self.url: str | None = None
        self.sessions: SessionService | None = None
        self._failed: asyncio.Future | None = None  # set when the instance must stop (lease lost)
        self.relay: Relay | None = None  # when config.relay

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
        genesis = await self.node.get_block(0)
        if self.config.store == "sqlite" and not self.config.data_dir:
            # built in code without a data dir (tests, benchmarks): private and thrown away at stop
            self._temp_data_dir = tempfile.mkdtemp(prefix="bundler-data-")
            self.config = dataclasses.replace(self.config, data_dir=self._temp_data_dir)
        try:
            self.store = open_store(self.config)
            self.store.bind_chain(self.chain_id, genesis["hash"] if genesis else "0x")
            self.reputation.book.attach_store(self.store)
            # the pool's writer of op status (pending / in a bundle / mined / dropped)
            self.fates = OpFates(self.mempool, self.store, self.reputation, self.metrics,
                                 self.config.max_bundle_reverts)
            self.capacity = CapacityGuard(self.mempool, self.fates, self.config.max_mempool_ops,
                                          on_evicted=lambda _entry: self.metrics.op_dropped("evicted"))
        except StoreError as e:
            if self.store is not None:
                self.store.close()
                self.store = None
            raise SystemExit(f"store: {e}") from None
        await self.head.fresh()
        self.simulator = Simulator(self.config.rpc_url, self.chain_id, workers=self.config.sim_workers,
                                   min_valid_for=self.config.valid_until_margin,
                                   timeout=self.config.sim_timeout_s, memory_mb=self.config.sim_memory_mb)
        await self.simulator.start()
        self.eip7702 = Eip7702Checker(self.node, self.chain_id)
        self.sessions = await SessionService.create(
            config=self.config, head=self.head, mempool=self.mempool, store=self.store, fates=self.fates,
            chain_id=self.chain_id, entry_points=self.entry_points,
        )
        # the ERC-7562 rules, one instance: admission's checks and the builder's second validation
        self.safe = SafeMode(self.config, self.mempool, metrics=self.metrics)
        self.admission = Admission(
            head=self.head, simulator=self.simulator, mempool=self.mempool, store=self.store,
            config=self.config, chain_id=self.chain_id, safe=self.safe,
            on_admitted=lambda _entry: self.builder.notify_new_op(),
            reputation=self.reputation, eip7702=self.eip7702, sessions=self.sessions,
            capacity=self.capacity,
        )
        self.estimator = Estimator(head=self.head, simulator=self.simulator, config=self.config,
                                   chain_id=self.chain_id, sessions=self.sessions,
                                   queued_nonce=self.admission.nonce_override)
        self.requeue = Requeue(self.admission, self.store, self.fates, concurrency=max(2, 2 * self.config.sim_workers))
        # the one interface to the pool: the builder (and the rpc handlers) see only this
        self.pool = LocalPool(mempool=self.mempool, store=self.store, fates=self.fates, admission=self.admission,
                              reputation=self.reputation, requeue=self.requeue)
        self.builder: Builder = Builder(
            node=self.node, head=self.head, simulator=self.simulator, pool=self.pool,
            store=self.store, safe=self.safe, executors=self.executors, entry_points=self.entry_points,
            chain_id=self.chain_id, config=self.config, eip7702=self.eip7702, metrics=self.metrics,
        )

        async def on_chain_update(update: ChainUpdate) -> None:
            # executor nonces, then the pool (op status; wakes the builder), then our txs
            self.builder.forget_lost_nonces(update)
            await self.pool.apply_chain_update(update)
            await self.builder.on_chain_update(update)

        self.watcher = ChainWatcher(self.node, self.head, self.config.reorg_depth, on_chain_update,
                                    lookback_blocks=self.config.receipt_lookback_blocks)
        self.builder.watcher = self.watcher
        self.pool_sync = None
        self.takeover = None
        if self.store.shared:
            shared = as_shared(self.store)
            try:
                shared.lock_executors([e.address for e in self.executors])
            except StoreError as e:
                raise SystemExit(f"store: {e}") from None
            shared.retire_previous()  # we hold its keys: an earlier process with them is gone
            self.pool_sync = SharedPoolSync(shared, self.mempool, self.entry_points,
                                            on_new=self.builder.notify_new_op)
            self.takeover = Takeover(as_shared(self.store), self.builder, on_lost=self._fail)
        await self._recover()
        settler = None
        if self._paymaster_signer is not None:
            self.paymaster, settler, self.monitor.deposits = await paymaster_setup.build(
                self._paymaster_signer, config=self.config, node=self.node, store=self._opened_store(), head=self.head,
                chain_id=self.chain_id, entry_points=self.entry_points, metrics=self.metrics)
            self.mempool.observe(settler)  # an op leaving the pool wakes its sponsorship's settlement
        self.lookup = UserOpLookup(self.node, self.store, self.entry_points, self.chain_id,
                                   self.config.receipt_lookback_blocks)
        # each namespace's handlers get the services they use, typed (rpc/handlers/)
        registry = eth_registry(EthServices(chain_id=self.chain_id, entry_points=self.entry_points, pool=self.pool,
                                            estimator=self.estimator, lookup=self.lookup, metrics=self.metrics))
        registry.merge(session_registry(SessionServices(entry_points=self.entry_points, sessions=self.sessions)))
        self._paymaster_services = PaymasterServices(entry_points=self.entry_points, sponsor=self.paymaster,
                                                     head=self.head)
        registry.merge(paymaster_registry(self._paymaster_services))
        registry.merge(fee_registry(FeeServices(head=self.head, node=self.node,
                                                min_priority_fee=self.config.min_priority_fee)))
        if self.config.debug_api:
            registry.merge(debug_registry(DebugServices(entry_points=self.entry_points, pool=self.pool,
                                                        bundling=self.builder, node=self.node)))
        if self.config.relay:
            from .relay import Relay

            self.relay = Relay(self, dev_data_dir=self.config.data_dir if self.dev else None)

        def extra_routes(app: web.Application) -> None:
            self.monitor.add_routes(app)
            if self.relay is not None:
                self.relay.add_routes(app)
            self._add_paymaster_route(app)

        app = build_app(registry, self.node, self.config.max_body_bytes, self.config.max_batch,
                        extra_routes=extra_routes, rate_limiter=self.rate_limiter,
                        forward=ForwardPolicy.from_config(self.config), edge=EdgePolicy.from_config(self.config))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.config.host}:{port}"
        # every long-running loop under supervision (supervise.py): restarted with backoff,
        # logged, counted and named by /health when it dies
        start = self.supervisor.start
        start("head", self.head.run)
        start("builder", self.builder.run)
        start("chain-watcher", self.watcher.run)
        start("executor-balances", self.builder.balances.run)
        start("sessions", self.sessions.run)
        start("monitor", self.monitor.run)
        if settler is not None:
            start("paymaster-settler", settler.run)
        if self.pool_sync is not None:
            start("shared-pool-sync", self.pool_sync.run)
        if self.takeover is not None:
            start("lease-and-takeover", self.takeover.run)
        self._tasks = self.supervisor.tasks
        if self.relay is not None:
            self.relay.start(self.supervisor)
        for inflight in self._own_inflight():
            self.builder.start_resume(inflight)
        log.info("bundler listening on %s (chain %d, node %s)", self.url, self.chain_id, self.config.rpc_url)
        log.info("executors: %s", ", ".join(e.address for e in self.executors))
        log.debug("settings: %s", self.config.redacted())

    def _add_paymaster_route(self, app: web.Application) -> None:
        if self.config.paymaster_path:
            # the pm_* methods alone on their own path (no eth_* forwarding, no other namespace)
            pm_app = build_app(paymaster_registry(self._paymaster_services), None, self.config.max_body_bytes, self.config.max_batch,
                               rate_limiter=self.rate_limiter)
            handler = next(r.handler for r in pm_app.router.routes() if r.method == "POST")
            app.router.add_post(self.config.paymaster_path, handler)

    async def _recover(self) -> None:
        """Rebuild the pool from the store after a restart: ops of in-flight bundles wait for
        their transaction (resumed once serving), pending ops are validated again, mined ops
        of the last reorg_depth blocks are watched for reorgs."""
        store = self._opened_store()
        in_flight: set[str] = set()
        if store.shared:
            released = await as_shared(store).release_stale([e.address for e in self.executors])
            if released:
                log.info("released %d op(s) claimed before a restart but never sent", released)
            as_shared(store).adopt_own_inflight()  # ours again: followed (and replaced if stuck) with our keys
        for t in self._own_inflight():  # in the pool, marked in their transaction (resumed once serving)
            in_flight.update(self.pool.adopt_in_flight(t.op_hashes, t.latest.tx_hash if t.latest else None))
        pending = 0
        if self.pool_sync is not None:  # a shared store: the others' ops come in through the pool sync
            self.pool_sync.sync_once()  # (and bundle simulation re-checks them)
        else:
            pending = await self.pool.restore_pending(skip=in_flight)
        head = self.head.latest.number if self.head.latest else 0
        for b in self.pool.mined_since(max(0, head - self.config.reorg_depth)):
            self.watcher.track(b)
        if in_flight or pending:
            log.info("recovered from the store: %d op(s) in %d in-flight bundle(s), %d pending re-validated",
                     len(in_flight), len(self._own_inflight()), pending)

    def _own_inflight(self) -> list[InflightTx]:
        """In-flight nonces to follow: all of them, except with a shared store, where only those
        this instance owns (the others belong to other instances, live or taken over)."""
        store = self._opened_store()
        if store.shared:  # those this instance owns (its keys' rows it adopted at start)
            return as_shared(store).owned_inflight()
        return store.inflight()

    def _opened_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the bundler's store is opened by start(), which has not run")
        return self.store

    def _fail(self, reason: str) -> None:
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        if not self._failed.done():
            self._failed.set_result(reason)

    async def wait_failed(self) -> str:
        """Returns (with the reason) when the instance can no longer serve safely."""
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return await self._failed

    def executor_health(self) -> list[dict]:
        """Per executor key: address, balance (wei, None before the first read), minBalance, ok,
        checkedAt. Below the minimum a key sends no bundles (for /health and metrics)."""
        return self.builder.balances.status()

    async def stop(self) -> None:
        await _cancel_all(self._tasks)
        if self._runner is not None:
            await self._runner.cleanup()
        if getattr(self, "builder", None) is not None:
            await _cancel_all(list(self.builder._background))
        if getattr(self, "simulator", None) is not None:
            await self.simulator.close()
        if self.relay is not None:
            await self.relay.close()
        if self.sessions is not None:
            await self.sessions.close()
        if self.store is not None:
            try:
                await self.store.flush()
            except Exception as e:
                log.error("store flush at shutdown failed: %s", e)
            self.store.close()
        if self._temp_data_dir:
            shutil.rmtree(self._temp_data_dir, ignore_errors=True)
        await self.node.close()


async def _cancel_all(tasks, grace_s: float = 10.0) -> None:
    """Cancel and wait, but never forever: a task that swallowed its cancellation is named in
    the log and left behind, so shutdown (and the store flush after it) still happens."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    _done, stuck = await asyncio.wait(tasks, timeout=grace_s)
    for t in stuck:
        log.error("task %s did not stop within %.0f s of being cancelled", t.get_name(), grace_s)


async def serve(config: Config, ready=None, dev: bool = False) -> None:
    """Run until cancelled (SIGINT/SIGTERM are turned into cancellation by the CLI)."""
    bundler = Bundler(config, dev=dev)
    try:
        await bundler.start()
    except BaseException:
        await bundler.stop()  # close what was opened (node session, workers) before saying why
        raise
    try:
        if ready:
            ready(bundler)
        reason = await bundler.wait_failed()
        raise SystemExit(f"stopping: {reason}")
    finally:
        await bundler.stop()
