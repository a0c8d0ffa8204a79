"""Packed form (PackedUserOperation) and the userOpHash of each EntryPoint version."""
from __future__ import annotations

import functools

from eth_abi import encode
from eth_abi.registry import registry as abi_registry
from eth_hash.auto import keccak

from .userop import EIP7702_FACTORY, UserOperation

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


# EntryPoint v0.9: paymasterAndData = ... paymasterData | paymasterSignature | uint16(len) | magic
PAYMASTER_SIG_MAGIC = bytes.fromhex("22e325a297439656")  # keccak("PaymasterSignature")[:8]
_PM_DATA_OFFSET = 52
_PM_SUFFIX_LEN = len(PAYMASTER_SIG_MAGIC) + 2


def paymaster_and_data(op: UserOperation) -> bytes:
    if op.paymaster is None:
        return b""
    out = (
        _addr(op.paymaster)
        + op.paymaster_verification_gas_limit.to_bytes(16, "big")
        + op.paymaster_post_op_gas_limit.to_bytes(16, "big")
        + op.paymaster_data
    )
    if op.paymaster_signature:
        out += op.paymaster_signature + len(op.paymaster_signature).to_bytes(2, "big") + PAYMASTER_SIG_MAGIC
    return out


def paymaster_signature_length(pm_and_data: bytes) -> int:
    """v0.9's UserOperationLib.getPaymasterSignatureLength: the length of a signature suffix
    (0 without the magic); ValueError where the EntryPoint reverts (a length that does not fit)."""
    if len(pm_and_data) < _PM_DATA_OFFSET + _PM_SUFFIX_LEN or pm_and_data[-8:] != PAYMASTER_SIG_MAGIC:
        return 0
    length = int.from_bytes(pm_and_data[-_PM_SUFFIX_LEN:-8], "big")
    if length > len(pm_and_data) - _PM_DATA_OFFSET - _PM_SUFFIX_LEN:
        raise ValueError(f"paymaster signature length {length} does not fit in paymasterAndData")
    return length


def paymaster_data_hash_v09(pm_and_data: bytes) -> bytes:
    """v0.9's paymasterDataKeccak: the signature suffix is not hashed, the magic is."""
    length = paymaster_signature_length(pm_and_data)
    if not length:
        return keccak(pm_and_data)
    return keccak(pm_and_data[:len(pm_and_data) - length - _PM_SUFFIX_LEN] + PAYMASTER_SIG_MAGIC)


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


# The hashed structs hold only static fields, so their ABI encoding is a plain concatenation of
# 32-byte words; building it by hand is ~5x faster than eth_abi (this runs for every op at
# admission). tests/integration/test_userop.py checks the hashes against the EntryPoints' getUserOpHash.


def _w_addr(a: str) -> bytes:
    raw = bytes.fromhex(a[2:])
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {a!r}")
    return b"\x00" * 12 + raw


def _w_int(n: int) -> bytes:
    return n.to_bytes(32, "big")  # OverflowError for negative or >= 2**256, like eth_abi refuses


def _struct_words(op: UserOperation, eip7702_delegate: str | None, pm_hash: bytes | None = None) -> bytes:
    return b"".join((
        _w_addr(op.sender),
        _w_int(op.nonce),
        _init_code_hash(op, eip7702_delegate),
        keccak(op.call_data),
        account_gas_limits(op),
        _w_int(op.pre_verification_gas),
        gas_fees(op),
        keccak(paymaster_and_data(op)) if pm_hash is None else pm_hash,
    ))


def user_op_hash_v07(op: UserOperation, entry_point: str, chain_id: int) -> bytes:
    inner = keccak(_struct_words(op, None))
    return keccak(inner + _w_addr(entry_point) + _w_int(chain_id))


@functools.lru_cache(maxsize=64)
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
    struct_hash = keccak(PACKED_USEROP_TYPEHASH + _struct_words(op, eip7702_delegate))
    return keccak(b"\x19\x01" + domain_separator_v08(entry_point, chain_id) + struct_hash)


def user_op_hash_v09(
    op: UserOperation, entry_point: str, chain_id: int, eip7702_delegate: str | None = None
) -> bytes:
    """v0.8's EIP-712 hash, but a paymaster signature suffix stays outside it (the magic in)."""
    pm_hash = paymaster_data_hash_v09(paymaster_and_data(op))
    struct_hash = keccak(PACKED_USEROP_TYPEHASH + _struct_words(op, eip7702_delegate, pm_hash))
    return keccak(b"\x19\x01" + domain_separator_v08(entry_point, chain_id) + struct_hash)


@functools.cache
def _packed_op_encoder():
    return abi_registry.get_encoder(PACKED_USEROP_TYPE)  # looked up once, not per call


def encode_packed_op(op: UserOperation) -> bytes:
    """ABI encoding of one PackedUserOperation tuple as it sits inside handleOps' array."""
    return _packed_op_encoder()(pack(op))


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


def user_op_hash(version: str, op: UserOperation, entry_point: str, chain_id: int,
                 eip7702_delegate: str | None = None) -> bytes:
    """The userOpHash an EntryPoint of `version` computes (v0.7: keccak of the packed fields;
    v0.8: EIP-712 over the packed fields, with the EIP-7702 delegate in place of initCode; v0.9:
    as v0.8 with a paymaster signature suffix left out)."""
    if version == "0.7":
        return user_op_hash_v07(op, entry_point, chain_id)
    if version == "0.8":
        return user_op_hash_v08(op, entry_point, chain_id, eip7702_delegate)
    return user_op_hash_v09(op, entry_point, chain_id, eip7702_delegate)
