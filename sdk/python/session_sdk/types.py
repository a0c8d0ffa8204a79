"""The SessionSpec of contracts/SessionTypes.sol as frozen dataclasses, with their exact ABI tuple
form (`to_abi` / `from_abi`) and the ABI encoding of the whole spec.

Addresses are lower-case 0x strings (as in bundler.userop), byte fields are bytes. ABI of
SessionSpec (one tuple; `encode_spec` is exactly the ABI encoding of that single tuple parameter,
i.e. what follows the selector in grantSession calldata):

    Limit          (uint8 kind, uint256 amount)
    ArgConstraint  (uint8 condition, uint8 argType, uint8 argSize, uint32 index, bytes32 refValue,
                    Limit limit)
    CallPolicy     (address target, bytes4 selector, uint256 maxValuePerUse, Limit valueLimit,
                    ArgConstraint[] constraints)
    TransferPolicy (address target, uint256 maxValuePerUse, Limit valueLimit)
    GasPolicy      (uint256 maxCostPerOp, Limit costLimit, address[] paymasters)
    SessionSpec    (address signer, uint48 validAfter, uint48 validUntil, uint48 period,
                    bool wildcard, uint32 usageLimit, CallPolicy[] callPolicies,
                    TransferPolicy[] transferPolicies, GasPolicy gas)

The comment block at the top of SessionAccount.sol is the normative description of what each
field means; rules.py holds the checks the contract makes on a spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

from eth_abi import decode, encode


class LimitKind(IntEnum):
    NONE = 0  # no cumulative limit
    LIFETIME = 1  # `amount` over the life of the session
    ALLOWANCE = 2  # `amount` per period of SessionSpec.period seconds, starting at validAfter


class Condition(IntEnum):
    """`word <condition> refValue`, both read as uint256."""

    EQ = 0
    NEQ = 1
    GT = 2
    GTE = 3
    LT = 4
    LTE = 5


class Scope(IntEnum):
    """Which cumulative limit (errors, SessionUsed events, `remaining()`)."""

    CALL_VALUE = 0
    CALL_ARG = 1
    TRANSFER_VALUE = 2
    GAS = 3  # GasPolicy.costLimit (policy and constraint index 0)


class ArgType(IntEnum):
    """How the callee reads a constrained word; a word that is not the canonical encoding of the
    type is refused (SessionArgNotCanonical). UINT/INT/BYTES carry a size in bytes (1..32)."""

    WORD = 0  # uint256 / bytes32: any word
    ADDRESS = 1
    BOOL = 2
    UINT = 3
    INT = 4  # conditions compare signed; no cumulative limit
    BYTES = 5


class Status(IntEnum):
    """A session's status in the account's storage (getSession)."""

    NONE = 0
    ACTIVE = 1
    REVOKED = 2


ZERO_ADDRESS = "0x" + "00" * 20
UINT48_MAX = (1 << 48) - 1
UINT256_MAX = (1 << 256) - 1

LIMIT_T = "(uint8,uint256)"
ARG_CONSTRAINT_T = f"(uint8,uint8,uint8,uint32,bytes32,{LIMIT_T})"
CALL_POLICY_T = f"(address,bytes4,uint256,{LIMIT_T},{ARG_CONSTRAINT_T}[])"
TRANSFER_POLICY_T = f"(address,uint256,{LIMIT_T})"
GAS_POLICY_T = f"(uint256,{LIMIT_T},address[])"
SESSION_SPEC_T = (f"(address,uint48,uint48,uint48,bool,uint32,{CALL_POLICY_T}[],{TRANSFER_POLICY_T}[],"
                  f"{GAS_POLICY_T})")


def lower_address(a: str) -> str:
    """A 0x-prefixed 20-byte address in lower case; ValueError for anything else."""
    if not isinstance(a, str) or len(a) != 42 or not a.startswith("0x"):
        raise ValueError(f"not a 0x-prefixed 20-byte address: {a!r}")
    return a.lower()


def _enum(kind: type[IntEnum], value: int) -> int:
    """The enum member when the value is known (the contract refuses unknown ones at grant time,
    but a decoded payload may carry anything)."""
    try:
        return kind(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class Limit:
    kind: int = LimitKind.NONE
    amount: int = 0

    def to_abi(self) -> tuple:
        return (int(self.kind), self.amount)

    @classmethod
    def from_abi(cls, t: Sequence) -> "Limit":
        return cls(_enum(LimitKind, t[0]), t[1])

    @classmethod
    def lifetime(cls, amount: int) -> "Limit":
        return cls(LimitKind.LIFETIME, amount)

    @classmethod
    def allowance(cls, amount: int) -> "Limit":
        return cls(LimitKind.ALLOWANCE, amount)


NO_LIMIT = Limit()


def word(value: int | bytes | str) -> bytes:
    """A 32-byte ABI word from an int (uint256), an address string or up to 32 bytes (right-aligned
    like an ABI-encoded uint/address)."""
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(lower_address(value)[2:])
    if len(value) > 32:
        raise ValueError("a word is at most 32 bytes")
    return bytes(32 - len(value)) + bytes(value)


@dataclass(frozen=True, slots=True)
class ArgConstraint:
    condition: int
    index: int  # ABI word index after the selector
    ref_value: bytes  # 32 bytes
    limit: Limit = NO_LIMIT
    arg_type: int = ArgType.WORD
    arg_size: int = 0  # bytes of a UINT / INT / BYTES type (1..32), else 0

    def to_abi(self) -> tuple:
        if len(self.ref_value) != 32:
            raise ValueError("ArgConstraint.ref_value must be 32 bytes (use word())")
        return (int(self.condition), int(self.arg_type), self.arg_size, self.index, self.ref_value,
                self.limit.to_abi())

    @classmethod
    def from_abi(cls, t: Sequence) -> "ArgConstraint":
        return cls(_enum(Condition, t[0]), t[3], bytes(t[4]), Limit.from_abi(t[5]), _enum(ArgType, t[1]), t[2])

    @classmethod
    def typed(cls, condition: int, index: int, type_name: str, ref: int | bytes | str,
              limit: Limit = NO_LIMIT) -> "ArgConstraint":
        """A constraint from a Solidity type name: "address", "bool", "uint96", "int24", "bytes4"."""
        arg_type, size = parse_arg_type(type_name)
        if arg_type == ArgType.INT and isinstance(ref, int) and ref < 0:
            ref = ref % (1 << 256)
        if arg_type == ArgType.BYTES and isinstance(ref, bytes):
            ref = bytes(ref) + bytes(32 - len(ref))  # bytesN is left-aligned
        return cls(condition, index, word(ref), limit, arg_type, size)


def parse_arg_type(type_name: str) -> tuple[int, int]:
    """(ArgType, size in bytes) of an ABI elementary type name (uint = uint256, int = int256)."""
    name = type_name.strip()
    if name == "address":
        return ArgType.ADDRESS, 0
    if name == "bool":
        return ArgType.BOOL, 0
    for prefix, kind, unit in (("uint", ArgType.UINT, 8), ("int", ArgType.INT, 8), ("bytes", ArgType.BYTES, 1)):
        if name.startswith(prefix):
            rest = name[len(prefix):] or ("256" if unit == 8 else "")
            if rest.isdigit() and int(rest) % unit == 0 and 1 <= int(rest) // unit <= 32:
                return kind, int(rest) // unit
    raise ValueError(f"not an elementary ABI type a constraint can check: {type_name!r}")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    target: str = ZERO_ADDRESS  # zero address = any target
    selector: bytes = b"\x00" * 4  # zero = any selector
    max_value_per_use: int = 0  # wei per call; 0 = no ETH
    value_limit: Limit = NO_LIMIT
    constraints: tuple[ArgConstraint, ...] = ()

    def to_abi(self) -> tuple:
        if len(self.selector) != 4:
            raise ValueError("CallPolicy.selector must be 4 bytes")
        return (
            lower_address(self.target),
            bytes(self.selector),
            self.max_value_per_use,
            self.value_limit.to_abi(),
            [c.to_abi() for c in self.constraints],
        )

    @classmethod
    def from_abi(cls, t: Sequence) -> "CallPolicy":
        return cls(t[0].lower(), bytes(t[1]), t[2], Limit.from_abi(t[3]), tuple(ArgConstraint.from_abi(c) for c in t[4]))


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    target: str = ZERO_ADDRESS  # zero address = any recipient
    max_value_per_use: int = 0
    value_limit: Limit = NO_LIMIT

    def to_abi(self) -> tuple:
        return (lower_address(self.target), self.max_value_per_use, self.value_limit.to_abi())

    @classmethod
    def from_abi(cls, t: Sequence) -> "TransferPolicy":
        return cls(t[0].lower(), t[1], Limit.from_abi(t[2]))


@dataclass(frozen=True, slots=True)
class GasPolicy:
    """What the session may make the account spend on gas. The default allows nothing: an op's
    maximum cost must be <= max_cost_per_op (paymaster ops included); ops the account pays for
    (no paymaster) consume their maximum cost from cost_limit; paymasters lists the paymasters
    the session may use (empty = none)."""

    max_cost_per_op: int = 0
    cost_limit: Limit = NO_LIMIT
    paymasters: tuple[str, ...] = ()

    def to_abi(self) -> tuple:
        return (self.max_cost_per_op, self.cost_limit.to_abi(), [lower_address(p) for p in self.paymasters])

    @classmethod
    def from_abi(cls, t: Sequence) -> "GasPolicy":
        return cls(t[0], Limit.from_abi(t[1]), tuple(p.lower() for p in t[2]))


NO_GAS = GasPolicy()


@dataclass(frozen=True, slots=True)
class SessionSpec:
    signer: str
    valid_after: int = 0
    valid_until: int = 0  # 0 = no expiry
    period: int = 0  # allowance period (s); 0 = no ALLOWANCE limits allowed
    wildcard: bool = False
    usage_limit: int = 0  # max ops; 0 = unlimited
    call_policies: tuple[CallPolicy, ...] = ()
    transfer_policies: tuple[TransferPolicy, ...] = ()
    gas: GasPolicy = NO_GAS  # the default lets the session pay for no gas at all

    def to_abi(self) -> tuple:
        return (
            lower_address(self.signer),
            self.valid_after,
            self.valid_until,
            self.period,
            bool(self.wildcard),
            self.usage_limit,
            [p.to_abi() for p in self.call_policies],
            [t.to_abi() for t in self.transfer_policies],
            self.gas.to_abi(),
        )

    @classmethod
    def from_abi(cls, t: Sequence) -> "SessionSpec":
        return cls(
            signer=t[0].lower(),
            valid_after=t[1],
            valid_until=t[2],
            period=t[3],
            wildcard=bool(t[4]),
            usage_limit=t[5],
            call_policies=tuple(CallPolicy.from_abi(p) for p in t[6]),
            transfer_policies=tuple(TransferPolicy.from_abi(x) for x in t[7]),
            gas=GasPolicy.from_abi(t[8]),
        )


def encode_spec(spec: SessionSpec) -> bytes:
    """ABI encoding of the SessionSpec tuple as a single parameter (grantSession's arguments)."""
    return encode([SESSION_SPEC_T], [spec.to_abi()])


def decode_spec(data: bytes) -> SessionSpec:
    return SessionSpec.from_abi(decode([SESSION_SPEC_T], data)[0])
