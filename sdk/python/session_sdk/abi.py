"""The SessionAccount ABI in Python: SessionSpec dataclasses, exact ABI encoders/decoders, the
signature layouts, EIP-712 hashing of the enable message, calldata encoders, errors and events.

Mirror of contracts/SessionTypes.sol and contracts/SessionAccount.sol (the comment block at
the top of SessionAccount.sol is the normative description of the semantics). Pure functions,
no I/O. Addresses are lower-case 0x strings (as in bundler.userop), byte fields are bytes.

ABI of SessionSpec (one tuple; `encode_spec` is exactly the ABI encoding of that single tuple
parameter, i.e. what follows the selector in grantSession calldata):

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

UserOperation.signature:

    0x00 owner    0x00 ‖ r ‖ s ‖ v                                        (66 bytes)
    0x01 session  0x01 ‖ signer (20) ‖ periodIndex (6, big-endian) ‖ r ‖ s ‖ v  (92 bytes)
    0x02 enable   0x02 ‖ abi.encode(SessionSpec, uint64 nonce, bytes ownerSig,
                                     uint48 periodIndex, bytes sessionSig)
                  ownerSig over EIP-712 EnableSession{spec, nonce, epoch}

ECDSA signatures are over the raw digest (userOpHash, or the EIP-712 enable digest for the
owner in mode 0x02), v ∈ {27, 28} (0/1 accepted), s ≤ n/2.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Sequence

from eth_abi import decode, encode
from eth_hash.auto import keccak
from eth_utils import function_signature_to_4byte_selector

# ---------------------------------------------------------------- enums and constants


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
    NONE = 0
    ACTIVE = 1
    REVOKED = 2


MODE_OWNER = 0x00
MODE_SESSION = 0x01
MODE_ENABLE = 0x02

OWNER_SIGNATURE_LENGTH = 66
SESSION_SIGNATURE_LENGTH = 92
SIG_VALIDATION_FAILED = 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT48_MAX = (1 << 48) - 1
UINT256_MAX = (1 << 256) - 1

# ERC-7201 namespace "sessionaccount.storage.main": the only storage the account uses
LAYOUT_SLOT = 0xA67E7059F37EA83F571607D1CD71044D1FB3F07CC1A3A40E1D143DCE85E2D700

# A well-formed 65-byte signature for gas estimation: the contract takes the full path
# (ecrecover runs, s is low) and returns SIG_VALIDATION_FAILED instead of reverting.
DUMMY_ECDSA_SIGNATURE = (1).to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"

LIMIT_T = "(uint8,uint256)"
ARG_CONSTRAINT_T = f"(uint8,uint8,uint8,uint32,bytes32,{LIMIT_T})"
CALL_POLICY_T = f"(address,bytes4,uint256,{LIMIT_T},{ARG_CONSTRAINT_T}[])"
TRANSFER_POLICY_T = f"(address,uint256,{LIMIT_T})"
GAS_POLICY_T = f"(uint256,{LIMIT_T},address[])"
SESSION_SPEC_T = (f"(address,uint48,uint48,uint48,bool,uint32,{CALL_POLICY_T}[],{TRANSFER_POLICY_T}[],"
                  f"{GAS_POLICY_T})")
CALL_T = "(address,uint256,bytes)"
CONSUMPTION_T = "(uint8,uint32,uint32,uint256)"
ENABLE_PAYLOAD_TYPES = [SESSION_SPEC_T, "uint64", "bytes", "uint48", "bytes"]


_selector = function_signature_to_4byte_selector


SEL_EXECUTE = _selector("execute(address,uint256,bytes)")
SEL_EXECUTE_BATCH = _selector(f"executeBatch({CALL_T}[])")
SEL_GRANT_SESSION = _selector(f"grantSession({SESSION_SPEC_T})")
SEL_REVOKE_SESSION = _selector("revokeSession(address)")
SEL_REVOKE_ALL_SESSIONS = _selector("revokeAllSessions()")
SEL_DEPOSIT_TO = _selector("depositTo(address)")
MAX_SESSION_CALLS = 256  # SessionAccount.MAX_SESSION_CALLS: most calls in one session op
SEL_CREATE_ACCOUNT = _selector("createAccount(address,uint256)")


def _addr(a: str) -> str:
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


ZERO_ADDRESS = "0x" + "00" * 20

# ---------------------------------------------------------------- the spec


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
        return bytes(12) + bytes.fromhex(_addr(value)[2:])
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


def is_canonical(arg_type: int, arg_size: int, value: bytes) -> bool:
    """SessionAccount._canonical: whether a 32-byte word is the ABI encoding of a value of the type."""
    w = int.from_bytes(value, "big")
    if arg_type == ArgType.WORD:
        return True
    if arg_type == ArgType.ADDRESS:
        return w >> 160 == 0
    if arg_type == ArgType.BOOL:
        return w <= 1
    if arg_size >= 32:
        return True
    bits = 8 * arg_size
    if arg_type == ArgType.UINT:
        return w >> bits == 0
    if arg_type == ArgType.BYTES:
        return (w << bits) & UINT256_MAX == 0
    # INT: the word is its low arg_size bytes sign-extended
    low = w & ((1 << bits) - 1)
    extended = low | (UINT256_MAX ^ ((1 << bits) - 1)) if low >> (bits - 1) else low
    return extended == w


def signed(value: int) -> int:
    """A uint256 read as int256."""
    return value - (1 << 256) if value >> 255 else value


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
            _addr(self.target),
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
        return (_addr(self.target), self.max_value_per_use, self.value_limit.to_abi())

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
        return (self.max_cost_per_op, self.cost_limit.to_abi(), [_addr(p) for p in self.paymasters])

    @classmethod
    def from_abi(cls, t: Sequence) -> "GasPolicy":
        return cls(t[0], Limit.from_abi(t[1]), tuple(p.lower() for p in t[2]))


NO_GAS = GasPolicy()


def op_max_cost(pre_verification_gas: int, verification_gas_limit: int, call_gas_limit: int,
                paymaster_verification_gas_limit: int, paymaster_post_op_gas_limit: int, max_fee_per_gas: int) -> int:
    """SessionAccount._maxCost: the op's prefund, saturating at 2^256-1."""
    total = (pre_verification_gas + verification_gas_limit + call_gas_limit + paymaster_verification_gas_limit
             + paymaster_post_op_gas_limit)
    return min(total * max_fee_per_gas, UINT256_MAX)


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
            _addr(self.signer),
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


