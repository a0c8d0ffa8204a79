"""GET /metrics and GET /health over HTTP, and the op hash on log lines."""
from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bundler.devchain import deploy_all, start_anvil
from bundler.entrypoint import V07
from bundler.logs import op_context, setup_logging
from conftest import EXECUTOR_KEY
from eth_account import Account
from helpers.bundlers import funded_account, running_bundler, signed_op

pytestmark = pytest.mark.asyncio
EXECUTOR = Account.from_key(EXECUTOR_KEY).address.lower()


async def _get(session, url):
    async with session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_ops_by_outcome_and_reason(anvil):
    async with running_bundler(anvil) as (b, rpc):
        acct = funded_account(anvil, V07)
        good = await rpc.call("eth_sendUserOperation", signed_op(anvil, acct), V07.address)
        bad_sig = dict(signed_op(anvil, funded_account(anvil, V07)), signature="0x" + "11" * 65)
        assert (await rpc.request("eth_sendUserOperation", bad_sig, V07.address))["error"]["code"] in (-32507, -32500)
        assert (await rpc.request("eth_sendUserOperation", {"sender": "0x12"}, V07.address))["error"]["code"] == -32602
        assert (await rpc.request("eth_sendUserOperation", signed_op(anvil, acct), "0x" + "22" * 20))["error"]
        await rpc.call("debug_bundler_sendBundleNow")
        assert (await rpc.call("eth_getUserOperationReceipt", good))["success"]

        status, ctype, text = await _get(rpc.session, b.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        m = _samples(text)
        assert m[("bundler_userops_received_total", (("entry_point", "0.7"),))] == 3
        assert m[("bundler_userops_received_total", (("entry_point", "unsupported"),))] == 1
        assert m[("bundler_userops_accepted_total", (("entry_point", "0.7"),))] == 1
        rejected = {labels: v for (name, labels), v in m.items() if name == "bundler_userops_rejected_total"}
        assert rejected[(("code", "-32602"), ("reason", "malformed"))] == 1
        assert rejected[(("code", "-32602"), ("reason", "unsupported_entry_point"))] == 1
        assert sum(rejected.values()) == 3
        assert m[("bundler_userop_validation_seconds_count", (("result", "accepted"),))] == 1
        assert m[("bundler_userop_validation_seconds_count", (("result", "rejected"),))] == 3
        assert m[("bundler_bundles_total", (("status", "sent"),))] == 1
        assert m[("bundler_bundles_total", (("status", "mined"),))] == 1
        assert m[("bundler_bundles_total", (("status", "failed"),))] == 0
        assert m[("bundler_mempool_ops", ())] == 0
        assert m[("bundler_mempool_capacity", ())] == b.config.max_mempool_ops
        assert m[("bundler_executor_balance_wei", (("executor", b.executors[0].address),))] > 0
        assert m[("bundler_node_up", ())] == 1
        # bounded labels: every reason is a short identifier
        assert all(len(dict(labels)["reason"]) <= 40 and dict(labels)["reason"].replace("_", "").isalnum()
                   for labels in rejected)


async def test_health_ok_then_low_balance(anvil):
    async with running_bundler(anvil) as (b, rpc):
        status, ctype, text = await _get(rpc.session, b.url + "/health")
        body = json.loads(text)
        assert status == 200 and ctype.startswith("application/json")
        assert body["status"] == "ok" and body["node"]["reachable"] is True
        assert body["executors"][0]["address"] == b.executors[0].address
        assert int(body["executors"][0]["balance"]) > 0
        assert "problems" not in body
    async with running_bundler(anvil, min_executor_balance=10**30) as (b, rpc):
        status, _ctype, text = await _get(rpc.session, b.url + "/health")
        body = json.loads(text)
        assert status == 503 and body["status"] == "unhealthy"
        assert body["executors"][0]["belowMinimum"] is True
        assert any(b.executors[0].address in p and "below the minimum" in p and "--min-executor-balance" in p
                   for p in body["problems"])


async def test_health_says_when_the_node_is_unreachable():
    node = start_anvil()
    try:
        deploy_all(node.url)
        from bundler.devchain import fund

        fund(node.url, EXECUTOR, 10**18)
        node.deployment = None

        class _Node:  # what running_bundler needs of the session anvil
            url = node.url

        async with running_bundler(_Node, head_poll_interval=5.0, private_key=[EXECUTOR_KEY]) as (b, rpc):
            status, _c, text = await _get(rpc.session, b.url + "/health")
            assert status == 200
            node.stop()
            b.monitor._last_at = 0.0  # no cached answer
            status, _c, text = await _get(rpc.session, b.url + "/health")
            body = json.loads(text)
            assert status == 503 and body["node"]["reachable"] is False
            assert any(p.startswith("node unreachable") for p in body["problems"])
            assert node.url not in text and "127.0.0.1:" + str(node.port) not in text.replace("<node url>", "")
            _s, _c, metrics = await _get(rpc.session, b.url + "/metrics")
            assert _samples(metrics)[("bundler_node_up", ())] == 0
    finally:
        node.stop()


async def test_log_lines_about_an_op_carry_its_hash():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for fmt in ("json", "text"):
            stream = io.StringIO()
            setup_logging("info", fmt, stream=stream)
            log = logging.getLogger("bundler.test")
            with op_context("0xabc"):
                log.info("about the op")
            log.info("not about an op")
            log.info("bundle", extra={"op_hashes": ["0x1", "0x2"]})
            lines = stream.getvalue().splitlines()
            if fmt == "json":
                records = [json.loads(line) for line in lines]
                assert records[0]["op_hash"] == "0xabc" and records[0]["message"] == "about the op"
                assert "op_hash" not in records[1]
                assert records[2]["op_hashes"] == ["0x1", "0x2"]
                assert {"time", "level", "logger", "message"} <= set(records[0])
            else:
                assert lines[0].endswith("about the op op=0xabc")
                assert "op=" not in lines[1]
                assert lines[2].endswith("ops=0x1,0x2")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
