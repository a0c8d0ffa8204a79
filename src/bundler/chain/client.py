"""Async client of the Ethereum node (JSON-RPC over HTTP, batches through pjrpc)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pjrpc
from pjrpc.client.backend import aiohttp as pjrpc_aiohttp

from ..errors import NodeError
from .types import PinnedBlock

log = logging.getLogger(__name__)


class NodeRpcError(NodeError):
    """The node answered with a JSON-RPC error object; code/message/data are kept as sent."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message, data)
        self.code = code


class NodeClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._client: pjrpc_aiohttp.Client | None = None

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
        """Send several calls in one HTTP request; results in the same order."""
        if not calls:
            return []
        try:
            async with self._rpc().batch() as b:
                for method, params in calls:
                    b(method, *params)
            results = []
            for resp in b.get_response():
                if resp.is_error:
                    e = resp.error
                    assert isinstance(e, pjrpc.exceptions.JsonRpcError)  # is_error: the error is set
                    raise NodeRpcError(e.code, e.message, None if e.data is pjrpc.common.UNSET else e.data)
                results.append(resp.result)
            return results
        except pjrpc.exceptions.JsonRpcError as e:
            raise NodeRpcError(e.code, e.message) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise NodeError(f"node unreachable: {type(e).__name__}: {e}") from None

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
