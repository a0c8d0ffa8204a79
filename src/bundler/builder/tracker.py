"""Transaction tracker: the life of one bundle transaction nonce: sign, persist, broadcast,
follow its receipt, and replace it with higher fees while it is stuck, up to a cap. It knows
transactions, not ops: what the receipt means for the ops is settlement's business (Builder).

Every attempt is written to the store (raw signed bytes included) before it is broadcast, so a
process killed at any point finds its in-flight nonce on restart and follows it again (or
broadcasts the same signed bytes again if the node lost them) instead of signing a new
transaction for the same ops.
"""
from __future__ import annotations

import asyncio

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from eth_account.typed_transactions import TypedTransaction
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from ..chain.client import NodeRpcError
from ..chain.types import PinnedBlock
from ..errors import BundlerError, NodeError
from ..faults import crash_point
from ..store.records import InflightTx, TxAttempt
from .executor_key import Executor

log = logging.getLogger(__name__)

# how nodes word their refusals (geth, reth, erigon, nethermind, anvil)
_UNDERPRICED = ("underpriced", "fee too low", "gas price too low", "less than block base fee",
                "max fee per gas less than", "feecap", "fee cap")
_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown")
_NONCE_USED = ("nonce too low", "nonce has already been used", "oldnonce", "old nonce")


# receipt polls (0.2 s apart) after the executor's nonce moved past an in-flight bundle
FOREIGN_NONCE_GRACE_POLLS = 10
# gas of a plain value transfer: what fills a nonce gap
TRANSFER_GAS = 21_000


def _kind(e: NodeRpcError) -> str:
    msg = (e.message or "").lower()
    if any(s in msg for s in _KNOWN):
        return "known"
    if any(s in msg for s in _NONCE_USED):
        return "nonce_used"
    if any(s in msg for s in _UNDERPRICED):
        return "underpriced"
    return "other"


