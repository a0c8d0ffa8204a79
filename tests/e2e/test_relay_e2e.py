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
from session_sdk.signatures import sign_digest
from session_sdk.calldata import encode_revoke_all_sessions
from helpers.relay import DevBundler, RelayClient, register, wait_call, wait_grant
from helpers.sessions import (
    SessionAccountHandle, advance_time, block_timestamp, compile_contracts, deploy_session_contracts, erc20_balance, get_balance,
    rpc, selector,
)

MINT = selector("mint(address,uint256)")
TRANSFER = selector("transfer(address,uint256)")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    compile_contracts()  # the process deploys build/contracts: compile first, the sources may be newer
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
    sig = sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:]))
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


# ---------------------------------------------------------------- flow 2


class WebhookReceiver:
    """A real HTTP server for the backend's webhooks; the first delivery is answered 500 so the
    relay has to retry."""

    def __init__(self):
        import http.server
        import threading

        received: list[tuple[str, dict, bytes]] = []
        self.received = received
        self.failures = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.failures == 0:
                    outer.failures += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                received.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/relay?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, call_id: str, timeout: float = 60.0) -> tuple[str, dict, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, headers, body in list(self.received):
                if json.loads(body)["data"]["callId"] == call_id:
                    return path, headers, body
            time.sleep(0.05)
        raise AssertionError(f"no webhook for call {call_id} within {timeout} s")

    def close(self):
        self.server.shutdown()


def _rpc_bundler(dev, method: str, *params):
    return rpc(dev.url, method, list(params))


def test_flow2_remote_backend_methods_and_value_limits_revoked_then_retired(dev):
    """A remote backend asks for access to certain methods with value limits; the owner signs the
    grant op once and goes offline; the backend executes within the limits (webhooks signed,
    retried); the owner revokes (pending calls dropped, key destroyed); the backend retires."""
    hooks = WebhookReceiver()
    try:
        acct = _account(dev)
        owner = _owner(dev, acct)
        backend = _backend(dev, "remote", webhook_url=hooks.url)
        payee = "0x" + os.urandom(20).hex()
        from helpers.sessions import erc20_mint

        erc20_mint(dev.node_url, dev.dep.token, acct.address, 1000)
        permissions = {
            "calls": [{"target": dev.dep.token, "function": "transfer(address,uint256)",
                       "constraints": [{"condition": "lte", "index": 1, "value": 50,
                                        "limit": {"kind": "lifetime", "amount": 200}}]}],
            "transfers": [{"target": payee, "maxValuePerUse": hex(10**15),
                           "valueLimit": {"kind": "lifetime", "amount": hex(2 * 10**15)}}],
            "expiresIn": 86400,
        }
        # the backend asks for access itself; the owner signs the grant op it returns
        grant = backend.ok(backend.post("/relay/v1/grants", {"account": acct.address, "mode": "ownerOp",
                                                             "permissions": permissions}), 201)
        assert grant["status"] == "prepared" and "ownerOp" in grant and "enable" not in grant
        _remember_key(dev, grant["grantId"])
        sig = sign_digest(acct.owner_key, bytes.fromhex(grant["ownerOp"]["userOpHash"][2:]))
        activated = owner.ok(owner.post(f"/relay/v1/grants/{grant['grantId']}/activate",
                                        {"signature": "0x" + sig.hex()}), 200)
        assert activated["status"] == "activating" and activated["activationOp"]
        wait_grant(backend, grant["grantId"], "active")
        spec, status, _nonce, _uses = acct.get_session(grant["sessionKey"].lower())
        assert status == 1 and spec.call_policies[0].selector == TRANSFER  # granted on chain

        # the owner is offline from here: the backend works within the limits
        ok = backend.ok(_execute(backend, acct.address, [{"to": dev.dep.token, "data": _transfer(payee, 40)}]), 202)
        assert wait_call(backend, ok["callId"])["status"] == "mined"
        assert erc20_balance(dev.node_url, dev.dep.token, payee) == 40
        too_much = _execute(backend, acct.address, [{"to": dev.dep.token, "data": _transfer(payee, 60)}])
        assert too_much.status == 422 and too_much.body["error"]["data"]["rule"] == "SessionArgConstraintFailed"
        other_method = _execute(backend, acct.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, payee, 1)}])
        assert other_method.status == 422
        assert other_method.body["error"]["data"]["rule"] == "SessionSelectorNotAllowed"
        before = get_balance(dev.node_url, payee)
        eth = backend.ok(_execute(backend, acct.address, [{"to": payee, "value": hex(10**15)}]), 202)
        assert wait_call(backend, eth["callId"])["status"] == "mined"
        assert get_balance(dev.node_url, payee) == before + 10**15
        over = _execute(backend, acct.address, [{"to": payee, "value": hex(2 * 10**15)}])
        assert over.status == 422 and over.body["error"]["data"]["rule"] == "SessionTransferExceedsPerUse"

        # webhooks: signed by the relay's key over the path, body and time; delivered after a retry
        info = backend.ok(backend.get("/relay/v1/info"), 200)
        path, headers, body = hooks.wait(ok["callId"])
        signer, _nonce = auth.signer_of("POST", path, headers, body, time.time(), 300)
        assert signer == info["webhookSigner"].lower() and path == "/hooks/relay?x=1"
        assert json.loads(body)["type"] == "call.mined" and hooks.failures == 1

        # pending calls, then the owner revokes: the calls are dropped and the key destroyed
        _rpc_bundler(dev, "debug_bundler_setBundlingMode", "manual")
        try:
            pending = [backend.ok(_execute(backend, acct.address, [{"to": dev.dep.token, "data": _transfer(payee, 5)}]),
                                  202) for _ in range(2)]
            assert all(p["status"] == "pending" for p in pending)
            revocation = owner.ok(owner.get(f"/relay/v1/grants/{grant['grantId']}/revocation"), 200)
            assert revocation["transaction"]["to"].lower() == acct.address
            op_sig = sign_digest(acct.owner_key, bytes.fromhex(revocation["ownerOp"]["userOpHash"][2:]))
            revoked = owner.ok(owner.post(f"/relay/v1/grants/{grant['grantId']}/revoke", {"ownerOp": {
                "userOp": revocation["ownerOp"]["userOp"], "signature": "0x" + op_sig.hex()}}), 200)
            assert revoked["status"] == "revoked" and revoked["keyDestroyed"] and revoked["revocationOp"]
            for p in pending:
                dropped = wait_call(backend, p["callId"], timeout=5)
                assert dropped["status"] == "dropped" and "revoked" in dropped["reason"], dropped
            _rpc_bundler(dev, "debug_bundler_sendBundleNow")
        finally:
            _rpc_bundler(dev, "debug_bundler_setBundlingMode", "auto")
        session = _rpc_bundler(dev, "session_getSession", acct.address, grant["sessionKey"])
        assert session["status"] == "revoked"
        assert erc20_balance(dev.node_url, dev.dep.token, payee) == 40  # the dropped calls never ran
        after = _execute(backend, acct.address, [{"to": dev.dep.token, "data": _transfer(payee, 1)}])
        assert after.status == 403, after.text

        events = [e["event"] for e in backend.ok(backend.get("/relay/v1/audit"), 200)]
        for wanted in ("credential.registered", "grant.prepared", "grant.authorized", "grant.active", "call.mined",
                       "call.dropped", "grant.revoked", "webhook.delivered"):
            assert wanted in events, (wanted, events)
        owner_events = owner.ok(owner.get("/relay/v1/audit"), 200)
        assert owner_events and all(e["account"].lower() == acct.address for e in owner_events)

        # the backend retires its credential: nothing it signs is accepted any more
        retired = backend.ok(backend.post("/relay/v1/credentials/me/retire"), 200)
        assert retired["status"] == "retired"
        assert backend.get("/relay/v1/credentials/me").status == 401
        assert _execute(backend, acct.address, [{"to": payee, "value": "0x1"}]).status == 401
    finally:
        hooks.close()


