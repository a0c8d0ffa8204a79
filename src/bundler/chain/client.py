"""Async client of the Ethereum node (JSON-RPC over HTTP, batches through pjrpc).

The one async way to the node. `call`/`batch` raise on an error answer; `many` is the
coalescing batcher (formerly sessions/state.py's BatchRpc): every call queued during one
event-loop tick goes out as one JSON-RPC batch (chunks of `max_batch`), so a burst of session
reads costs one round trip, and a per-call error comes back as an `RpcCallError` value in its
place (an eth_call that reverts on an account that is not a SessionAccount): the caller decides.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, Sequence

import aiohttp
import pjrpc
from pjrpc.client.backend import aiohttp as pjrpc_aiohttp

from ..errors import NodeError
from .types import PinnedBlock

log = logging.getLogger(__name__)


class EthCaller(Protocol):
    """The node's eth_call, all an EntryPoint view read needs (NodeClient satisfies it)."""

    async def eth_call(self, to: str, data: bytes, tag: str = "latest") -> bytes: ...


class NodeRpcError(NodeError):
    """The node answered with a JSON-RPC error object; code/message/data are kept as sent."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message, data)
        self.code = code


class RpcCallError:
    """A JSON-RPC error answer to one call of a `NodeClient.many` batch (kept as a value)."""

    __slots__ = ("code", "message", "data")

    def __init__(self, code: int, message: str, data: Any = None):
        self.code, self.message, self.data = code, message, data

    def __repr__(self) -> str:
        return f"RpcCallError({self.code}, {self.message!r})"


def _error_value(e: pjrpc.exceptions.JsonRpcError) -> RpcCallError:
    return RpcCallError(e.code, e.message, None if e.data is pjrpc.common.UNSET else e.data)


class NodeClient:
    def __init__(self, url: str, timeout: float = 30.0, *, max_batch: int = 100):
        self.url = url
        self.max_batch = max_batch
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._client: pjrpc_aiohttp.Client | None = None
        self._queue: list[tuple[str, list, asyncio.Future]] = []
        self._scheduled = False
        self.requests_sent = 0  # HTTP round trips of `many` (tests, benchmarks)

    def _rpc(self) -> pjrpc_aiohttp.Client:
        if self._client is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=64)
            )
            self._client = pjrpc_aiohttp.Client(self.url, session=self._session)
        return self._client

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None

    async def call(self, method: str, *params: Any) -> Any:
        try:
            return await self._rpc().call(method, *params)
        except pjrpc.exceptions.JsonRpcError as e:
            raise NodeRpcError(e.code, e.message, None if e.data is pjrpc.common.UNSET else e.data) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise NodeError(f"node unreachable: {type(e).__name__}: {e}") from None

    async def batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        """Send several calls in one HTTP request; results in the same order (raises on the
        first error answer)."""
        results = await self._send_batch(calls)
        for result in results:
            if isinstance(result, RpcCallError):
                raise NodeRpcError(result.code, result.message, result.data)
        return results

    async def _send_batch(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        """One JSON-RPC batch; answers matched to calls by id, an error answer (or a missing
        one) as an RpcCallError in its place. Raises NodeError when the node is unreachable or
        answers something that is not JSON-RPC."""
        if not calls:
            return []
        try:
            async with self._rpc().batch() as b:
                for method, params in calls:
                    b(method, *params)
            answer = b.get_response()
        except pjrpc.exceptions.JsonRpcError as e:
            raise NodeRpcError(e.code, e.message) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            raise NodeError(f"node unreachable: {type(e).__name__}: {e}") from None
        if answer is None:
            raise NodeError("node sent no answer to a batch")
        if answer.is_error:  # the whole batch refused: every call gets that error
            whole = _error_value(answer.unwrap_error())
            return [whole for _ in calls]
        by_id = {r.id: r for r in answer}
        results: list[Any] = []
        for request in b.requests:
            response = by_id.get(request.id)
            if response is None:
                results.append(RpcCallError(-32603, "no answer in the batch"))
            elif response.is_error:
                results.append(_error_value(response.unwrap_error()))
            else:
                results.append(response.result)
        return results

    async def many(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        """Results in order, an error answer as an RpcCallError in its place; the calls join
        every other `many` of this event-loop tick in one batch. Raises NodeError only when the
        node cannot be reached or answers nonsense."""
        loop = asyncio.get_running_loop()
        futures = []
        for method, params in calls:
            fut = loop.create_future()
            self._queue.append((method, params, fut))
            futures.append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), self.max_batch):
            asyncio.ensure_future(self._send_chunk(queue[start:start + self.max_batch]))

    async def _send_chunk(self, chunk: list[tuple[str, list, asyncio.Future]]) -> None:
        self.requests_sent += 1
        try:
            results = await self._send_batch([(m, p) for m, p, _f in chunk])
        except Exception as e:  # reaches every waiting caller, never lost in a stray task
            error = e if isinstance(e, NodeError) else NodeError(f"node unreachable: {type(e).__name__}: {e}")
            for _m, _p, fut in chunk:
                if not fut.done():
                    fut.set_exception(error)
            return
        for (_m, _p, fut), result in zip(chunk, results):
            if not fut.done():
                fut.set_result(result)

    # convenience wrappers -------------------------------------------------
    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId"), 16)

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def get_block(self, tag: str | int = "latest", full: bool = False) -> dict | None:
        tag = hex(tag) if isinstance(tag, int) else tag
        return await self.call("eth_getBlockByNumber", tag, full)

    async def header(self, tag: str | int = "latest") -> PinnedBlock:
        block = await self.get_block(tag)
        if block is None:
            raise NodeError(f"block {tag} not found")
        return PinnedBlock.from_rpc(block)

    async def get_code(self, address: str, tag: str = "latest") -> bytes:
        return bytes.fromhex((await self.call("eth_getCode", address, tag))[2:])

    async def get_balance(self, address: str, tag: str = "latest") -> int:
        return int(await self.call("eth_getBalance", address, tag), 16)

    async def get_nonce(self, address: str, tag: str = "pending") -> int:
        return int(await self.call("eth_getTransactionCount", address, tag), 16)

    async def eth_call(self, to: str, data: bytes, tag: str = "latest", sender: str | None = None) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        return bytes.fromhex((await self.call("eth_call", tx, tag))[2:])

    async def send_raw_transaction(self, raw: bytes) -> str:
        return await self.call("eth_sendRawTransaction", "0x" + raw.hex())

    async def get_receipt(self, tx_hash: str) -> dict | None:
        return await self.call("eth_getTransactionReceipt", tx_hash)

    async def get_transaction(self, tx_hash: str) -> dict | None:
        return await self.call("eth_getTransactionByHash", tx_hash)

    async def get_logs(self, flt: dict) -> list[dict]:
        return await self.call("eth_getLogs", flt)