def check_spec(spec: SessionSpec, account: str | None = None) -> str | None:
    """The reason SessionAccount._checkSpec refuses `spec` (InvalidSessionSpec), or None (the
    bundler's evaluator and the SDKs' builders both ask this one function)."""
    if spec.signer == ZERO_ADDRESS:
        return "signer is zero"
    if spec.signer == account:
        return "signer is the account"
    if spec.valid_until != 0 and spec.valid_until < spec.valid_after:
        return "validUntil before validAfter"

    def bad_limit(kind: int) -> str | None:
        if kind > LimitKind.ALLOWANCE:
            return "unknown limit kind"
        if kind == LimitKind.ALLOWANCE and spec.period == 0:
            return "allowance without period"
        return None

    for p in spec.call_policies:
        if (reason := bad_limit(p.value_limit.kind)) is not None:
            return reason
        for c in p.constraints:
            if c.condition > Condition.LTE:
                return "unknown condition"
            if (reason := bad_limit(c.limit.kind)) is not None:
                return reason
            if (reason := bad_arg_type(c)) is not None:
                return reason
    for t in spec.transfer_policies:
        if (reason := bad_limit(t.value_limit.kind)) is not None:
            return reason
    if (reason := bad_limit(spec.gas.cost_limit.kind)) is not None:
        return reason
    if any(p == ZERO_ADDRESS for p in spec.gas.paymasters):
        return "paymaster is zero"
    return None


def bad_arg_type(c) -> str | None:
    """SessionAccount._checkArgType."""
    if c.arg_type > ArgType.BYTES:
        return "unknown argument type"
    sized = c.arg_type in (ArgType.UINT, ArgType.INT, ArgType.BYTES)
    if (c.arg_size == 0 or c.arg_size > 32) if sized else c.arg_size != 0:
        return "bad argument size"
    if not is_canonical(c.arg_type, c.arg_size, c.ref_value):
        return "refValue does not fit its type"
    if c.arg_type == ArgType.INT and c.limit.kind != LimitKind.NONE:
        return "limit on a signed argument"
    return None


def encode_spec(spec: SessionSpec) -> bytes:
    """ABI encoding of the SessionSpec tuple as a single parameter (grantSession's arguments)."""
    return encode([SESSION_SPEC_T], [spec.to_abi()])


