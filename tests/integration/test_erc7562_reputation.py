"""ERC-7562 reputation rules that hang on the validation rules, through eth_sendUserOperation on
anvil for each entity role: a replaced op is uncounted (one op seen per replacement), and a
second-validation failure bans the entity at fault only when it is staked (SREP-050, EREP-020;
EREP-030: an unstaked entity is not banned for it)."""
from __future__ import annotations

import pytest

from bundler.devchain.anvil import rpc as node_rpc
from conftest import RpcError
from helpers.erc7562_common import EPS, assert_ok, make_worlds, send
from helpers.accounts import mine

pytestmark = pytest.mark.asyncio
PENALTY = hex(10_000)


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


async def reputation_of(rpc, ep, address) -> dict | None:
    for entry in await rpc.call("debug_bundler_dumpReputation", ep.address):
        if entry["address"].lower() == address.lower():
            return entry
    return None


async def sent(rpc, op, ep) -> str:
    answer = await send(rpc, op, ep)
    assert_ok(answer)
    return answer["result"]


async def dropped(rpc, op_hash) -> RpcError:
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", op_hash)
    return e.value


def bumped(op, n: int):
    return op.with_changes(max_fee_per_gas=op.max_fee_per_gas * (12 ** n) // (10 ** n),
                           max_priority_fee_per_gas=op.max_priority_fee_per_gas * (12 ** n) // (10 ** n))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["paymaster", "factory", "account"])
async def test_replacement_counts_one_op_seen(rpc, clean_bundler, worlds, ep, role):
    """three fee bumps of one op: the entity has one op seen, and one included once mined"""
    w = worlds[ep.version]
    if role == "paymaster":
        entity = w.entity(paymaster=True)
        op = w.op(w.entity(), paymaster=entity)
    elif role == "factory":
        entity = w.factory()
        op = w.deploy_op(entity)
    else:
        entity = w.entity()
        w.stake(entity)  # a sender counts only when staked
        op = w.op(entity)
    for n in range(4):
        await sent(rpc, bumped(op, n), ep)
        assert (await reputation_of(rpc, ep, entity))["opsSeen"] == "0x1", n
    await rpc.call("debug_bundler_sendBundleNow")
    entry = await reputation_of(rpc, ep, entity)
    assert (entry["opsSeen"], entry["opsIncluded"]) == ("0x1", "0x1")


@pytest.mark.parametrize("ep", EPS)
async def test_replacement_with_another_paymaster_moves_the_count(rpc, clean_bundler, worlds, ep):
    w = worlds[ep.version]
    first, second = w.entity(paymaster=True), w.entity(paymaster=True)
    op = w.op(w.entity(), paymaster=first)
    await sent(rpc, op, ep)
    await sent(rpc, bumped(op, 1).with_changes(paymaster=second), ep)
    assert (await reputation_of(rpc, ep, first))["opsSeen"] == "0x0"
    assert (await reputation_of(rpc, ep, second))["opsSeen"] == "0x1"


ROLE_HOWS = [("paymaster", "direct"), ("paymaster", "call"), ("paymaster", "delegatecall"),
             ("account", "direct"), ("account", "call"), ("account", "delegatecall"),
             ("factory", "direct"), ("factory", "call"), ("factory", "delegatecall")]


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role,how", ROLE_HOWS)
@pytest.mark.parametrize("staked", [True, False], ids=["staked", "unstaked"])
async def test_second_validation_failure_bans_only_a_staked_entity(rpc, clean_bundler, worlds, ep, role, how,
                                                                   staked):
    """admitted clean; by bundle time the validation reads TIMESTAMP (its flag was set meanwhile),
    or, for a deployment through an unstaked factory (which may not read that flag, STO-022),
    the new account cannot pay (AA21). The entity at fault (the paymaster; the staked sender;
    the factory for the account it deploys, EREP-020) gets the ban penalty when staked, and
    its other pending ops leave with it; an unstaked one is not banned"""
    w = worlds[ep.version]
    flag = w.payload("TIMESTAMP_IF_FLAGGED", how)
    neighbour = None
    if role == "paymaster":
        entity = w.entity(paymaster=True)
        if staked:
            w.stake(entity)
        op = w.op(w.entity(), paymaster=entity, pm_payload=flag)
        neighbour = w.op(w.entity(), paymaster=entity)
    elif role == "account":
        entity = w.entity()
        if staked:
            w.stake(entity)
        op = w.op(entity, flag)
    else:
        entity = w.factory(staked=staked)
        op = w.deploy_op(entity, account_payload=flag if staked else w.payload("", how))
        neighbour = w.deploy_op(entity)
    op_hash = await sent(rpc, op, ep)
    neighbour_hash = await sent(rpc, neighbour, ep) if neighbour is not None else None
    if role == "factory" and not staked:
        node_rpc(w.url, "anvil_setBalance", [op.sender, "0x0"])
        mine(w.url)
    else:
        w.set_balance_slot(w.helper, op.sender)
    await rpc.call("debug_bundler_sendBundleNow")
    err = await dropped(rpc, op_hash)
    assert "failed second validation" in err.message
    entry = await reputation_of(rpc, ep, entity)
    if staked:
        assert (entry["opsSeen"], entry["opsIncluded"], entry["status"]) == (PENALTY, "0x0", "0x2"), entry
        if neighbour_hash is not None:  # GREP-010: its other pending op went with it
            assert (await dropped(rpc, neighbour_hash)).code == -32504
    elif role == "account":
        assert entry is None  # an unstaked sender is no entity
    else:
        assert entry["status"] == "0x0" and entry["opsSeen"] != PENALTY, entry
        assert (await rpc.call("eth_getUserOperationReceipt", neighbour_hash))["success"] is True
