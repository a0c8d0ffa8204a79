"""The session relay end to end over HTTP against a real `bundler dev` process (anvil, the
EntryPoints, SessionAccount, the pool and builder all real): the three flows of issue 13 and
the security properties (signed requests, tenancy, revoke / retire, keys never shown)."""
from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from eth_abi import encode

from bundler.entrypoint import V07
from bundler.relay import auth
from bundler.sessions import abi
from helpers.relay import DevBundler, RelayClient, register, wait_call, wait_grant
from helpers.sessions import (
    SessionAccountHandle, advance_time, block_timestamp, deploy_session_contracts, erc20_balance, get_balance,
    rpc, selector,
)

MINT = selector("mint(address,uint256)")
TRANSFER = selector("transfer(address,uint256)")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    d = DevBundler(tmp_path_factory.mktemp("relay"))
    d.dep = deploy_session_contracts(d.node_url)  # idempotent: the addresses bundler dev deployed
    d.chain_id = int(rpc(d.node_url, "eth_chainId", []), 16)
    d.clients: list[RelayClient] = []
    d.session_keys: dict[str, bytes] = {}  # session address -> secret, read back from the store
    yield d
    d.stop()


def _account(dev) -> SessionAccountHandle:
    return SessionAccountHandle.create(dev.node_url, dev.chain_id, V07, dev.dep)


def _owner(dev, acct: SessionAccountHandle) -> RelayClient:
    c = RelayClient(dev.url, bytes.fromhex(acct.owner_key[2:]), owner_account=acct.address)
    dev.clients.append(c)
    return c


def _backend(dev, name: str, **kw) -> RelayClient:
    c = register(dev.url, name, **kw)
    dev.clients.append(c)
    return c


def _remember_key(dev, grant_id: str) -> None:
    """Read the grant's encrypted key from the store file and decrypt it with the master key the
    test gave the process: the secret the leak checks search for."""
    import sqlite3

    conn = sqlite3.connect(dev.data_dir / "bundler.sqlite")
    try:
        row = conn.execute("SELECT session_address, encrypted_key FROM relay_grants WHERE id = ?",
                           (grant_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None and row[1] is not None
    dev.session_keys[row[0]] = Fernet(dev.master_key.encode()).decrypt(row[1].encode())


def _mint(token: str, to: str, amount: int) -> str:
    return "0x" + (MINT + encode(["address", "uint256"], [to, amount])).hex()


def _transfer(to: str, amount: int) -> str:
    return "0x" + (TRANSFER + encode(["address", "uint256"], [to, amount])).hex()


def _activate_enable(dev, grant: dict, acct: SessionAccountHandle) -> dict:
    sig = abi.sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:]))
    anyone = RelayClient(dev.url, os.urandom(32))  # the signature itself authenticates
    dev.clients.append(anyone)
    return anyone.ok(anyone.post(f"/relay/v1/grants/{grant['grantId']}/activate", {"signature": "0x" + sig.hex()}), 200)


def _execute(backend: RelayClient, account: str, calls: list[dict], key: str | None = None):
    return backend.post("/relay/v1/calls", {"account": account, "calls": calls,
                                            "idempotencyKey": key or os.urandom(8).hex()})


# ---------------------------------------------------------------- flow 1


def test_flow1_any_target_no_eth_three_hours_minting_for_a_user(dev):
    """A backend with any target, no ETH and a 3-hour expiry mints for a user; the owner signs
    the EIP-712 enable data once; several calls are in flight in different nonce lanes."""
    acct = _account(dev)
    owner = _owner(dev, acct)
    backend = _backend(dev, "minter")
    user = "0x" + os.urandom(20).hex()
    now = block_timestamp(dev.node_url)
    grant = owner.ok(owner.post("/relay/v1/grants", {
        "credentialId": backend.credential_id, "account": acct.address,
        "permissions": {"anyTarget": {"maxValuePerUse": 0}, "expiresIn": 3 * 3600}}), 201)
    assert grant["status"] == "prepared" and grant["mode"] == "enable"
    assert now + 3 * 3600 <= grant["spec"]["validUntil"] <= now + 3 * 3600 + 120
    assert grant["enable"]["typedData"]["primaryType"] == "EnableSession"
    _remember_key(dev, grant["grantId"])
    activated = _activate_enable(dev, grant, acct)
    assert activated["status"] == "authorized"

    first = backend.ok(_execute(backend, acct.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, user, 100)}],
                                key="mint-1"), 202)
    assert first["status"] == "pending" and first["userOpHash"]
    # the same idempotency key answers the same call, no second op
    again = backend.ok(_execute(backend, acct.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, user, 100)}],
                                key="mint-1"), 200)
    assert again["callId"] == first["callId"] and again["userOpHash"] == first["userOpHash"]
    mined = wait_call(backend, first["callId"])
    assert mined["status"] == "mined", mined
    assert mined["receipt"]["success"] is True
    assert erc20_balance(dev.node_url, dev.dep.token, user) == 100
    wait_grant(backend, grant["grantId"], "active")

    # several calls in flight at once, in different lanes
    ids = [backend.ok(_execute(backend, acct.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, user, i)}]),
                      202)["callId"] for i in range(1, 5)]
    views = [wait_call(backend, i) for i in ids]
    assert [v["status"] for v in views] == ["mined"] * 4, views
    assert len({v["lane"] for v in views}) >= 2, views
    assert erc20_balance(dev.node_url, dev.dep.token, user) == 100 + 1 + 2 + 3 + 4

    # no ETH: a call with value is refused with the RPC's structured session data
    refused = _execute(backend, acct.address, [{"to": user, "value": "0x1", "data": _mint(dev.dep.token, user, 1)}])
    assert refused.status == 422, refused.text
    err = refused.body["error"]
    assert err["code"] == -32500 and err["data"]["rule"] == "SessionValueExceedsPerUse", err
    assert err["data"]["sessionKey"].lower() == grant["sessionKey"].lower() and err["data"]["callId"]
    assert wait_call(backend, err["data"]["callId"])["status"] == "dropped"