# ---------------------------------------------------------------- flow 3


def test_flow3_window_and_usage_limit_used_until_exhausted(dev):
    acct = _account(dev)
    owner = _owner(dev, acct)
    backend = _backend(dev, "limited")
    user = "0x" + os.urandom(20).hex()
    now = block_timestamp(dev.node_url)
    grant = owner.ok(owner.post("/relay/v1/grants", {
        "credentialId": backend.credential_id, "account": acct.address,
        "permissions": {"anyTarget": {}, "validAfter": now + 600, "validUntil": now + 7200, "usageLimit": 3}}), 201)
    assert grant["spec"]["validAfter"] == now + 600 and grant["spec"]["usageLimit"] == 3
    _remember_key(dev, grant["grantId"])
    _activate_enable(dev, grant, acct)
    mint = [{"to": dev.dep.token, "data": _mint(dev.dep.token, user, 7)}]

    early = _execute(backend, acct.address, mint)
    assert early.status == 422, early.text
    assert early.body["error"]["code"] == -32503 and early.body["error"]["data"]["rule"] == "SessionNotYetValid"

    advance_time(dev.node_url, 700)
    # the first call carries the grant (enable mode); the next ones wait for it, then go out
    ids = [backend.ok(_execute(backend, acct.address, mint), 202)["callId"] for _ in range(3)]
    views = [wait_call(backend, i) for i in ids]
    assert [v["status"] for v in views] == ["mined"] * 3, views
    assert erc20_balance(dev.node_url, dev.dep.token, user) == 21
    assert wait_grant(backend, grant["grantId"], "active")["status"] == "active"

    exhausted = _execute(backend, acct.address, mint)
    assert exhausted.status == 422, exhausted.text
    assert exhausted.body["error"]["data"]["rule"] == "SessionUsageLimitReached"


