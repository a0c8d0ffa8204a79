"""ERC-7562 at bundle time and the unsafe switch, through the RPC on anvil (v0.7 and v0.8):
the builder validates every selected op again with the rules and compares code hashes with
admission's (COD-010); what fails is dropped with its reason and the rest is mined."""
from __future__ import annotations

import pytest

from bundler.contracts_build import load_contract
from bundler.devchain.anvil import rpc as node_rpc
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.erc7562_common import EPS, OPCODE_VIOLATION, assert_error, assert_ok, make_worlds, send
from helpers.accounts import mine

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


async def dropped_error(rpc, op_hash: str) -> RpcError:
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", op_hash)
    return e.value


@pytest.mark.parametrize("ep", EPS)
async def test_clean_ops_pass_second_validation_and_are_mined(rpc, clean_bundler, worlds, ep):
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    hashes = [
        (await send(rpc, w.op(w.entity(), w.payload("READ_SENDER_ASSOC")), ep))["result"],
        (await send(rpc, w.op(w.entity(), paymaster=pm), ep))["result"],
        (await send(rpc, w.deploy_op(w.factory()), ep))["result"],
    ]
    await rpc.call("debug_bundler_sendBundleNow")
    for h in hashes:
        assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True


@pytest.mark.parametrize("ep", EPS)
async def test_op_breaking_a_rule_at_bundle_time_is_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """admitted clean; by bundle time the account reads TIMESTAMP (its flag, in storage associated
    with it, was set meanwhile): dropped with the rule's code and message, the other op mined"""
    w = worlds[ep.version]
    flagged = w.entity()
    good = w.entity()
    bad_hash = (await send(rpc, w.op(flagged, w.payload("TIMESTAMP_IF_FLAGGED")), ep))["result"]
    good_hash = (await send(rpc, w.op(good, w.payload("TIMESTAMP_IF_FLAGGED")), ep))["result"]
    w.set_balance_slot(w.helper, flagged)
    await rpc.call("debug_bundler_sendBundleNow")
    err = await dropped_error(rpc, bad_hash)
    assert err.code == OPCODE_VIOLATION
    assert "failed second validation: account uses banned opcode: TIMESTAMP" in err.message
    assert (await rpc.call("eth_getUserOperationReceipt", good_hash))["success"] is True
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []


@pytest.mark.parametrize("ep", EPS)
async def test_code_change_since_admission_is_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """COD-010: the helper the account calls got other code after admission"""
    w = worlds[ep.version]
    helper = w.entity()
    op = w.op(w.entity(), w.payload("EXTCODESIZE_TARGET", "call", target=helper))
    op_hash = (await send(rpc, op, ep))["result"]
    other_code = load_contract("RulesFactory")["deployedBytecode"]  # still answers run(...)
    node_rpc(anvil.url, "anvil_setCode", [helper, other_code])
    mine(anvil.url)
    await rpc.call("debug_bundler_sendBundleNow")
    err = await dropped_error(rpc, op_hash)
    assert err.code == OPCODE_VIOLATION
    assert "the code of" in err.message and "changed since the UserOperation was admitted" in err.message
    assert err.data["reason"].startswith("failed second validation")




@pytest.mark.parametrize("ep", EPS)
async def test_unsafe_mode_skips_the_rules(rpc, unsafe_rpc, clean_bundler, worlds, ep):
    w = worlds[ep.version]
    op = w.op(w.entity(), w.payload("TIMESTAMP"), paymaster=w.entity(paymaster=True),
              pm_payload=w.payload("SSTORE_OWN"))
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, "account uses banned opcode: TIMESTAMP")
    answer = await unsafe_rpc.request("eth_sendUserOperation", format_user_operation(op), ep.address)
    assert_ok(answer)
    await unsafe_rpc.call("debug_bundler_sendBundleNow")
    assert (await unsafe_rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
