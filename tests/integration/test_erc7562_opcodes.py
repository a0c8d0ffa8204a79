"""ERC-7562 opcode rules through eth_sendUserOperation on anvil, v0.7 and v0.8: each rule broken
by the account, the paymaster and the factory, directly and through an inner CALL/DELEGATECALL
into a helper contract, next to the allowed neighbour that must still be accepted."""
from __future__ import annotations

import pytest

from helpers.erc7562_common import EPS, OPCODE_VIOLATION, STAKE_TOO_LOW, ROLES, assert_error, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio

BANNED = ["TIMESTAMP", "NUMBER", "GASPRICE", "BASEFEE", "ORIGIN", "COINBASE", "GASLIMIT", "PREVRANDAO",
          "BLOCKHASH", "BLOBHASH", "BLOBBASEFEE"]
# the name messages use: 0x44 is DIFFICULTY, the name every suite and client searches for
MESSAGE_NAME = {"PREVRANDAO": "DIFFICULTY (PREVRANDAO)"}
MAIN_ROLES = ["account", "paymaster", "factory", "account-call", "paymaster-delegatecall"]
ALL_ROLES = list(ROLES)


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


def entity(role: str) -> str:
    return ROLES[role][0]


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_clean_op_is_accepted(rpc, clean_bundler, worlds, ep, role):
    op = worlds[ep.version].op_for(role, "")
    assert_ok(await send(rpc, op, ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
@pytest.mark.parametrize("opcode", BANNED)
async def test_banned_opcode(rpc, clean_bundler, worlds, ep, role, opcode):
    """OP-011"""
    op = worlds[ep.version].op_for(role, opcode)
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION,
                 f"{entity(role)} uses banned opcode: {MESSAGE_NAME.get(opcode, opcode)} (in 0x")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["account-call", "paymaster-call", "factory-call"])
async def test_selfdestruct(rpc, clean_bundler, worlds, ep, role):
    """OP-011 SELFDESTRUCT (in a helper: in the entity itself it would end validateUserOp)"""
    op = worlds[ep.version].op_for(role, "SELFDESTRUCT")
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, f"{entity(role)} uses banned opcode: SELFDESTRUCT")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_invalid_opcode(rpc, clean_bundler, worlds, ep, role):
    """OP-011 INVALID, in an inner frame whose failure the entity ignores"""
    op = worlds[ep.version].op_for(role, "INVALID")
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, f"{entity(role)} uses banned opcode: INVALID")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_gas_not_before_call(rpc, clean_bundler, worlds, ep, role):
    """OP-012: gasleft() read into a value"""
    op = worlds[ep.version].op_for(role, "GAS")
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, f"{entity(role)} uses banned opcode: GAS")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_gas_right_before_call_is_fine(rpc, clean_bundler, worlds, ep, role):
    """OP-012's allowed neighbour: call(gas(), ...)"""
    op = worlds[ep.version].op_for(role, "GAS_CALL")
    assert_ok(await send(rpc, op, ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
async def test_out_of_gas_in_inner_call(rpc, clean_bundler, worlds, ep, role):
    """OP-020: an inner call runs out of gas (the entity ignores the failure)"""
    op = worlds[ep.version].op_for(role, "OOG")
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, f"{entity(role)} ran out of gas")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
async def test_inner_revert_is_fine(rpc, clean_bundler, worlds, ep, role):
    """OP-020's neighbour: an inner call that reverts (not out of gas)"""
    op = worlds[ep.version].op_for(role, "REVERT_INNER")
    assert_ok(await send(rpc, op, ep))


@pytest.mark.parametrize("ep", EPS)
async def test_revert_of_the_validation_keeps_its_reason(rpc, clean_bundler, worlds, ep):
    """a revert inside validation is not a rule violation: -32500 with the reason"""
    op = worlds[ep.version].op_for("account", "NO_SUCH_COMMAND")
    assert_error(await send(rpc, op, ep), -32500, "AA23", "unknown command NO_SUCH_COMMAND")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("command,opcode", [("EXTCODESIZE_NOCODE", "EXTCODESIZE"), ("CALL_NOCODE", "CALL")])
async def test_access_to_address_without_code(rpc, clean_bundler, worlds, ep, role, command, opcode):
    """OP-041"""
    op = worlds[ep.version].op_for(role, command)
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION,
                 f"{entity(role)} accesses un-deployed contract address", opcode)


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
async def test_code_of_a_deployed_contract_is_fine(rpc, clean_bundler, worlds, ep, role):
    """OP-041's neighbour (the factory's EXTCODESIZE of the undeployed sender is OP-042, in every
    factory op)"""
    op = worlds[ep.version].op_for(role, "EXTCODESIZE_TARGET")
    assert_ok(await send(rpc, op, ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
@pytest.mark.parametrize("command", ["EP_BALANCEOF", "EP_CODEHASH"])
async def test_entry_point_access(rpc, clean_bundler, worlds, ep, role, command):
    """OP-054: any access to the EntryPoint but depositTo / the fallback"""
    op = worlds[ep.version].op_for(role, command)
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, entity(role), "EntryPoint")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role,allowed", [("account", True), ("factory", True), ("paymaster", False)])
async def test_deposit_to_sender(rpc, clean_bundler, worlds, ep, role, allowed):
    """OP-052: depositTo(sender) from the sender or the factory; not from the paymaster. (The
    account's prefund payment through the EntryPoint's fallback, OP-053, is in every account op.)"""
    op = worlds[ep.version].op_for(role, "EP_DEPOSIT")
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, "paymaster calls the EntryPoint")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
async def test_call_with_value(rpc, clean_bundler, worlds, ep, role):
    """OP-061"""
    op = worlds[ep.version].op_for(role, "VALUE_CALL")
    assert_error(await send(rpc, op, ep), OPCODE_VIOLATION, f"{entity(role)} calls", "with value 1")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", MAIN_ROLES)
