"""Session relay: backends act for users' accounts through session keys this server holds.

    auth         signed requests (method, path, body digest, timestamp, nonce) and webhooks
    keystore     session keys: generated here, encrypted at rest (Fernet / MultiFernet rotation)
    permissions  the permissions JSON -> SessionSpec (through bundler.sessions)
    ops          nonce lanes, estimate, fees, signing, in-process submission to the pool
    service      credentials, grants, calls, revoke / retire, the per-block follower
    webhooks     signed deliveries with backoff
    routes       the HTTP API under /relay/v1; openapi: its OpenAPI document
    views        JSON shapes of the answers

Its state is in the bundler's store (store.relay: SQLite or PostgreSQL tables).
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from ..store.relay import RelayStore, open_relay_store
from .keystore import KeyDecryptError, KeyStore, MasterKeyError, address_of, load_master_keys
from .ops import BundlerServices
from .service import RelayService
from .metrics import RelayMetrics
from .webhooks import Webhooks

if TYPE_CHECKING:  # the app builds the relay; only the type goes this way
    from ..app import Bundler

log = logging.getLogger(__name__)

WEBHOOK_KEY_META = "webhook_signing_key"


class Relay:
    """The relay inside one bundler process: its store, service, webhooks and follower task."""

    def __init__(self, bundler: Bundler, *, dev_data_dir: str | None = None):
        # the relay's composition root: it takes the app's parts and hands each service only the
        # typed ones it uses (BundlerServices, the lookup, sessions, its own store)
        config = bundler.config
        if bundler.store is None:
            raise RuntimeError("the relay is built after the bundler has opened its store")
        bundler_store = bundler.store
        self.keys = KeyStore(load_master_keys(config, dev_data_dir))
        self.store: RelayStore = open_relay_store(config, bundler_store)
        webhook_secret = self._webhook_key()
        self.webhook_signer = address_of(webhook_secret)
        self.webhooks = Webhooks(self.store, webhook_secret, max_tries=config.relay_webhook_max_tries,
                                 private_networks=config.relay_webhook_private_networks)
        del webhook_secret
        services = BundlerServices(
            chain_id=bundler.chain_id, entry_points=bundler.entry_points, node=bundler.node, head=bundler.head,
            pool=bundler.pool, estimator=bundler.estimator, sessions=bundler.sessions,
            min_priority_fee=config.min_priority_fee, shared_store=bundler_store.shared,
            executor_addresses=tuple(e.address for e in bundler.executors))
        self.service = RelayService(bundler=services, lookup=bundler.lookup,
                                    sessions=bundler.sessions, store=self.store, keys=self.keys, config=config,
                                    webhooks=self.webhooks, webhook_signer=self.webhook_signer)
        self._task: asyncio.Task | None = None
        self.metrics = RelayMetrics(bundler.metrics.registry)
        self._rate_limiter = bundler.rate_limiter
        self.service.metrics = self.metrics

    def _webhook_key(self) -> bytes:
        """The relay's own key signing webhooks: made once, kept encrypted like the session keys
        (several instances sharing a store agree on the first one written)."""
        stored = self.store.get_meta(WEBHOOK_KEY_META)
        if stored is None:
            stored = self.store.add_meta(WEBHOOK_KEY_META, self.keys.encrypt_secret(os.urandom(32)))
        try:
            return self.keys.decrypt_secret(stored)
        except KeyDecryptError:
            self.store.close()
            raise MasterKeyError("the relay's stored keys do not decrypt with the configured master key(s): give "
                                 "the key they were written with (newest first, older ones after it)") from None

    def add_routes(self, app) -> None:
        from .routes import add_routes

        add_routes(app, self.service, self.metrics, self._rate_limiter)

    def start(self, supervisor=None) -> None:
        """The relay's loop, under the bundler's supervisor when given (restarted if it dies,
        named by /health; supervise.py)."""
        if supervisor is not None:
            self._task = supervisor.start("relay", self.service.run)
        else:
            self._task = asyncio.create_task(self.service.run(), name="relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.webhooks.close()
        self.store.close()


def rotate_master_key(store: RelayStore, keys: KeyStore) -> int:
    """Re-encrypt every stored session key and the webhook key under the newest master key;
    the number of keys re-encrypted. Afterwards the old master keys can be dropped."""
    n = 0
    for grant_id, encrypted in store.grants_with_keys():
        store.update_grant(grant_id, encrypted_key=keys.rotate(encrypted))
        n += 1
    stored = store.get_meta(WEBHOOK_KEY_META)
    if stored is not None:
        store.set_meta(WEBHOOK_KEY_META, keys.rotate(stored))
        n += 1
    store.audit("relay.master_key_rotated", keys=n)
    return n


__all__ = ["Relay", "RelayService", "rotate_master_key"]
