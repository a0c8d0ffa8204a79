"""Hostile input through the real HTTP interface: per-client rate limit, bounded simulation
time and memory, the mempool size cap with fee-based eviction."""
from __future__ import annotations

import asyncio
import functools
import json
import time

import pytest

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07
from bundler.sim import Simulator
from bundler.sim.limits import SimulationOutOfMemory, memory_limit_mb
from bundler.userop import format_user_operation, decode_user_operation
from bundler.userop.model import UserOperation
from conftest import RpcError
from helpers.accounts import mine
from helpers.bundlers import funded_account, running_bundler, signed_op
from helpers.inproc import eventually

pytestmark = pytest.mark.asyncio
GWEI = 10**9


# -- rate limit -------------------------------------------------------------------------------
async def _post(session, url, body, headers=None):
    async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json",
                                                                  **(headers or {})}) as resp:
        return resp.status, resp.headers, json.loads(await resp.text())


def _req(i, method="eth_chainId"):
    return {"jsonrpc": "2.0", "id": i, "method": method, "params": []}


async def test_rate_limit_per_client_ip(anvil):
    # one token every 2 s, 3 at most: the test's own pace cannot refill a bucket by accident
    async with running_bundler(anvil, rate_limit_per_s=0.5, rate_limit_burst=3,
                               rate_limit_exempt_loopback=False) as (b, rpc):
        s = rpc.session
        for i in range(3):
            status, _h, answer = await _post(s, b.url, _req(i))
            assert status == 200 and answer["result"] == hex(anvil.chain_id)
        status, headers, answer = await _post(s, b.url, _req(9))
        assert status == 429
        assert answer == {"jsonrpc": "2.0", "id": None,
                          "error": {"code": -32005, "message": "rate limit exceeded"}}
        assert int(headers["Retry-After"]) >= 1

        # a token comes back after 1/rate seconds: wait on the bucket itself (asking over HTTP
        # would count refusals), bounded, and check it took about that long
        refused_at = time.monotonic()
        bucket = b.rate_limiter._buckets["127.0.0.1"]
        await eventually(lambda: bucket.has_capacity(1), timeout=10, interval=0.05, what="a token back in the bucket")
        assert time.monotonic() - refused_at >= 1.0  # 2 s per token at 0.5/s (minus the time since the last grant)
        assert (await _post(s, b.url, _req(5)))[0] == 200
        assert (await _post(s, b.url, _req(6)))[0] == 429

        # loopback exemption (the default) lets local tools through whatever the rate
        b.rate_limiter.exempt_loopback = True
        for i in range(20):
            status, _h, _a = await _post(s, b.url, _req(i))
            assert status == 200
        b.rate_limiter.exempt_loopback = False

        # behind a proxy each forwarded client has its own bucket; a batch takes one token per request
        b.rate_limiter.forwarded_for = True
        proxied = {"X-Forwarded-For": "10.1.1.1, 203.0.113.7"}
        status, _h, answer = await _post(s, b.url, [_req(1), _req(2), _req(3)], proxied)
        assert status == 200 and len(answer) == 3
        assert (await _post(s, b.url, _req(4), proxied))[0] == 429
        other = {"X-Forwarded-For": "198.51.100.9"}
        codes = [(await _post(s, b.url, _req(i), other))[0] for i in range(4)]
        assert codes == [200, 200, 200, 429]

        # health and metrics are not rate-limited, and the refusals are counted
        for _ in range(5):
            async with s.get(b.url + "/health") as resp:
                assert resp.status == 200
        async with s.get(b.url + "/metrics") as resp:
            text = await resp.text()
        assert "bundler_rpc_rate_limited_total 4.0" in text


# -- simulation time and memory ---------------------------------------------------------------
LOOP_FOREVER = "0x5b600056"  # JUMPDEST PUSH1 0 JUMP: burns all the gas it is given


async def test_runaway_validation_is_cut_short(anvil):
    """An account whose validation loops until its 9M gas run out would keep a worker busy for
    seconds of py-evm time; the per-call limit aborts it with a clear error and the worker
    serves the next op at once."""
    sender = "0x" + "5a" * 19 + "01"
    node_rpc(anvil.url, "anvil_setCode", [sender, LOOP_FOREVER])
    node_rpc(anvil.url, "anvil_setBalance", [sender, hex(10**18)])
    mine(anvil.url)
    op = UserOperation(sender=sender, nonce=0, call_data=b"", call_gas_limit=0,
                       verification_gas_limit=9_000_000, pre_verification_gas=100_000,
                       max_fee_per_gas=2 * GWEI, max_priority_fee_per_gas=GWEI, signature=b"\x01" * 65)
    async with running_bundler(anvil, sim_timeout_s=0.4) as (b, rpc):
        start = time.monotonic()
        answer = await rpc.request("eth_sendUserOperation", format_user_operation(op), V07.address)
        took = time.monotonic() - start
        err = answer["error"]
        assert err["code"] == -32603
        assert "aborted after 0.4 s" in err["message"] and "--sim-timeout-s" in err["message"]
        assert took < 3.0

        acct = funded_account(anvil, V07)
        start = time.monotonic()
        assert (await rpc.call("eth_sendUserOperation", signed_op(anvil, acct), V07.address)).startswith("0x")
        assert time.monotonic() - start < 5.0

        async with rpc.session.get(b.url + "/metrics") as resp:
            text = await resp.text()
        assert 'bundler_userops_rejected_total{code="-32603",reason="simulation_timeout"} 1.0' in text