@pytest.mark.parametrize("command,allowed", [("PRECOMPILE_OK", True), ("PRECOMPILE_BAD", False)])
async def test_precompiles(rpc, clean_bundler, worlds, ep, role, command, allowed):
    """OP-062: ecrecover (0x01) is fine, 0x0b (BLS12-381) is not on the list"""
    op = worlds[ep.version].op_for(role, command)
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, f"{entity(role)} calls precompile 0x" + "00" * 19 + "0b")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["account", "paymaster", "factory", "account-delegatecall", "paymaster-call"])
@pytest.mark.parametrize("opcode", ["BALANCE", "SELFBALANCE"])
async def test_balance_needs_stake(rpc, anvil, clean_bundler, worlds, ep, role, opcode):
    """OP-080: refused for an unstaked entity, accepted once it is staked, -32505 with too little
    stake"""
    w = worlds[ep.version]
    ent = entity(role)
    fresh = {"account": dict(account=w.entity()), "paymaster": dict(paymaster=w.entity(paymaster=True)),
             "factory": dict(factory=w.factory())}[ent]
    address = next(iter(fresh.values()))
    assert_error(await send(rpc, w.op_for(role, opcode, **fresh), ep), OPCODE_VIOLATION,
                 f"{ent} uses banned opcode: {opcode}")
    w.stake(address, value=10**17)
    assert_error(await send(rpc, w.op_for(role, opcode, **fresh), ep), STAKE_TOO_LOW,
                 f"{ent} uses banned opcode: {opcode}", "below this bundler's minimum")
    w.stake(address, value=9 * 10**17)  # 1 ETH in total
    assert_ok(await send(rpc, w.op_for(role, opcode, **fresh), ep))


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role,allowed", [
    ("account", True), ("account-delegatecall", True),  # the sender's own frame
    ("account-call", False),  # a helper's value call credits the helper, not the sender
    ("paymaster", False), ("paymaster-call", False), ("paymaster-delegatecall", False),
    ("factory", False), ("factory-call", False), ("factory-delegatecall", False),
])
async def test_value_to_the_entry_point_fallback(rpc, clean_bundler, worlds, ep, role, allowed):
    """OP-053: a plain value call to the EntryPoint's fallback is allowed from the sender only"""
    op = worlds[ep.version].op_for(role, "EP_FALLBACK")
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        error = assert_error(answer, OPCODE_VIOLATION, f"{entity(role)} calls the EntryPoint (CALL to its fallback)")
        assert error["data"]["rule"] == "OP-054"


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("how,staked,allowed", [
    ("direct", False, True), ("direct", True, True), ("delegatecall", False, True), ("call", False, False),
])
async def test_constructor_prefunding_through_the_fallback(rpc, clean_bundler, worlds, ep, how, staked, allowed):
    """OP-053 in the factory phase: the account's constructor runs at the sender's address and
    pays into its EntryPoint deposit; the op is accepted and mined, staked factory or not. From a
    helper the constructor calls, it is not the sender's fallback call (OP-054)"""
    w = worlds[ep.version]
    op = w.self_funded_deploy_op(w.self_funding_factory(staked=staked), w.payload("EP_FALLBACK", how))
    answer = await send(rpc, op, ep)
    if not allowed:
        assert_error(answer, OPCODE_VIOLATION, "factory calls the EntryPoint (CALL to its fallback)")
        return
    assert_ok(answer)
    if how == "direct" and not staked:
        await rpc.call("debug_bundler_sendBundleNow")
        assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
