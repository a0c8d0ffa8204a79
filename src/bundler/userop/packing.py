"""Packed form (PackedUserOperation) and the userOpHash of each EntryPoint version."""
from __future__ import annotations

from eth_abi import encode
from eth_hash.auto import keccak

from .model import EIP7702_FACTORY, UserOperation

PACKED_USEROP_TYPE = "(address,uint256,bytes,bytes,bytes32,uint256,bytes32,bytes,bytes)"

PACKED_USEROP_TYPEHASH = keccak(
    b"PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,"
    b"bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,bytes paymasterAndData)"
)
EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


def _addr(a: str) -> bytes:
    return bytes.fromhex(a[2:])


def init_code(op: UserOperation) -> bytes:
    if op.factory is None:
        return b""
    return _addr(op.factory) + op.factory_data


def account_gas_limits(op: UserOperation) -> bytes:
    return op.verification_gas_limit.to_bytes(16, "big") + op.call_gas_limit.to_bytes(16, "big")


def gas_fees(op: UserOperation) -> bytes:
    return op.max_priority_fee_per_gas.to_bytes(16, "big") + op.max_fee_per_gas.to_bytes(16, "big")


def paymaster_and_data(op: UserOperation) -> bytes:
    if op.paymaster is None:
        return b""
    return (
        _addr(op.paymaster)
        + op.paymaster_verification_gas_limit.to_bytes(16, "big")
        + op.paymaster_post_op_gas_limit.to_bytes(16, "big")
        + op.paymaster_data
    )


def pack(op: UserOperation) -> tuple:
    """The PackedUserOperation tuple, in ABI order, ready for eth_abi."""
    return (
        op.sender,
        op.nonce,
        init_code(op),
        op.call_data,
        account_gas_limits(op),
        op.pre_verification_gas,
        gas_fees(op),
        paymaster_and_data(op),
        op.signature,
    )


def _init_code_hash(op: UserOperation, eip7702_delegate: str | None) -> bytes:
    if op.factory == EIP7702_FACTORY:
        if eip7702_delegate is None:
            raise ValueError("the EIP-7702 delegate is needed to hash an EIP-7702 UserOperation")
        return keccak(_addr(eip7702_delegate) + op.factory_data)
    return keccak(init_code(op))


def _struct_fields(op: UserOperation, eip7702_delegate: str | None) -> tuple[list[str], list]:
    return (
        ["address", "uint256", "bytes32", "bytes32", "bytes32", "uint256", "bytes32", "bytes32"],
        [
            op.sender,
            op.nonce,
            _init_code_hash(op, eip7702_delegate),
            keccak(op.call_data),
            account_gas_limits(op),
            op.pre_verification_gas,
            gas_fees(op),
            keccak(paymaster_and_data(op)),
        ],
    )


def user_op_hash_v07(op: UserOperation, entry_point: str, chain_id: int) -> bytes:
    types, values = _struct_fields(op, None)
    inner = keccak(encode(types, values))
    return keccak(encode(["bytes32", "address", "uint256"], [inner, entry_point, chain_id]))


def domain_separator_v08(entry_point: str, chain_id: int) -> bytes:
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [EIP712_DOMAIN_TYPEHASH, keccak(b"ERC4337"), keccak(b"1"), chain_id, entry_point],
        )
    )


def user_op_hash_v08(
    op: UserOperation, entry_point: str, chain_id: int, eip7702_delegate: str | None = None
) -> bytes:
    types, values = _struct_fields(op, eip7702_delegate)
    struct_hash = keccak(encode(["bytes32", *types], [PACKED_USEROP_TYPEHASH, *values]))
    return keccak(b"\x19\x01" + domain_separator_v08(entry_point, chain_id) + struct_hash)


def unpack(packed: tuple) -> UserOperation:
    """Inverse of pack(): a PackedUserOperation tuple as decoded by eth_abi."""
    sender, nonce, init_code, call_data, gas_limits, pvg, fees, pm_and_data, signature = packed
    factory = "0x" + init_code[:20].hex() if init_code else None
    paymaster = "0x" + pm_and_data[:20].hex() if pm_and_data else None
    return UserOperation(
        sender=sender.lower(),
        nonce=nonce,
        call_data=call_data,
        verification_gas_limit=int.from_bytes(gas_limits[:16], "big"),
        call_gas_limit=int.from_bytes(gas_limits[16:], "big"),
        pre_verification_gas=pvg,
        max_priority_fee_per_gas=int.from_bytes(fees[:16], "big"),
        max_fee_per_gas=int.from_bytes(fees[16:], "big"),
        signature=signature,
        factory=factory,
        factory_data=init_code[20:] if init_code else b"",
        paymaster=paymaster,
        paymaster_verification_gas_limit=int.from_bytes(pm_and_data[20:36], "big") if paymaster else 0,
        paymaster_post_op_gas_limit=int.from_bytes(pm_and_data[36:52], "big") if paymaster else 0,
        paymaster_data=pm_and_data[52:] if paymaster else b"",
    )