def decode_spec(data: bytes) -> SessionSpec:
    return SessionSpec.from_abi(decode([SESSION_SPEC_T], data)[0])


def period_window(spec: SessionSpec, period_index: int) -> tuple[int, int]:
    """(validAfter, validUntil) a session op naming `period_index` gets, exactly as the contract
    computes it (validUntil 0 = unbounded). ValueError where the contract reverts
    SessionPeriodOutsideWindow."""
    lo = spec.valid_after
    hi = spec.valid_until or UINT48_MAX
    if spec.period == 0:
        if period_index != 0:
            raise ValueError("period index must be 0 for a session without period")
    else:
        lo += period_index * spec.period
        hi = min(hi, lo + spec.period - 1)
    if lo > hi:
        raise ValueError(f"period {period_index} lies outside the session window")
    return lo, (0 if hi == UINT48_MAX else hi)


# ---------------------------------------------------------------- signatures


def _sig65(sig: bytes, what: str) -> bytes:
    if len(sig) != 65:
        raise ValueError(f"{what} must be 65 bytes r‖s‖v, got {len(sig)}")
    return bytes(sig)


def encode_owner_signature(sig: bytes) -> bytes:
    """Mode 0x00: the owner's 65-byte signature over userOpHash."""
    return bytes([MODE_OWNER]) + _sig65(sig, "owner signature")


def encode_session_signature(signer: str, period_index: int, sig: bytes) -> bytes:
    """Mode 0x01: session key `signer` signed userOpHash (65 bytes) for allowance period
    `period_index` (0 when the session has no period)."""
    if not 0 <= period_index <= UINT48_MAX:
        raise ValueError("period index must fit in uint48")
    return (
        bytes([MODE_SESSION])
        + bytes.fromhex(_addr(signer)[2:])
        + period_index.to_bytes(6, "big")
        + _sig65(sig, "session signature")
    )


def encode_enable_signature(
    spec: SessionSpec, nonce: int, owner_sig: bytes, period_index: int, session_sig: bytes
) -> bytes:
    """Mode 0x02: grant `spec` (owner_sig over eip712_spec_digest(spec, nonce, ...)) and use it in
    the same op (session_sig over userOpHash)."""
    payload = encode(
        ENABLE_PAYLOAD_TYPES,
        [spec.to_abi(), nonce, _sig65(owner_sig, "owner signature"), period_index,
         _sig65(session_sig, "session signature")],
    )
    return bytes([MODE_ENABLE]) + payload


@dataclass(frozen=True, slots=True)
class OwnerSignature:
    signature: bytes


@dataclass(frozen=True, slots=True)
class SessionSignature:
    signer: str
    period_index: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class EnableSignature:
    spec: SessionSpec
    nonce: int
    owner_signature: bytes
    period_index: int
    signature: bytes  # the session key's

    @property
    def signer(self) -> str:
        return self.spec.signer


def decode_signature(sig: bytes) -> OwnerSignature | SessionSignature | EnableSignature:
    """Parse UserOperation.signature; ValueError where the contract reverts InvalidSignatureFormat
    (an ABI payload the contract cannot decode also raises)."""
    if not sig:
        raise ValueError("empty signature")
    mode = sig[0]
    if mode == MODE_OWNER:
        if len(sig) != OWNER_SIGNATURE_LENGTH:
            raise ValueError(f"owner signature must be {OWNER_SIGNATURE_LENGTH} bytes")
        return OwnerSignature(bytes(sig[1:]))
    if mode == MODE_SESSION:
        if len(sig) != SESSION_SIGNATURE_LENGTH:
            raise ValueError(f"session signature must be {SESSION_SIGNATURE_LENGTH} bytes")
        return SessionSignature("0x" + sig[1:21].hex(), int.from_bytes(sig[21:27], "big"), bytes(sig[27:]))
    if mode == MODE_ENABLE:
        try:
            spec_t, nonce, owner_sig, period_index, session_sig = decode(ENABLE_PAYLOAD_TYPES, bytes(sig[1:]))
        except Exception as exc:  # eth_abi raises several types
            raise ValueError(f"undecodable enable signature: {exc}") from None
        if len(owner_sig) != 65 or len(session_sig) != 65:
            raise ValueError("enable signature: owner and session signatures must be 65 bytes")
        return EnableSignature(SessionSpec.from_abi(spec_t), nonce, owner_sig, period_index, session_sig)
    raise ValueError(f"unknown signature mode 0x{mode:02x}")


