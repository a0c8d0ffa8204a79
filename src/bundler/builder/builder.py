"""The bundling loop: turns pending ops into handleOps transactions by wiring the proposer
(select, second validation, simulate and drop, fees: proposer.py) -> the key assigner
(assigner.py) -> the transaction tracker (sign, send, replace, follow: tracker.py) -> settlement
(settlement.py: the fate of every op of a resolved transaction, told to the pool; restart resume).

The builder sees the pool only through its interface (pool.pool.Pool): it reads candidates,
claims them (shared store), and tells the pool every op's fate; it writes no op status and
holds no pool state beyond the ops reserved by the bundles it is building."""
from __future__ import annotations

import asyncio
import logging
import time

from ..chain.client import NodeClient
from ..chain.fees import suggest_fees
from ..chain.head import HeadTracker
from ..chain.reorgs import ChainWatcher, MinedBundle
from ..chain.types import ChainUpdate
from ..chain.userop_logs import find_event_log
from ..entrypoint import EntryPointVersion, handle_ops_calldata
from ..errors import BundlerError
from ..config import Config
from ..metrics import Metrics, NullMetrics
from ..pool.eip7702 import Eip7702Checker
from ..pool.mempool import PoolEntry
from ..pool.pool import Pool
from ..pool.safe import SafeMode
from ..pool.shared import CLAIMED_ELSEWHERE
from ..sim.protocol import Simulator
from ..store.base import ClaimLost, LeaseLost
from ..store.records import InflightTx, TxAttempt
from .balance import BalanceGuard, ExecutorBalanceLow
from .bundle_check import check_bundle
from .dev_miner import DevMiner
from .assigner import KeyAssigner
from .executor_key import Executor
from .proposer import BundleProposer, ProposedBundle, bundle_gas_limit, due, select_ops
from .settlement import InflightRows, SentBundle, Settlement
from .tracker import TransactionTracker

log = logging.getLogger(__name__)

# after a bundle failed (node refusing?), auto mode waits this long before the next one
FAILURE_BACKOFF_S = 0.5


