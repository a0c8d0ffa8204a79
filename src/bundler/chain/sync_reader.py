"""Synchronous node access for the simulation workers: state reads at a pinned block.

Only standard eth_* methods are used (no debug_*/trace_*), so any node will do. JSON-RPC
(single calls and batches) is pjrpc's; the transport under it is a small pjrpc backend on
one keep-alive urllib3 connection per worker process, with orjson to encode and decode
(requests + json cost ~8x more CPU per node call: benchmarks/node_reader.py).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import orjson
import urllib3
from pjrpc.client import AbstractClient
from pjrpc.client import exceptions as pjrpc_exceptions
from pjrpc.common.exceptions import BaseError as PjrpcError

from ..errors import NodeError

# One account = balance + nonce + code (three calls in one batch)
AccountTuple = tuple[int, int, bytes]


def _hex_to_int(value: str) -> int:
    return int(value, 16) if value not in ("0x", "") else 0


def _hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:]) if value else b""


def _orjson_default(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)  # pjrpc's Request / BatchRequest
    if to_json is None:
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")
    return to_json()


def _orjson_dumps(obj: Any, cls: Any = None) -> bytes:  # pjrpc passes its encoder class
    # pjrpc's requests are dataclasses: let to_json() shape them, not orjson's dataclass support
    return orjson.dumps(obj, default=_orjson_default, option=orjson.OPT_PASSTHROUGH_DATACLASS)


def _orjson_loads(text: bytes | str, cls: Any = None) -> Any:
    return orjson.loads(text)


class HttpStatusError(urllib3.exceptions.HTTPError):
    """The node answered with a non-2xx HTTP status."""


class Urllib3Client(AbstractClient):
    """pjrpc client backend on a urllib3 connection pool (keep-alive), orjson as json codec.

    pjrpc builds and parses the JSON-RPC requests, responses and batches; this class only
    moves bytes. urllib3's own retries are off: a failed request is the caller's to handle.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, maxsize: int = 1, **kwargs: Any):
        kwargs.setdefault("json_loader", _orjson_loads)
        kwargs.setdefault("json_dumper", _orjson_dumps)
        super().__init__(**kwargs)
        parsed = urllib3.util.parse_url(url)
        self._path = parsed.request_uri or "/"
        self._pool = urllib3.connection_from_url(
            url, maxsize=maxsize, block=False, retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        self._headers = {"Content-Type": self._request_content_type}
        if parsed.auth:  # http://user:pass@host/
            self._headers.update(urllib3.util.make_headers(basic_auth=parsed.auth))

    # bytes, not pjrpc's declared str: orjson (our json_loader) decodes bytes without a copy
    def _request(self, request_text: str | bytes, is_notification: bool,  # type: ignore[override]
                 request_kwargs: Mapping[str, Any]) -> Optional[bytes]:
        resp = self._pool.urlopen("POST", self._path, body=request_text, headers=self._headers,
                                  redirect=False, preload_content=True)
        if not 200 <= resp.status < 300:
            raise HttpStatusError(f"HTTP {resp.status} from node")
        if is_notification:
            return None
        data = resp.data
        content_type = resp.headers.get("Content-Type", "")
        if data and content_type.split(";")[0] not in self._response_content_types:
            raise pjrpc_exceptions.DeserializationError(f"unexpected response content type: {content_type}")
        return data

    def close(self) -> None:
        self._pool.close()


class NodeReader:
    """Reads account state and storage from an Ethereum JSON-RPC node."""

    def __init__(self, url: str, timeout: float = 10.0, max_batch: int = 100):
        self.url = url
        self.max_batch = max_batch  # many providers cap JSON-RPC batch sizes
        # one connection: a worker does one thing at a time
        self._client = Urllib3Client(url, timeout=timeout, maxsize=1)
        self.requests_sent = 0  # HTTP round trips (for tests and benchmarks)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, *params):
        self.requests_sent += 1
        try:
            return self._client.call(method, *params)
        except PjrpcError as exc:
            raise NodeError(f"node error on {method}: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
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
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
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
