"""Pending session usage survives every way an op comes back into the pool (issue 8 item 5):
after a restart (`bundler run` killed with SIGKILL and started again on the same data dir) and
after a reorg put a mined session op back in the pool, the op still counts against its
session's limits: session_getSession reports it pending, an op that would exceed the limit
together with it is refused at admission, and revoking the session drops it."""
from __future__ import annotations

import asyncio
import os

import pytest
from eth_account import Account

from bundler.devchain import deploy_all, fund, start_anvil
from bundler.entrypoint import V07, V08
from session_sdk.types import ArgConstraint, CallPolicy, Condition, Limit, SessionSpec, word
from session_sdk.calldata import encode_execute, encode_grant_session, encode_revoke_session
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.inproc import eventually, pool_txs, running_bundler
from helpers.procs import BundlerProcess, RpcFailure, wait_for
from helpers.sessions import (
    TEST_GAS, SessionAccountHandle, deploy_session_contracts, erc20_mint, erc20_transfer, new_key, rpc as node_rpc, selector,
    send_tx, set_balance,
)

ETH = 10**18
SEL_TRANSFER = selector("transfer(address,uint256)")


@pytest.fixture(scope="module")
def chain():
    node = start_anvil()
    try:
        deploy_all(node.url)
        node.sessions = deploy_session_contracts(node.url)
        yield node
    finally:
        node.stop()


def executor_key(chain) -> str:
    key = "0x" + os.urandom(32).hex()
    fund(chain.url, Account.from_key(key).address, 100 * ETH)
    return key


def session_account(chain, ep, limit: int):
    """A deployed SessionAccount holding 1000 tokens, with a session that may transfer at most
    `limit` of them in total (granted by the owner's own transaction)."""
    acct = SessionAccountHandle.create(chain.url, chain.chain_id, ep, chain.sessions)
    acct.verification_gas, acct.call_gas = 400_000, 200_000
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    spec = SessionSpec(signer=signer, call_policies=(CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
        ArgConstraint(Condition.LTE, 1, word(2**256 - 1), Limit.lifetime(limit)),)),), gas=TEST_GAS)
    owner_tx(chain, acct, encode_grant_session(spec))
    return acct, key, signer


def owner_tx(chain, acct, data: bytes) -> None:
    set_balance(chain.url, acct.owner, ETH)
    node_rpc(chain.url, "anvil_impersonateAccount", [acct.owner])
    send_tx(chain.url, acct.address, data, sender=acct.owner)


def transfer_op(chain, acct, key, amount: int, nonce: int):
    call = encode_execute(chain.sessions.token, 0, erc20_transfer(new_key()[1], amount))
    return format_user_operation(acct.sign_session(acct.build(call, nonce=nonce), key))


def pending_amount(info: dict) -> int:
    [item] = [i for i in info["limits"] if i["policyIndex"] == 0 and i.get("constraintIndex") == 0]
    return int(item["pending"], 16)


def test_pending_usage_survives_a_restart(chain, tmp_path):
    acct, key, signer = session_account(chain, V07, limit=100)
    data, exe = tmp_path / "data", executor_key(chain)
    start = acct.nonce()
    b = BundlerProcess(chain.url, data, exe)
    try:
        hashes = [b.call("eth_sendUserOperation", transfer_op(chain, acct, key, 40, start + i), V07.address)
                  for i in range(2)]
        assert pending_amount(b.call("session_getSession", acct.address, signer)) == 80
    finally:
        b.kill()

    b = BundlerProcess(chain.url, data, exe)
    try:
        info = b.call("session_getSession", acct.address, signer)
        assert info["pendingOps"] == hashes
        assert pending_amount(info) == 80 and info["uses"]["pending"] == 2
        # 40 more would be 120 > 100 with the two reloaded ops: refused now, not dropped later
        with pytest.raises(RpcFailure) as e:
            b.call("eth_sendUserOperation", transfer_op(chain, acct, key, 40, start + 2), V07.address)
        assert e.value.code == -32500 and e.value.data["rule"] == "SessionCumulativeLimitExceeded"
        assert (int(e.value.data["pending"], 16), int(e.value.data["remaining"], 16)) == (80, 20)

        owner_tx(chain, acct, encode_revoke_session(signer))

        def dropped(h):
            try:
                b.call("eth_getUserOperationReceipt", h)
            except RpcFailure as failure:
                return failure
            return None

        for h in hashes:
            failure = wait_for(lambda: dropped(h), what=f"reloaded op {h} dropped after the revocation")
            assert failure.code == -32500 and "revoked" in failure.message
        assert b.call("session_getSession", acct.address, signer)["pendingOps"] == []
        assert b.call("debug_bundler_dumpMempool", V07.address) == []
    finally:
        b.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("ep,forgotten", [pytest.param(V07, True, id="v0.7-ledger-had-forgotten-it"),
                                          pytest.param(V08, False, id="v0.8-still-marked-mined")])
