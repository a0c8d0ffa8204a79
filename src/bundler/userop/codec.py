"""The ERC-7769 JSON form of a UserOperation, declared once as msgspec models.

Every field's hex rules are the types below (`HexQuantity`, `HexData`, `HexAddress`); msgspec
checks shape, types and patterns in one pass, and `decode_user_operation` is the one parser of
the form: the RPC edge (eth_*, pm_*), the relay API and the stores' JSON column call it. The
conversion into the domain `UserOperation` only turns checked hex into ints and bytes and
applies the rules between fields (ranges, paymaster fields without a paymaster, v0.6 names).
Errors are `InvalidParams` (-32602) whose message names the field."""
from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

import msgspec
import orjson

from ..errors import InvalidParams
from session_sdk.userop import format_user_operation  # noqa: F401  (the RPC shape: one implementation, in the SDK)

from .model import EIP7702_FACTORY, UINT128_MAX, UINT256_MAX, Authorization, UserOperation

MAX_BYTES_FIELD = 64 * 1024
UINT64_MAX = (1 << 64) - 1

# The declared hex rules. A quantity is 0x + 1..64 hex digits (leading zeros allowed up to 256
# bits' worth of text) or a JSON number; data is 0x + an even number of hex digits (the odd
# case is reported by the conversion, with its own message); an address is 0x + 40 digits.
HexQuantity = Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]+$", max_length=66)]
JsonQuantity = Annotated[int, msgspec.Meta(ge=0)]
Quantity = Union[HexQuantity, JsonQuantity]
HexData = Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]*$", max_length=2 + 2 * MAX_BYTES_FIELD)]
AnyHexData = Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]*$")]  # the caller gives the length limit
HexAddress = Annotated[str, msgspec.Meta(pattern=r"^0x[0-9a-fA-F]{40}$")]
# "0x" is "no factory" / "no paymaster" (what clients send for an absent one); "0x7702" marks an
# EIP-7702 UserOperation (ERC-7769)
FactoryAddress = Annotated[str, msgspec.Meta(pattern=r"^0x(?:[0-9a-fA-F]{40}|7702)?$")]
PaymasterAddress = Annotated[str, msgspec.Meta(pattern=r"^0x(?:[0-9a-fA-F]{40})?$")]

QUANTITY, DATA, ADDRESS = "quantity", "data", "address"
_KIND_OF_TYPE: dict[Any, str] = {
    HexQuantity: QUANTITY, JsonQuantity: QUANTITY, HexData: DATA, AnyHexData: DATA,
    HexAddress: ADDRESS, FactoryAddress: ADDRESS, PaymasterAddress: ADDRESS,
}


class AuthorizationParam(msgspec.Struct, rename="camel"):
    """An EIP-7702 authorization tuple (`eip7702Auth`)."""

    chain_id: Quantity
    address: HexAddress
    nonce: Quantity
    r: Quantity
    s: Quantity
    y_parity: Quantity | None = None
    v: Quantity | None = None  # some clients name yParity `v`


class UserOperationParam(msgspec.Struct, rename="camel"):
    """A v0.7 / v0.8 / v0.9 UserOperation as JSON-RPC carries it (unpacked fields). Every field
    may be absent here; which ones an op must have depends on the method (REQUIRED_TO_SEND)."""

    sender: HexAddress | None = None
    nonce: Quantity | None = None
    call_data: HexData | None = None
    call_gas_limit: Quantity | None = None
    verification_gas_limit: Quantity | None = None
    pre_verification_gas: Quantity | None = None
    max_fee_per_gas: Quantity | None = None
    max_priority_fee_per_gas: Quantity | None = None
    signature: HexData | None = None
    factory: FactoryAddress | None = None
    factory_data: HexData | None = None
    paymaster: PaymasterAddress | None = None
    paymaster_verification_gas_limit: Quantity | None = None
    paymaster_post_op_gas_limit: Quantity | None = None
    paymaster_data: HexData | None = None
    paymaster_signature: HexData | None = None
    eip7702_auth: AuthorizationParam | None = None
    # EntryPoint v0.6 names: present at all, the client is told what to send instead
    init_code: Any = msgspec.UNSET
    paymaster_and_data: Any = msgspec.UNSET


REQUIRED_TO_ESTIMATE = ("sender", "nonce", "call_data")
REQUIRED_TO_SEND = (*REQUIRED_TO_ESTIMATE, "call_gas_limit", "verification_gas_limit", "pre_verification_gas",
                    "max_fee_per_gas", "max_priority_fee_per_gas", "signature")
_V06_FIELDS = {"init_code": ("initCode", "factory/factoryData"),
               "paymaster_and_data": ("paymasterAndData", "paymaster/paymasterData/...")}
# what clients send for an absent paymaster's fields
_NONE_VALUES = (None, "0x", "0x0", "0x00")
_PAYMASTER_FIELDS = ("paymaster_data", "paymaster_verification_gas_limit", "paymaster_post_op_gas_limit",
                     "paymaster_signature")


