"""Turns pending ops into handleOps transactions: select, simulate the whole bundle, drop what
fails, sign, send, replace if stuck, and record the outcome of every op."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from eth_abi import encode
from eth_utils import to_checksum_address

from ..chain.client import NodeClient, NodeRpcError
from ..chain.fees import suggest_fees
from ..chain.head import HeadTracker
from ..chain.userop_logs import HANDLE_OPS_SELECTOR, build_receipt
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError
from ..metrics import NullMetrics, drop_reason_label
from ..pool.mempool import Mempool, PoolEntry
from ..sim.results import failure_error
from ..store.records import OpStatus
from ..userop.packing import PACKED_USEROP_TYPE, pack
from .executor import Executor

log = logging.getLogger(__name__)

# EntryPoint work per bundle outside the ops' own limits (loop, beneficiary payment)
BUNDLE_OVERHEAD_GAS = 60_000
FAILURE_BACKOFF_S = 0.5


@dataclass
class BundleResult:
    entry_point: str
    tx_hash: str
    block_number: int | None
    status: str  # "mined" | "reverted" | "not_mined"
    included: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


def encode_handle_ops(entries: list[PoolEntry], beneficiary: str) -> bytes:
    return HANDLE_OPS_SELECTOR + encode(
        [f"{PACKED_USEROP_TYPE}[]", "address"], [[pack(e.op) for e in entries], beneficiary]
    )


class Builder:
    def __init__(
        self,
        *,
        node: NodeClient,
        head: HeadTracker,
        simulator,
        mempool: Mempool,
        store,
        executors: list[Executor],
        entry_points: list[EntryPointVersion],
        chain_id: int,
        config,
        admission=None,
        metrics=None,
    ):
        self.node = node
        self.head = head
        self.simulator = simulator
        self.mempool = mempool
        self.store = store
        self.executors = executors
        self.entry_points = entry_points
        self.chain_id = chain_id
        self.config = config
        self.mode = config.bundle_mode
        self._wakeup = asyncio.Event()
        self._next_executor = 0
        self.metrics = metrics if metrics is not None else NullMetrics()
        # parallel bundles (one per executor key) never share an op, a sender or a paymaster:
        # ops selected for a bundle stay reserved until its transaction is settled
        self._reserved: dict[str, PoolEntry] = {}
        self._busy: dict[Executor, int] = {}  # bundles started and not finished, per executor
        self._jobs: set[asyncio.Task] = set()  # auto mode's bundles in flight
        self._last_failure = 0.0

    # triggers ---------------------------------------------------------------
    def notify_new_op(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Auto mode: bundle when ops arrive, on new blocks, every bundle_interval_ms, and when
        a bundle finishes; each free executor key takes its own bundle."""
        interval = self.config.bundle_interval_ms / 1000 if self.config.bundle_interval_ms else 1.0
        try:
            while True:
                try:
                    async with asyncio.timeout(interval):  # not wait_for: it may swallow a cancel
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                self._wakeup.clear()
                if self.mode != "auto" or not len(self.mempool) or self._free_executor() is None:
                    continue
                backoff = self._last_failure + FAILURE_BACKOFF_S - time.monotonic()
                if backoff > 0:  # the last bundle failed (node refusing?): do not hammer
                    await asyncio.sleep(backoff)
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

    def _job_done(self, task: asyncio.Task) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("bundle failed: %s", e, exc_info=(type(e), e, e.__traceback__))

    async def bundle_all(self) -> list[BundleResult]:
        """Bundles of everything bundle-able now: one per free executor key (in parallel, no op
        in two of them), or, when every key is busy, one per EntryPoint on the next free key."""
        header = await self.head.fresh()
        started = self._start_bundles(header)
        tasks = [task for _ep, task in started]
        served = {ep for ep, _task in started}
        for ep in self.entry_points:  # an EntryPoint left without a free key queues on a busy one
            entries = self._select(ep, header) if ep not in served else None
            if entries:
                tasks.append(self._launch(self._pick_executor(), ep, entries))
        results = await asyncio.gather(*tasks)
        return [r for r in results if r is not None]

    def _free_executor(self) -> Executor | None:
        for i in range(len(self.executors)):
            ex = self.executors[(self._next_executor + i) % len(self.executors)]
            if not ex.lock.locked() and not self._busy.get(ex):
                self._next_executor = (self._next_executor + i + 1) % len(self.executors)
                return ex
        return None

    def _pick_executor(self) -> Executor:
        ex = self._free_executor()
        if ex is None:  # all busy: queue on the next one in turn
            ex = self.executors[self._next_executor]
            self._next_executor = (self._next_executor + 1) % len(self.executors)
        return ex

    def _start_bundles(self, header) -> list[tuple[EntryPointVersion, asyncio.Task]]:
        """Select and reserve ops for as many bundles as there are free executors, taking the
        EntryPoints in turn. Synchronous, so two bundles never select the same op."""
        tasks: list[tuple[EntryPointVersion, asyncio.Task]] = []
        progress = True
        while progress:
            progress = False
            for ep in self.entry_points:
                if not any(not ex.lock.locked() and not self._busy.get(ex) for ex in self.executors):
                    return tasks
                entries = self._select(ep, header)
                if entries:
                    tasks.append((ep, self._launch(self._free_executor(), ep, entries)))
                    progress = True
        return tasks

    def _launch(self, executor: Executor, ep: EntryPointVersion, entries: list[PoolEntry]) -> asyncio.Task:
        for e in entries:
            self._reserved[e.hash] = e
        self._busy[executor] = self._busy.get(executor, 0) + 1
        self.metrics.executor_busy.labels(executor.address).set(1)
        self.metrics.bundles_in_flight.inc()
        return asyncio.ensure_future(self._bundle_job(executor, ep, entries))

    async def _bundle_job(self, executor: Executor, ep: EntryPointVersion,
                          entries: list[PoolEntry]) -> BundleResult | None:
        result = None
        try:
            async with executor.lock:
                header = await self.head.fresh()
                result = await self._bundle_selected(executor, ep, header, entries)
                return result
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics.bundle("failed")
            self._last_failure = time.monotonic()
            raise
        finally:
            for e in entries:
                self._reserved.pop(e.hash, None)
            self._busy[executor] -= 1
            if not self._busy[executor]:
                del self._busy[executor]
                self.metrics.executor_busy.labels(executor.address).set(0)
            self.metrics.bundles_in_flight.dec()
            if result is not None and self.mode == "auto" and len(self.mempool):
                self._wakeup.set()  # this key is free again: bundle what is left

    # one bundle -------------------------------------------------------------
    def _select(self, ep: EntryPointVersion, header) -> list[PoolEntry]:
        now = time.time()
        selected: list[PoolEntry] = []
        gas = BUNDLE_OVERHEAD_GAS
        limit = min(self.config.max_bundle_gas, header.gas_limit)
        # senders and paymasters of ops in other bundles in flight wait for those to settle
        # (a later nonce would fail before the earlier one is mined; a shared deposit could run out)
        busy = {e.op.sender for e in self._reserved.values()} | {
            e.op.sender for e in self.mempool.entries(ep) if e.submitted_in is not None}
        busy_paymasters = {e.op.paymaster for e in self._reserved.values() if e.op.paymaster}
        for entry in self.mempool.bundle_candidates(ep, header.base_fee):
            op = entry.op
            if entry.hash in self._reserved or op.sender in busy or (op.paymaster and op.paymaster in busy_paymasters):
                continue
            if entry.valid_until and entry.valid_until < now:
                self.drop(entry, "expired: validUntil passed before inclusion", -32503)
                continue
            if entry.valid_after and entry.valid_after > header.timestamp:
                continue  # not yet valid; stays pending
            if op.max_fee_per_gas < header.base_fee:
                continue  # cannot pay the current base fee; stays pending
            if gas + op.total_gas_limit() > limit:
                continue
            selected.append(entry)
            gas += op.total_gas_limit()
            if len(selected) >= self.config.max_bundle_ops:
                break
        return selected

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        log.info("dropping op %s: %s", entry.hash, reason, extra={"op_hash": entry.hash})
        self.metrics.op_dropped(drop_reason_label(reason))
        self.mempool.remove(entry.hash)
        self.store.update(entry.hash, status=OpStatus.DROPPED, reason=reason, error_code=code)

    async def bundle(self, ep: EntryPointVersion) -> BundleResult | None:
        """One bundle for `ep` on the next executor key (waiting for it if all are busy)."""
        header = await self.head.fresh()
        executor = self._pick_executor()
        entries = self._select(ep, header)
        if not entries:
            return None
        return await self._launch(executor, ep, entries)

    async def _bundle_selected(self, executor: Executor, ep: EntryPointVersion, header,
                               selected: list[PoolEntry]) -> BundleResult | None:
        selected = [e for e in selected if self.mempool.get(e.hash) is e]  # evicted meanwhile
        dropped: dict[str, str] = {}
        beneficiary = self.config.beneficiary or executor.address
        outcome = None
        while selected:
            outcome = await self.simulator.simulate_bundle(
                [e.op for e in selected], ep, header, beneficiary=beneficiary, sender=executor.address
            )
            if outcome.success:
                break
            if outcome.failed_op_index is None:
                log.error("bundle simulation failed outside any op: %s", outcome.failure,
                          extra={"op_hashes": [e.hash for e in selected]})
                return None
            bad = selected.pop(outcome.failed_op_index)
            error = failure_error(outcome.failure, bad.op.paymaster)
            reason = f"failed in bundle simulation: {outcome.failure.message}"
            dropped[bad.hash] = reason
            self.drop(bad, reason, error.code)
        if not selected:
            return None
        return await self._send(ep, executor, selected, beneficiary, header, dropped)

    async def _send(self, ep, executor: Executor, entries: list[PoolEntry], beneficiary: str,
                    header, dropped: dict[str, str]) -> BundleResult:
        data = encode_handle_ops(entries, beneficiary)
        gas_limit = min(
            header.gas_limit,
            BUNDLE_OVERHEAD_GAS + sum(e.op.total_gas_limit() for e in entries) + 16 * len(data),
        )
        max_fee, priority = await suggest_fees(self.node, header)
        # the bundle must not pay more per gas than its ops pay the beneficiary
        priority = min(priority, min(e.op.max_priority_fee_per_gas for e in entries))
        max_fee = max(min(max_fee, min(e.op.max_fee_per_gas for e in entries)), header.base_fee)
        first_max_fee = max_fee
        nonce = await executor.next_nonce(self.node)
        sent: list[str] = []
        deadline_replace = time.monotonic() + self.config.tx_replace_after_s

        async def send_once(fee: int, prio: int) -> str:
            raw = executor.sign({
                "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": to_checksum_address(ep.address),
                "data": data, "value": 0, "gas": gas_limit,
                "maxFeePerGas": fee, "maxPriorityFeePerGas": prio,
            })
            return await self.node.send_raw_transaction(raw)

        try:
            tx_hash = await send_once(max_fee, priority)
        except NodeRpcError as e:
            executor.forget_nonce()
            log.warning("bundle transaction refused by the node: %s", e.message)
            raise BundlerError(f"bundle transaction refused by the node: {e.message}") from None
        executor.consumed(nonce)
        self.metrics.bundle("sent", len(entries))
        sent.append(tx_hash)
        for e in entries:
            e.submitted_in = tx_hash
            self.store.update(e.hash, status=OpStatus.SUBMITTED, tx_hash=tx_hash)
        log.info("sent bundle %s with %d ops from %s (nonce %d)", tx_hash, len(entries), executor.address, nonce,
                 extra={"op_hashes": [e.hash for e in entries]})

        receipt = None
        while receipt is None:
            for h in reversed(sent):
                receipt = await self.node.get_receipt(h)
                if receipt is not None:
                    break
            if receipt is not None:
                break
            if time.monotonic() > deadline_replace:
                bumped_fee = max_fee * (100 + self.config.fee_bump_percent) // 100
                if bumped_fee <= first_max_fee * self.config.max_fee_multiplier:
                    max_fee = bumped_fee
                    priority = max(priority * (100 + self.config.fee_bump_percent) // 100, priority + 1)
                    try:
                        new_hash = await send_once(max_fee, priority)
                        sent.append(new_hash)
                        self.metrics.bundle("replaced")
                        log.info("replaced stuck bundle %s with %s (maxFee %d)", sent[-2], new_hash, max_fee)
                    except NodeRpcError as e:
                        log.warning("fee bump refused: %s", e.message)
                deadline_replace = time.monotonic() + self.config.tx_replace_after_s
            await self.head.wait_new_block(self.head.latest.number if self.head.latest else None, 0.2)
        return self._settle(ep, entries, receipt, dropped)

    def _settle(self, ep, entries: list[PoolEntry], receipt: dict, dropped: dict[str, str]) -> BundleResult:
        tx_hash = receipt["transactionHash"]
        block = int(receipt["blockNumber"], 16)
        result = BundleResult(ep.address, tx_hash, block, "mined", dropped=dropped)
        self.metrics.bundle("mined" if receipt["status"] == "0x1" else "reverted")
        if receipt["status"] != "0x1":
            result.status = "reverted"
            log.warning("bundle %s reverted on chain; its ops go back to the pool", tx_hash)
            for e in entries:
                e.submitted_in = None
                self.store.update(e.hash, status=OpStatus.PENDING, tx_hash=None)
            return result
        for e in entries:
            if build_receipt(e.hash, receipt) is not None:
                self.mempool.remove(e.hash)
                self.store.update(e.hash, status=OpStatus.MINED, tx_hash=tx_hash, block_number=block,
                                  block_hash=receipt["blockHash"])
                result.included.append(e.hash)
            else:
                e.submitted_in = None
                self.store.update(e.hash, status=OpStatus.PENDING, tx_hash=None)
        return result