def sign_digest(private_key: bytes | str, digest: bytes) -> bytes:
    """65-byte r‖s‖v (v = 27/28, low s) over a raw 32-byte digest, as the account expects."""
    from coincurve import PrivateKey

    if isinstance(private_key, str):
        private_key = bytes.fromhex(private_key.removeprefix("0x"))
    raw = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return raw[:64] + bytes([raw[64] + 27])


# ---------------------------------------------------------------- EIP-712

_LIMIT_TYPE = "Limit(uint8 kind,uint256 amount)"
_ARG_TYPE = "ArgConstraint(uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit)"
_CALL_TYPE = ("CallPolicy(address target,bytes4 selector,uint256 maxValuePerUse,Limit valueLimit,"
              "ArgConstraint[] constraints)")
_TRANSFER_TYPE = "TransferPolicy(address target,uint256 maxValuePerUse,Limit valueLimit)"
_GAS_TYPE = "GasPolicy(uint256 maxCostPerOp,Limit costLimit,address[] paymasters)"
_SPEC_TYPE = ("SessionSpec(address signer,uint48 validAfter,uint48 validUntil,uint48 period,bool wildcard,"
              "uint32 usageLimit,CallPolicy[] callPolicies,TransferPolicy[] transferPolicies,GasPolicy gas)")
_ENABLE_TYPE = "EnableSession(SessionSpec spec,uint64 nonce,uint32 epoch)"

LIMIT_TYPEHASH = keccak(_LIMIT_TYPE.encode())
ARG_CONSTRAINT_TYPEHASH = keccak((_ARG_TYPE + _LIMIT_TYPE).encode())
CALL_POLICY_TYPEHASH = keccak((_CALL_TYPE + _ARG_TYPE + _LIMIT_TYPE).encode())
TRANSFER_POLICY_TYPEHASH = keccak((_TRANSFER_TYPE + _LIMIT_TYPE).encode())
GAS_POLICY_TYPEHASH = keccak((_GAS_TYPE + _LIMIT_TYPE).encode())
SESSION_SPEC_TYPEHASH = keccak(
    (_SPEC_TYPE + _ARG_TYPE + _CALL_TYPE + _GAS_TYPE + _LIMIT_TYPE + _TRANSFER_TYPE).encode())
ENABLE_SESSION_TYPEHASH = keccak(
    (_ENABLE_TYPE + _ARG_TYPE + _CALL_TYPE + _GAS_TYPE + _LIMIT_TYPE + _SPEC_TYPE + _TRANSFER_TYPE).encode()
)
DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
DOMAIN_NAME = "SessionAccount"
DOMAIN_VERSION = "1"


def _hash_limit(lim: Limit) -> bytes:
    return keccak(encode(["bytes32", "uint8", "uint256"], [LIMIT_TYPEHASH, int(lim.kind), lim.amount]))


def _hash_arg(c: ArgConstraint) -> bytes:
    return keccak(encode(["bytes32", "uint8", "uint8", "uint8", "uint32", "bytes32", "bytes32"],
                         [ARG_CONSTRAINT_TYPEHASH, int(c.condition), int(c.arg_type), c.arg_size, c.index, c.ref_value,
                          _hash_limit(c.limit)]))


def _hash_call(p: CallPolicy) -> bytes:
    return keccak(encode(
        ["bytes32", "address", "bytes4", "uint256", "bytes32", "bytes32"],
        [CALL_POLICY_TYPEHASH, _addr(p.target), bytes(p.selector), p.max_value_per_use,
         _hash_limit(p.value_limit), keccak(b"".join(_hash_arg(c) for c in p.constraints))],
    ))


def _hash_transfer(t: TransferPolicy) -> bytes:
    return keccak(encode(["bytes32", "address", "uint256", "bytes32"],
                         [TRANSFER_POLICY_TYPEHASH, _addr(t.target), t.max_value_per_use, _hash_limit(t.value_limit)]))


def _hash_gas(g: GasPolicy) -> bytes:
    return keccak(encode(["bytes32", "uint256", "bytes32", "bytes32"],
                         [GAS_POLICY_TYPEHASH, g.max_cost_per_op, _hash_limit(g.cost_limit),
                          keccak(b"".join(encode(["address"], [_addr(p)]) for p in g.paymasters))]))


