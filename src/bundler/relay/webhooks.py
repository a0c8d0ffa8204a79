"""Webhooks on a call's final state (mined, dropped): POSTed to the credential's webhookUrl,
signed by the relay's own key with the same scheme backends use for their requests (auth.py),
so a receiver verifies them against the address GET /relay/v1/info publishes. A delivery is
retried with exponential backoff (the `backoff` library) on connection errors and non-2xx
answers; the outcome goes to the audit trail.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from urllib.parse import urlsplit

import aiohttp
import backoff

from ..store.relay import Credential, RelayStore
from . import auth

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    pass


class AddressRefused(Exception):
    """The webhook's host is (or resolves to) an address the relay may not call."""


def _internal(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved or addr.is_multicast
            or addr.is_unspecified)


def refuse_internal_literal(url: str) -> None:
    """At registration: a literal internal address (or localhost) is refused at once."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        raise AddressRefused(f"webhook host {host} is this machine")
    try:
        internal = _internal(host)
    except ValueError:
        return  # a name: resolved and checked at each delivery
    if internal:
        raise AddressRefused(f"webhook address {host} is loopback, private or link-local")


async def refuse_internal_resolved(url: str) -> None:
    """At delivery: every address the host resolves to must be public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        if _internal(str(info[4][0])):
            raise AddressRefused(f"webhook host {host} resolves to {info[4][0]}, a loopback, private or "
                                 f"link-local address")


class Webhooks:
    def __init__(self, store: RelayStore, signing_key: bytes, *, max_tries: int = 6, max_time_s: float = 120.0,
                 timeout_s: float = 10.0, private_networks: bool = False):
        self.private_networks = private_networks
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
        url = cred.webhook_url
        if not url:  # deliver() is called only for credentials that have a webhook
            return
        attempts = 0

        @backoff.on_exception(backoff.expo, (aiohttp.ClientError, asyncio.TimeoutError, DeliveryFailed),
                              max_tries=self.max_tries, max_time=self.max_time_s, factor=0.5, max_value=30,
                              logger=None)
        async def post() -> int:
            nonlocal attempts
            attempts += 1
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
            if not self.private_networks:  # checked once per delivery (DNS may change meanwhile: see docs)
                await refuse_internal_resolved(url)
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
