"""Revert reasons people can read, through real HTTP against anvil: an account's ECDSA error
in a refused op, and custom errors of every family (OpenZeppelin ERC-20, our SessionAccount,
Error(string), Panic) in a reverting execution during estimation; an unknown error keeps
its selector."""
from __future__ import annotations

import os

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as selector

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07
from bundler.userop import format_user_operation
from helpers.accounts import mine
from helpers.bundlers import funded_account

pytestmark = pytest.mark.asyncio

# runtime code that reverts with its own calldata: CALLDATASIZE PUSH0 PUSH0 CALLDATACOPY
# CALLDATASIZE PUSH0 REVERT, so the account's call fails with exactly the error we choose
ECHO_REVERT = "0x365f5f37365ffd"
HOLDER = "0x" + "ab" * 20


async def test_account_signature_error_is_named(rpc, anvil):
    acct = funded_account(anvil, V07)
    op = acct.op(acct.execute(HOLDER, 1)).with_changes(signature=b"\x11" * 10)
    answer = await rpc.request("eth_sendUserOperation", format_user_operation(op), V07.address)
    err = answer["error"]
    assert err["code"] == -32500, err
    assert "AA23" in err["message"] and "ECDSAInvalidSignatureLength(10)" in err["message"], err["message"]


@pytest.mark.parametrize("revert,expected", [
    (selector("ERC20InsufficientBalance(address,uint256,uint256)") + encode(["address", "uint256", "uint256"],
                                                                            [HOLDER, 3, 500]),
     f"ERC20InsufficientBalance({HOLDER}, 3, 500)"),
    (selector("SessionUnknown(address)") + encode(["address"], [HOLDER]), f"SessionUnknown({HOLDER})"),
    (selector("Error(string)") + encode(["string"], ["not today"]), "not today"),
    (selector("Panic(uint256)") + encode(["uint256"], [0x11]), "panic 0x11 (arithmetic overflow or underflow)"),
    (bytes.fromhex("deadbeef") + encode(["uint256"], [7]), "custom error 0xdeadbeef with data 0x" + "00" * 31 + "07"),
])
async def test_execution_revert_reasons_are_decoded(rpc, anvil, revert, expected):
    target = "0x" + os.urandom(20).hex()
    node_rpc(anvil.url, "anvil_setCode", [target, ECHO_REVERT])
    mine(anvil.url)
    acct = funded_account(anvil, V07)
    op = acct.op(acct.execute(target, 0, revert))
    answer = await rpc.request("eth_estimateUserOperationGas", format_user_operation(op), V07.address)
    err = answer["error"]
    assert err["code"] == -32521, err
    assert expected in err["message"], err["message"]
    assert err["data"]["revertData"] == "0x" + revert.hex()  # the raw data stays available
