"""Read-set reuse at the second validation (sim/readset.py), through the RPC on anvil: an op
whose admission validation read nothing that changed since is not simulated again; a change
between admission and bundling to any kind of state the validation read (a storage slot, the
sender's balance, nonce or code, a helper's code, the EntryPoint's nonce or the paymaster's
deposit) makes the builder simulate it again, and the op is dropped or mined as that state says."""
from __future__ import annotations

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from bundler.contracts_build import load_contract
from bundler.devchain.anvil import rpc as node_rpc
from conftest import RpcError
from helpers.accounts import mine
from helpers.erc7562_common import EPS, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio

V07_ONLY = [EPS[0]]


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


def counts(bundler) -> dict[str, int]:
    return dict(bundler.builder.safe.second_validations)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in ("reused", "simulated", "same_block")}


async def bundle(rpc, bundler) -> dict[str, int]:
    """One manual bundle round; how its second validations were decided."""
    before = counts(bundler)
    await rpc.call("debug_bundler_sendBundleNow")
    return delta(before, counts(bundler))


async def admit(rpc, op, ep) -> str:
    answer = await send(rpc, op, ep)
    assert_ok(answer)
    return answer["result"]


async def mined(rpc, op_hash: str) -> bool:
    return (await rpc.call("eth_getUserOperationReceipt", op_hash))["success"] is True


async def dropped(rpc, op_hash: str) -> RpcError:
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert e.value.data["reason"].startswith("failed second validation"), e.value.data
    return e.value


def slot_of(key: str | int, slot: int) -> str:
    """Storage slot of mapping[key] for a mapping at `slot` (Solidity layout)."""
    k = encode(["address"], [key]) if isinstance(key, str) else encode(["uint256"], [key])
    return "0x" + keccak(k + encode(["uint256"], [slot])).hex()


def nested_slot(outer: str, inner: int, slot: int) -> str:
    k = keccak(encode(["address"], [outer]) + encode(["uint256"], [slot]))
    return "0x" + keccak(encode(["uint256"], [inner]) + k).hex()


