"""The RPC edge against hostile callers, through real HTTP: only allow-listed node methods are
passed through (the node's accounts and signing stay out of reach), bodies must be JSON (no
cross-site form posts), CORS only as configured and never for debug_*, JSON-RPC 2.0's
`"id": null`, and a batch limit that states itself."""
from __future__ import annotations

import json
import os

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc as node_rpc
from helpers.accounts import mine
from helpers.bundlers import running_bundler

pytestmark = pytest.mark.asyncio

ORIGIN = "https://app.example"


def _req(method, *params, id=1):
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": list(params)}


async def _post(session, url, body, headers=None):
    async with session.post(url, data=json.dumps(body),
                            headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        text = await resp.text()
        return resp.status, resp.headers, (json.loads(text) if text else None)


# -- 3. no open proxy -------------------------------------------------------------------------
@pytest.mark.parametrize("method,params", [
    ("eth_sendTransaction", [{"from": ANVIL_ACCOUNT0, "to": ANVIL_ACCOUNT0, "value": "0x1"}]),
    ("eth_sign", [ANVIL_ACCOUNT0, "0x1234"]),
    ("eth_accounts", []),
    ("eth_signTypedData_v4", [ANVIL_ACCOUNT0, {}]),
    ("eth_sendRawTransaction", ["0x02"]),
    ("personal_sign", ["0x1234", ANVIL_ACCOUNT0]),
    ("anvil_setBalance", [ANVIL_ACCOUNT0, "0x0"]),
])
async def test_node_methods_off_the_allow_list_are_not_found(rpc, method, params):
    answer = await rpc.request(method, *params)
    assert answer["error"]["code"] == -32601, answer
    assert method in answer["error"]["message"]
    assert "result" not in answer


async def test_read_only_node_methods_are_passed_through(rpc, anvil):
    assert int(await rpc.call("eth_getBalance", ANVIL_ACCOUNT0, "latest"), 16) > 0
    assert await rpc.call("eth_blockNumber") == node_rpc(anvil.url, "eth_blockNumber", [])
    assert int(await rpc.call("eth_gasPrice"), 16) > 0
    block = await rpc.call("eth_getBlockByNumber", "latest", False)
    assert block["hash"].startswith("0x")
    assert await rpc.call("net_version") == str(anvil.chain_id)


async def test_get_logs_range_is_bounded(anvil):
    async with running_bundler(anvil, get_logs_max_blocks=5) as (b, rpc):
        for _ in range(6):
            mine(anvil.url)
        head = int(await rpc.call("eth_blockNumber"), 16)
        assert isinstance(await rpc.call("eth_getLogs", {"fromBlock": hex(head - 4), "toBlock": hex(head)}), list)
        logs = await rpc.call("eth_getLogs", {"fromBlock": hex(head - 4), "toBlock": "latest"})
        assert isinstance(logs, list)
        for flt in ({"fromBlock": hex(head - 5), "toBlock": hex(head)}, {"fromBlock": "earliest"},
                    {"fromBlock": "0x0", "toBlock": "latest"}):
            answer = await rpc.request("eth_getLogs", flt)
            err = answer["error"]
            assert err["code"] == -32602 and "limit of 5 blocks" in err["message"], answer
        # one block by hash is always fine
        block = await rpc.call("eth_getBlockByNumber", "latest", False)
        assert isinstance(await rpc.call("eth_getLogs", {"blockHash": block["hash"]}), list)
        answer = await rpc.request("eth_getLogs", {"fromBlock": "soon"})
        assert answer["error"]["code"] == -32602 and "fromBlock" in answer["error"]["message"]


def _raw_transfer(anvil) -> tuple[str, str]:
    key = "0x" + os.urandom(32).hex()
    sender = Account.from_key(key).address
    node_rpc(anvil.url, "anvil_setBalance", [sender, hex(10**18)])
    mine(anvil.url)
    tx = Account.sign_transaction({
        "to": to_checksum_address(ANVIL_ACCOUNT0), "value": 1, "gas": 21_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
        "nonce": 0, "chainId": anvil.chain_id, "type": 2,
    }, key)
    return "0x" + tx.raw_transaction.hex().removeprefix("0x"), "0x" + tx.hash.hex().removeprefix("0x")


async def test_send_raw_transaction_only_when_opted_in(anvil, rpc):
    raw, tx_hash = _raw_transfer(anvil)
    answer = await rpc.request("eth_sendRawTransaction", raw)
    assert answer["error"]["code"] == -32601
    async with running_bundler(anvil, forward_send_raw_transaction=True) as (_b, opted_in):
        assert await opted_in.call("eth_sendRawTransaction", raw) == tx_hash
        mine(anvil.url)
        assert (await opted_in.call("eth_getTransactionReceipt", tx_hash))["status"] == "0x1"
        # opting in to raw transactions opens nothing else
        assert (await opted_in.request("eth_accounts"))["error"]["code"] == -32601


# -- 4. content type and CORS -----------------------------------------------------------------
@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
])
async def test_only_json_bodies_are_read(rpc, bundler, content_type):
    body = json.dumps(_req("debug_bundler_clearMempool"))
    headers = {"Content-Type": content_type} if content_type else {}
    async with rpc.session.post(bundler.url, data=body.encode(), headers=headers,
                                skip_auto_headers=["Content-Type"]) as resp:
        assert resp.status == 415
        answer = await resp.json()
    assert answer["error"]["code"] == -32600 and "application/json" in answer["error"]["message"]
    status, answer = await rpc.raw(body, content_type="application/json; charset=utf-8")
    assert status == 200 and answer["result"] == "ok"


