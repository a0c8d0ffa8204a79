"""A client of the bundler's session relay (/relay/v1, docs/relay.md) and THE signed-request
scheme it uses (the bundler imports the scheme from here, like the session encoding).

Every request is signed by the caller's own secp256k1 key (a backend's credential key, or an
account owner's key): EIP-191 personal_sign of

    bundler-relay-v1\\n<METHOD>\\n<path with query>\\n<timestamp>\\n<nonce>\\n<sha256(body) hex>

    backend = RelayClient(bundler_url, backend_key)
    backend.register(name="minter")
    owner = RelayClient(bundler_url, owner_key, owner_account=account)
    grant = owner.prepare_grant(account, {"anyTarget": {}, "expiresIn": 3600}, credential_id=backend.credential_id)
    owner.activate(grant["grantId"], sign_digest(owner_key, bytes.fromhex(grant["enable"]["digest"][2:])))
    call = backend.execute(account, [{"to": token, "data": "0x…"}], idempotency_key="order-1")
    backend.wait_for_call(call["callId"])          # {"status": "mined", "receipt": {...}}
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import urllib3
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct

SCHEME = "bundler-relay-v1"
HEADER_TIMESTAMP = "X-Relay-Timestamp"
HEADER_NONCE = "X-Relay-Nonce"
HEADER_SIGNATURE = "X-Relay-Signature"
HEADER_CREDENTIAL = "X-Relay-Credential"
HEADER_OWNER = "X-Relay-Owner"


def canonical_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join((SCHEME, method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()))


def message_digest(message: str) -> bytes:
    """The EIP-191 personal_sign digest of the message."""
    return bytes(defunct_hash_message(text=message))


def _key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, str):
        return bytes.fromhex(private_key[2:] if private_key.startswith("0x") else private_key)
    return bytes(private_key)


def sign_request(private_key: bytes | str, method: str, path: str, body: bytes = b"",
                 timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The X-Relay-Timestamp / -Nonce / -Signature headers of a request (or a webhook)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or os.urandom(16).hex()
    digest = message_digest(canonical_message(method, path, ts, nonce, body))
    sig = PrivateKey(_key_bytes(private_key)).sign_recoverable(digest, hasher=None)
    return {HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce,
            HEADER_SIGNATURE: "0x" + (sig[:64] + bytes((sig[64] + 27,))).hex()}


def verify_webhook(webhook_signer: str, path: str, body: bytes, headers, max_skew_s: float = 300) -> bool:
    """True when a webhook the relay sent is signed by `webhook_signer` (GET /relay/v1/info) for
    this path and body, with a fresh timestamp."""
    def h(name: str):
        return headers.get(name) or headers.get(name.lower())

    ts, nonce, sig = h(HEADER_TIMESTAMP), h(HEADER_NONCE), h(HEADER_SIGNATURE)
    if not ts or not nonce or not sig or not ts.isdigit() or abs(int(ts) - time.time()) > max_skew_s:
        return False
    try:
        signer = Account.recover_message(encode_defunct(text=canonical_message("POST", path, ts, nonce, body)),
                                         signature=sig)
    except Exception:
        return False
    return signer.lower() == webhook_signer.lower()


class RelayError(Exception):
    """An error answer: HTTP status, code (the JSON-RPC code for a policy refusal), message, data
    (for a refusal the RPC's session data: rule, limit, used, pending, requested, ... and callId)."""

    def __init__(self, status: int, code, message: str, data: Any = None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.data = status, code, message, data


class RelayClient:
    def __init__(self, url: str, private_key: bytes | str, *, credential_id: str | None = None,
                 owner_account: str | None = None, timeout: float = 30.0, pool: urllib3.PoolManager | None = None):
        self.url = url.rstrip("/")
        self._key = _key_bytes(private_key)
        self.credential_id = credential_id
        self.owner_account = owner_account
        self.timeout = timeout
        self._pool = pool or urllib3.PoolManager(retries=False)

    def __repr__(self) -> str:  # never the key
        return f"RelayClient({self.url}, {self.address})"

    @property
    def address(self) -> str:
        return Account.from_key(self._key).address

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **sign_request(self._key, method, path, body)}
        if self.credential_id:
            headers[HEADER_CREDENTIAL] = self.credential_id
        if self.owner_account:
            headers[HEADER_OWNER] = self.owner_account
        resp = self._pool.request(method, self.url + path, body=body if method != "GET" else None, headers=headers,
                                  timeout=self.timeout)
        answer = json.loads(resp.data) if resp.data else None
        if resp.status >= 400:
            err = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
            raise RelayError(resp.status, err.get("code", resp.status), err.get("message", str(answer)), err.get("data"))
        return answer

    def _get(self, path: str) -> Any:
        return self.request("GET", path)

    def _post(self, path: str, payload: Any = None) -> Any:
        return self.request("POST", path, {} if payload is None else payload)

    # credentials
    def register(self, name: str = "", webhook_url: str | None = None) -> dict:
        cred = self._post("/relay/v1/credentials", {"address": self.address, "name": name,
                                                     **({"webhookUrl": webhook_url} if webhook_url else {})})
        self.credential_id = cred["credentialId"]
        return cred

    def credential(self) -> dict:
        return self._get("/relay/v1/credentials/me")

    def retire(self) -> dict:
        return self._post("/relay/v1/credentials/me/retire")

    # grants
    def prepare_grant(self, account: str, permissions: dict, *, credential_id: str | None = None,
                      mode: str = "enable") -> dict:
        body = {"account": account, "permissions": permissions, "mode": mode}
        if credential_id:
            body["credentialId"] = credential_id
        return self._post("/relay/v1/grants", body)

    def activate(self, grant_id: str, signature: bytes | str) -> dict:
        sig = signature if isinstance(signature, str) else "0x" + bytes(signature).hex()
        return self._post(f"/relay/v1/grants/{grant_id}/activate", {"signature": sig})

    def grant(self, grant_id: str) -> dict:
        return self._get(f"/relay/v1/grants/{grant_id}")

    def grants(self) -> list:
        return self._get("/relay/v1/grants")

    def revocation(self, grant_id: str) -> dict:
        return self._get(f"/relay/v1/grants/{grant_id}/revocation")

    def revoke(self, grant_id: str, owner_op: dict | None = None) -> dict:
        return self._post(f"/relay/v1/grants/{grant_id}/revoke", {"ownerOp": owner_op} if owner_op else {})

    # calls
    def execute(self, account: str, calls: list[dict], idempotency_key: str) -> dict:
        return self._post("/relay/v1/calls", {"account": account, "calls": calls, "idempotencyKey": idempotency_key})

    def call(self, call_id: str) -> dict:
        return self._get(f"/relay/v1/calls/{call_id}")

    def wait_for_call(self, call_id: str, timeout: float = 60.0, interval: float = 0.2) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            c = self.call(call_id)
            if c["status"] in ("mined", "dropped"):
                return c
            if time.monotonic() > deadline:
                raise TimeoutError(f"call {call_id} still {c['status']} after {timeout} s")
            time.sleep(interval)

    def audit(self) -> list:
        return self._get("/relay/v1/audit")

    def info(self) -> dict:
        return self._get("/relay/v1/info")
