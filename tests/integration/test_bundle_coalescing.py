"""Auto mode's coalescing window (bundle_coalesce_ms): ops arriving close together go out in one
bundle instead of one bundle each, and a full bundle does not wait for the window."""
from __future__ import annotations

import time

import pytest

from bundler.entrypoint import V07
from helpers.bundlers import funded_account, running_bundler, signed_op
from helpers.inproc import eventually

pytestmark = pytest.mark.asyncio


async def _receipts(rpc, hashes: list[str], timeout: float) -> list[dict]:
    async def all_mined():
        found = [await rpc.call("eth_getUserOperationReceipt", h) for h in hashes]
        return found if all(found) else None
    return await eventually(all_mined, timeout=timeout, interval=0.05, what="every op's receipt")


async def test_ops_sent_within_the_window_share_one_bundle(anvil):
    accts = [funded_account(anvil, V07) for _ in range(4)]
    async with running_bundler(anvil, bundle_mode="auto", bundle_coalesce_ms=3_000) as (_b, rpc):
        started = time.monotonic()
        # one after the other: without a window, the first op would leave in a bundle of its own
        hashes = [await rpc.call("eth_sendUserOperation", signed_op(anvil, a), V07.address) for a in accts]
        sent_within = time.monotonic() - started
        receipts = await _receipts(rpc, hashes, timeout=30)
        if sent_within < 3.0:  # (a machine so slow the window ran out meanwhile proves nothing)
            assert len({r["receipt"]["transactionHash"] for r in receipts}) == 1


async def test_a_full_bundle_does_not_wait_for_the_window(anvil):
    accts = [funded_account(anvil, V07) for _ in range(3)]
    async with running_bundler(anvil, bundle_mode="auto", bundle_coalesce_ms=60_000,
                               max_bundle_ops=3) as (_b, rpc):
        hashes = [await rpc.call("eth_sendUserOperation", signed_op(anvil, a), V07.address) for a in accts]
        # three ops fill a bundle: it goes well before the 60 s window ends
        receipts = await _receipts(rpc, hashes, timeout=30)
        assert len({r["receipt"]["transactionHash"] for r in receipts}) == 1

