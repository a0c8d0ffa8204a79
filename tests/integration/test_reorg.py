"""Reorgs on anvil (anvil_reorg replaces the last blocks): a bundle's block replaced by one
without it puts its ops back in the pool; replaced by one that carries the same transaction,
the ops are recorded mined again where they landed; ops no longer valid on the new chain are
reported dropped. Receipts follow the new chain."""
from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import V07, V08
from conftest import RpcError
from helpers.accounts import SEL_EXECUTE, DevChain
from bundler.store import OpStatus
from helpers.inproc import eventually, running_bundler, send_op, set_automine

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]


@pytest.fixture(scope="module")
def chain():
    c = DevChain.start()
    try:
        yield c
    finally:
        c.stop()


def block(chain, number: int) -> dict:
    return rpc(chain.url, "eth_getBlockByNumber", [hex(number), False])


async def mined_bundle(client, op_hash: str) -> dict:
    tx_hash = await client.call("debug_bundler_sendBundleNow")
    receipt = await client.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash
    return receipt["receipt"]


@pytest.mark.parametrize("ep", EPS)
async def test_reorged_out_ops_go_back_to_the_pool_and_are_mined_again(chain, ep):
    acct = chain.account(ep)
    async with running_bundler(chain) as (b, client):
        op_hash = await send_op(client, chain, acct)
        old = await mined_bundle(client, op_hash)
        number = int(old["blockNumber"], 16)
        rpc(chain.url, "anvil_reorg", [1, []])  # the block is replaced by an empty one
        assert block(chain, number)["hash"] != old["blockHash"]

        pending = await eventually(
            lambda: client.call("eth_getUserOperationByHash", op_hash),
            what="the op to be known again")
        await eventually(lambda: _is_pending(client, op_hash), what="the op back in the pool")
        assert pending["userOperation"]["sender"].lower() == acct.address
        assert await client.call("eth_getUserOperationReceipt", op_hash) is None
        assert len(await client.call("debug_bundler_dumpMempool", ep.address)) == 1
        assert b.watcher.reorgs_seen >= 1

        new = await mined_bundle(client, op_hash)
        assert new["blockHash"] == block(chain, int(new["blockNumber"], 16))["hash"] != old["blockHash"]
        found = await client.call("eth_getUserOperationByHash", op_hash)
        assert found["blockHash"] == new["blockHash"]
        assert await client.call("debug_bundler_dumpMempool", ep.address) == []


async def _is_pending(client, op_hash: str) -> bool:
    found = await client.call("eth_getUserOperationByHash", op_hash)
    return found is not None and found["transactionHash"] is None