def spec_struct_hash(spec: SessionSpec) -> bytes:
    """EIP-712 hashStruct(SessionSpec) (the `specHash` of the SessionGranted event)."""
    return keccak(encode(
        ["bytes32", "address", "uint48", "uint48", "uint48", "bool", "uint32", "bytes32", "bytes32", "bytes32"],
        [SESSION_SPEC_TYPEHASH, _addr(spec.signer), spec.valid_after, spec.valid_until, spec.period,
         bool(spec.wildcard), spec.usage_limit,
         keccak(b"".join(_hash_call(p) for p in spec.call_policies)),
         keccak(b"".join(_hash_transfer(t) for t in spec.transfer_policies)),
         _hash_gas(spec.gas)],
    ))


def domain_separator(account: str, chain_id: int) -> bytes:
    return keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [DOMAIN_TYPEHASH, keccak(DOMAIN_NAME.encode()), keccak(DOMAIN_VERSION.encode()), chain_id, _addr(account)],
    ))


def eip712_spec_digest(spec: SessionSpec, nonce: int, account: str, chain_id: int, epoch: int = 0) -> bytes:
    """The digest the owner signs for enable mode: EIP-712 EnableSession{spec, nonce, epoch} in the
    domain {"SessionAccount", "1", chain_id, account}; nonce = account.grantNonce(spec.signer),
    epoch = account.epoch() (plus one when the op itself carries an EIP-7702 authorization)."""
    struct_hash = keccak(encode(["bytes32", "bytes32", "uint64", "uint32"],
                                [ENABLE_SESSION_TYPEHASH, spec_struct_hash(spec), nonce, epoch]))
    return keccak(b"\x19\x01" + domain_separator(account, chain_id) + struct_hash)


def eip712_typed_data(spec: SessionSpec, nonce: int, account: str, chain_id: int, epoch: int = 0) -> dict[str, Any]:
    """The same message as eth_signTypedData_v4 JSON (for wallets signing the enable message)."""

    def lim(x: Limit) -> dict:
        return {"kind": int(x.kind), "amount": x.amount}

    message = {
        "spec": {
            "signer": _addr(spec.signer),
            "validAfter": spec.valid_after,
            "validUntil": spec.valid_until,
            "period": spec.period,
            "wildcard": bool(spec.wildcard),
            "usageLimit": spec.usage_limit,
            "callPolicies": [
                {
                    "target": _addr(p.target),
                    "selector": "0x" + bytes(p.selector).hex(),
                    "maxValuePerUse": p.max_value_per_use,
                    "valueLimit": lim(p.value_limit),
                    "constraints": [
                        {"condition": int(c.condition), "argType": int(c.arg_type), "argSize": c.arg_size,
                         "index": c.index, "refValue": "0x" + c.ref_value.hex(), "limit": lim(c.limit)}
                        for c in p.constraints
                    ],
                }
                for p in spec.call_policies
            ],
            "transferPolicies": [
                {"target": _addr(t.target), "maxValuePerUse": t.max_value_per_use, "valueLimit": lim(t.value_limit)}
                for t in spec.transfer_policies
            ],
            "gas": {"maxCostPerOp": spec.gas.max_cost_per_op, "costLimit": lim(spec.gas.cost_limit),
                    "paymasters": [_addr(p) for p in spec.gas.paymasters]},
        },
        "nonce": nonce,
        "epoch": epoch,
    }

    def fields(decl: str) -> list[dict]:
        inner = decl[decl.index("(") + 1:-1]
        return [{"type": f.split(" ")[0], "name": f.split(" ")[1]} for f in inner.split(",")]

    return {
        "types": {
            "EIP712Domain": fields("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
            "EnableSession": fields(_ENABLE_TYPE),
            "SessionSpec": fields(_SPEC_TYPE),
            "CallPolicy": fields(_CALL_TYPE),
            "TransferPolicy": fields(_TRANSFER_TYPE),
            "GasPolicy": fields(_GAS_TYPE),
            "ArgConstraint": fields(_ARG_TYPE),
            "Limit": fields(_LIMIT_TYPE),
        },
        "primaryType": "EnableSession",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id,
                   "verifyingContract": _addr(account)},
        "message": message,
    }


# ---------------------------------------------------------------- calldata


