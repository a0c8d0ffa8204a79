"""Synchronous node access for the simulation workers: state reads at a pinned block.

Only standard eth_* methods are used (no debug_*/trace_*), so any node will do. Batches go
through pjrpc's requests backend; one HTTP keep-alive session per worker process.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import requests
from pjrpc.client.backend.requests import Client
from pjrpc.common.exceptions import BaseError as PjrpcError

from ..errors import NodeError

# One account = balance + nonce + code (three calls in one batch)
AccountTuple = tuple[int, int, bytes]


def _hex_to_int(value: str) -> int:
    return int(value, 16) if value not in ("0x", "") else 0


def _hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:]) if value else b""


class _TimeoutSession(requests.Session):
    """requests has no session-wide timeout; pjrpc's batch() passes no request kwargs."""

    def __init__(self, timeout: float):
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


class NodeReader:
    """Reads account state and storage from an Ethereum JSON-RPC node."""

    def __init__(self, url: str, timeout: float = 10.0, max_batch: int = 100):
        self.url = url
        self.max_batch = max_batch  # many providers cap JSON-RPC batch sizes
        self._session = _TimeoutSession(timeout)
        # keep the connection pool small: one worker does one thing at a time
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._client = Client(url, session=self._session)
        self.requests_sent = 0  # HTTP round trips (for tests and benchmarks)

    def close(self) -> None:
        self._session.close()

    def call(self, method: str, *params):
        self.requests_sent += 1
        try:
            return self._client.call(method, *params)
        except PjrpcError as exc:
            raise NodeError(f"node error on {method}: {exc}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise NodeError(f"node unreachable or bad answer on {method}: {exc}") from exc

    def _batch(self, calls: Sequence[tuple[str, tuple]]) -> list:
        results: list = []
        for start in range(0, len(calls), self.max_batch):
            results += self._one_batch(calls[start:start + self.max_batch])
        return results

    def _one_batch(self, calls: Sequence[tuple[str, tuple]]) -> list:
        self.requests_sent += 1
        try:
            with self._client.batch() as batch:
                for method, params in calls:
                    batch.call(method, *params)
            return list(batch.get_results())
        except PjrpcError as exc:
            raise NodeError(f"node error in state batch: {exc}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise NodeError(f"node unreachable or bad answer in state batch: {exc}") from exc

    def get_accounts_and_storage(
        self,
        addresses: Iterable[str],
        slots: Iterable[tuple[str, int]],
        block_tag: str,
    ) -> tuple[list[AccountTuple], list[int]]:
        """Balance, nonce and code of each address plus the given storage slots, in ONE batch."""
        addresses = list(addresses)
        slots = list(slots)
        calls: list[tuple[str, tuple]] = []
        for a in addresses:
            calls.append(("eth_getBalance", (a, block_tag)))
            calls.append(("eth_getTransactionCount", (a, block_tag)))
            calls.append(("eth_getCode", (a, block_tag)))
        for a, slot in slots:
            calls.append(("eth_getStorageAt", (a, hex(slot), block_tag)))
        results = self._batch(calls)
        accounts = [
            (_hex_to_int(results[3 * i]), _hex_to_int(results[3 * i + 1]), _hex_to_bytes(results[3 * i + 2]))
            for i in range(len(addresses))
        ]
        base = 3 * len(addresses)
        values = [_hex_to_int(results[base + i]) for i in range(len(slots))]
        return accounts, values

    def get_account(self, address: str, block_tag: str) -> AccountTuple:
        accounts, _ = self.get_accounts_and_storage([address], [], block_tag)
        return accounts[0]

    def get_storage(self, address: str, slot: int, block_tag: str) -> int:
        return _hex_to_int(self.call("eth_getStorageAt", address, hex(slot), block_tag))

    def get_block(self, tag: str = "latest") -> dict:
        block = self.call("eth_getBlockByNumber", tag, False)
        if block is None:
            raise NodeError(f"block {tag} not found")
        return block