async def test_bundle_in_the_new_chain_too_is_recorded_mined_again(chain):
    acct = chain.account(V07)
    async with running_bundler(chain) as (b, client):
        op_hash = await send_op(client, chain, acct)
        old = await mined_bundle(client, op_hash)
        raw = rpc(chain.url, "eth_getRawTransactionByHash", [old["transactionHash"]])
        # two blocks replaced; the same signed bundle lands in the second new one
        rpc(chain.url, "evm_mine", [])
        rpc(chain.url, "anvil_reorg", [2, [[raw, 1]]])
        landed = rpc(chain.url, "eth_getTransactionReceipt", [old["transactionHash"]])
        assert landed["blockHash"] != old["blockHash"]

        await eventually(lambda: b.store.get(op_hash).block_hash == landed["blockHash"],
                         what="the op's record to follow the new block")
        assert b.store.get(op_hash).block_number == int(landed["blockNumber"], 16)
        found = await client.call("eth_getUserOperationByHash", op_hash)
        assert found["blockHash"] == landed["blockHash"] and found["transactionHash"] == old["transactionHash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["receipt"]["blockHash"] == landed["blockHash"] and receipt["success"] is True
        assert b.store.get(op_hash).block_hash == landed["blockHash"]
        assert await client.call("debug_bundler_dumpMempool", V07.address) == []
        assert b.watcher.reorgs_seen >= 1


async def test_op_invalid_on_the_new_chain_is_reported_dropped(chain):
    """The new chain carries a transaction of the account's owner that empties the account: the
    reorged-out op cannot pay any more and is recorded dropped with the validation error."""
    acct = chain.account(V07)
    owner = Account.from_key(acct.owner_key)
    rpc(chain.url, "anvil_setBalance", [owner.address, hex(10**18)])
    rpc(chain.url, "evm_mine", [])
    balance = int(rpc(chain.url, "eth_getBalance", [acct.address, "latest"]), 16)
    async with running_bundler(chain) as (b, client):
        op_hash = await send_op(client, chain, acct)
        await mined_bundle(client, op_hash)
        drain = Account.sign_transaction({
            "type": 2, "chainId": chain.chain_id, "nonce": 0, "to": to_checksum_address(acct.address), "value": 0,
            "gas": 200_000, "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
            "data": SEL_EXECUTE + encode(["address", "uint256", "bytes"], [ANVIL_ACCOUNT0, balance, b""]),
        }, acct.owner_key)
        rpc(chain.url, "anvil_reorg", [1, [["0x" + bytes(drain.raw_transaction).hex(), 0]]])
        assert int(rpc(chain.url, "eth_getBalance", [acct.address, "latest"]), 16) == 0

        async def dropped() -> bool:
            try:
                await client.call("eth_getUserOperationReceipt", op_hash)
            except RpcError as e:
                return e
            return False

        e = await eventually(dropped, what="the op to be reported dropped")
        assert e.code == -32500 and "AA21" in e.message and "reorged out" in e.message
        assert await client.call("debug_bundler_dumpMempool", V07.address) == []


async def test_bundle_back_in_the_node_pool_is_followed_not_sent_again(chain):
    """Nodes put the transactions of dropped blocks back in their pool (anvil does not: the test
    does it): the bundler follows that same transaction again instead of re-bundling its ops."""
    acct = chain.account(V08)
    async with running_bundler(chain) as (b, client):
        op_hash = await send_op(client, chain, acct)
        old = await mined_bundle(client, op_hash)
        executor = b.executors[0].address
        nonce_after = int(rpc(chain.url, "eth_getTransactionCount", [executor, "latest"]), 16)
        raw = rpc(chain.url, "eth_getRawTransactionByHash", [old["transactionHash"]])
        set_automine(chain.url, False)
        try:
            rpc(chain.url, "anvil_reorg", [1, []])
            rpc(chain.url, "eth_sendRawTransaction", [raw])
            await eventually(lambda: b.store.get(op_hash).status == OpStatus.SUBMITTED,
                             what="the op to wait for its transaction again")
            assert (await client.call("eth_getUserOperationByHash", op_hash))["transactionHash"] is None
            assert await client.call("debug_bundler_sendBundleNow") == "ok"  # nothing to re-bundle
            rpc(chain.url, "evm_mine", [])
        finally:
            set_automine(chain.url, True)
        landed = rpc(chain.url, "eth_getTransactionReceipt", [old["transactionHash"]])
        await eventually(lambda: b.store.get(op_hash).status == OpStatus.MINED, what="the op mined again")
        assert b.store.get(op_hash).block_hash == landed["blockHash"] != old["blockHash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["receipt"]["transactionHash"] == old["transactionHash"]
        assert int(rpc(chain.url, "eth_getTransactionCount", [executor, "latest"]), 16) == nonce_after
        await eventually(lambda: b.store.inflight() == [], what="the in-flight record to be cleared")


async def test_op_mined_by_a_forgotten_transaction_is_recorded_mined_not_dropped(chain):
    """The reorged-out bundle went back to the pool, then its old transaction was mined after
    all (another node still had it): the next bundle simulation fails the op on its nonce
    (AA25), and the bundler finds its UserOperationEvent and records it mined."""
    acct = chain.account(V07)
    async with running_bundler(chain) as (b, client):
        op_hash = await send_op(client, chain, acct)
        old = await mined_bundle(client, op_hash)
        raw = rpc(chain.url, "eth_getRawTransactionByHash", [old["transactionHash"]])
        rpc(chain.url, "anvil_reorg", [1, []])
        await eventually(lambda: _is_pending(client, op_hash), what="the op back in the pool")
        rpc(chain.url, "eth_sendRawTransaction", [raw])  # mined (automine)
        assert await client.call("debug_bundler_sendBundleNow") == "ok"
        record = b.store.get(op_hash)
        assert record.status == OpStatus.MINED and record.tx_hash == old["transactionHash"]
        receipt = await client.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == old["transactionHash"]
        assert await client.call("debug_bundler_dumpMempool", V07.address) == []
