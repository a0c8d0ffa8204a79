"""A long-running task that dies does not do so silently: a failure injected into the chain
watcher's loop (faults.fail_point) is logged with its traceback, counted in /metrics, named by
/health (503), and the watcher is restarted and works again."""
from __future__ import annotations

import logging
import time

import pytest

from bundler import faults
from helpers.accounts import mine
from helpers.bundlers import running_bundler

pytestmark = pytest.mark.asyncio


async def _get(session, url):
    async with session.get(url) as resp:
        return resp.status, (await resp.json() if "json" in resp.content_type else await resp.text())


async def _poll(predicate, timeout: float, what: str):
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_dying_task_is_restarted_and_reported(anvil, caplog):
    caplog.set_level(logging.INFO, logger="bundler.supervise")
    async with running_bundler(anvil) as (b, rpc):
        s = rpc.session
        status, report = await _get(s, b.url + "/health")
        assert status == 200 and report["tasks"]["chain-watcher"] == {"up": True, "failures": 0, "lastError": None}
        b.supervisor.recent_failure_s = 3.0  # (a minute in production) so the test sees it pass
        fired_before = faults.fired.get("chain-watcher", 0)
        faults.arm("chain-watcher", times=2, scope=b.watcher)  # not another bundler's watcher in this process
        try:
            mine(anvil.url)  # a new block wakes the watcher, which then fails

            async def unhealthy():
                status, report = await _get(s, b.url + "/health")
                return report if status == 503 and report["tasks"]["chain-watcher"]["failures"] >= 2 else None

            report = await _poll(unhealthy, 30, "/health to report the failed chain watcher")
            assert any("background task chain-watcher" in p and "InjectedFault" in p for p in report["problems"]), report
        finally:
            faults.disarm("chain-watcher")
        assert faults.fired["chain-watcher"] - fired_before == 2

        _status, text = await _get(s, b.url + "/metrics")
        assert 'bundler_task_failures_total{task="chain-watcher"} 2.0' in text
        failed_lines = [r for r in caplog.records if r.name == "bundler.supervise" and r.levelno == logging.ERROR]
        assert len(failed_lines) >= 2 and "chain-watcher" in failed_lines[0].getMessage()
        assert failed_lines[0].exc_info and failed_lines[0].exc_info[0] is faults.InjectedFault

        # restarted: it follows the chain again, and health comes back once the failures age
        # one new block to follow (mining on every poll would make the target move faster than
        # the watcher's one-second idle poll can catch it)
        mine(anvil.url)
        target = int(await rpc.call("eth_blockNumber"), 16)

        async def watching():
            return b.watcher.hashes.get(target) is not None and b.supervisor.states["chain-watcher"].up

        await _poll(watching, 30, "the restarted watcher to follow new blocks")

        async def healthy():
            status, report = await _get(s, b.url + "/health")
            return status == 200 and report["tasks"]["chain-watcher"]["up"]

        await _poll(healthy, 30, "/health to be 200 again")
        _status, text = await _get(s, b.url + "/metrics")
        assert 'bundler_task_up{task="chain-watcher"} 1.0' in text