@dataclass(frozen=True, slots=True)
class Call:
    target: str
    value: int = 0
    data: bytes = b""

    def to_abi(self) -> tuple:
        return (_addr(self.target), self.value, bytes(self.data))


def encode_execute(target: str, value: int = 0, data: bytes = b"") -> bytes:
    return SEL_EXECUTE + encode(["address", "uint256", "bytes"], [_addr(target), value, bytes(data)])


def encode_execute_batch(calls: Sequence[Call | tuple]) -> bytes:
    items = [c.to_abi() if isinstance(c, Call) else Call(*c).to_abi() for c in calls]
    return SEL_EXECUTE_BATCH + encode([f"{CALL_T}[]"], [items])


def decode_calls(call_data: bytes) -> list[Call]:
    """The calls an op's callData makes (execute: one, executeBatch: each). ValueError where a
    session op would revert SessionCallNotAllowed (or the contract's ABI decoder reverts)."""
    selector = bytes(call_data[:4])
    try:
        if selector == SEL_EXECUTE:
            target, value, data = decode(["address", "uint256", "bytes"], bytes(call_data[4:]))
            return [Call(target.lower(), value, data)]
        if selector == SEL_EXECUTE_BATCH:
            (items,) = decode([f"{CALL_T}[]"], bytes(call_data[4:]))
            return [Call(t.lower(), v, d) for t, v, d in items]
    except Exception as exc:
        raise ValueError(f"undecodable callData: {exc}") from None
    raise ValueError(f"callData selector 0x{selector.hex()} is neither execute nor executeBatch")


def encode_grant_session(spec: SessionSpec) -> bytes:
    return SEL_GRANT_SESSION + encode_spec(spec)


def encode_revoke_session(signer: str) -> bytes:
    return SEL_REVOKE_SESSION + encode(["address"], [_addr(signer)])


def encode_revoke_all_sessions() -> bytes:
    return SEL_REVOKE_ALL_SESSIONS


def encode_create_account(owner: str, salt: int) -> bytes:
    """SessionAccountFactory.createAccount(owner, salt): the factoryData of a deploying op."""
    return SEL_CREATE_ACCOUNT + encode(["address", "uint256"], [_addr(owner), salt])


# ---------------------------------------------------------------- recognising accounts by code

_CLONE_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
_CLONE_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
_EIP7702_PREFIX = bytes.fromhex("ef0100")


def clone_runtime_code(implementation: str) -> bytes:
    """The 45-byte ERC-1167 runtime of every factory-made account of `implementation`."""
    return _CLONE_PREFIX + bytes.fromhex(_addr(implementation)[2:]) + _CLONE_SUFFIX


def delegation_code(implementation: str) -> bytes:
    """Code of an EOA delegated to `implementation` by EIP-7702."""
    return _EIP7702_PREFIX + bytes.fromhex(_addr(implementation)[2:])


def implementation_of(code: bytes) -> str | None:
    """The implementation behind an ERC-1167 clone or an EIP-7702 delegation, else None. The
    caller checks the result against the SessionAccount implementations it knows."""
    if len(code) == 45 and code.startswith(_CLONE_PREFIX) and code.endswith(_CLONE_SUFFIX):
        return "0x" + code[10:30].hex()
    if len(code) == 23 and code.startswith(_EIP7702_PREFIX):
        return "0x" + code[3:].hex()
    return None


def account_address(factory: str, implementation: str, owner: str, salt: int, proxy_creation_code: bytes) -> str:
    """Counterfactual address of SessionAccountFactory(factory).createAccount(owner, salt);
    proxy_creation_code = build artifact SessionAccountProxy.bytecode."""
    init_code = proxy_creation_code + encode(["address", "address"], [_addr(implementation), _addr(owner)])
    raw = keccak(b"\xff" + bytes.fromhex(_addr(factory)[2:]) + salt.to_bytes(32, "big") + keccak(init_code))
    return "0x" + raw[12:].hex()


# ---------------------------------------------------------------- validationData


def unpack_validation_data(vd: int) -> tuple[int, int, int]:
    """(authorizer, validAfter, validUntil) with authorizer 1 = signature failure; validUntil 0
    means unbounded."""
    return vd & ((1 << 160) - 1), (vd >> 208) & UINT48_MAX, (vd >> 160) & UINT48_MAX


# ---------------------------------------------------------------- errors and events

