"""JSON-RPC to the bundler, the node and an ERC-7677 paymaster service over HTTP (urllib3),
synchronous: what a backend needs to build, estimate, sponsor, send and follow its ops and read
its session."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from typing import Any

import urllib3

from .errors import RpcError
from .userop import UserOperation, format_user_operation

DEFAULT_TIMEOUT_S = 30.0


class JsonRpc:
    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, pool: urllib3.PoolManager | None = None):
        self.url = url
        self.timeout = timeout
        self._pool = pool or urllib3.PoolManager(retries=False)
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        resp = self._pool.request("POST", self.url, body=body.encode(), headers={"Content-Type": "application/json"},
                                  timeout=self.timeout)
        try:
            answer = json.loads(resp.data)
        except ValueError:
            raise RpcError(method, {"code": -32700, "message": f"HTTP {resp.status}: not JSON: {resp.data[:200]!r}"}) from None
        if "error" in answer:
            raise RpcError(method, answer["error"])
        return answer["result"]

    # node reads ------------------------------------------------------

    def eth_call(self, to: str, data: bytes, block: str = "latest") -> bytes:
        return bytes.fromhex(self.call("eth_call", {"to": to, "data": "0x" + data.hex()}, block)[2:])

    def get_code(self, address: str) -> bytes:
        return bytes.fromhex(self.call("eth_getCode", address, "latest")[2:])

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_timestamp(self) -> int:
        return int(self.call("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def transaction_count(self, address: str) -> int:
        return int(self.call("eth_getTransactionCount", address, "latest"), 16)


class BundlerClient(JsonRpc):
    """The ERC-4337 methods plus session_* and the gas price method of this bundler."""

    def supported_entry_points(self) -> list[str]:
        return [a.lower() for a in self.call("eth_supportedEntryPoints")]

    def estimate_user_operation_gas(self, op: UserOperation, entry_point: str) -> dict[str, int]:
        est = self.call("eth_estimateUserOperationGas", format_user_operation(op), entry_point)
        return {k: int(v, 16) for k, v in est.items()}

    def send_user_operation(self, op: UserOperation, entry_point: str) -> str:
        return self.call("eth_sendUserOperation", format_user_operation(op), entry_point)

    def get_user_operation_receipt(self, op_hash: str) -> dict | None:
        return self.call("eth_getUserOperationReceipt", op_hash)

    def get_user_operation_by_hash(self, op_hash: str) -> dict | None:
        return self.call("eth_getUserOperationByHash", op_hash)

    def wait_for_receipt(self, op_hash: str, timeout: float = 60.0, interval: float = 0.2) -> dict:
        """The op's receipt once mined; RpcError if the bundler dropped it (its reason and code);
        TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.get_user_operation_receipt(op_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"UserOperation {op_hash} not mined within {timeout} s")
            time.sleep(interval)

    def gas_price(self, tier: str = "fast") -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) from pimlico_getUserOperationGasPrice."""
        price = self.call("pimlico_getUserOperationGasPrice")[tier]
        return int(price["maxFeePerGas"], 16), int(price["maxPriorityFeePerGas"], 16)

    def get_session(self, account: str, session_key: str, entry_point: str | None = None) -> dict:
        """session_getSession as sent (amounts are 0x-hex strings; see docs/sessions.md)."""
        params = [account, session_key] + ([entry_point] if entry_point else [])
        return self.call("session_getSession", *params)

    def get_session_activity(self, account: str, session_key: str) -> list[dict]:
        return self.call("session_getActivity", account, session_key)


class PaymasterClient(JsonRpc):
    """An ERC-7677 paymaster service (pm_getPaymasterStubData / pm_getPaymasterData): this
    bundler serves it on its own URL and on /paymaster. `context` is passed as sent (e.g.
    {"policyId": "…"})."""

    def __init__(self, url: str, context: Any = None, timeout: float = DEFAULT_TIMEOUT_S,
                 pool: urllib3.PoolManager | None = None):
        super().__init__(url, timeout, pool)
        self.context = context

    def stub_data(self, op: UserOperation, entry_point: str, chain_id: int) -> dict:
        return self.call("pm_getPaymasterStubData", format_user_operation(op), entry_point, hex(chain_id), self.context)

    def data(self, op: UserOperation, entry_point: str, chain_id: int) -> dict:
        return self.call("pm_getPaymasterData", format_user_operation(op), entry_point, hex(chain_id), self.context)


def with_paymaster_fields(op: UserOperation, answer: dict) -> UserOperation:
    """The op with the paymaster fields of a pm_* answer (gas limits only when the answer names
    them: pm_getPaymasterData may leave the stub's in place)."""
    changes: dict[str, Any] = {"paymaster": answer["paymaster"].lower(),
                               "paymaster_data": bytes.fromhex(answer.get("paymasterData", "0x")[2:])}
    for key, attr in (("paymasterVerificationGasLimit", "paymaster_verification_gas_limit"),
                      ("paymasterPostOpGasLimit", "paymaster_post_op_gas_limit")):
        if answer.get(key) is not None:
            changes[attr] = int(answer[key], 16)
    # EntryPoint v0.9: a paymaster signature outside the userOpHash (appended to paymasterAndData)
    changes["paymaster_signature"] = bytes.fromhex((answer.get("paymasterSignature") or "0x")[2:])
    return replace(op, **changes)