def test_gas_budget_and_epoch_are_part_of_the_grant(dev):
    """The permissions' gas budget goes into the account's grant (SessionSpec v2) and is enforced
    by it; after revokeAllSessions (the account's epoch moved on) a new grant is signed for the
    new epoch and works."""
    from helpers.sessions import handle_ops

    acct = _account(dev)
    handle_ops(dev.node_url, V07, [acct.sign_owner(acct.build(encode_revoke_all_sessions()))])
    owner = _owner(dev, acct)
    backend = _backend(dev, "gas")
    mint = [{"to": dev.dep.token, "data": _mint(dev.dep.token, acct.address, 1)}]
    stingy = owner.ok(owner.post("/relay/v1/grants", {
        "credentialId": backend.credential_id, "account": acct.address,
        "mode": "ownerOp", "permissions": {"anyTarget": {}, "gasBudget": {"maxCostPerOp": "0x1"}}}), 201)
    assert stingy["spec"]["gas"]["maxCostPerOp"] == "0x1", stingy["spec"]
    _remember_key(dev, stingy["grantId"])
    sig = sign_digest(acct.owner_key, bytes.fromhex(stingy["ownerOp"]["userOpHash"][2:]))
    owner.ok(owner.post(f"/relay/v1/grants/{stingy['grantId']}/activate", {"signature": "0x" + sig.hex()}), 200)
    wait_grant(owner, stingy["grantId"], "active")
    refused = _execute(backend, acct.address, mint)
    assert refused.status == 422, refused.text
    assert refused.body["error"]["data"].get("rule") == "SessionGasCostExceedsPerOp", refused.text
    owner.ok(owner.post(f"/relay/v1/grants/{stingy['grantId']}/revoke"), 200)

    budget = owner.ok(owner.post("/relay/v1/grants", {
        "credentialId": backend.credential_id, "account": acct.address,
        "permissions": {"anyTarget": {}, "gasBudget": {"maxCostPerOp": hex(10**17),
                                                       "costLimit": {"kind": "lifetime", "amount": hex(10**18)}}}}), 201)
    assert budget["epoch"] == 1  # the enable data names the account's epoch after revokeAllSessions
    _remember_key(dev, budget["grantId"])
    _activate_enable(dev, budget, acct)
    call = backend.ok(_execute(backend, acct.address, mint), 202)
    assert wait_call(backend, call["callId"])["status"] == "mined"
    session = rpc(dev.url, "session_getSession", [acct.address, budget["sessionKey"]])
    gas = [lim for lim in session["limits"] if lim["scope"] == "gasCost"]
    assert gas and int(gas[0]["used"], 16) > 0, session["limits"]


def test_python_sdk_relay_client(dev):
    """session_sdk.RelayClient (sdk/python) drives the relay: register, grant, execute, refusal."""
    from session_sdk.relay import RelayClient as SdkRelay, RelayError, sign_request, verify_webhook

    acct = _account(dev)
    backend = SdkRelay(dev.url, os.urandom(32))
    assert backend.register(name="sdk")["credentialId"] == backend.credential_id
    owner = SdkRelay(dev.url, acct.owner_key, owner_account=acct.address)
    grant = owner.prepare_grant(acct.address, {"anyTarget": {}, "expiresIn": 600}, credential_id=backend.credential_id)
    _remember_key(dev, grant["grantId"])
    owner.activate(grant["grantId"], sign_digest(acct.owner_key, bytes.fromhex(grant["enable"]["digest"][2:])))
    mint = [{"to": dev.dep.token, "data": _mint(dev.dep.token, acct.address, 3)}]
    call = backend.execute(acct.address, mint, idempotency_key="sdk-1")
    assert backend.wait_for_call(call["callId"])["status"] == "mined"
    with pytest.raises(RelayError) as refused:
        backend.execute(acct.address, [{**mint[0], "value": "0x1"}], idempotency_key="sdk-2")
    assert refused.value.status == 422 and refused.value.data["rule"] == "SessionValueExceedsPerUse"
    # the webhook check the SDK offers accepts the relay's scheme and nothing else
    key = os.urandom(32)
    headers = sign_request(key, "POST", "/hook", b"{}")
    from bundler.relay.keystore import address_of

    assert verify_webhook(address_of(key), "/hook", b"{}", headers)
    assert not verify_webhook(address_of(key), "/hook", b"{ }", headers)
    assert not verify_webhook(address_of(os.urandom(32)), "/hook", b"{}", headers)