def _allocate(mib: int) -> int:
    block = bytearray(mib * 1024 * 1024)
    return len(block)


async def test_simulation_workers_memory_is_bounded(anvil):
    loop = asyncio.get_running_loop()
    acct = funded_account(anvil, V07)
    op = decode_user_operation(signed_op(anvil, acct))
    sim = Simulator(anvil.url, anvil.chain_id, workers=1, memory_mb=600)
    await sim.start()
    try:
        assert await loop.run_in_executor(sim._pool, memory_limit_mb) == 600
        with pytest.raises(MemoryError):
            await loop.run_in_executor(sim._pool, functools.partial(_allocate, 1024))
        # the worker survived and still validates
        block = await _header(anvil)
        assert (await sim.validate(op, V07, block)).prefund > 0
        assert await loop.run_in_executor(sim._pool, functools.partial(_allocate, 64)) == 64 << 20
    finally:
        await sim.close()


async def test_out_of_memory_in_a_simulation_is_a_clear_error(anvil):
    class Hungry:
        def simulate_validation(self, *a, **k):
            raise MemoryError()

        def close(self):
            pass

    sim = Simulator(anvil.url, anvil.chain_id, workers=0, memory_mb=300)
    sim._pool = sim._make_pool()
    sim._local = Hungry()
    try:
        acct = funded_account(anvil, V07)
        with pytest.raises(SimulationOutOfMemory) as info:
            await sim.validate(decode_user_operation(signed_op(anvil, acct)), V07, await _header(anvil))
        assert info.value.code == -32603 and "300 MiB" in info.value.message
    finally:
        await sim.close()


async def test_bundler_passes_its_memory_limit_to_the_workers(anvil):
    async with running_bundler(anvil, sim_memory_mb=900) as (b, _rpc):
        limit = await asyncio.get_running_loop().run_in_executor(b.simulator._pool, memory_limit_mb)
        assert limit == 900


async def _header(anvil):
    from bundler.sim import PinnedBlock

    return PinnedBlock.from_rpc(node_rpc(anvil.url, "eth_getBlockByNumber", ["latest", False]))


# -- mempool cap ------------------------------------------------------------------------------
async def test_full_mempool_evicts_the_lowest_fee_and_refuses_lower(anvil):
    async with running_bundler(anvil, max_mempool_ops=2) as (b, rpc):
        accts = [funded_account(anvil, V07) for _ in range(4)]

        def op(i, fee, prio):
            return signed_op(anvil, accts[i], max_fee_per_gas=fee, max_priority_fee_per_gas=prio)

        cheap = await rpc.call("eth_sendUserOperation", op(0, 5 * GWEI, 1 * GWEI), V07.address)
        mid = await rpc.call("eth_sendUserOperation", op(1, 5 * GWEI, 2 * GWEI), V07.address)

        # paying less than the cheapest pending op: refused, nothing evicted
        answer = await rpc.request("eth_sendUserOperation", op(2, 5 * GWEI, GWEI // 2), V07.address)
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"].startswith("mempool is full (2 UserOperations)")
        assert "raise maxFeePerGas and maxPriorityFeePerGas" in answer["error"]["message"]
        # paying the same: refused too
        answer = await rpc.request("eth_sendUserOperation", op(2, 5 * GWEI, 1 * GWEI), V07.address)
        assert answer["error"]["code"] == -32602 and "mempool is full" in answer["error"]["message"]

        # paying more: admitted, the cheapest is evicted and says so
        rich = await rpc.call("eth_sendUserOperation", op(3, 5 * GWEI, 3 * GWEI), V07.address)
        pending = await rpc.call("debug_bundler_dumpMempool", V07.address)
        assert sorted(p["sender"].lower() for p in pending) == sorted([accts[1].address, accts[3].address])
        with pytest.raises(RpcError) as info:
            await rpc.call("eth_getUserOperationByHash", cheap)
        assert "evicted" in info.value.message and rich in info.value.message
        assert info.value.data["status"] == "dropped"
        assert (await rpc.call("eth_getUserOperationByHash", mid))["transactionHash"] is None

        async with rpc.session.get(b.url + "/metrics") as resp:
            text = await resp.text()
        assert 'bundler_userops_dropped_total{reason="evicted"} 1.0' in text
        assert 'bundler_userops_rejected_total{code="-32602",reason="mempool_full"} 2.0' in text
        assert "bundler_mempool_ops 2.0" in text

        # the survivors are bundled as usual
        await rpc.call("debug_bundler_sendBundleNow")
        assert (await rpc.call("eth_getUserOperationReceipt", rich))["success"] is True
        assert (await rpc.call("eth_getUserOperationReceipt", mid))["success"] is True
