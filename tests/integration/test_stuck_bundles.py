"""Stuck and failed bundles on a chain with automine off: fee escalation up to its cap, a
replacement the node refuses as underpriced, a nonce taken by another transaction, a bundle
that reverts on chain because state changed after simulation, an executor below its
minimum balance, and a bundle waiting behind a nonce gap."""
from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import V07, V08
from conftest import RpcError
from helpers.accounts import DevChain, mine
from helpers.inproc import eventually, new_key, pool_txs, running_bundler, send_op, set_automine

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def chain():
    c = DevChain.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def manual_mining(chain):
    """Call it to stop automine (after the test's set-up transactions); restored afterwards."""
    yield lambda: set_automine(chain.url, False)
    set_automine(chain.url, True)


def fee(tx: dict) -> int:
    return int(tx["maxFeePerGas"], 16)


async def test_stuck_bundle_is_replaced_with_higher_fees_up_to_the_cap(chain, manual_mining):
    acct = chain.account(V07)
    async with running_bundler(chain, tx_replace_after_s=0.5, fee_bump_percent=15, max_fee_multiplier=2) as (b, client):
        manual_mining()
        executor = b.executors[0].address
        op_hash = await send_op(client, chain, acct)
        sending = asyncio.create_task(client.call("debug_bundler_sendBundleNow"))
        first = await eventually(lambda: pool_txs(chain.url, executor), what="the bundle in the pool")
        [(nonce, first_tx)] = first.items()
        # replaced: same nonce, higher fees (anvil's pool keeps only the latest)
        replaced = await eventually(
            lambda: (t := pool_txs(chain.url, executor).get(nonce)) and t["hash"] != first_tx["hash"] and t,
            what="a replacement")
        assert fee(replaced) >= fee(first_tx) * 115 // 100
        assert int(replaced["maxPriorityFeePerGas"], 16) > int(first_tx["maxPriorityFeePerGas"], 16)
        # escalation stops at the cap: 2x the first attempt
        cap = fee(first_tx) * 2
        await eventually(lambda: fee(pool_txs(chain.url, executor)[nonce]) == cap, what="the fee cap")
        inflight = b.store.inflight()[0]
        attempts = len(inflight.attempts)
        assert all(a.max_fee <= cap for a in inflight.attempts) and attempts >= 3
        # three more replacement rounds at the cap: nothing new
        rounds = b.builder.sender.replace_rounds
        await eventually(lambda: b.builder.sender.replace_rounds >= rounds + 3, what="three more replacement rounds")
        assert len(b.store.inflight()[0].attempts) == attempts
        assert list(pool_txs(chain.url, executor)) == [nonce]

        last = pool_txs(chain.url, executor)[nonce]
        rpc(chain.url, "evm_mine", [])
        assert await asyncio.wait_for(sending, 30) == last["hash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == last["hash"]
        assert (await client.call("eth_getUserOperationByHash", op_hash))["transactionHash"] == last["hash"]
        assert b.store.inflight() == []


async def test_replacement_refused_as_underpriced_is_bumped_again(chain, manual_mining):
    """The node holds a pricier transaction for the bundle's nonce (another process using the
    key): the first replacement is refused as underpriced; the next, higher one gets in."""
    acct = chain.account(V08)
    key = new_key(chain.url)
    async with running_bundler(chain, private_key=[key], tx_replace_after_s=1.0, fee_bump_percent=15,
                               max_fee_multiplier=4) as (b, client):
        manual_mining()
        executor = b.executors[0].address
        op_hash = await send_op(client, chain, acct)
        sending = asyncio.create_task(client.call("debug_bundler_sendBundleNow"))
        [(nonce, ours)] = (await eventually(lambda: pool_txs(chain.url, executor), what="the bundle")).items()
        # someone else's transaction for that nonce, 20% pricier than ours
        theirs = Account.sign_transaction({
            "type": 2, "chainId": chain.chain_id, "nonce": int(nonce), "to": to_checksum_address(ANVIL_ACCOUNT0), "value": 0, "gas": 21000,
            "maxFeePerGas": fee(ours) * 120 // 100,
            "maxPriorityFeePerGas": int(ours["maxPriorityFeePerGas"], 16) * 120 // 100}, key)
        rpc(chain.url, "eth_sendRawTransaction", ["0x" + bytes(theirs.raw_transaction).hex()])
        await eventually(lambda: b.builder.sender.underpriced_refusals >= 1, what="an underpriced refusal")
        ours_again = await eventually(
            lambda: (t := pool_txs(chain.url, executor).get(nonce)) and t["to"].lower() == V08.address and t,
            what="our replacement back in the pool")
        assert fee(ours_again) > fee(ours) * 120 // 100
        rpc(chain.url, "evm_mine", [])
        assert await asyncio.wait_for(sending, 30) == ours_again["hash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == ours_again["hash"]


async def test_nonce_taken_by_another_transaction_rebundles_the_ops(chain, manual_mining):
    acct = chain.account(V07)
    key = new_key(chain.url)
    async with running_bundler(chain, private_key=[key], tx_replace_after_s=0.3, max_fee_multiplier=2) as (b, client):
        manual_mining()
        executor = b.executors[0].address
        op_hash = await send_op(client, chain, acct)
        sending = asyncio.create_task(client.call("debug_bundler_sendBundleNow"))
        [(nonce, ours)] = (await eventually(lambda: pool_txs(chain.url, executor), what="the bundle")).items()
        theirs = Account.sign_transaction({
            "type": 2, "chainId": chain.chain_id, "nonce": int(nonce), "to": to_checksum_address(ANVIL_ACCOUNT0), "value": 0,
            "gas": 21000, "maxFeePerGas": fee(ours) * 10, "maxPriorityFeePerGas": fee(ours) * 5}, key)
        theirs_hash = rpc(chain.url, "eth_sendRawTransaction", ["0x" + bytes(theirs.raw_transaction).hex()])
        # our replacements are capped at 2x: the node refuses them and theirs stays
        rounds = b.builder.sender.replace_rounds
        await eventually(lambda: b.builder.sender.replace_rounds >= rounds + 2, what="two replacement rounds")
        assert b.builder.sender.underpriced_refusals >= 1
        assert pool_txs(chain.url, executor)[nonce]["hash"] == theirs_hash
        rpc(chain.url, "evm_mine", [])
        assert rpc(chain.url, "eth_getTransactionReceipt", [theirs_hash]) is not None
        # the ops go back to the pool and are sent again with the next nonce
        again = await eventually(lambda: pool_txs(chain.url, executor), what="the bundle sent again")
        assert list(again) == [str(int(nonce) + 1)]
        rpc(chain.url, "evm_mine", [])
        tx_hash = await asyncio.wait_for(sending, 30)
        assert tx_hash == again[str(int(nonce) + 1)]["hash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash


@pytest.mark.parametrize("ep", [V07, V08], ids=["v0.7", "v0.8"])
async def test_bundle_reverting_on_chain_drops_the_failing_op_and_rebundles_the_rest(chain, manual_mining, ep):
    good, bad = chain.account(ep), chain.account(ep)
    async with running_bundler(chain, tx_replace_after_s=60) as (b, client):
        manual_mining()
        executor = b.executors[0].address
        good_hash = await send_op(client, chain, good)
        bad_hash = await send_op(client, chain, bad)
        sending = asyncio.create_task(client.call("debug_bundler_sendBundleNow"))
        [(nonce, first)] = (await eventually(lambda: pool_txs(chain.url, executor), what="the bundle")).items()
        # after simulation, before mining: one account loses the ETH it would pay the prefund with
        rpc(chain.url, "anvil_setBalance", [bad.address, "0x0"])
        rpc(chain.url, "evm_mine", [])
        reverted = rpc(chain.url, "eth_getTransactionReceipt", [first["hash"]])
        assert reverted["status"] == "0x0"
        again = await eventually(lambda: pool_txs(chain.url, executor), what="the bundle sent again")
        assert list(again) == [str(int(nonce) + 1)]
        rpc(chain.url, "evm_mine", [])
        tx_hash = await asyncio.wait_for(sending, 30)
        assert tx_hash == again[str(int(nonce) + 1)]["hash"]
        receipt = await client.call("eth_getUserOperationReceipt", good_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash
        with pytest.raises(RpcError) as e:
            await client.call("eth_getUserOperationReceipt", bad_hash)
        assert e.value.code == -32500 and "AA21" in e.value.message and "dropped" in e.value.message
        assert await client.call("debug_bundler_dumpMempool", ep.address) == []
        assert b.pool.reverts == {}  # no revert count kept for the mined and the dropped op


async def test_executor_below_minimum_balance_sends_nothing(chain):
    acct = chain.account(V07)
    key = new_key(chain.url, balance=10**17)
    async with running_bundler(chain, private_key=[key], min_executor_balance=10**18) as (b, client):
        op_hash = await send_op(client, chain, acct)
        with pytest.raises(RpcError) as e:
            await client.call("debug_bundler_sendBundleNow")
        assert "below the minimum" in e.value.message
        [status] = b.builder.balances.status()
        assert status["ok"] is False and status["balance"] == 10**17 and b.builder.balances.all_low
        assert (await client.call("eth_getUserOperationByHash", op_hash))["transactionHash"] is None
        assert len(await client.call("debug_bundler_dumpMempool", V07.address)) == 1
        assert int(rpc(chain.url, "eth_getTransactionCount", [b.executors[0].address, "latest"]), 16) == 0

        rpc(chain.url, "anvil_setBalance", [b.executors[0].address, hex(2 * 10**18)])
        mine(chain.url)
        await client.call("debug_bundler_sendBundleNow")
        assert (await client.call("eth_getUserOperationReceipt", op_hash))["success"] is True
        assert b.builder.balances.status()[0]["ok"] is True


async def test_a_bundle_behind_a_nonce_gap_is_mined_once_the_gap_is_filled(chain):
    """A bundle signed with a cached nonce above one the node holds nothing for (a reorg took
    the lower transaction while the next bundle was being signed) is queued by the node and
    never mined, whatever its fees. The bundler fills the missing nonce with a zero-value
    transfer to itself, and the bundle is mined."""
    acct = chain.account(V07)
    key = new_key(chain.url)
    async with running_bundler(chain, private_key=[key], tx_replace_after_s=0.3) as (b, client):
        executor = b.executors[0]
        mined_nonce = int(rpc(chain.url, "eth_getTransactionCount", [executor.address, "latest"]), 16)
        executor.consumed(mined_nonce)  # cached next nonce: one above the node's
        op_hash = await send_op(client, chain, acct)
        tx_hash = await asyncio.wait_for(client.call("debug_bundler_sendBundleNow"), 60)
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash
        assert b.builder.sender.gap_fills == 1
        bundle_tx = rpc(chain.url, "eth_getTransactionByHash", [tx_hash])
        assert int(bundle_tx["nonce"], 16) == mined_nonce + 1
        # the filler: nonce mined_nonce, from the executor to itself, no value
        block = rpc(chain.url, "eth_getBlockByNumber", [receipt["receipt"]["blockNumber"], True])
        earlier = [rpc(chain.url, "eth_getBlockByNumber", [hex(n), True])
                   for n in range(int(block["number"], 16) - 3, int(block["number"], 16) + 1)]
        fillers = [t for blk in earlier for t in blk["transactions"]
                   if t["from"].lower() == executor.address and int(t["nonce"], 16) == mined_nonce]
        assert len(fillers) == 1
        assert fillers[0]["to"].lower() == executor.address and int(fillers[0]["value"], 16) == 0