# ---------------------------------------------------------------- security


def test_unsigned_wrongly_signed_replayed_and_stale_requests_are_refused(dev):
    backend = _backend(dev, "auth")
    path = "/relay/v1/credentials/me"
    assert backend.ok(backend.get(path), 200)["credentialId"] == backend.credential_id

    unsigned = backend.raw("GET", path, b"", {auth.HEADER_CREDENTIAL: backend.credential_id})
    assert unsigned.status == 401 and "unsigned" in unsigned.body["error"]["message"]

    stranger = RelayClient(dev.url, os.urandom(32), credential_id=backend.credential_id)
    dev.clients.append(stranger)
    wrong = stranger.get(path)
    assert wrong.status == 401 and wrong.body["error"]["code"] == "unauthorized"

    # signed for one body, sent with another
    body = json.dumps({"account": "0x" + "11" * 20, "calls": [{"to": "0x" + "22" * 20}],
                       "idempotencyKey": "x"}).encode()
    headers = backend.headers("POST", "/relay/v1/calls", body)
    tampered = backend.raw("POST", "/relay/v1/calls", body.replace(b"x", b"y"), headers)
    assert tampered.status == 401
    # signed for another path
    moved = backend.raw("GET", "/relay/v1/grants", b"", backend.headers("GET", path, b""))
    assert moved.status == 401

    headers = backend.headers("GET", path, b"")
    assert backend.raw("GET", path, b"", headers).status == 200
    replayed = backend.raw("GET", path, b"", headers)
    assert replayed.status == 401 and "replayed" in replayed.body["error"]["message"]

    for skew in (-1000, 1000):
        stale = backend.request("GET", path, timestamp=int(time.time()) + skew)
        assert stale.status == 401 and "stale" in stale.body["error"]["message"], stale.text

    # registration is signed by the key it registers
    other = RelayClient(dev.url, os.urandom(32))
    dev.clients.append(other)
    assert other.post("/relay/v1/credentials", {"address": backend.address}).status == 401


def test_a_credential_reaches_only_accounts_that_authorised_it(dev):
    acct_a, acct_b = _account(dev), _account(dev)
    owner_a, owner_b = _owner(dev, acct_a), _owner(dev, acct_b)
    alice, mallory = _backend(dev, "alice"), _backend(dev, "mallory")
    grant = owner_a.ok(owner_a.post("/relay/v1/grants", {
        "credentialId": alice.credential_id, "account": acct_a.address,
        "permissions": {"anyTarget": {}, "expiresIn": 3600}}), 201)
    _remember_key(dev, grant["grantId"])
    _activate_enable(dev, grant, acct_a)
    call = alice.ok(_execute(alice, acct_a.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, acct_a.address, 1)}]),
                    202)
    assert wait_call(alice, call["callId"])["status"] == "mined"

    gid, cid = grant["grantId"], call["callId"]
    assert mallory.get(f"/relay/v1/grants/{gid}").status == 404
    assert mallory.get(f"/relay/v1/calls/{cid}").status == 404
    assert mallory.get(f"/relay/v1/grants/{gid}/revocation").status == 404
    assert mallory.post(f"/relay/v1/grants/{gid}/revoke").status == 404
    assert mallory.ok(mallory.get("/relay/v1/grants"), 200) == []
    assert all(e["credentialId"] == mallory.credential_id for e in mallory.ok(mallory.get("/relay/v1/audit"), 200))
    refused = _execute(mallory, acct_a.address, [{"to": dev.dep.token, "data": _mint(dev.dep.token, acct_a.address, 1)}])
    assert refused.status == 403
    # a credential asks access only for itself, an owner grants only their own account
    assert mallory.post("/relay/v1/grants", {"credentialId": alice.credential_id, "account": acct_a.address,
                                             "permissions": {"anyTarget": {}}}).status == 403
    assert owner_b.post("/relay/v1/grants", {"credentialId": mallory.credential_id, "account": acct_a.address,
                                             "permissions": {"anyTarget": {}}}).status == 403
    # mallory may ask for access to account A, but only A's owner can activate it
    asked = mallory.ok(mallory.post("/relay/v1/grants", {"account": acct_a.address,
                                                          "permissions": {"anyTarget": {}}}), 201)
    forged = sign_digest(acct_b.owner_key, bytes.fromhex(asked["enable"]["digest"][2:]))
    assert mallory.post(f"/relay/v1/grants/{asked['grantId']}/activate",
                        {"signature": "0x" + forged.hex()}).status == 401
    assert _execute(mallory, acct_a.address, [{"to": dev.dep.token, "data": "0x"}]).status == 403
    # an owner sees only their own account
    assert owner_b.get(f"/relay/v1/grants/{gid}").status == 404
    assert owner_b.get(f"/relay/v1/calls/{cid}").status == 404
    posing = RelayClient(dev.url, bytes.fromhex(acct_b.owner_key[2:]), owner_account=acct_a.address)
    dev.clients.append(posing)
    assert posing.get(f"/relay/v1/grants/{gid}").status == 401
    assert owner_a.ok(owner_a.get(f"/relay/v1/grants/{gid}"), 200)["grantId"] == gid