async def test_no_cors_unless_configured(rpc, bundler):
    async with rpc.session.options(bundler.url, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
    }) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    status, headers, answer = await _post(rpc.session, bundler.url, _req("eth_chainId"), {"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in headers


async def test_cors_for_configured_origins_and_never_for_debug(anvil):
    async with running_bundler(anvil, cors_origins=[ORIGIN]) as (b, rpc):
        s = rpc.session
        async with s.options(b.url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "content-type"}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "CONTENT-TYPE" in resp.headers["Access-Control-Allow-Headers"].upper()
        async with s.options(b.url, headers={"Origin": "https://evil.example",
                                             "Access-Control-Request-Method": "POST"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers

        status, headers, answer = await _post(s, b.url, _req("eth_chainId"), {"Origin": ORIGIN})
        assert status == 200 and answer["result"] == hex(anvil.chain_id)
        assert headers["Access-Control-Allow-Origin"] == ORIGIN

        # debug_* is never served to a web page, alone or inside a batch
        for method in ("debug_bundler_clearState", "debug_bundler_dumpMempool"):
            status, _h, answer = await _post(s, b.url, _req(method), {"Origin": ORIGIN})
            assert answer["error"]["code"] == -32601 and "web pages" in answer["error"]["message"], answer
        status, _h, answer = await _post(s, b.url, [_req("debug_bundler_clearState", id=1), _req("eth_chainId", id=2)],
                                         {"Origin": ORIGIN})
        by_id = {a["id"]: a for a in answer}
        assert by_id[1]["error"]["code"] == -32601 and by_id[2]["result"] == hex(anvil.chain_id)
        # the same call without an Origin (curl, a backend, the operator) is served
        assert await rpc.call("debug_bundler_dumpMempool") == []


# -- 5. JSON-RPC 2.0 details ------------------------------------------------------------------
async def test_null_id_is_a_request_not_a_notification(rpc, anvil, bundler):
    status, answer = await rpc.raw(json.dumps(_req("eth_chainId", id=None)))
    assert status == 200 and answer == {"jsonrpc": "2.0", "id": None, "result": hex(anvil.chain_id)}
    status, answer = await rpc.raw(json.dumps(_req("no_suchMethod", id=None)))
    assert status == 200 and answer["id"] is None and answer["error"]["code"] == -32601
    status, answer = await rpc.raw(json.dumps([_req("eth_chainId", id=None), _req("eth_chainId", id=7)]))
    assert status == 200 and sorted(a["id"] or 0 for a in answer) == [0, 7]
    assert all(a["result"] == hex(anvil.chain_id) for a in answer)
    # no id at all is a notification: no answer
    status, answer = await rpc.raw(json.dumps({"jsonrpc": "2.0", "method": "eth_chainId", "params": []}))
    assert status == 204 and answer is None


async def test_batch_too_large_states_the_limit(rpc, bundler):
    limit = bundler.config.max_batch
    status, answer = await rpc.raw(json.dumps([_req("eth_chainId", id=i) for i in range(limit + 1)]))
    assert answer["error"]["code"] == -32600
    assert f"limit of {limit}" in answer["error"]["message"] and str(limit + 1) in answer["error"]["message"]

