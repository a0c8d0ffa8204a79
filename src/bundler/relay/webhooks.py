"""Webhooks on a call's final state (mined, dropped): POSTed to the credential's webhookUrl,
signed by the relay's own key with the same scheme backends use for their requests (auth.py),
so a receiver verifies them against the address GET /relay/v1/info publishes. A delivery is
retried with exponential backoff (the `backoff` library) on connection errors and non-2xx
answers; the outcome goes to the audit trail.
"""
from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import aiohttp
import backoff

from ..store.relay import Credential, RelayStore
from . import auth

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    pass


class Webhooks:
    def __init__(self, store: RelayStore, signing_key: bytes, *, max_tries: int = 6, max_time_s: float = 120.0,
                 timeout_s: float = 10.0):
        self.store = store
        self._key = signing_key
        self.max_tries = max_tries
        self.max_time_s = max_time_s
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return "Webhooks()"

    def deliver(self, cred: Credential, event: str, payload: dict) -> None:
        """Fire and forget (the call's state is already stored); delivery runs in the background."""
        body = json.dumps({"type": event, "credentialId": cred.id, "data": payload}, sort_keys=True).encode()
        task = asyncio.get_running_loop().create_task(self._deliver(cred, event, payload.get("callId"), body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, cred: Credential, event: str, call_id: str | None, body: bytes) -> None:
        attempts = 0

        @backoff.on_exception(backoff.expo, (aiohttp.ClientError, asyncio.TimeoutError, DeliveryFailed),
                              max_tries=self.max_tries, max_time=self.max_time_s, factor=0.5, max_value=30,
                              logger=None)
        async def post() -> int:
            nonlocal attempts
            attempts += 1
            url = cred.webhook_url
            parts = urlsplit(url)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            headers = {"Content-Type": "application/json", **auth.sign_request(self._key, "POST", path, body)}
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            async with self._session.post(url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise DeliveryFailed(f"HTTP {resp.status}")
                return resp.status

        try:
            status = await post()
        except Exception as e:
            log.warning("relay: webhook %s of call %s to credential %s failed after %d attempt(s): %s",
                        event, call_id, cred.id, attempts, type(e).__name__)
            self.store.audit("webhook.failed", credential_id=cred.id, callId=call_id, webhookType=event,
                             attempts=attempts, error=f"{type(e).__name__}: {e}"[:300])
            return
        self.store.audit("webhook.delivered", credential_id=cred.id, callId=call_id, webhookType=event,
                         attempts=attempts, status=status)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._session is not None:
            await self._session.close()
