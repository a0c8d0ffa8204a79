"""The JSON-RPC surface through real HTTP: shapes, batches, forwarding, and bad input of every
kind answered with a clear JSON-RPC error while the server keeps serving."""
from __future__ import annotations

import json

import pytest

from bundler import CLIENT_VERSION
from bundler.entrypoint import V07

pytestmark = pytest.mark.asyncio


async def test_chain_id_and_entry_points(rpc, anvil):
    assert await rpc.call("eth_chainId") == hex(anvil.chain_id)
    assert await rpc.call("eth_supportedEntryPoints") == [
        "0x0000000071727De22E5E9d8BAf0edAc6f37da032", "0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108",
        "0x433709009B8330FDa32311DF1C2AFA402eD8D009",
    ]
    assert await rpc.call("web3_clientVersion") == CLIENT_VERSION


async def test_batch_mixes_results_and_errors(rpc):
    body = json.dumps([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "no_suchMethod", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []},
    ])
    status, answer = await rpc.raw(body)
    assert status == 200
    by_id = {a["id"]: a for a in answer}
    assert by_id[1]["result"].startswith("0x")
    assert by_id[2]["error"]["code"] == -32601
    assert int(by_id[3]["result"], 16) >= 0  # forwarded to the node


async def test_unknown_eth_method_is_forwarded_with_node_errors_intact(rpc):
    balance = await rpc.call("eth_getBalance", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest")
    assert int(balance, 16) > 0
    answer = await rpc.request("eth_getBalance", "not-an-address", "latest")
    assert answer["error"]["code"] != 0 and answer["error"]["message"]


@pytest.mark.parametrize("body,code", [
    ("{not json", -32700),
    ("", -32700),
    ("[]", -32600),
    ('"just a string"', -32600),
    ('{"jsonrpc": "2.0", "id": 1}', -32600),
    ('{"jsonrpc": "2.0", "id": 1, "method": 5}', -32600),
    ('[' * 100_000 + ']' * 100_000, -32700),
])
async def test_malformed_requests(rpc, body, code):
    status, answer = await rpc.raw(body)
    assert status in (200, 400)
    err = answer["error"] if isinstance(answer, dict) else answer[0]["error"]
    assert err["code"] == code and err["message"]
    assert await rpc.call("eth_chainId")  # still serving


async def test_non_utf8_and_wrong_content_type(rpc):
    status, answer = await rpc.raw(b"\xff\xfe\x00garbage")
    assert answer["error"]["code"] == -32700
    # a text/plain post is what a web page may send anywhere without asking: refused
    status, answer = await rpc.raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}),
                                   content_type="text/plain")
    assert status == 415 and answer["error"]["code"] == -32600


async def test_huge_body_and_batch_are_refused(rpc, bundler):
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                      "params": ["x" * (bundler.config.max_body_bytes + 10)]})
    status, answer = await rpc.raw(big)
    assert status == 413 and answer["error"]["code"] == -32600 and "larger than" in answer["error"]["message"]
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}
                        for i in range(bundler.config.max_batch + 1)])
    status, answer = await rpc.raw(batch)
    assert answer["error"]["code"] == -32600
    assert await rpc.call("eth_chainId")


async def test_user_operation_param_errors_name_the_problem(rpc):
    from test_userop import VALID

    answer = await rpc.request("eth_sendUserOperation", dict(VALID, sender="0x12"), V07.address)
    assert answer["error"]["code"] == -32602 and "invalid sender" in answer["error"]["message"]
    answer = await rpc.request("eth_sendUserOperation", {"sender": "0x" + "11" * 20}, V07.address)
    assert answer["error"]["code"] == -32602 and "missing field nonce" in answer["error"]["message"]
    answer = await rpc.request("eth_sendUserOperation", "not an object", V07.address)
    assert answer["error"]["code"] == -32602
    answer = await rpc.request("eth_sendUserOperation", {})
    assert answer["error"]["code"] == -32602
    answer = await rpc.request("eth_sendUserOperation", {"sender": "0x" + "11" * 20}, "0x" + "22" * 20)
    assert answer["error"]["code"] == -32602 and "unsupported entryPoint" in answer["error"]["message"]
    for method in ("eth_getUserOperationReceipt", "eth_getUserOperationByHash"):
        for bad in ("0x1234", 12, None, "0x" + "zz" * 32):
            answer = await rpc.request(method, bad)
            error = answer["error"]
            assert (error["code"], error["message"]) == (-32602, "Missing/invalid userOpHash"), answer
        answer = await rpc.request(method)
        assert answer["error"]["code"] == -32602, answer


async def test_unknown_hash_is_null(rpc):
    assert await rpc.call("eth_getUserOperationReceipt", "0x" + "ab" * 32) is None
    assert await rpc.call("eth_getUserOperationByHash", "0x" + "ab" * 32) is None


async def test_one_entry_point_with_the_entry_points_flag(anvil):
    """a client that wants exactly one EntryPoint (eth_supportedEntryPoints()[0]) starts the
    bundler with --entry-points 0.8; the other versions are then refused"""
    import argparse

    import aiohttp

    from bundler import config as cfg
    from bundler.app import Bundler
    from bundler.devchain import free_port
    from bundler.entrypoint import V08
    from conftest import EXECUTOR_KEY, RpcClient

    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    args = parser.parse_args(["--entry-points", "0.8", "--rpc-url", anvil.url, "--port", str(free_port())])
    config = cfg.load(args, environ={"BUNDLER_PRIVATE_KEY": EXECUTOR_KEY})
    b = Bundler(config)
    await b.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = RpcClient(b.url, session)
            assert await client.call("eth_supportedEntryPoints") == ["0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108"]
            answer = await client.request("eth_sendUserOperation", {"sender": "0x" + "11" * 20}, V07.address)
            assert answer["error"]["code"] == -32602 and "unsupported entryPoint" in answer["error"]["message"]
            assert V08.address.lower() in answer["error"]["message"].lower()
    finally:
        await b.stop()
