"""ERC-7562 mempool rules STO-040 and STO-041 through eth_sendUserOperation on anvil: an address
that is a sender in the mempool cannot be another op's entity (and the reverse), and an op may not
touch the storage of another pending op's sender."""
from __future__ import annotations

import pytest

from helpers.erc7562_common import EPS, OPCODE_VIOLATION, assert_error, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_that_is_a_pending_sender(rpc, clean_bundler, worlds, ep):
    """STO-040: the paymaster has an op of its own (as an account) in the mempool"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    assert_ok(await send(rpc, w.op(pm), ep))
    answer = await send(rpc, w.op(w.entity(), paymaster=pm), ep)
    assert_error(answer, OPCODE_VIOLATION,
                 f"A paymaster at {pm} in this UserOperation is used as a sender entity in another "
                 f"UserOperation currently in mempool")


@pytest.mark.parametrize("ep", EPS)
async def test_sender_that_is_a_pending_paymaster(rpc, clean_bundler, worlds, ep):
    """STO-040 the other way round: the sender is the paymaster of a pending op"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    assert_ok(await send(rpc, w.op(w.entity(), paymaster=pm), ep))
    answer = await send(rpc, w.op(pm), ep)
    assert_error(answer, OPCODE_VIOLATION,
                 f"The sender address {pm} is used as a different entity in another UserOperation "
                 f"currently in mempool")


@pytest.mark.parametrize("ep", EPS)
async def test_shared_paymaster_and_queued_ops_are_fine(rpc, clean_bundler, worlds, ep):
    """neighbours: one paymaster for several senders; several ops of one sender"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    a, b = w.entity(), w.entity()
    assert_ok(await send(rpc, w.op(a, paymaster=pm), ep))
    assert_ok(await send(rpc, w.op(b, paymaster=pm), ep))
    assert_ok(await send(rpc, w.op(a, nonce=w.nonce(a) + 1), ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role,toucher_first", [
    (role, False) for role in ("account", "paymaster", "factory", "account-call", "account-delegatecall",
                               "paymaster-call", "paymaster-delegatecall", "factory-call")
] + [("account", True), ("paymaster", True)])
async def test_storage_of_a_pending_sender_is_kept_apart_at_bundle_time(rpc, clean_bundler, worlds, ep, role,
                                                                        toucher_first):
    """STO-041 is a bundle-time rule: an op writing storage (associated with its own sender)
    inside a contract that is the sender of a pending op is admitted, whichever came first; the
    builder never puts the two in one bundle: one is mined, the other stays pending and goes in
    the next bundle"""
    w = worlds[ep.version]
    other = w.entity()
    factory = w.factory(staked=True) if role.startswith("factory") else None  # STO-022
    toucher = w.op_for(role, "WRITE_SENDER_ASSOC", target=other, account=w.entity(), factory=factory)
    ops = [toucher, w.op(other)] if toucher_first else [w.op(other), toucher]
    hashes = []
    for op in ops:
        answer = await send(rpc, op, ep)
        assert_ok(answer)
        hashes.append(answer["result"])

    async def mined(h):
        receipt = await rpc.call("eth_getUserOperationReceipt", h)
        return receipt is not None and receipt["success"]

    await rpc.call("debug_bundler_sendBundleNow")
    assert sorted([await mined(h) for h in hashes]) == [False, True]
    assert len(await rpc.call("debug_bundler_dumpMempool", ep.address)) == 1
    await rpc.call("debug_bundler_sendBundleNow")
    assert [await mined(h) for h in hashes] == [True, True]