def bump(value: int, percent: int) -> int:
    return max(value * (100 + percent) // 100, value + 1)


class TxNode(Protocol):
    """The node calls the tracker makes (chain.client.NodeClient)."""

    async def send_raw_transaction(self, raw: bytes) -> str: ...
    async def batch(self, calls: list[tuple[str, list]]) -> list[Any]: ...
    async def get_nonce(self, address: str, tag: str = "pending") -> int: ...


class TxHead(Protocol):
    """The chain head as the tracker follows it (chain.head.HeadTracker)."""

    latest: PinnedBlock | None

    async def fresh(self) -> PinnedBlock: ...
    async def wait_new_block(self, after: int | None, timeout: float) -> PinnedBlock | None: ...


class InflightStore(Protocol):
    """Where in-flight nonces are persisted before they are broadcast (store.base.Store)."""

    async def record_bundle(self, inflight: InflightTx) -> None: ...
    def put_inflight(self, tx: InflightTx) -> None: ...
    def delete_inflight(self, executor: str, nonce: int) -> None: ...
    async def flush(self) -> None: ...


class TrackerConfig(Protocol):
    tx_replace_after_s: float
    fee_bump_percent: int
    max_fee_multiplier: int


@dataclass
class FollowResult:
    receipt: dict | None   # receipt of the attempt that was mined
    foreign: bool = False  # the nonce was used by a transaction this bundler did not record


class TransactionTracker:
    def __init__(self, node: TxNode, head: TxHead, store: InflightStore, config: TrackerConfig, chain_id: int):
        self.node = node
        self.head = head
        self.store = store
        self.config = config
        self.chain_id = chain_id
        # replacements the node refused as underpriced, for tests and metrics
        self.underpriced_refusals = 0
        # times a stuck bundle was due for replacement (whether or not a new attempt went out):
        # tests wait on it instead of sleeping through replacement periods
        self.replace_rounds = 0
        # nonces below a stuck bundle that the node had no transaction for, filled by us
        self.gap_fills = 0

    # -- signing ------------------------------------------------------------------------------
    def _sign(self, executor: Executor, tx: dict) -> TxAttempt:
        raw = executor.sign(tx)  # typed (EIP-2718) transaction: its hash is keccak of the bytes
        return TxAttempt(tx_hash="0x" + keccak(raw).hex(), raw="0x" + raw.hex(),
                         max_fee=tx["maxFeePerGas"], priority=tx["maxPriorityFeePerGas"])

    @staticmethod
    def _template(attempt: TxAttempt) -> dict:
        """The unsigned fields of a previous attempt (for a replacement with other fees)."""
        d = TypedTransaction.from_bytes(HexBytes(attempt.raw)).as_dict()
        tx = {"type": 2, "chainId": d["chainId"], "nonce": d["nonce"], "to": to_checksum_address(d["to"]),
              "data": bytes(d["data"]), "value": d["value"], "gas": d["gas"],
              "maxFeePerGas": d["maxFeePerGas"], "maxPriorityFeePerGas": d["maxPriorityFeePerGas"]}
        if d.get("authorizationList"):  # an EIP-7702 bundle keeps its authorizations
            tx["type"] = 4
            tx["authorizationList"] = [{**a, "address": to_checksum_address(a["address"])}
                                       for a in d["authorizationList"]]
        return tx

    # -- first broadcast ------------------------------------------------------------------------
    async def send_new(self, executor: Executor, ep_address: str, op_hashes: list[str], data: bytes,
                       gas_limit: int, max_fee: int, priority: int,
                       before_send: Callable[[InflightTx], None] | None = None,
                       authorizations: list[dict] | None = None, _retried: bool = False) -> InflightTx:
        """Sign and persist the first attempt for the executor's next nonce, then broadcast it.
        The in-flight record and the ops' submitted status are committed together first
        (store.record_bundle); then `before_send(inflight)` runs and the transaction is broadcast. With `authorizations` (EIP-7702 ops) it is a type-4 transaction.
        Raises BundlerError if the node refuses the transaction."""
        nonce = await executor.next_nonce(self.node)
        inflight = InflightTx(executor=executor.address, nonce=nonce, entry_point=ep_address, op_hashes=list(op_hashes))
        tx = {
            "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": to_checksum_address(ep_address),
            "data": data, "value": 0, "gas": gas_limit, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
        }
        if authorizations:
            tx.update(type=4, authorizationList=authorizations)
        attempt = self._sign(executor, tx)
        inflight.attempts.append(attempt)
        # the in-flight row and the ops' submitted status in one commit (ClaimLost: not ours any more)
        await self.store.record_bundle(inflight)
        if before_send is not None:
            before_send(inflight)
        crash_point("before_send")
        try:
            await self.node.send_raw_transaction(bytes.fromhex(attempt.raw[2:]))
        except NodeRpcError as e:
            if _kind(e) != "known":
                self.store.delete_inflight(inflight.executor, inflight.nonce)
                executor.forget_nonce()
                if _kind(e) == "nonce_used" and not _retried:
                    # the key was used elsewhere (an operator's manual transaction): the
                    # node's count is the truth; one retry with it
                    log.warning("executor %s nonce %d already used (%s); retrying with the node's nonce",
                                executor.address, nonce, e.message)
                    return await self.send_new(executor, ep_address, op_hashes, data, gas_limit, max_fee,
                                               priority, before_send, authorizations, _retried=True)
                log.warning("bundle transaction refused by the node: %s", e.message)
                raise BundlerError(f"bundle transaction refused by the node: {e.message}") from None
        executor.consumed(nonce)
        log.info("sent bundle %s with %d ops (executor %s nonce %d, maxFee %d, tip %d)", attempt.tx_hash,
                 len(op_hashes), executor.address, nonce, max_fee, priority, extra={"op_hashes": list(op_hashes)})
        crash_point("after_send")
        return inflight

    # -- replacement -----------------------------------------------------------------------------
    def fee_cap(self, inflight: InflightTx) -> int:
        return inflight.attempts[0].max_fee * self.config.max_fee_multiplier

    async def replace(self, inflight: InflightTx, executor: Executor) -> bool:
        """Send the same transaction with higher fees. A refusal as underpriced bumps again at
        once (the node may hold a pricier version of this nonce, or want a larger bump), until
        the node accepts or the cap is reached. Returns True if a new attempt was accepted."""
        last = inflight.current
        template = self._template(last)
        cap = self.fee_cap(inflight)
        fee, prio = last.max_fee, last.priority
        base_fee = self.head.latest.base_fee if self.head.latest else 0
        for _ in range(8):
            fee = bump(fee, self.config.fee_bump_percent)
            prio = bump(prio, self.config.fee_bump_percent)
            fee = max(fee, base_fee + prio)
            if fee > cap:
                fee = cap
                if fee <= last.max_fee:
                    log.warning("bundle %s (executor %s nonce %d) is stuck at the fee cap %d (%dx the first "
                                "attempt); not raising further", last.tx_hash, inflight.executor, inflight.nonce,
                                cap, self.config.max_fee_multiplier)
                    return False
            prio = min(prio, fee)
            attempt = self._sign(executor, {**template, "maxFeePerGas": fee, "maxPriorityFeePerGas": prio})
            inflight.attempts.append(attempt)
            self.store.put_inflight(inflight)
            await self.store.flush()
            try:
                await self.node.send_raw_transaction(bytes.fromhex(attempt.raw[2:]))
            except NodeRpcError as e:
                kind = _kind(e)
                if kind == "known":
                    return True
                inflight.attempts.pop()
                self.store.put_inflight(inflight)
                if kind == "underpriced":
                    self.underpriced_refusals += 1
                    log.info("replacement of %s at maxFee %d refused as underpriced (%s); bumping again",
                             last.tx_hash, fee, e.message)
                    continue
                if kind == "nonce_used":
                    log.info("replacement of %s refused: nonce %d already used (mined meanwhile)",
                             last.tx_hash, inflight.nonce)
                    return False
                log.warning("replacement of %s refused: %s", last.tx_hash, e.message)
                return False
            log.info("replaced stuck bundle %s with %s (maxFee %d -> %d, tip %d -> %d)", last.tx_hash,
                     attempt.tx_hash, last.max_fee, fee, last.priority, prio)
            return True
        return False

    # -- nonce gaps ------------------------------------------------------------------------------
    async def fill_gap(self, inflight: InflightTx, executor: Executor, mined_nonce: int) -> bool:
        """A bundle can wait behind nonces the node holds no transaction for: a reorg dropped
        the transaction of a lower nonce while this one was being signed with the cached next
        nonce. No fee makes it minable then; a zero-value transfer to ourselves at each missing
        nonce does. Returns True if the gap was there (and filled)."""
        if mined_nonce >= inflight.nonce:
            return False
        try:
            pending = await self.node.get_nonce(inflight.executor, "pending")
        except NodeError:
            return False
        if pending >= inflight.nonce:  # every lower nonce is held: just stuck, bump it
            return False
        fee, prio = inflight.current.max_fee, inflight.current.priority
        for nonce in range(max(pending, mined_nonce), inflight.nonce):
            filler = executor.sign({"type": 2, "chainId": self.chain_id, "nonce": nonce,
                                    "to": to_checksum_address(executor.address), "data": b"", "value": 0,
                                    "gas": TRANSFER_GAS, "maxFeePerGas": fee, "maxPriorityFeePerGas": prio})
            try:
                await self.node.send_raw_transaction(filler)
            except NodeRpcError as e:  # taken meanwhile (mined, or sent by another process)
                log.info("nonce gap filler %d of executor %s refused: %s", nonce, inflight.executor, e.message)
                continue
            self.gap_fills += 1
            log.warning("bundle %s (executor %s nonce %d) waited behind a nonce gap: filled nonce %d with a "
                        "zero-value transfer", inflight.current.tx_hash, inflight.executor, inflight.nonce, nonce)
        return True

    # -- following ---------------------------------------------------------------------------------
    async def _poll(self, inflight: InflightTx) -> tuple[dict | None, int]:
        """(receipt of any attempt, executor's mined nonce) in one batched request."""
        calls = [("eth_getTransactionReceipt", [h]) for h in reversed(inflight.tx_hashes)]
        calls.append(("eth_getTransactionCount", [inflight.executor, "latest"]))
        results = await self.node.batch(calls)
        for r in results[:-1]:
            if r:
                return r, int(results[-1], 16)
        return None, int(results[-1], 16)

    async def follow(self, inflight: InflightTx, executor: Executor | None) -> FollowResult:
        """Wait until one attempt is mined, replacing it while stuck (only with an executor to sign).
        If the nonce gets used by a transaction we have no record of, say so (foreign)."""
        last_sent = max((a.sent_at for a in inflight.attempts), default=time.time())
        # replacement deadlines run on the monotonic clock from now on
        deadline = time.monotonic() + max(0.0, self.config.tx_replace_after_s - (time.time() - last_sent))
        while True:
            try:
                receipt, mined_nonce = await self._poll(inflight)
            except NodeError as e:
                log.warning("following bundle %s: %s", inflight.current.tx_hash, e.message)
                await self.head.wait_new_block(None, 1.0)
                continue
            if receipt is not None:
                return FollowResult(receipt)
            if mined_nonce > inflight.nonce:
                # mined between the two reads, or replaced by something we never recorded; a
                # loaded node can count the nonce before the receipt is readable, so give the
                # receipt a moment before calling the nonce foreign
                for _ in range(FOREIGN_NONCE_GRACE_POLLS):
                    receipt, _ = await self._poll(inflight)
                    if receipt is not None:
                        return FollowResult(receipt)
                    await asyncio.sleep(0.2)
                log.warning("nonce %d of executor %s was used by a transaction this bundler did not send; "
                            "the ops of %s go back to the pool", inflight.nonce, inflight.executor,
                            inflight.current.tx_hash)
                return FollowResult(None, foreign=True)
            if executor is not None and time.monotonic() > deadline:
                if not await self.fill_gap(inflight, executor, mined_nonce):
                    await self.replace(inflight, executor)
                self.replace_rounds += 1
                deadline = time.monotonic() + self.config.tx_replace_after_s
            latest = self.head.latest.number if self.head.latest else None
            await self.head.wait_new_block(latest, 0.2)
            if self.head.latest is None or self.head.latest.number == latest:
                try:
                    await self.head.fresh()
                except Exception:
                    pass

    async def resume(self, inflight: InflightTx, executor: Executor | None) -> FollowResult:
        """After a restart: if no attempt is mined and the node knows none of them, broadcast the
        latest signed attempt again (same nonce, same bytes), then follow as usual."""
        try:
            receipt, mined_nonce = await self._poll(inflight)
        except NodeError:
            return await self.follow(inflight, executor)
        if receipt is not None:
            return FollowResult(receipt)
        if mined_nonce <= inflight.nonce:
            known = await self.node.batch([("eth_getTransactionByHash", [h]) for h in inflight.tx_hashes])
            if not any(known):
                for attempt in reversed(inflight.attempts):
                    try:
                        await self.node.send_raw_transaction(bytes.fromhex(attempt.raw[2:]))
                        log.info("re-broadcast in-flight bundle %s (executor %s nonce %d) after restart",
                                 attempt.tx_hash, inflight.executor, inflight.nonce)
                        break
                    except NodeRpcError as e:
                        if _kind(e) == "known":
                            break
                        log.warning("re-broadcast of %s refused: %s", attempt.tx_hash, e.message)
        return await self.follow(inflight, executor)
