"""ERC-7562 contract-creation rules (OP-011 CREATE, OP-031, OP-032, EREP-060/061) through
eth_sendUserOperation on anvil, v0.7 and v0.8."""
from __future__ import annotations

import pytest

from helpers.erc7562_common import EPS, OPCODE_VIOLATION, assert_error, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio
CREATES = ["CREATE", "CREATE2"]


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("opcode", CREATES)
@pytest.mark.parametrize("role", ["account", "paymaster", "account-call", "paymaster-delegatecall"])
async def test_no_factory_no_creation(rpc, clean_bundler, worlds, ep, opcode, role):
    """without a factory nobody may create contracts (even a staked entity)"""
    w = worlds[ep.version]
    answer = await send(rpc, w.op_for(role, opcode), ep)
    assert_error(answer, OPCODE_VIOLATION, f"{role.split('-')[0]} uses banned opcode: {opcode}")


@pytest.mark.parametrize("ep", EPS)
async def test_factory_deploys_the_sender_with_create2(rpc, clean_bundler, worlds, ep):
    """OP-031: the one CREATE2 of the sender by the (unstaked) factory"""
    w = worlds[ep.version]
    assert_ok(await send(rpc, w.deploy_op(w.factory()), ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("how,staked,allowed", [
    ("direct", False, False),  # OP-031: CREATE2 only for the sender
    ("direct", True, True),  # EREP-060: the staked factory itself may
    ("call", False, False),
    ("call", True, False),  # EREP-061 covers CREATE only
])
async def test_factory_second_create2(rpc, clean_bundler, worlds, ep, how, staked, allowed):
    """a second CREATE2 (of another contract) in the deployment phase"""
    w = worlds[ep.version]
    op = w.deploy_op(w.factory(staked=staked), factory_payload=w.payload("CREATE2", how))
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, "factory uses banned opcode: CREATE2")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("how,staked,allowed", [
    ("direct", False, False),
    ("direct", True, True),  # EREP-060: the staked factory itself
    ("call", True, True),  # EREP-061: a helper of a staked factory
    ("call", False, False),
])
async def test_factory_create(rpc, clean_bundler, worlds, ep, how, staked, allowed):
    w = worlds[ep.version]
    op = w.deploy_op(w.factory(staked=staked), factory_payload=w.payload("CREATE", how))
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, "factory uses banned opcode: CREATE")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("factory_staked,command,how,allowed", [
    (False, "CREATE", "direct", True),  # OP-032
    (False, "CREATE", "delegatecall", True),  # still the sender's own frame
    (False, "CREATE2", "direct", False),
    (True, "CREATE", "direct", True),  # EREP-060
    (True, "CREATE2", "direct", True),  # EREP-060
    (True, "CREATE", "call", False),  # through a helper: not the sender itself
    (True, "CREATE2", "call", False),
])
async def test_account_create_with_factory(rpc, clean_bundler, worlds, ep, factory_staked, command, how, allowed):
    w = worlds[ep.version]
    op = w.deploy_op(w.factory(staked=factory_staked), account_payload=w.payload(command, how))
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, f"account uses banned opcode: {command}")