@pytest.mark.parametrize("ep", EPS)
async def test_unchanged_state_reuses_the_admission_validation(rpc, anvil, clean_bundler, worlds, ep):
    """a new block without any change to what validation read: no new simulation, op mined"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    own = await admit(rpc, w.op(w.entity(), w.payload("READ_SENDER_ASSOC")), ep)
    sponsored = await admit(rpc, w.op(w.entity(), paymaster=pm), ep)
    mine(anvil.url)
    how = await bundle(rpc, clean_bundler)
    assert how == {"reused": 2, "simulated": 0, "same_block": 0}
    assert await mined(rpc, own) and await mined(rpc, sponsored)


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_storage_slot_read_changed_is_simulated_again(rpc, anvil, clean_bundler, worlds, ep):
    """the helper's slot associated with the sender (read by validation) is set: simulated, mined"""
    w = worlds[ep.version]
    sender = w.entity()
    op_hash = await admit(rpc, w.op(sender, w.payload("READ_SENDER_ASSOC")), ep)
    w.set_balance_slot(w.helper, sender, 7)
    assert (await bundle(rpc, clean_bundler))["simulated"] == 1
    assert await mined(rpc, op_hash)


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_sender_balance_changed_is_simulated_again_and_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """anvil_setBalance(sender, 0): it can no longer pay its prefund (AA21), dropped"""
    w = worlds[ep.version]
    sender = w.entity()
    op_hash = await admit(rpc, w.op(sender), ep)
    node_rpc(anvil.url, "anvil_setBalance", [sender, "0x0"])
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler)) == {"reused": 0, "simulated": 1, "same_block": 0}
    assert "AA21" in (await dropped(rpc, op_hash)).message


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_fields_the_validation_did_not_read_are_not_compared(rpc, anvil, clean_bundler, worlds, ep):
    """the EntryPoint's ETH balance (validation only pays the prefund into it, and its calls move
    no value) and the sender's account nonce (never read: the EntryPoint keeps its own) change,
    as every bundle changes the EntryPoint's balance: reused, mined"""
    w = worlds[ep.version]
    sender = w.entity()
    op_hash = await admit(rpc, w.op(sender), ep)
    balance = int(node_rpc(anvil.url, "eth_getBalance", [ep.address, "latest"]), 16)
    node_rpc(anvil.url, "anvil_setBalance", [ep.address, hex(balance + 10**18)])
    node_rpc(anvil.url, "anvil_setNonce", [sender, "0x7"])
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler)) == {"reused": 1, "simulated": 0, "same_block": 0}
    assert await mined(rpc, op_hash)


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_factory_nonce_read_changed_is_simulated_again(rpc, anvil, clean_bundler, worlds, ep):
    """a deployment: the factory's CREATE2 reads its nonce (the nonce limit check); anvil_setNonce
    on the factory between admission and bundling: simulated again, mined"""
    w = worlds[ep.version]
    factory = w.factory()
    op_hash = await admit(rpc, w.deploy_op(factory), ep)
    node_rpc(anvil.url, "anvil_setNonce", [factory, "0x7"])
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler)) == {"reused": 0, "simulated": 1, "same_block": 0}
    assert await mined(rpc, op_hash)


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_entrypoint_nonce_changed_is_simulated_again_and_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """anvil_setStorageAt on the EntryPoint's nonceSequenceNumber[sender][0] (slot 1): AA25, dropped"""
    w = worlds[ep.version]
    sender = w.entity()
    op_hash = await admit(rpc, w.op(sender), ep)
    node_rpc(anvil.url, "anvil_setStorageAt", [ep.address, nested_slot(sender, 0, 1), "0x" + "00" * 31 + "05"])
    mine(anvil.url)
    assert w.nonce(sender) == 5  # the slot is the one the EntryPoint reads
    assert (await bundle(rpc, clean_bundler))["simulated"] == 1
    assert "AA25" in (await dropped(rpc, op_hash)).message


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_paymaster_deposit_changed_is_simulated_again_and_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """anvil_setStorageAt on the EntryPoint's deposits[paymaster] (slot 0) = 0: AA31, dropped"""
    w = worlds[ep.version]
    pm = w.entity(paymaster=True)
    op_hash = await admit(rpc, w.op(w.entity(), paymaster=pm), ep)
    node_rpc(anvil.url, "anvil_setStorageAt", [ep.address, slot_of(pm, 0), "0x" + "00" * 32])
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler)) == {"reused": 0, "simulated": 1, "same_block": 0}
    assert "AA31" in (await dropped(rpc, op_hash)).message


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_code_read_changed_is_simulated_again_and_dropped(rpc, anvil, clean_bundler, worlds, ep):
    """anvil_setCode on a contract whose size validation read (EXTCODESIZE): COD-010, dropped"""
    w = worlds[ep.version]
    helper = w.entity()
    op_hash = await admit(rpc, w.op(w.entity(), w.payload("EXTCODESIZE_TARGET", "call", target=helper)), ep)
    node_rpc(anvil.url, "anvil_setCode", [helper, load_contract("RulesFactory")["deployedBytecode"]])
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler))["simulated"] == 1
    assert "COD-010" in (await dropped(rpc, op_hash)).message


@pytest.mark.parametrize("ep", V07_ONLY)
async def test_sender_code_changed_is_simulated_again(rpc, anvil, clean_bundler, worlds, ep):
    """anvil_setCode on the sender itself (as a 7702 delegation or an upgrade would): the new code
    runs at the second validation; here it is the same contract with other immutables -> simulated"""
    w = worlds[ep.version]
    sender = w.entity()
    op_hash = await admit(rpc, w.op(sender), ep)
    code = node_rpc(anvil.url, "eth_getCode", [sender, "latest"])
    node_rpc(anvil.url, "anvil_setCode", [sender, code + "00"])  # trailing byte: other code hash, same behaviour
    mine(anvil.url)
    assert (await bundle(rpc, clean_bundler))["simulated"] == 1
    assert "COD-010" in (await dropped(rpc, op_hash)).message
