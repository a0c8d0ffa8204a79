"""Hashing and encoding checked against the EntryPoint's own getUserOpHash; RPC codec errors."""
from __future__ import annotations

import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import given, settings, strategies as st

from bundler.devchain.anvil import rpc
from bundler.entrypoint import V07, V08, V09
from bundler.errors import InvalidParams
from bundler.userop import UserOperation, format_user_operation, decode_user_operation
from bundler.userop.model import EIP7702_FACTORY
from bundler.userop.packing import PACKED_USEROP_TYPE, PAYMASTER_SIG_MAGIC, pack, unpack

GET_HASH = keccak(f"getUserOpHash({PACKED_USEROP_TYPE})".encode())[:4]

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
u128 = st.integers(min_value=0, max_value=(1 << 128) - 1)
ops = st.builds(
    UserOperation,
    sender=addresses,
    nonce=st.integers(min_value=0, max_value=(1 << 256) - 1),
    call_data=st.binary(max_size=200),
    call_gas_limit=u128, verification_gas_limit=u128,
    pre_verification_gas=st.integers(min_value=0, max_value=(1 << 256) - 1),
    max_fee_per_gas=u128, max_priority_fee_per_gas=u128,
    signature=st.binary(max_size=100),
    factory=st.one_of(st.none(), addresses),
    factory_data=st.binary(max_size=60),
    paymaster=st.one_of(st.none(), addresses),
    paymaster_verification_gas_limit=u128, paymaster_post_op_gas_limit=u128,
    paymaster_data=st.binary(max_size=60),
).map(lambda op: op.with_changes(
    factory_data=op.factory_data if op.factory else b"",
    paymaster_verification_gas_limit=op.paymaster_verification_gas_limit if op.paymaster else 0,
    paymaster_post_op_gas_limit=op.paymaster_post_op_gas_limit if op.paymaster else 0,
    paymaster_data=op.paymaster_data if op.paymaster else b"",
))


def onchain_hash(url: str, ep, op: UserOperation) -> str:
    data = GET_HASH + encode([PACKED_USEROP_TYPE], [pack(op)])
    return rpc(url, "eth_call", [{"to": ep.address, "data": "0x" + data.hex()}, "latest"])


@settings(max_examples=25, deadline=None)
@given(op=ops)
def test_hash_matches_entrypoint(anvil, op):
    for ep in (V07, V08, V09):
        assert "0x" + ep.user_op_hash(op, anvil.chain_id).hex() == onchain_hash(anvil.url, ep, op)


@settings(max_examples=25, deadline=None)
@given(op=ops.filter(lambda op: op.paymaster is not None), signature=st.binary(min_size=1, max_size=100),
       other=st.binary(min_size=1, max_size=100))
def test_v09_paymaster_signature_is_outside_the_hash(anvil, op, signature, other):
    """v0.9: paymasterSignature is appended (signature | uint16 length | magic) and not hashed, so
    the paymaster may sign after the user; the hash equals the contract's getUserOpHash"""
    signed = op.with_changes(paymaster_signature=signature)
    ours = V09.user_op_hash(signed, anvil.chain_id)
    assert "0x" + ours.hex() == onchain_hash(anvil.url, V09, signed)
    assert ours == V09.user_op_hash(op.with_changes(paymaster_signature=other), anvil.chain_id)
    assert ours != V09.user_op_hash(op, anvil.chain_id)  # the magic itself is hashed
    assert pack(signed)[7].endswith(signature + len(signature).to_bytes(2, "big") + PAYMASTER_SIG_MAGIC)
    assert decode_user_operation(format_user_operation(signed)) == signed
    with pytest.raises(InvalidParams, match="paymasterSignature"):
        V08.user_op_hash(signed, anvil.chain_id)


def test_eip7702_hash_uses_delegate(anvil):
    """v0.8 hashes a 7702 op with the sender's delegate in place of the initCode's marker."""
    delegate = "0x" + "ab" * 20
    sender = "0x" + "cd" * 20
    rpc(anvil.url, "anvil_setCode", [sender, "0xef0100" + delegate[2:]])
    op = UserOperation(sender=sender, nonce=1, call_data=b"\x01", call_gas_limit=1, verification_gas_limit=2,
                       pre_verification_gas=3, max_fee_per_gas=4, max_priority_fee_per_gas=5,
                       signature=b"\x00" * 65, factory=EIP7702_FACTORY, factory_data=b"\x12\x34")
    assert "0x" + V08.user_op_hash(op, anvil.chain_id, delegate).hex() == onchain_hash(anvil.url, V08, op)


@given(op=ops)
def test_rpc_form_and_packed_form_round_trip(op):
    assert decode_user_operation(format_user_operation(op)) == op
    assert unpack(pack(op)) == op


VALID = {
    "sender": "0x" + "11" * 20, "nonce": "0x0", "callData": "0x",
    "callGasLimit": "0x5208", "verificationGasLimit": "0x10000", "preVerificationGas": "0xc350",
    "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1", "signature": "0x" + "00" * 65,
}


@pytest.mark.parametrize("field,value,fragment", [
    ("sender", "0x1234", "invalid sender"),
    ("nonce", "12", "invalid nonce"),
    ("nonce", 1.5, "invalid nonce"),
    ("callGasLimit", "0x" + "f" * 33, "invalid callGasLimit"),
    ("callData", "0xabc", "odd number"),
    ("signature", None, "missing field signature"),
    ("maxFeePerGas", True, "invalid maxFeePerGas"),
    ("initCode", "0x", "v0.6"),
    ("paymasterData", "0x12", "without a paymaster"),
    ("factory", "0xnothex" + "0" * 34, "invalid factory"),
])
def test_codec_names_the_bad_field(field, value, fragment):
    obj = dict(VALID)
    if value is None:
        obj.pop(field)
    else:
        obj[field] = value
    with pytest.raises(InvalidParams) as e:
        decode_user_operation(obj)
    assert fragment in e.value.message


def test_estimation_accepts_missing_gas_fields():
    obj = {k: VALID[k] for k in ("sender", "nonce", "callData")}
    op = decode_user_operation(obj, for_estimation=True)
    assert op.call_gas_limit == 0 and op.signature == b""


@given(op=ops)
def test_packed_encoding_is_the_op_inside_handle_ops(op):
    """The bytes preVerificationGas is priced on are exactly the op's part of handleOps."""
    from bundler.entrypoint import handle_ops_calldata
    from bundler.userop.packing import encode_packed_op

    calldata = handle_ops_calldata([op], "0x" + "00" * 20)
    # selector, then 4 words: array offset, beneficiary, array length, offset of element 0
    assert calldata[4 + 4 * 32:] == encode_packed_op(op)


@given(address=addresses, upper=st.booleans())
def test_fast_checksum_equals_eth_utils(address, upper):
    """format_user_operation's cached checksum is eth_utils' to_checksum_address."""
    from eth_utils import to_checksum_address as reference
    from session_sdk.userop import to_checksum_address

    given_form = "0x" + address[2:].upper() if upper else address
    assert to_checksum_address(given_form) == reference(address)


def test_checksum_of_a_malformed_address_still_raises():
    from session_sdk.userop import to_checksum_address

    for bad in ("0x1234", "0x" + "zz" * 20, 12):
        with pytest.raises((ValueError, TypeError)):
            to_checksum_address(bad)