class Builder:
    def __init__(
        self,
        *,
        node: NodeClient,
        head: HeadTracker,
        simulator: Simulator,
        pool: Pool,
        store: InflightRows,
        safe: SafeMode,
        executors: list[Executor],
        entry_points: list[EntryPointVersion],
        chain_id: int,
        config: Config,
        eip7702: Eip7702Checker | None = None,
        metrics: Metrics | None = None,
    ):
        self.node = node
        self.head = head
        self.simulator = simulator
        # the pool (pool.pool.Pool): candidates, claims, and every op's fate
        self.pool = pool
        self.store = store  # in-flight transaction rows only
        self.executors = executors
        self.entry_points = entry_points
        self.chain_id = chain_id
        self.config = config
        self.mode = config.bundle_mode
        self.eip7702 = eip7702  # pool.eip7702.Eip7702Checker, or None
        self._wakeup = asyncio.Event()
        self.metrics = metrics if metrics is not None else NullMetrics()
        self.safe = safe  # the ERC-7562 rules' second validation (one SafeMode, shared with admission)
        # select -> second validation -> simulate and drop -> fees: a ProposedBundle value
        self.proposer = BundleProposer(
            simulator=simulator, safe=self.safe, window=head.window, check=self._check,
            fees=lambda header: suggest_fees(node, header), pool=pool, found_mined=self._found_mined,
            eip7702=eip7702)
        # sign, send, replace, follow: transactions only (settlement of their ops stays here)
        self.tracker = TransactionTracker(node, head, store, config, chain_id)
        # executor balances (for /health: self.balances.status(), self.balances.all_low)
        self.balances = BalanceGuard(node, executors, config.min_executor_balance)
        self.keys = KeyAssigner(executors, self.balances.is_low)
        self._background: set[asyncio.Task] = set()
        self._watcher: ChainWatcher | None = None  # set by the app
        # what a resolved transaction means for its ops (and resuming those found in flight)
        self.settlement = Settlement(pool=pool, rows=store, tracker=self.tracker, executors=executors,
                                     found_mined=self._found_mined_on_chain, metrics=self.metrics,
                                     on_unsettled=self.notify_new_op)
        # parallel bundles (one per executor key) never share an op, a sender or a paymaster:
        # ops selected for a bundle stay reserved until its transaction is settled
        self._reserved: dict[str, PoolEntry] = {}
        self._jobs: set[asyncio.Task] = set()  # auto mode's bundles in flight
        self._last_failure = 0.0
        self._waiting_since: float | None = None  # first op announced since bundles last started
        # dev chains (anvil automine): mine empty blocks while ops wait for their validAfter
        self.dev_miner = DevMiner(node) if getattr(config, "dev_mine_when_held", False) else None
        # set when this instance's lease in a shared store is lost: it claims and sends nothing more
        self.fenced = False

    @property
    def watcher(self) -> ChainWatcher | None:
        """The chain watcher (set by the app): mined bundles are tracked for reorgs."""
        return self._watcher

    @watcher.setter
    def watcher(self, watcher: ChainWatcher | None) -> None:
        self._watcher = watcher
        self.settlement.watcher = watcher

    @property
    def sender(self) -> TransactionTracker:
        """The tracker under its former name (tests wait on sender.replace_rounds)."""
        return self.tracker

    # triggers ---------------------------------------------------------------
    def notify_new_op(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._wakeup.set()

    def _coalesce_delay(self) -> float:
        """How much longer auto mode lets ops gather before it starts bundles: up to
        bundle_coalesce_ms after the first op since the last round, none once a bundle's worth
        of ops is waiting (a burst then goes out as a few full bundles, not one per op)."""
        window = self.config.bundle_coalesce_ms / 1000
        if window <= 0 or self._waiting_since is None:
            return 0.0
        if len(self.pool) - len(self._reserved) >= self.config.max_bundle_ops:
            return 0.0
        return self._waiting_since + window - time.monotonic()

    async def _coalesce(self) -> None:
        """Let ops gather for the coalescing window; each new op re-checks whether a bundle is
        full already."""
        delay = self._coalesce_delay()
        while delay > 0:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            delay = self._coalesce_delay()
        self._waiting_since = None

    async def run(self) -> None:
        """Auto mode: bundle when ops arrive, on new blocks, and every bundle_interval_ms; each
        free executor key takes its own bundle without waiting for the others to be mined."""
        interval = self.config.bundle_interval_ms / 1000 if self.config.bundle_interval_ms else 1.0
        try:
            while True:
                try:
                    async with asyncio.timeout(interval):  # not wait_for: it may swallow a cancel
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                self._wakeup.clear()
                if self.mode == "auto" and self.dev_miner is not None and self._holding():
                    try:
                        await self.dev_miner.nudge()
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        log.warning("dev chain: evm_mine failed: %s", e)
                if self.mode != "auto" or not len(self.pool) or self.keys.free() is None:
                    continue
                backoff = self._last_failure + FAILURE_BACKOFF_S - time.monotonic()
                if backoff > 0:  # the last bundle failed (node refusing?): do not hammer
                    await asyncio.sleep(backoff)
                await self._coalesce()
                try:
                    for _ep, task in self._start_bundles(await self.head.fresh()):
                        self._jobs.add(task)
                        task.add_done_callback(self._job_done)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("bundling round failed")
                    await asyncio.sleep(0.5)
        finally:
            jobs, self._jobs = list(self._jobs), set()
            for task in jobs:
                task.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    def _holding(self) -> bool:
        """Ops held in the pool until their validAfter is due (at the head's inclusion window)."""
        if self.head.latest is None:
            return False
        window = self.head.window()
        return any(e.submitted_in is None and not due(e, window) for e in self.pool.entries())

    def _job_done(self, task: asyncio.Task) -> None:
        self._jobs.discard(task)
        e = None if task.cancelled() else task.exception()
        if e is not None:
            if isinstance(e, ExecutorBalanceLow):  # BalanceGuard has said so in the log
                return
            log.error("bundle failed: %s", e, exc_info=(type(e), e, e.__traceback__))

    async def bundle_all(self) -> list[SentBundle]:
        """Bundles of everything bundle-able now, followed until mined: one per free executor key
        (in parallel, no op in two of them), or, when every key is busy, one per EntryPoint on
        the next key. Ops of a bundle that reverted on chain or lost its nonce are bundled again
        (the ones that now fail are dropped), up to max_bundle_reverts rounds."""
        mined: list[SentBundle] = []
        round_results: list[SentBundle] = []
        for _round in range(max(1, self.config.max_bundle_reverts)):
            round_results = await self._bundle_round()
            mined += [r for r in round_results if r.status == "mined"]
            if not any(r.status in ("reverted", "not_mined") for r in round_results):
                break
        # the bundles that made it, and what is still unresolved after the last round
        return mined + [r for r in round_results if r.status != "mined"]

    async def _bundle_round(self) -> list[SentBundle]:
        header = await self.head.fresh()
        started = self._start_bundles(header)
        tasks = [task for _ep, task in started]
        served = {ep for ep, _task in started}
        for ep in self.entry_points:  # an EntryPoint left without a free key queues on a busy one
            entries = self._select(ep, header) if ep not in served else None
            if entries:
                tasks.append(self._launch(self.keys.pick(), ep, entries))
        results = await asyncio.gather(*tasks)
        return [r for r in results if r is not None]

    def _start_bundles(self, header) -> list[tuple[EntryPointVersion, asyncio.Task]]:
        """Select and reserve ops for as many bundles as there are free executors, taking the
        EntryPoints in turn. Synchronous, so two bundles never select the same op."""
        tasks: list[tuple[EntryPointVersion, asyncio.Task]] = []
        progress = True
        while progress:
            progress = False
            for ep in self.entry_points:
                if not self.keys.any_usable():
                    return tasks
                entries = self._select(ep, header)
                if entries:
                    executor = self.keys.free()
                    if executor is None:  # any_usable() said one is, and nothing ran in between
                        raise RuntimeError("no free executor key right after one was usable")
                    tasks.append((ep, self._launch(executor, ep, entries)))
                    progress = True
        return tasks

    def _launch(self, executor: Executor, ep: EntryPointVersion, entries: list[PoolEntry]) -> asyncio.Task:
        for e in entries:
            self._reserved[e.hash] = e
        self.keys.started(executor)
        self.metrics.executor_busy.labels(executor.address).set(1)
        self.metrics.bundles_in_flight.inc()
        return asyncio.ensure_future(self._bundle_job(executor, ep, entries))

    async def _bundle_job(self, executor: Executor, ep: EntryPointVersion,
                          entries: list[PoolEntry]) -> SentBundle | None:
        result = None
        try:
            async with executor.lock:
                await self.balances.check(executor)
                header = await self.head.fresh()
                result = await self._bundle_selected(executor, ep, header, entries)
                return result
        except asyncio.CancelledError:
            raise
        except ExecutorBalanceLow:
            raise
        except Exception:
            self.metrics.bundle("failed")
            self._last_failure = time.monotonic()
            raise
        finally:
            for e in entries:
                self._reserved.pop(e.hash, None)
            if self.keys.finished(executor):
                self.metrics.executor_busy.labels(executor.address).set(0)
            self.metrics.bundles_in_flight.dec()
            if result is not None and self.mode == "auto" and len(self.pool):
                self._wakeup.set()  # this key is free again: bundle what is left

    # one bundle -------------------------------------------------------------
    def _select(self, ep: EntryPointVersion, header) -> list[PoolEntry]:
        selection = select_ops(
            self.pool.bundle_candidates(ep, header.base_fee), reserved=self._reserved.values(),
            submitted=self.pool.submitted(ep),
            window=self.head.window(header), header=header, max_gas=self.config.max_bundle_gas,
            max_ops=self.config.max_bundle_ops,
            gate=self.pool.bundle_gate(ep, header.number),
            others_storage=self.safe.others_storage)
        for entry, reason, code in selection.drops:
            self.drop(entry, reason, code)
        return selection.ops

    async def _mined_event(self, op_hash: str, entry_point: str) -> dict | None:
        """The op's UserOperationEvent if it is on chain (mined by a transaction we lost track
        of, e.g. after a reorg or a restart); the op is then recorded mined."""
        try:
            head = self.head.latest.number if self.head.latest else 0
            event = await find_event_log(self.node, op_hash, [entry_point], head - self.config.receipt_lookback_blocks)
        except Exception as e:
            log.warning("could not look up the UserOperationEvent of %s: %s", op_hash, getattr(e, "message", e))
            return None
        if event is not None:
            self.pool.recorded_mined(op_hash, event["transactionHash"], int(event["blockNumber"], 16),
                                      event["blockHash"])
        return event

    async def _found_mined(self, entry: PoolEntry) -> bool:
        """An op refused for its nonce may be mined already: then record it mined, not dropped."""
        event = await self._mined_event(entry.hash, entry.entry_point.address)
        if event is None:
            return False
        self.pool.forget(entry.hash)
        log.info("op %s is already mined in %s; recorded mined", entry.hash, event["transactionHash"])
        if self.watcher is not None:
            self.watcher.track(MinedBundle(event["transactionHash"], int(event["blockNumber"], 16),
                                           event["blockHash"], [entry.hash], entry_point=entry.entry_point.address))
        return True

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        self.pool.drop(entry, reason, code)

    async def bundle(self, ep: EntryPointVersion) -> SentBundle | None:
        """One bundle for `ep` on the next executor key (waiting for it if all are busy)."""
        header = await self.head.fresh()
        executor = self.keys.pick()
        entries = self._select(ep, header)
        if not entries:
            return None
        return await self._launch(executor, ep, entries)

    async def _bundle_selected(self, executor: Executor, ep: EntryPointVersion, header,
                               selected: list[PoolEntry]) -> SentBundle | None:
        """Claim (shared store), propose (second validation, simulate and drop, fees), send and
        follow until mined."""
        selected = [e for e in selected if self.pool.get(e.hash) is e]  # evicted meanwhile
        # claimed first (shared store): an instance decides (drops, sends) only ops it holds
        claimed = await self._claim(selected, executor)
        try:
            async def release(entries: list[PoolEntry]) -> None:  # claimed by this executor key
                await self._release(entries, executor)

            proposal = await self.proposer.propose(ep, header, claimed, sender=executor.address,
                                                   beneficiary=self.config.beneficiary or executor.address,
                                                   release=release)
            if proposal is None:
                return None
            return await self._send(executor, proposal)
        except BaseException:
            # still ours, in the pool and not sent: another instance may take them
            await self._release([e for e in claimed if self.pool.get(e.hash) is e
                                 and e.submitted_in in (None, CLAIMED_ELSEWHERE)], executor)
            raise

    async def _claim(self, selected: list[PoolEntry], executor: Executor) -> list[PoolEntry]:
        """With a store shared by several instances, bundle only the ops this instance claims."""
        if self.fenced:
            return []
        try:
            return await self.pool.claim(selected, executor.address)
        except LeaseLost as lost:
            log.critical("no bundle: %s", lost)
            self.fenced = True
            return []

    async def _release(self, entries: list[PoolEntry], executor: Executor) -> None:
        await self.pool.release(entries, executor.address)

    async def _check(self, ops, ep, header, beneficiary: str, sender: str):
        """The bundle as it would run on chain (the node's eth_call, or py-evm: bundle_check), in
        the next block: its number and earliest possible timestamp, at which every selected op
        is due."""
        data_len = len(handle_ops_calldata(ops, beneficiary))
        gas = bundle_gas_limit(ops, data_len, sum(op.eip7702_auth is not None for op in ops), header)
        window = self.head.window(header)
        return await check_bundle(self.node, self.simulator, ops, ep, header, beneficiary=beneficiary,
                                  sender=sender, gas=gas, where=self.config.bundle_check,
                                  timestamp=window.earliest, number=window.next_block)

    async def _send(self, executor: Executor, proposal: ProposedBundle) -> SentBundle:
        entries, ep, dropped = proposal.ops, proposal.entry_point, proposal.drops

        def mark_submitted(inflight: InflightTx) -> None:  # the store has them submitted already
            self.pool.mark_submitted(entries, inflight.current.tx_hash)

        try:
            inflight = await self.tracker.send_new(executor, ep.address, [e.hash for e in entries], proposal.calldata,
                                                   proposal.gas_limit, proposal.max_fee, proposal.priority,
                                                   before_send=mark_submitted,
                                                   authorizations=proposal.authorizations or None)
        except (BundlerError, ClaimLost) as refused:
            if isinstance(refused, ClaimLost):
                log.warning("bundle not sent: %s", refused)
            for entry in entries:
                self.pool.pending_again(entry.hash, entry)
            await self.pool.flush()
            raise
        self.metrics.bundle("sent", len(entries))
        followed = await self.tracker.follow(inflight, executor)
        if len(inflight.attempts) > 1:
            self.metrics.bundle("replaced")
        return await self.settlement.settle(inflight, followed, dropped, executor)

    async def _found_mined_on_chain(self, op_hash: str, entry_point: str) -> bool:
        return await self._mined_event(op_hash, entry_point) is not None

    # -- after a restart ----------------------------------------------------------------------
    async def resume(self, inflight: InflightTx) -> SentBundle:
        """Follow an in-flight nonce found in the store at start-up, then settle it (settlement.py)."""
        return await self.settlement.resume(inflight)

    def start_resume(self, inflight: InflightTx) -> asyncio.Task:
        task = asyncio.create_task(self._guarded(self.resume(inflight)), name=f"resume-{inflight.nonce}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _guarded(self, coro) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background bundle task failed")

    # -- reorgs ----------------------------------------------------------------------------------
    def forget_lost_nonces(self, update: ChainUpdate) -> None:
        """Before the pool applies a reorg's update (which wakes us with the ops put back): a
        transaction of ours is gone, so the executors' cached next nonces may skip it. A bundle
        signed with one would wait behind the gap (TransactionTracker.fill_gap is the net for a
        bundle already being signed)."""
        if update.lost_txs:
            for ex in self.executors:
                ex.forget_nonce()

    async def on_chain_update(self, update: ChainUpdate) -> None:
        """After the pool applied a reorg's update: follow our own transactions the node holds
        again, and bundle the ops of those gone."""
        for bundle in update.pending:
            inflight = InflightTx(executor=bundle.executor, nonce=bundle.nonce, entry_point=bundle.entry_point,
                                  op_hashes=list(bundle.op_hashes),
                                  attempts=[TxAttempt(bundle.tx_hash, bundle.raw, bundle.max_fee, bundle.priority)])
            self.store.put_inflight(inflight)
            await self.store.flush()
            self._start_background(self.settlement.follow_again(inflight))
        if update.lost_txs:
            self.forget_lost_nonces(update)  # again: a bundle may have consumed a stale one meanwhile
            self.notify_new_op()

    def _start_background(self, coro) -> None:
        task = asyncio.create_task(self._guarded(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
