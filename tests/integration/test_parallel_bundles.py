"""Several executor keys: bundles go out concurrently from different keys, never sharing an op,
each key with its own nonce."""
from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from eth_hash.auto import keccak

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07
from helpers.bundlers import funded_account, running_bundler, signed_op
from helpers.inproc import eventually

pytestmark = pytest.mark.asyncio

KEYS = ["0x" + keccak(f"parallel executor {i}".encode()).hex() for i in range(3)]
ADDRESSES = [Account.from_key(k).address.lower() for k in KEYS]


def _pending(anvil) -> int:
    return int(node_rpc(anvil.url, "txpool_status", [])["pending"], 16)


def fund_executors(anvil) -> None:
    for a in ADDRESSES:
        node_rpc(anvil.url, "anvil_setBalance", [a, hex(100 * 10**18)])


async def test_free_keys_send_bundles_at_the_same_time(anvil):
    fund_executors(anvil)
    accts = [funded_account(anvil, V07) for _ in range(5)]
    async with running_bundler(anvil, private_key=KEYS, max_bundle_ops=2) as (b, rpc):
        hashes = [await rpc.call("eth_sendUserOperation", signed_op(anvil, a), V07.address) for a in accts]
        nonces_before = {a: int(node_rpc(anvil.url, "eth_getTransactionCount", [a, "latest"]), 16)
                         for a in ADDRESSES}
        node_rpc(anvil.url, "evm_setAutomine", [False])
        try:
            bundling = asyncio.create_task(rpc.call("debug_bundler_sendBundleNow"))
            # all three bundles are waiting in the node's pool at once: nothing was mined yet
            await eventually(lambda: _pending(anvil) >= 3 or bundling.done(), timeout=10, interval=0.05,
                             what="three bundles in the node's pool")
            assert _pending(anvil) == 3
            node_rpc(anvil.url, "evm_mine", [])
            tx_hashes = await asyncio.wait_for(bundling, 30)
        finally:
            node_rpc(anvil.url, "evm_setAutomine", [True])
        assert isinstance(tx_hashes, list) and len(set(tx_hashes)) == 3

        txs = [node_rpc(anvil.url, "eth_getTransactionByHash", [h]) for h in tx_hashes]
        assert sorted(t["from"].lower() for t in txs) == sorted(ADDRESSES)  # one bundle per key
        assert len({t["blockNumber"] for t in txs}) == 1  # mined together
        # each key used its own next nonce
        assert all(int(t["nonce"], 16) == nonces_before[t["from"].lower()] for t in txs)

        receipts = [await rpc.call("eth_getUserOperationReceipt", h) for h in hashes]
        assert all(r["success"] for r in receipts)
        per_tx: dict[str, int] = {}
        for r in receipts:
            per_tx[r["receipt"]["transactionHash"]] = per_tx.get(r["receipt"]["transactionHash"], 0) + 1
        assert sorted(per_tx.values()) == [1, 2, 2]  # every op in exactly one bundle, at most 2 per bundle
        assert await rpc.call("debug_bundler_dumpMempool", V07.address) == []

        async with rpc.session.get(b.url + "/metrics") as resp:
            text = await resp.text()
        assert 'bundler_bundles_total{status="sent"} 3.0' in text
        assert 'bundler_bundles_total{status="mined"} 3.0' in text
        assert "bundler_bundles_in_flight 0.0" in text


async def test_a_senders_next_op_waits_for_its_bundle_in_flight(anvil):
    """Op n+1 of a sender whose op n is in a bundle not yet mined must not go into a parallel
    bundle: simulated against state without op n it would fail and be dropped."""
    fund_executors(anvil)
    s, t = funded_account(anvil, V07), funded_account(anvil, V07)
    async with running_bundler(anvil, private_key=KEYS) as (b, rpc):
        first = await rpc.call("eth_sendUserOperation", signed_op(anvil, s, nonce=0), V07.address)
        node_rpc(anvil.url, "evm_setAutomine", [False])
        try:
            in_flight = asyncio.create_task(rpc.call("debug_bundler_sendBundleNow"))
            await eventually(lambda: _pending(anvil) == 1, timeout=10, interval=0.05, what="the first bundle in the pool")
            second = await rpc.call("eth_sendUserOperation", signed_op(anvil, s, nonce=1), V07.address)
            other = await rpc.call("eth_sendUserOperation", signed_op(anvil, t), V07.address)
            parallel = asyncio.create_task(rpc.call("debug_bundler_sendBundleNow"))
            await eventually(lambda: _pending(anvil) == 2, timeout=10, interval=0.05,
                             what="the parallel bundle next to the first")
            node_rpc(anvil.url, "evm_mine", [])
            await asyncio.wait_for(asyncio.gather(in_flight, parallel), 30)
        finally:
            node_rpc(anvil.url, "evm_setAutomine", [True])
        assert (await rpc.call("eth_getUserOperationReceipt", first))["success"]
        assert (await rpc.call("eth_getUserOperationReceipt", other))["success"]
        # the second op stayed pending (not dropped) and goes in the next bundle
        assert (await rpc.call("eth_getUserOperationByHash", second))["transactionHash"] is None
        await rpc.call("debug_bundler_sendBundleNow")
        assert (await rpc.call("eth_getUserOperationReceipt", second))["success"]


async def test_auto_mode_bundles_with_several_keys(anvil):
    fund_executors(anvil)
    accts = [funded_account(anvil, V07) for _ in range(6)]
    async with running_bundler(anvil, private_key=KEYS, max_bundle_ops=1, bundle_mode="auto") as (b, rpc):
        hashes = await asyncio.gather(*(rpc.call("eth_sendUserOperation", signed_op(anvil, a), V07.address)
                                        for a in accts))
        receipts = {}

        async def all_mined() -> bool:
            for h in hashes:
                if h not in receipts and (r := await rpc.call("eth_getUserOperationReceipt", h)) is not None:
                    receipts[h] = r
            return len(receipts) == len(hashes)

        await eventually(all_mined, timeout=30, interval=0.05, what="every op mined")
        assert all(r["success"] for r in receipts.values())
        senders = {node_rpc(anvil.url, "eth_getTransactionByHash", [r["receipt"]["transactionHash"]])["from"].lower()
                   for r in receipts.values()}
        assert senders <= set(ADDRESSES) and len(senders) >= 2


async def test_one_key_still_bundles_every_entry_point_on_send_bundle_now(anvil, rpc, clean_bundler):
    """With a single executor, sendBundleNow bundles for both EntryPoints, one after the other."""
    from bundler.entrypoint import V08

    a7, a8 = funded_account(anvil, V07), funded_account(anvil, V08)
    h7 = await rpc.call("eth_sendUserOperation", signed_op(anvil, a7), V07.address)
    h8 = await rpc.call("eth_sendUserOperation", signed_op(anvil, a8), V08.address)
    tx_hashes = await rpc.call("debug_bundler_sendBundleNow")
    assert isinstance(tx_hashes, list) and len(tx_hashes) == 2
    assert (await rpc.call("eth_getUserOperationReceipt", h7))["success"]
    assert (await rpc.call("eth_getUserOperationReceipt", h8))["success"]