def test_openapi_document_describes_every_relay_route(dev):
    client = RelayClient(dev.url, os.urandom(32))
    dev.clients.append(client)
    doc = client.ok(client.get("/relay/v1/openapi.json"), 200)
    assert doc["openapi"].startswith("3.")
    from aiohttp import web

    from bundler.relay.routes import add_routes

    app = web.Application()
    add_routes(app, relay=None)  # route table only
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented


def test_session_keys_never_shown_and_unreadable_without_the_master_key(dev):
    """Runs last: every session key the relay made in this module (decrypted here with the master
    key the test gave the process) appears in no answer, no log line, no metric, and the store
    file holds them only encrypted."""
    assert len(dev.session_keys) >= 4
    secrets = []
    for secret in dev.session_keys.values():
        h = secret.hex()
        secrets += [h, h.upper(), "0x" + h]
    probe = RelayClient(dev.url, os.urandom(32))
    with urllib.request.urlopen(dev.url + "/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    # the relay's own counters are there (so the search below covers them)
    assert 'bundler_relay_calls_total{status="mined"}' in metrics
    assert 'bundler_relay_requests_total{route="POST /calls",status="422"}' in metrics
    assert 'bundler_relay_requests_total{route="GET /credentials/me",status="401"}' in metrics
    secrets += [dev.master_key]  # the master key (given in the environment) is never shown either
    texts = {"log": dev.log(), "metrics": metrics}
    # the child processes (simulation workers, anvil) did not inherit the master key
    children = Path(f"/proc/{dev.proc.pid}/task/{dev.proc.pid}/children").read_text().split()
    assert children
    for child in children:
        try:
            texts[f"environment of child {child}"] = Path(f"/proc/{child}/environ").read_bytes().decode(errors="replace")
            texts[f"command line of child {child}"] = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            pass
    for i, c in enumerate(dev.clients + [probe]):
        texts[f"answers of client {i}"] = "\n".join(c.seen)
    assert sum(len(c.seen) for c in dev.clients) > 50
    for where, text in texts.items():
        for s in secrets:
            assert s not in text, f"a session key appears in the {where}"
    # on disk: never in clear (raw bytes or hex) in the database, its WAL, or anything else there
    files = [p for p in Path(dev.data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "bundler.sqlite" for p in files)
    for p in files:
        data = p.read_bytes()
        for secret in dev.session_keys.values():
            assert secret not in data and secret.hex().encode() not in data, f"a session key in clear in {p}"
    import sqlite3

    conn = sqlite3.connect(Path(dev.data_dir) / "bundler.sqlite")
    try:
        rows = conn.execute("SELECT status, encrypted_key FROM relay_grants").fetchall()
    finally:
        conn.close()
    stored = [k for _s, k in rows if k is not None]
    assert stored and all(k is None for s, k in rows if s in ("revoked", "retired"))
    wrong = MultiFernet([Fernet(Fernet.generate_key())])
    for k in stored:
        with pytest.raises(InvalidToken):
            wrong.decrypt(k.encode())