ERRORS: dict[str, list[str]] = {
    "NotFromEntryPoint": ["address"],
    "NotAuthorized": ["address"],
    "InitializeOnlyDuringConstruction": [],
    "InvalidOwner": [],
    "InvalidSignatureFormat": [],
    "InvalidSessionSpec": ["string"],
    "SessionEnableNonceMismatch": ["address", "uint64", "uint64"],
    "SessionUnknown": ["address"],
    "SessionIsRevoked": ["address"],
    "SessionPeriodOutsideWindow": ["address", "uint48"],
    "SessionUsageLimitReached": ["address", "uint32"],
    "SessionCallNotAllowed": ["bytes4"],
    "SessionSelfCallNotAllowed": ["uint256"],
    "SessionProtectedTarget": ["uint256", "address"],
    "SessionTooManyCalls": ["uint256", "uint256"],
    "SessionPaymasterNotAllowed": ["address"],
    "SessionGasCostExceedsPerOp": ["uint256", "uint256"],
    "SessionDelegationNotAllowed": [],
    "SessionArgNotCanonical": ["uint256", "uint256", "uint256", "uint8", "bytes32"],
    "SessionInvalidCallData": ["uint256"],
    "SessionTransferNotAllowed": ["uint256", "address"],
    "SessionTransferExceedsPerUse": ["uint256", "uint256", "uint256", "uint256"],
    "SessionTargetNotAllowed": ["uint256", "address"],
    "SessionSelectorNotAllowed": ["uint256", "address", "bytes4"],
    "SessionValueExceedsPerUse": ["uint256", "uint256", "uint256", "uint256"],
    "SessionArgOutOfBounds": ["uint256", "uint256", "uint256", "uint256"],
    "SessionArgConstraintFailed": ["uint256", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
    "SessionPeriodExpired": ["uint48", "uint48"],
    "SessionCumulativeLimitExceeded": ["uint256", "uint8", "uint256", "uint256", "uint256", "uint256", "uint256"],
}
ERROR_SELECTORS: dict[bytes, str] = {_selector(f"{n}({','.join(t)})"): n for n, t in ERRORS.items()}


@dataclass(frozen=True, slots=True)
class SessionAccountError:
    name: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.name}({', '.join(a.hex() if isinstance(a, bytes) else str(a) for a in self.args)})"


def decode_error(data: bytes) -> SessionAccountError | None:
    """A SessionAccount custom error from revert data, or None if it is not one of ours."""
    name = ERROR_SELECTORS.get(bytes(data[:4]))
    if name is None:
        return None
    try:
        args = decode(ERRORS[name], bytes(data[4:]))
    except Exception:
        return None
    return SessionAccountError(name, tuple(a.lower() if isinstance(a, str) and a.startswith("0x") else a
                                           for a in args))


EVENT_SESSION_GRANTED = f"SessionGranted(address,uint64,bytes32,{SESSION_SPEC_T})"
EVENT_SESSION_REVOKED = "SessionRevoked(address,uint64)"
EVENT_ALL_SESSIONS_REVOKED = "AllSessionsRevoked(uint32)"
EVENT_SESSION_USED = f"SessionUsed(address,uint48,uint32,{CONSUMPTION_T}[])"
TOPIC_SESSION_GRANTED = keccak(EVENT_SESSION_GRANTED.encode())
TOPIC_SESSION_REVOKED = keccak(EVENT_SESSION_REVOKED.encode())
TOPIC_ALL_SESSIONS_REVOKED = keccak(EVENT_ALL_SESSIONS_REVOKED.encode())
TOPIC_SESSION_USED = keccak(EVENT_SESSION_USED.encode())


@dataclass(frozen=True, slots=True)
class Consumption:
    scope: int
    policy_index: int
    constraint_index: int
    amount: int


@dataclass(frozen=True, slots=True)
class SessionUsed:
    signer: str
    period_index: int
    usage_count: int
    consumed: tuple[Consumption, ...]


def decode_session_used(topics: Sequence[bytes], data: bytes) -> SessionUsed:
    """Decode a SessionUsed log (topics[0] == TOPIC_SESSION_USED)."""
    period_index, usage_count, consumed = decode(["uint48", "uint32", f"{CONSUMPTION_T}[]"], bytes(data))
    signer = "0x" + bytes(topics[1])[12:].hex()
    return SessionUsed(signer, period_index, usage_count,
                       tuple(Consumption(Scope(s), p, c, a) for s, p, c, a in consumed))
