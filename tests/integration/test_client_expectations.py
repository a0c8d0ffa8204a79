"""What ERC-4337 client SDKs expect from a bundler, through the real RPC on anvil: the gas price
methods permissionless (pimlico_getUserOperationGasPrice) and rundler users call, and estimation
of the next op of a sender while its previous one is still pending."""
from __future__ import annotations

import pytest

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc as node_rpc
from bundler.entrypoint import V07, V08
from bundler.userop import format_user_operation
from helpers.accounts import SimpleAccountHelper, mine

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]


def base_fee(anvil) -> int:
    return int(node_rpc(anvil.url, "eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)


async def test_pimlico_gas_price_tiers_are_admissible_and_ordered(rpc, anvil, clean_bundler):
    prices = await rpc.call("pimlico_getUserOperationGasPrice")
    assert set(prices) == {"slow", "standard", "fast"}
    tiers = [(int(prices[t]["maxFeePerGas"], 16), int(prices[t]["maxPriorityFeePerGas"], 16))
             for t in ("slow", "standard", "fast")]
    node_priority = int(node_rpc(anvil.url, "eth_maxPriorityFeePerGas", []), 16)
    current_base = base_fee(anvil)
    for max_fee, priority in tiers:
        assert priority >= node_priority
        # a fee that survives a few full blocks of base-fee growth, and pays the tip on top
        assert max_fee >= 2 * current_base + priority
    assert tiers[0] <= tiers[1] <= tiers[2]
    assert tiers[2][1] > tiers[0][1]


async def test_rundler_priority_fee_is_the_oracles_standard_tip(rpc, anvil, clean_bundler):
    tip = int(await rpc.call("rundler_maxPriorityFeePerGas"), 16)
    prices = await rpc.call("pimlico_getUserOperationGasPrice")
    assert tip == int(prices["standard"]["maxPriorityFeePerGas"], 16)


async def test_pimlico_gas_price_is_accepted_for_an_op(rpc, anvil, clean_bundler):
    """An op priced with the `fast` tier is admitted and mined."""
    acct = SimpleAccountHelper.create(anvil.url, V07, anvil.deployment.factories["0.7"])
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    fast = (await rpc.call("pimlico_getUserOperationGasPrice"))["fast"]
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), max_fee_per_gas=int(fast["maxFeePerGas"], 16),
                           max_priority_fee_per_gas=int(fast["maxPriorityFeePerGas"], 16)), anvil.chain_id)
    op_hash = await rpc.call("eth_sendUserOperation", format_user_operation(op), V07.address)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", op_hash))["success"] is True


@pytest.mark.parametrize("ep", EPS)
async def test_estimate_next_nonce_while_previous_is_pending(rpc, anvil, clean_bundler, ep):
    acct = SimpleAccountHelper.create(anvil.url, ep, anvil.deployment.factories[ep.version])
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    start = acct.nonce()
    first = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=start), anvil.chain_id)
    first_hash = await rpc.call("eth_sendUserOperation", format_user_operation(first), ep.address)
    # nonce n+1 with n only in the mempool: estimated against the queued nonce (was AA25)
    unsigned = acct.op(acct.execute(ANVIL_ACCOUNT0, 2), nonce=start + 1, call_gas_limit=0,
                       verification_gas_limit=0, pre_verification_gas=0)
    est = await rpc.call("eth_estimateUserOperationGas", format_user_operation(unsigned), ep.address)
    second = acct.sign(unsigned.with_changes(
        call_gas_limit=int(est["callGasLimit"], 16), verification_gas_limit=int(est["verificationGasLimit"], 16),
        pre_verification_gas=int(est["preVerificationGas"], 16)), anvil.chain_id)
    second_hash = await rpc.call("eth_sendUserOperation", format_user_operation(second), ep.address)
    await rpc.call("debug_bundler_sendBundleNow")
    for h in (first_hash, second_hash):
        assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert acct.nonce() == start + 2
    # a gap (n+2 with nothing at n+1 pending) is still refused at estimation
    gap = acct.op(acct.execute(ANVIL_ACCOUNT0, 3), nonce=start + 3, call_gas_limit=0, verification_gas_limit=0,
                  pre_verification_gas=0)
    from conftest import RpcError
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_estimateUserOperationGas", format_user_operation(gap), ep.address)
    assert "AA25" in e.value.message