async def test_pending_usage_of_a_reorged_out_op(chain, ep, forgotten):
    """`forgotten`: a block came after the bundle's, so the ledger had let go of the mined op
    (the state showed its consumption) before the reorg took both blocks away; otherwise the
    reorg comes while the ledger still holds the op as mined."""
    acct, key, signer = session_account(chain, ep, limit=100)
    async with running_bundler(chain) as (b, client):
        h = await client.call("eth_sendUserOperation", transfer_op(chain, acct, key, 40, acct.nonce()), ep.address)
        await client.call("debug_bundler_sendBundleNow")
        receipt = await client.call("eth_getUserOperationReceipt", h)
        assert receipt["success"] is True
        depth = 1
        if forgotten:
            node_rpc(chain.url, "evm_mine", [])
            depth = 2
            await eventually(lambda: not b.sessions.ledger.entries(acct.address, signer, include_mined=True),
                             what="the mined op forgotten by the ledger once the state shows it")
        info = await client.call("session_getSession", acct.address, signer)
        assert info["pendingOps"] == [] and pending_amount(info) == 0

        node_rpc(chain.url, "anvil_reorg", [depth, []])  # the bundle's block is replaced by an empty one

        async def back_in_pool() -> bool:
            found = await client.call("eth_getUserOperationByHash", h)
            return found is not None and found["transactionHash"] is None and b.mempool.get(h) is not None

        await eventually(back_in_pool, what="the reorged-out op back in the pool")
        info = await client.call("session_getSession", acct.address, signer)
        assert info["pendingOps"] == [h] and pending_amount(info) == 40
        with pytest.raises(RpcError) as e:  # 40 pending + 70 > 100
            await client.call("eth_sendUserOperation", transfer_op(chain, acct, key, 70, acct.nonce() + 1), ep.address)
        assert e.value.code == -32500 and e.value.data["rule"] == "SessionCumulativeLimitExceeded"
        assert int(e.value.data["pending"], 16) == 40

        owner_tx(chain, acct, encode_revoke_session(signer))

        async def dropped():
            try:
                await client.call("eth_getUserOperationReceipt", h)
            except RpcError as err:
                return err
            return None

        err = await eventually(dropped, what="the re-queued op dropped after the revocation")
        assert err.code == -32500 and "revoked" in err.message
        assert await client.call("debug_bundler_dumpMempool", ep.address) == []


@pytest.mark.asyncio
async def test_pending_usage_of_ops_whose_bundle_lost_its_nonce(chain):
    """The executor's nonce goes to another transaction: the bundle's ops go back to the pool
    (re-validated) and are sent again; meanwhile they still count against the session."""
    acct, key, signer = session_account(chain, V08, limit=100)
    exe = executor_key(chain)
    executor = Account.from_key(exe).address
    async with running_bundler(chain, private_key=[exe], tx_replace_after_s=300) as (b, client):
        node_rpc(chain.url, "evm_setAutomine", [False])
        try:
            h = await client.call("eth_sendUserOperation", transfer_op(chain, acct, key, 60, acct.nonce()), V08.address)
            sending = asyncio.create_task(client.call("debug_bundler_sendBundleNow"))
            [(nonce, ours)] = (await eventually(lambda: pool_txs(chain.url, executor), what="the bundle")).items()
            fee = int(ours["maxFeePerGas"], 16)
            theirs = Account.sign_transaction({
                "type": 2, "chainId": chain.chain_id, "nonce": int(nonce), "to": executor, "value": 0, "gas": 21000,
                "maxFeePerGas": fee * 10, "maxPriorityFeePerGas": fee * 5}, exe)
            node_rpc(chain.url, "eth_sendRawTransaction", ["0x" + bytes(theirs.raw_transaction).hex()])
            node_rpc(chain.url, "evm_mine", [])
            again = await eventually(lambda: pool_txs(chain.url, executor).get(str(int(nonce) + 1)),
                                     what="the ops sent again with the next nonce")
            info = await client.call("session_getSession", acct.address, signer)
            assert info["pendingOps"] == [h] and pending_amount(info) == 60
            with pytest.raises(RpcError) as e:  # 60 pending + 60 > 100
                await client.call("eth_sendUserOperation", transfer_op(chain, acct, key, 60, acct.nonce() + 1),
                                  V08.address)
            assert e.value.data["rule"] == "SessionCumulativeLimitExceeded" and int(e.value.data["pending"], 16) == 60
            node_rpc(chain.url, "evm_mine", [])
            assert await asyncio.wait_for(sending, 30) == again["hash"]
        finally:
            node_rpc(chain.url, "evm_setAutomine", [True])
        receipt = await client.call("eth_getUserOperationReceipt", h)
        assert receipt["success"] is True
