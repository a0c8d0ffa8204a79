"""Two bundler instances on one PostgreSQL database share one relay: a credential registered at
one is known to the other, a grant prepared at one is activated and used at the other, call
status, idempotency keys and request nonces (replays) are shared."""
from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.fernet import Fernet

from bundler.entrypoint import V07
from bundler.sessions import abi
from helpers.inproc import running_bundler
from helpers.relay import RelayClient, register, wait_call, wait_grant
from helpers.sessions import SessionAccountHandle, deploy_session_contracts, erc20_balance, selector
from test_postgres_store import dsn, pg  # noqa: F401  (fixtures)

MINT = selector("mint(address,uint256)")


@pytest.fixture(scope="module")
def sessions_chain(chain):
    chain.dep = deploy_session_contracts(chain.url)  # before the bundlers start: they discover it
    return chain


async def test_two_instances_share_one_relay(sessions_chain, dsn):  # noqa: F811
    chain = sessions_chain
    master = [Fernet.generate_key().decode()]
    settings = dict(store="postgres", postgres_dsn=dsn, relay=True, relay_master_key=master, bundle_mode="auto",
                    rate_limit_per_s=0)
    async with running_bundler(chain, **settings) as (a, _ca), running_bundler(chain, **settings) as (b, _cb):
        def run(fn, *args, **kw):  # the clients are synchronous: keep the event loop serving
            return asyncio.to_thread(fn, *args, **kw)

        acct = SessionAccountHandle.create(chain.url, chain.chain_id, V07, chain.dep)
        backend_a = await run(register, a.url, "shared")
        backend_b = RelayClient(b.url, backend_a.key, credential_id=backend_a.credential_id)
        owner_b = RelayClient(b.url, bytes.fromhex(acct.owner_key[2:]), owner_account=acct.address)
        assert (await run(backend_b.get, "/relay/v1/credentials/me")).status == 200

        grant = backend_b.ok(await run(owner_b.post, "/relay/v1/grants", {
            "credentialId": backend_a.credential_id, "account": acct.address,
            "permissions": {"anyTarget": {}, "expiresIn": 3600}}), 201)
        sig = abi.sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:]))
        activated = await run(backend_a.post, f"/relay/v1/grants/{grant['grantId']}/activate",
                              {"signature": "0x" + sig.hex()})
        assert activated.status == 200 and activated.body["status"] == "authorized"

        user = "0x" + os.urandom(20).hex()
        data = "0x" + (MINT + bytes(12) + bytes.fromhex(user[2:]) + (5).to_bytes(32, "big")).hex()
        body = {"account": acct.address, "idempotencyKey": "shared-1", "calls": [{"to": chain.dep.token, "data": data}]}
        first = backend_b.ok(await run(backend_b.post, "/relay/v1/calls", body), 202)
        # the same idempotency key at the other instance: the same call
        again = backend_a.ok(await run(backend_a.post, "/relay/v1/calls", body), 200)
        assert again["callId"] == first["callId"]
        mined = await run(wait_call, backend_a, first["callId"])
        assert mined["status"] == "mined" and erc20_balance(chain.url, chain.dep.token, user) == 5
        await run(wait_grant, backend_b, grant["grantId"], "active")

        # a request signed once is accepted once, whichever instance sees it first
        path = "/relay/v1/credentials/me"
        headers = backend_a.headers("GET", path, b"")
        assert (await run(backend_a.raw, "GET", path, b"", headers)).status == 200
        replayed = await run(backend_b.raw, "GET", path, b"", headers)
        assert replayed.status == 401 and "replayed" in replayed.body["error"]["message"]

        # both instances' follower loops ran over the same call: it finished once
        events = [e["event"] for e in backend_b.ok(await run(backend_b.get, "/relay/v1/audit"), 200)]
        assert events.count("call.mined") == 1, events