def _flat(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(a for arg in typing.get_args(hint) for a in _flat(arg))
    return (hint,)


def _field_kinds(struct: type[msgspec.Struct]) -> dict[str, str]:
    """wire name -> kind of hex rule, read off the declared types (for the error messages)."""
    hints = typing.get_type_hints(struct, include_extras=True)
    kinds = {}
    for f in msgspec.structs.fields(struct):
        kind = next((_KIND_OF_TYPE[t] for t in _flat(hints[f.name]) if t in _KIND_OF_TYPE), None)
        if kind is not None:
            kinds[f.encode_name] = kind
    return kinds


_KINDS = {"": _field_kinds(UserOperationParam), "eip7702Auth": _field_kinds(AuthorizationParam)}
_CAMEL = {f.name: f.encode_name for f in msgspec.structs.fields(UserOperationParam)}
# msgspec's messages: "<reason> - at `$.a.b`" (no path at the top level)
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MAX_LENGTH = re.compile(r"of length <= (\d+)")


def _shown(value: Any) -> str:
    return repr(value[:80]) if isinstance(value, str) else repr(type(value).__name__)


def explain(kind: str, name: str, value: Any, reason: str) -> str:
    """The message for a value that broke its field's declared rule (msgspec's `reason`)."""
    if kind == QUANTITY:
        if "got `" in reason:
            return f"invalid {name}: expected a hex quantity string, got {type(value).__name__}"
        if "of length <=" in reason:
            return f"invalid {name}: value does not fit in 256 bits"
        if ">= 0" in reason:
            return f"invalid {name}: value out of range (negative)"
        return f"invalid {name}: {_shown(value)} is not a 0x-prefixed hex quantity"
    if kind == DATA:
        limit = _MAX_LENGTH.search(reason)
        if limit and isinstance(value, str) and len(value) > int(limit.group(1)):
            return f"invalid {name}: longer than {(int(limit.group(1)) - 2) // 2} bytes"
        return f"invalid {name}: {_shown(value)} is not 0x-prefixed hex data"
    return f"invalid {name}: {_shown(value)} is not a 20-byte 0x-prefixed address"


def _at(obj: Any, path: list[str]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _invalid_user_operation(e: msgspec.ValidationError, obj: Any) -> InvalidParams:
    m = _AT.match(str(e))
    reason, path = (m.group("reason"), m.group("path") or "") if m else (str(e), "")
    keys = [k for k in path.split(".") if k]
    if not keys:  # the op itself is no object
        return InvalidParams("invalid UserOperation: expected a JSON object")
    if keys == ["eip7702Auth"]:
        missing = re.search(r"missing required field `(\w+)`", reason)
        if missing:
            return InvalidParams(f"invalid eip7702Auth: missing field {missing.group(1)}")
        return InvalidParams("invalid eip7702Auth: expected an object")
    parent = "eip7702Auth" if keys[0] == "eip7702Auth" else ""
    kind = _KINDS[parent].get(keys[-1], QUANTITY)
    return InvalidParams(explain(kind, ".".join(keys), _at(obj, keys), reason))


def to_int(value: str | int, name: str, maximum: int) -> int:
    """A declared quantity (checked hex text or a JSON number) as an int, at most `maximum`."""
    n = int(value, 16) if isinstance(value, str) else value
    if n > maximum:
        raise InvalidParams(f"invalid {name}: value out of range (max {hex(maximum)})")
    return n


def _bytes(value: str, name: str) -> bytes:
    if len(value) % 2:
        raise InvalidParams(f"invalid {name}: hex data has an odd number of digits")
    return bytes.fromhex(value[2:])


def _authorization(a: AuthorizationParam) -> Authorization:
    y_parity = a.y_parity if a.y_parity is not None else a.v
    if y_parity is None:
        raise InvalidParams("invalid eip7702Auth: missing field yParity")
    return Authorization(
        chain_id=to_int(a.chain_id, "eip7702Auth.chainId", UINT256_MAX),
        address=a.address.lower(),
        nonce=to_int(a.nonce, "eip7702Auth.nonce", UINT64_MAX),
        y_parity=to_int(y_parity, "eip7702Auth.yParity", 255),
        r=to_int(a.r, "eip7702Auth.r", UINT256_MAX),
        s=to_int(a.s, "eip7702Auth.s", UINT256_MAX),
    )


def _q(value: str | int | None, name: str, maximum: int = UINT128_MAX) -> int:
    """An optional quantity field (absent: 0)."""
    if value is None:
        return 0
    n = int(value, 16) if isinstance(value, str) else value
    if n > maximum:
        raise InvalidParams(f"invalid {name}: value out of range (max {hex(maximum)})")
    return n


# Gas limits and fees repeat across ops (one fee suggestion per block, one estimate per kind
# of op), and every pending op keeps its values: one int object per recent value instead of a
# fresh 28-32 bytes per field per op. Bounded (cleared when full); ints are immutable, so
# sharing one changes nothing but memory.
_SHARED_QUANTITIES: dict[int, int] = {}
_SHARED_QUANTITIES_MAX = 1024


def shared_quantity(n: int) -> int:
    """`n`, as the one int object the decoder hands out for that value while it is recent."""
    got = _SHARED_QUANTITIES.get(n)
    if got is None:
        if len(_SHARED_QUANTITIES) >= _SHARED_QUANTITIES_MAX:
            _SHARED_QUANTITIES.clear()
        got = _SHARED_QUANTITIES[n] = n
    return got


def _gas(value: str | int | None, name: str, maximum: int = UINT128_MAX) -> int:
    """A gas limit or fee field: _q, shared (shared_quantity)."""
    return shared_quantity(_q(value, name, maximum))


def _b(value: str | None, name: str) -> bytes:
    """An optional data field (absent: empty)."""
    return b"" if value is None else _bytes(value, name)


def to_user_operation(p: UserOperationParam, *, for_estimation: bool = False) -> UserOperation:
    """The declared model -> the domain UserOperation (ranges, rules between fields)."""
    for attr, (old, new) in _V06_FIELDS.items():
        if getattr(p, attr) is not msgspec.UNSET:
            raise InvalidParams(f"invalid UserOperation: field {old} is EntryPoint v0.6; use {new} for v0.7/v0.8")
    for attr in REQUIRED_TO_ESTIMATE if for_estimation else REQUIRED_TO_SEND:
        if getattr(p, attr) is None:
            raise InvalidParams(f"invalid UserOperation: missing field {_CAMEL[attr]}")

    factory = None if p.factory in (None, "0x") else p.factory.lower()
    if factory == "0x7702":
        factory = EIP7702_FACTORY
    if factory is None and p.factory_data not in (None, "0x"):
        raise InvalidParams("invalid factoryData: set without a factory")
    paymaster = None if p.paymaster in (None, "0x") else p.paymaster.lower()
    if paymaster is None:
        for attr in _PAYMASTER_FIELDS:
            if getattr(p, attr) not in _NONE_VALUES:
                raise InvalidParams(f"invalid {_CAMEL[attr]}: set without a paymaster")
    return UserOperation(
        sender=p.sender.lower(),  # type: ignore[union-attr]  # required: checked above
        nonce=_q(p.nonce, "nonce", UINT256_MAX),
        call_data=_b(p.call_data, "callData"),
        call_gas_limit=_gas(p.call_gas_limit, "callGasLimit"),
        verification_gas_limit=_gas(p.verification_gas_limit, "verificationGasLimit"),
        pre_verification_gas=_gas(p.pre_verification_gas, "preVerificationGas", UINT256_MAX),
        max_fee_per_gas=_gas(p.max_fee_per_gas, "maxFeePerGas"),
        max_priority_fee_per_gas=_gas(p.max_priority_fee_per_gas, "maxPriorityFeePerGas"),
        signature=_b(p.signature, "signature"),
        factory=factory,
        factory_data=_b(p.factory_data, "factoryData"),
        paymaster=paymaster,
        paymaster_verification_gas_limit=_gas(p.paymaster_verification_gas_limit, "paymasterVerificationGasLimit"),
        paymaster_post_op_gas_limit=_gas(p.paymaster_post_op_gas_limit, "paymasterPostOpGasLimit"),
        paymaster_data=_b(p.paymaster_data, "paymasterData"),
        paymaster_signature=_b(p.paymaster_signature, "paymasterSignature"),
        eip7702_auth=None if p.eip7702_auth is None else _authorization(p.eip7702_auth),
    )


def decode_user_operation(obj: Any, *, for_estimation: bool = False) -> UserOperation:
    """The ERC-7769 JSON form (already parsed JSON) -> UserOperation. With for_estimation, the
    gas fields and the signature may be missing (0 / empty)."""
    try:
        p = msgspec.convert(obj, UserOperationParam)
    except msgspec.ValidationError as e:
        raise _invalid_user_operation(e, obj) from None
    return to_user_operation(p, for_estimation=for_estimation)




def decode_user_operation_json(text: str | bytes) -> UserOperation:
    """The same from JSON text (the stores' column). orjson then the model: measured faster than
    msgspec's typed JSON decoder with these patterns (benchmarks/rpc_params.py)."""
    return decode_user_operation(orjson.loads(text))


def _scalar(value: Any, typ: Any, kind: str, name: str) -> Any:
    try:
        return msgspec.convert(value, typ)
    except msgspec.ValidationError as e:
        raise InvalidParams(explain(kind, name, value, str(e))) from None


def parse_quantity(value: Any, name: str, maximum: int = UINT256_MAX) -> int:
    """One quantity param (the declared rule of a UserOperation's quantities)."""
    return to_int(_scalar(value, Quantity, QUANTITY, name), name, maximum)


def parse_bytes(value: Any, name: str, max_len: int = MAX_BYTES_FIELD) -> bytes:
    """One data param, at most max_len bytes."""
    text = _scalar(value, AnyHexData, DATA, name)
    if (len(text) - 2) // 2 > max_len:
        raise InvalidParams(f"invalid {name}: longer than {max_len} bytes")
    return _bytes(text, name)


def parse_address(value: Any, name: str) -> str:
    """One address param, lower-cased."""
    return _scalar(value, HexAddress, ADDRESS, name).lower()
