"""Two bundler instances on one PostgreSQL database share one relay: a credential registered at
one is known to the other, a grant prepared at one is activated and used at the other, call
status, idempotency keys and request nonces (replays) are shared."""
from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.fernet import Fernet

from bundler.entrypoint import V07
from session_sdk.signatures import sign_digest
from helpers.inproc import running_bundler
from helpers.relay import RelayClient, register, wait_call, wait_grant
from helpers.sessions import SessionAccountHandle, deploy_session_contracts, erc20_balance, selector

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
        sig = sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:]))
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
        done = await run(wait_call, backend_a, first["callId"])
        assert done["status"] == "mined" and erc20_balance(chain.url, chain.dep.token, user) == 5
        await run(wait_grant, backend_b, grant["grantId"], "active")

        # both instances take calls for the same account at the same time: each builds in lanes of
        # its own, so no two ops collide on a nonce and every call is mined (a call held back by the
        # account's pending-op cap is dispatched later by whichever instance's loop takes it, so a
        # lane belongs to the instance that built the op, not necessarily to the one that took the POST)
        def burst(client, tag):
            out = []
            for i in range(3):
                out.append(client.ok(client.post("/relay/v1/calls", {
                    "account": acct.address, "idempotencyKey": f"{tag}-{i}",
                    "calls": [{"to": chain.dep.token, "data": data}]}), 202)["callId"])
            return out
        ids_a, ids_b = await asyncio.gather(run(burst, backend_a, "a"), run(burst, backend_b, "b"))
        views = [await run(wait_call, backend_a, i) for i in ids_a + ids_b]
        assert [v["status"] for v in views] == ["mined"] * 6, views
        bases = {a.relay.service.builder.lanes.base, b.relay.service.builder.lanes.base}
        count = a.relay.service.builder.lanes.count
        assert len(bases) == 2, bases
        slots = [(v["lane"], v["nonce"]) for v in views]
        assert len(set(slots)) == len(slots), slots  # no two ops on one nonce
        owners = [[base for base in bases if base < v["lane"] <= base + count] for v in views]
        assert all(len(o) == 1 for o in owners), (bases, [v["lane"] for v in views])  # one instance's lane each
        assert erc20_balance(chain.url, chain.dep.token, user) == 5 * 7

        # a request signed once is accepted once, whichever instance sees it first
        path = "/relay/v1/credentials/me"
        headers = backend_a.headers("GET", path, b"")
        assert (await run(backend_a.raw, "GET", path, b"", headers)).status == 200
        replayed = await run(backend_b.raw, "GET", path, b"", headers)
        assert replayed.status == 401 and "replayed" in replayed.body["error"]["message"]

        # both instances' follower loops ran over the same calls: each finished once
        events = backend_b.ok(await run(backend_b.get, "/relay/v1/audit"), 200)
        mined = [e["detail"]["callId"] for e in events if e["event"] == "call.mined"]
        assert sorted(mined) == sorted({first["callId"], *ids_a, *ids_b}), events
