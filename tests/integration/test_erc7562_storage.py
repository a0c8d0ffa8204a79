"""ERC-7562 storage rules (STO-010..033) and transient storage (OP-070) through
eth_sendUserOperation on anvil, v0.7 and v0.8, for each entity role, unstaked and staked."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from helpers.erc7562_common import EPS, OPCODE_VIOLATION, STAKE_TOO_LOW, ROLES, assert_error, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


@dataclass(frozen=True)
class Case:
    command: str
    role: str
    staked: bool
    error: str | None  # None: accepted; else a fragment of the -32502 message
    rule: str

    def __str__(self) -> str:
        return f"{self.rule}-{self.command}-{self.role}-{'staked' if self.staked else 'unstaked'}"


NOT_ASSOCIATED = "(not associated with the sender)"
CASES = [
    # STO-010: the sender's own storage, always
    Case("SLOAD_OWN", "account", False, None, "STO-010"),
    Case("SSTORE_OWN", "account", False, None, "STO-010"),
    Case("SSTORE_OWN", "account-delegatecall", False, None, "STO-010"),
    # STO-031: an entity's own storage needs stake
    Case("SLOAD_OWN", "paymaster", False, "unstaked paymaster accessed its own storage", "STO-031"),
    Case("SLOAD_OWN", "paymaster", True, None, "STO-031"),
    Case("SSTORE_OWN", "paymaster", False, "unstaked paymaster accessed its own storage", "STO-031"),
    Case("SSTORE_OWN", "paymaster", True, None, "STO-031"),
    Case("SSTORE_OWN", "paymaster-delegatecall", False, "unstaked paymaster accessed its own storage", "STO-031"),
    Case("SSTORE_OWN", "paymaster-delegatecall", True, None, "STO-031"),
    Case("SSTORE_OWN", "factory", False, "unstaked factory accessed its own storage", "STO-031"),
    Case("SSTORE_OWN", "factory", True, None, "STO-031"),
    # OP-070: transient storage follows the same rules
    Case("TSTORE_OWN", "account", False, None, "OP-070"),
    Case("TLOAD_OWN", "account", False, None, "OP-070"),
    Case("TSTORE_OWN", "paymaster", False, "unstaked paymaster accessed its own transient storage", "OP-070"),
    Case("TSTORE_OWN", "paymaster", True, None, "OP-070"),
    Case("TLOAD_OWN", "factory", False, "unstaked factory accessed its own transient storage", "OP-070"),
    Case("TSTORE_EXT", "account", False, "account accessed transient storage of", "OP-070"),
    Case("TSTORE_EXT", "paymaster-call", True, "paymaster accessed transient storage of", "OP-070"),
    # STO-033: read-only access to a non-entity contract needs stake; writes are never allowed
    Case("SLOAD_EXT", "account", False, "account accessed storage of", "STO-033"),
    Case("SLOAD_EXT", "account", True, None, "STO-033"),
    Case("SLOAD_EXT", "account-call", False, "account accessed storage of", "STO-033"),
    Case("SLOAD_EXT", "paymaster", False, "paymaster accessed storage of", "STO-033"),
    Case("SLOAD_EXT", "paymaster", True, None, "STO-033"),
    Case("SLOAD_EXT", "factory", False, "factory accessed storage of", "STO-033"),
    Case("SLOAD_EXT", "factory", True, None, "STO-033"),
    Case("SSTORE_EXT", "account", False, "account accessed storage of", "STO-033"),
    Case("SSTORE_EXT", "account", True, "a staked account may only read it", "STO-033"),
    Case("SSTORE_EXT", "paymaster", True, "a staked paymaster may only read it", "STO-033"),
    Case("SSTORE_OWN", "account-call", False, "account accessed storage of", "STO-033"),
    # STO-021: storage associated with an existing sender, in any phase
    Case("READ_SENDER_ASSOC", "account", False, None, "STO-021"),
    Case("WRITE_SENDER_ASSOC", "account", False, None, "STO-021"),
    Case("WRITE_SENDER_ASSOC", "account-call", False, None, "STO-021"),
    Case("WRITE_SENDER_ASSOC", "account-delegatecall", False, None, "STO-021"),
    Case("READ_SENDER_ASSOC", "paymaster", False, None, "STO-021"),
    Case("WRITE_SENDER_ASSOC", "paymaster-delegatecall", False, None, "STO-021"),
    # STO-022: ... of a sender being deployed, only with a staked factory
    Case("WRITE_SENDER_ASSOC", "factory", False, "associated with the sender before the sender is deployed", "STO-022"),
    Case("WRITE_SENDER_ASSOC", "factory", True, None, "STO-022"),
    Case("READ_SENDER_ASSOC", "factory-call", False, "associated with the sender before the sender is deployed", "STO-022"),
    Case("READ_SENDER_ASSOC", "factory-call", True, None, "STO-022"),
    # STO-032: storage associated with a staked entity
    Case("WRITE_SELF_ASSOC", "paymaster", False, "unstaked paymaster accessed storage of", "STO-032"),
    Case("WRITE_SELF_ASSOC", "paymaster", True, None, "STO-032"),
    Case("WRITE_SELF_ASSOC", "account", False, None, "STO-021"),  # the account is the sender
]


def _staked_kwargs(w, role: str) -> dict:
    entity = ROLES[role][0]
    if entity == "account":
        address = w.entity()
    elif entity == "paymaster":
        address = w.entity(paymaster=True)
    else:
        address = w.factory()
    w.stake(address)
    return {entity: address}


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_storage_rule(rpc, clean_bundler, worlds, ep, case):
    w = worlds[ep.version]
    kwargs = _staked_kwargs(w, case.role) if case.staked else {}
    op = w.op_for(case.role, case.command, **kwargs)
    answer = await send(rpc, op, ep)
    if case.error is None:
        assert_ok(answer)
    else:
        error = assert_error(answer, OPCODE_VIOLATION, case.error)
        if "unstaked" not in case.error and not case.staked and "accessed storage of" in case.error \
                and case.command.startswith("SLOAD"):
            assert error["message"].endswith(NOT_ASSOCIATED)


@pytest.mark.parametrize("ep", EPS)
async def test_message_names_contract_and_slot(rpc, clean_bundler, worlds, ep):
    w = worlds[ep.version]
    answer = await send(rpc, w.op_for("account", "SLOAD_EXT"), ep)
    assert_error(answer, OPCODE_VIOLATION, f"account accessed storage of {w.helper} slot 0x0 {NOT_ASSOCIATED}")
    assert answer["error"]["data"]["rule"] == "STO-033"


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("staked", [False, True], ids=["unstaked-factory", "staked-factory"])
async def test_undeployed_account_and_associated_storage(rpc, clean_bundler, worlds, ep, staked):
    """STO-022 in the account phase of a deployment: the account's associated storage elsewhere
    is allowed only when its factory is staked"""
    w = worlds[ep.version]
    factory = w.factory(staked=staked)
    op = w.deploy_op(factory, account_payload=w.payload("WRITE_SENDER_ASSOC"))
    answer = await send(rpc, op, ep)
    if staked:
        assert_ok(answer)
    else:
        assert_error(answer, OPCODE_VIOLATION, "account accessed storage of",
                     "associated with the sender before the sender is deployed")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["paymaster", "factory"])
async def test_stake_too_low(rpc, clean_bundler, worlds, ep, role):
    """an entity with some stake, below the minimum: -32505 naming the entity and the minimum"""
    w = worlds[ep.version]
    address = w.entity(paymaster=True) if role == "paymaster" else w.factory()
    w.stake(address, value=10**17)
    answer = await send(rpc, w.op_for(role, "SSTORE_OWN", **{role: address}), ep)
    error = assert_error(answer, STAKE_TOO_LOW, f"{role} accessed its own storage", address,
                         "below this bundler's minimum 1000000000000000000 wei and 86400 s")
    assert not error["message"].startswith("unstaked")
    assert error["data"][role] == address and error["data"]["minimumStake"] == hex(10**18)
    # a stake with too short an unstake delay is not enough either
    other = w.entity(paymaster=True) if role == "paymaster" else w.factory()
    w.stake(other, value=10**18, delay=3600)
    answer = await send(rpc, w.op_for(role, "SSTORE_OWN", **{role: other}), ep)
    assert_error(answer, STAKE_TOO_LOW, "unstake delay 3600 s")


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("how", ["direct", "call", "delegatecall"])
@pytest.mark.parametrize("staked,command,allowed", [
    (True, "READ_SENDER_ASSOC", True),  # STO-033 comes before STO-022
    (False, "READ_SENDER_ASSOC", False),  # STO-022: only a staked factory would lift it
    (True, "WRITE_SENDER_ASSOC", False),  # STO-033 lets a staked entity read, not write
], ids=["staked-read", "unstaked-read", "staked-write"])
async def test_paymaster_reads_sender_storage_while_the_sender_is_deployed(
        rpc, clean_bundler, worlds, ep, how, staked, command, allowed):
    """a paymaster reading token.balanceOf(sender) in an op whose (unstaked) factory deploys the
    sender: a staked paymaster may (STO-033), an unstaked one may not (STO-022)"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    if staked:
        w.stake(pm)
    op = w.deploy_op(w.factory(), paymaster=pm, pm_payload=w.payload(command, how))
    answer = await send(rpc, op, ep)
    if allowed:
        assert_ok(answer)
    else:
        error = assert_error(answer, OPCODE_VIOLATION, "paymaster accessed storage of",
                             "associated with the sender before the sender is deployed")
        assert error["data"]["rule"] == "STO-022"


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("how", ["direct", "call", "delegatecall"])
@pytest.mark.parametrize("stake,code", [(0, OPCODE_VIOLATION), (10**17, STAKE_TOO_LOW), (10**18, None)],
                         ids=["unstaked", "stake-too-low", "staked"])
async def test_paymaster_context_needs_stake(rpc, clean_bundler, worlds, ep, how, stake, code):
    """EREP-050: an unstaked paymaster may not return a context from validatePaymasterUserOp"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    if stake:
        w.stake(pm, value=stake)
    op = w.op(w.entity(), paymaster=pm, pm_payload=w.payload("CONTEXT", how), paymaster_post_op_gas_limit=50_000)
    answer = await send(rpc, op, ep)
    if code is None:
        assert_ok(answer)
        if how == "direct":  # postOp runs with the context on chain
            await rpc.call("debug_bundler_sendBundleNow")
            assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
        return
    error = assert_error(answer, code, f"paymaster {pm} returned a context of 9 bytes")
    assert error["data"]["rule"] == "EREP-050" and error["data"]["paymaster"] == pm
    assert error["message"].startswith("unstaked paymaster") == (stake == 0)
    # the same paymaster without a context is fine
    assert_ok(await send(rpc, w.op(w.entity(), paymaster=pm, pm_payload=w.payload("", how)), ep))
