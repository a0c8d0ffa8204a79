"""What differs between the EntryPoint versions, through eth_sendUserOperation on anvil for each
version (version data in bundler.entrypoint, not per-version code): v0.9's paymaster signature
outside the userOpHash, v0.9's block-number validity ranges, v0.9 ignoring the initCode of an
existing account."""
from __future__ import annotations

import pytest

from bundler.devchain.anvil import rpc as node_rpc
from bundler.sim.results import VALIDITY_BLOCK_RANGE_FLAG
from bundler.userop import parse_user_operation
from helpers.erc7562_common import EPS, assert_error, assert_ok, make_worlds, send

pytestmark = pytest.mark.asyncio
TIME_RANGE = -32503


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


def validation_data(valid_after: int, valid_until: int) -> bytes:
    """RulesEntity's payload that makes it return this validity range (0xbb | validationData)."""
    return b"\xbb" + ((valid_after << 208) | (valid_until << 160)).to_bytes(32, "big")


def head(url: str) -> int:
    return int(node_rpc(url, "eth_blockNumber", []), 16)


def blocks(after: int, until: int) -> bytes:
    return validation_data(VALIDITY_BLOCK_RANGE_FLAG | after, VALIDITY_BLOCK_RANGE_FLAG | until)


def op_with_range(w, role: str, payload: bytes):
    if role == "account":
        return w.op(w.entity(), payload)
    return w.op(w.entity(), paymaster=w.entity(paymaster=True), pm_payload=payload)


def range_op_maker(w, role: str):
    """The entities first (deploying them mines blocks), then ops with a given payload."""
    account = w.entity()
    paymaster = w.entity(paymaster=True) if role == "paymaster" else None
    if paymaster is None:
        return lambda payload: w.op(account, payload)
    return lambda payload: w.op(account, paymaster=paymaster, pm_payload=payload)


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["account", "paymaster"])
async def test_block_number_validity_range(rpc, clean_bundler, worlds, ep, role):
    """v0.9 reads a range with the top bit set in both bounds as block numbers: valid in the next
    block is accepted and mined, a range that ended or has not begun is -32503. Older
    EntryPoints read the same words as timestamps (far in the future: not valid yet)."""
    w = worlds[ep.version]
    now = head(w.url)
    answer = await send(rpc, op_with_range(w, role, blocks(now - 1, now + 100)), ep)
    if not ep.block_range_validity:
        assert_error(answer, TIME_RANGE, "not valid yet", f"the {role} returned validAfter")
        return
    assert_ok(answer)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
    make = range_op_maker(w, role)
    now = head(w.url)
    error = assert_error(await send(rpc, make(blocks(1, now)), ep), TIME_RANGE,
                         f"the {role} returned a block range valid up to block {now}",
                         f"the next block is {now + 1}")
    assert error["data"]["blockRange"] is True
    assert_error(await send(rpc, make(blocks(now + 50, now + 100)), ep), TIME_RANGE,
                 f"the {role} returned a block range valid after block {now + 50}")


@pytest.mark.parametrize("ep", EPS)
async def test_timestamp_ranges_keep_working(rpc, clean_bundler, worlds, ep):
    """the neighbour: a plain timestamp range (top bits clear) in every version"""
    w = worlds[ep.version]
    assert_ok(await send(rpc, op_with_range(w, "account", validation_data(1, 2**40)), ep))
    assert_error(await send(rpc, op_with_range(w, "account", validation_data(1, 2)), ep), TIME_RANGE, "expired")


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_signature(rpc, clean_bundler, worlds, ep):
    """v0.9: paymasterSignature travels in the RPC form, is appended to paymasterAndData and is
    not part of the userOpHash (the same op with another paymaster signature has the same hash);
    older EntryPoints refuse the field"""
    w = worlds[ep.version]
    op = w.op(w.entity(), paymaster=w.entity(paymaster=True), paymaster_signature=b"\x5a" * 65)
    answer = await send(rpc, op, ep)
    if not ep.paymaster_signature:
        assert_error(answer, -32602, "paymasterSignature")
        return
    assert_ok(answer)
    assert answer["result"] == "0x" + ep.user_op_hash(op, w.chain_id).hex()
    assert answer["result"] == "0x" + ep.user_op_hash(op.with_changes(paymaster_signature=b"\x01"), w.chain_id).hex()
    [pending] = await rpc.call("debug_bundler_dumpMempool", ep.address)
    assert pending["paymasterSignature"] == "0x" + "5a" * 65
    assert parse_user_operation(pending) == op
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", answer["result"])
    assert receipt["success"] is True
    by_hash = await rpc.call("eth_getUserOperationByHash", answer["result"])
    assert by_hash["userOperation"]["paymasterSignature"] == "0x" + "5a" * 65


@pytest.mark.parametrize("ep", EPS)
async def test_init_code_of_an_existing_account(rpc, clean_bundler, worlds, ep):
    """v0.9 ignores the initCode of an account that exists (the op goes through, IgnoredInitCode);
    v0.7/v0.8 reject it (AA10)"""
    w = worlds[ep.version]
    first = w.deploy_op(w.factory())
    assert_ok(answer := await send(rpc, first, ep))
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
    again = w.op(first.sender, factory=first.factory, factory_data=first.factory_data,
                 verification_gas_limit=first.verification_gas_limit)
    answer = await send(rpc, again, ep)
    if ep.version in ("0.7", "0.8"):
        assert_error(answer, -32500, "AA10")
        return
    assert_ok(answer)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
