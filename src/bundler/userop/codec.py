"""UserOperation <-> ERC-7769 JSON-RPC shape, with errors that name the offending field."""
from __future__ import annotations

import re
from typing import Any


from ..errors import InvalidParams
from session_sdk.userop import format_user_operation  # noqa: F401  (the RPC shape: one implementation, in the SDK)

from .model import EIP7702_FACTORY, UINT128_MAX, UINT256_MAX, Authorization, UserOperation

_HEX = re.compile(r"^0x[0-9a-fA-F]*$")
# v0.6 names: a client talking v0.6 to a v0.7+ EntryPoint gets told what to send instead.
_V06_FIELDS = {"initCode": "factory/factoryData", "paymasterAndData": "paymaster/paymasterData/..."}
MAX_BYTES_FIELD = 64 * 1024

_QUANTITIES_U128 = {
    "callGasLimit": "call_gas_limit",
    "verificationGasLimit": "verification_gas_limit",
    "maxFeePerGas": "max_fee_per_gas",
    "maxPriorityFeePerGas": "max_priority_fee_per_gas",
    "paymasterVerificationGasLimit": "paymaster_verification_gas_limit",
    "paymasterPostOpGasLimit": "paymaster_post_op_gas_limit",
}
_GAS_FIELDS = ("callGasLimit", "verificationGasLimit", "preVerificationGas", "maxFeePerGas",
               "maxPriorityFeePerGas")


def parse_quantity(value: Any, name: str, maximum: int = UINT256_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidParams(f"invalid {name}: expected a hex quantity string, got {type(value).__name__}")
    if isinstance(value, int):
        n = value
    else:
        if not _HEX.match(value) or len(value) < 3:
            raise InvalidParams(f"invalid {name}: {value[:80]!r} is not a 0x-prefixed hex quantity")
        if len(value) > 66:
            raise InvalidParams(f"invalid {name}: value does not fit in 256 bits")
        n = int(value, 16)
    if n < 0 or n > maximum:
        raise InvalidParams(f"invalid {name}: value out of range (max {hex(maximum)})")
    return n


def parse_bytes(value: Any, name: str, max_len: int = MAX_BYTES_FIELD) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidParams(f"invalid {name}: {shown!r} is not 0x-prefixed hex data")
    if len(value) % 2:
        raise InvalidParams(f"invalid {name}: hex data has an odd number of digits")
    if (len(value) - 2) // 2 > max_len:
        raise InvalidParams(f"invalid {name}: longer than {max_len} bytes")
    return bytes.fromhex(value[2:])


def parse_address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HEX.match(value) or len(value) != 42:
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidParams(f"invalid {name}: {shown!r} is not a 20-byte 0x-prefixed address")
    return value.lower()


def _parse_factory(value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("0x7702", EIP7702_FACTORY):
        return EIP7702_FACTORY
    return parse_address(value, "factory")


def parse_authorization(value: Any) -> Authorization:
    if not isinstance(value, dict):
        raise InvalidParams("invalid eip7702Auth: expected an object")
    try:
        return Authorization(
            chain_id=parse_quantity(value["chainId"], "eip7702Auth.chainId"),
            address=parse_address(value["address"], "eip7702Auth.address"),
            nonce=parse_quantity(value["nonce"], "eip7702Auth.nonce", (1 << 64) - 1),
            y_parity=parse_quantity(value.get("yParity", value.get("v")), "eip7702Auth.yParity", 255),
            r=parse_quantity(value["r"], "eip7702Auth.r"),
            s=parse_quantity(value["s"], "eip7702Auth.s"),
        )
    except KeyError as missing:
        raise InvalidParams(f"invalid eip7702Auth: missing field {missing.args[0]}") from None


def parse_user_operation(obj: Any, *, for_estimation: bool = False) -> UserOperation:
    """Parse the RPC form. With for_estimation, gas fields and signature may be missing (0)."""
    if not isinstance(obj, dict):
        raise InvalidParams("invalid UserOperation: expected a JSON object")
    for old, new in _V06_FIELDS.items():
        if old in obj:
            raise InvalidParams(
                f"invalid UserOperation: field {old} is EntryPoint v0.6; use {new} for v0.7/v0.8"
            )
    required = ["sender", "nonce", "callData"]
    if not for_estimation:
        required += [*_GAS_FIELDS, "signature"]
    for name in required:
        if obj.get(name) is None:
            raise InvalidParams(f"invalid UserOperation: missing field {name}")

    def q(name: str, maximum: int = UINT128_MAX) -> int:
        v = obj.get(name)
        return 0 if v is None else parse_quantity(v, name, maximum)

    def b(name: str) -> bytes:
        v = obj.get(name)
        return b"" if v is None else parse_bytes(v, name)

    factory = obj.get("factory")
    factory = None if factory in (None, "0x") else _parse_factory(factory)
    if factory is None and obj.get("factoryData") not in (None, "0x"):
        raise InvalidParams("invalid factoryData: set without a factory")
    paymaster = obj.get("paymaster")
    paymaster = None if paymaster in (None, "0x") else parse_address(paymaster, "paymaster")
    if paymaster is None:
        for pm_field in ("paymasterData", "paymasterVerificationGasLimit", "paymasterPostOpGasLimit"):
            if obj.get(pm_field) not in (None, "0x", "0x0", "0x00"):
                raise InvalidParams(f"invalid {pm_field}: set without a paymaster")
    auth = obj.get("eip7702Auth")
    return UserOperation(
        sender=parse_address(obj["sender"], "sender"),
        nonce=parse_quantity(obj["nonce"], "nonce"),
        call_data=b("callData"),
        call_gas_limit=q("callGasLimit"),
        verification_gas_limit=q("verificationGasLimit"),
        pre_verification_gas=q("preVerificationGas", UINT256_MAX),
        max_fee_per_gas=q("maxFeePerGas"),
        max_priority_fee_per_gas=q("maxPriorityFeePerGas"),
        signature=b("signature"),
        factory=factory,
        factory_data=b("factoryData"),
        paymaster=paymaster,
        paymaster_verification_gas_limit=q("paymasterVerificationGasLimit"),
        paymaster_post_op_gas_limit=q("paymasterPostOpGasLimit"),
        paymaster_data=b("paymasterData"),
        eip7702_auth=None if auth is None else parse_authorization(auth),
    )
