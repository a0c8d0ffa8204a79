"""ERC-7562 mempool rules STO-040 and STO-041 through eth_sendUserOperation on anvil: an address
that is a sender in the mempool cannot be another op's entity (and the reverse), and an op may not
touch the storage of another pending op's sender."""
from __future__ import annotations

import pytest

from erc7562_common import EPS, OPCODE_VIOLATION, assert_error, assert_ok, make_worlds, send

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
@pytest.mark.parametrize("role", ["account", "paymaster", "account-call"])
async def test_storage_of_a_pending_sender(rpc, clean_bundler, worlds, ep, role):
    """STO-041: the op writes storage associated with its own sender inside a contract that is
    the sender of a pending op; accepted while that contract has no op pending"""
    w = worlds[ep.version]
    other = w.entity()
    op = w.op_for(role, "WRITE_SENDER_ASSOC", target=other, account=w.entity())
    assert_ok(await send(rpc, op, ep))
    await rpc.call("debug_bundler_clearMempool")
    assert_ok(await send(rpc, w.op(other), ep))
    op = w.op_for(role, "WRITE_SENDER_ASSOC", target=other, account=w.entity())
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION,
                 f"accessed storage of {other}", "the sender of another UserOperation currently in mempool")
