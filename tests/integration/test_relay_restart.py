"""The relay's state is in the store: after a restart on the same data dir a credential still
signs in, a nonce used before is still refused, a call accepted before is followed to mined, and
a bundler given the wrong master key refuses to start, saying why."""
from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.fernet import Fernet

from bundler.entrypoint import V07
from session_sdk.signatures import sign_digest
from helpers.inproc import new_key, running_bundler
from helpers.relay import RelayClient, register, wait_call, wait_grant
from helpers.sessions import SessionAccountHandle, deploy_session_contracts, selector

MINT = selector("mint(address,uint256)")


async def test_relay_state_survives_a_restart(chain, tmp_path):
    dep = deploy_session_contracts(chain.url)  # before the bundlers start: they discover it
    master = Fernet.generate_key().decode()
    settings = dict(data_dir=str(tmp_path / "data"), relay=True, relay_master_key=[master], bundle_mode="manual",
                    rate_limit_per_s=0)
    key = new_key(chain.url)  # one executor key for both runs (its nonce carries on)

    def run(fn, *args, **kw):  # synchronous clients, off the event loop the bundler serves on
        return asyncio.to_thread(fn, *args, **kw)

    acct = SessionAccountHandle.create(chain.url, chain.chain_id, V07, dep)
    async with running_bundler(chain, private_key=[key], **settings) as (a, _):
        backend = await run(register, a.url, "restart")
        owner = RelayClient(a.url, bytes.fromhex(acct.owner_key[2:]), owner_account=acct.address)
        grant = owner.ok(await run(owner.post, "/relay/v1/grants", {
            "credentialId": backend.credential_id, "account": acct.address, "permissions": {"anyTarget": {}}}), 201)
        sig = sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:]))
        owner.ok(await run(owner.post, f"/relay/v1/grants/{grant['grantId']}/activate", {"signature": "0x" + sig.hex()}))
        data = "0x" + (MINT + bytes(12) + bytes.fromhex(acct.address[2:]) + (9).to_bytes(32, "big")).hex()
        call = backend.ok(await run(backend.post, "/relay/v1/calls", {
            "account": acct.address, "idempotencyKey": "before-restart", "calls": [{"to": dep.token, "data": data}]}), 202)
        assert call["status"] == "pending"  # manual bundling: still in the pool when we stop
        path = "/relay/v1/credentials/me"
        used_headers = backend.headers("GET", path, b"")
        assert (await run(backend.raw, "GET", path, b"", used_headers)).status == 200

    async with running_bundler(chain, private_key=[key], **settings) as (b, rpc_b):
        backend.url = owner.url = b.url
        assert (await run(backend.get, path)).status == 200
        replayed = await run(backend.raw, "GET", path, b"", used_headers)
        assert replayed.status == 401 and "replayed" in replayed.body["error"]["message"]
        assert (await run(backend.get, f"/relay/v1/calls/{call['callId']}")).body["status"] == "pending"
        await rpc_b.call("debug_bundler_sendBundleNow")
        mined = await run(wait_call, backend, call["callId"])
        assert mined["status"] == "mined" and mined["receipt"]["success"] is True
        await run(wait_grant, backend, grant["grantId"], "active")

    from bundler.app import Bundler
    from conftest import bundler_config

    wrong = Bundler(bundler_config(chain, private_key=[key], **{**settings, "relay_master_key": [
        Fernet.generate_key().decode()]}))
    try:
        with pytest.raises(SystemExit, match="do not decrypt with the configured master key"):
            await wrong.start()
    finally:
        await wrong.stop()


async def test_relay_routes_share_the_per_client_rate_limit(chain, tmp_path):
    import aiohttp

    async with running_bundler(chain, relay=True, relay_master_key=[Fernet.generate_key().decode()],
                               rate_limit_per_s=1, rate_limit_burst=3, rate_limit_exempt_loopback=False) as (b, _):
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(6):
                async with session.get(b.url + "/relay/v1/info") as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
                        assert (await r.json())["error"]["code"] == "rate_limited"
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses


async def test_webhooks_to_internal_addresses_are_refused_outside_dev(chain, tmp_path):
    """A backend must not make the relay call services inside the operator's network."""
    async with running_bundler(chain, relay=True, relay_master_key=[Fernet.generate_key().decode()],
                               rate_limit_per_s=0) as (b, _):
        def attempt(url):
            client = RelayClient(b.url, os.urandom(32))
            return client.post("/relay/v1/credentials", {"address": client.address, "webhookUrl": url})

        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/x", "http://localhost:80/x",
                    "http://169.254.169.254/latest/meta-data"):
            refused = await asyncio.to_thread(attempt, url)
            assert refused.status == 400 and "webhookUrl" in refused.body["error"]["message"], (url, refused.text)
        assert (await asyncio.to_thread(attempt, "https://hooks.example.com/relay")).status == 201
        # a name is checked when it is resolved, at delivery
        from bundler.relay.webhooks import AddressRefused, refuse_internal_resolved

        with pytest.raises(AddressRefused):
            await refuse_internal_resolved("http://localhost:8080/x")
