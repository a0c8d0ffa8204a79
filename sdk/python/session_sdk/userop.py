"""The UserOperation of EntryPoint v0.7 / v0.8 in its unpacked (RPC) shape (shared by the bundler
and the session SDK: bundler.userop re-exports it).

Addresses are lower-case 0x-hex strings (cheap to compare and use as keys; checksummed only
at the RPC edge), quantities are ints, byte fields are bytes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils import to_checksum_address as _eth_utils_checksum

# eth_utils' to_checksum_address costs ~40 us (its validation decorators); the RPC form of an op
# is built for every admitted op (the store keeps it), and one sender or paymaster sends many
to_checksum_address = functools.lru_cache(maxsize=4096)(_eth_utils_checksum)

# EntryPoint v0.8: a factory of 0x7702 (left-aligned in 20 bytes) marks an EIP-7702 account.
EIP7702_FACTORY = "0x7702" + "00" * 18
UINT128_MAX = (1 << 128) - 1
UINT256_MAX = (1 << 256) - 1


@dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-7702 authorization tuple as carried in `eip7702Auth`."""

    chain_id: int
    address: str
    nonce: int
    y_parity: int
    r: int
    s: int


@dataclass(frozen=True, slots=True)
class UserOperation:
    sender: str
    nonce: int
    call_data: bytes
    call_gas_limit: int
    verification_gas_limit: int
    pre_verification_gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    signature: bytes
    factory: str | None = None
    factory_data: bytes = b""
    paymaster: str | None = None
    paymaster_verification_gas_limit: int = 0
    paymaster_post_op_gas_limit: int = 0
    paymaster_data: bytes = b""
    # EntryPoint v0.9: the paymaster's signature, appended to paymasterAndData with a length and
    # a magic suffix, and left out of the userOpHash (the paymaster may sign after the user)
    paymaster_signature: bytes = b""
    eip7702_auth: Authorization | None = field(default=None, compare=False)

    @property
    def nonce_key(self) -> int:
        return self.nonce >> 64

    @property
    def nonce_sequence(self) -> int:
        return self.nonce & ((1 << 64) - 1)

    @property
    def is_eip7702(self) -> bool:
        return self.factory == EIP7702_FACTORY

    @property
    def deploys_account(self) -> bool:
        return self.factory is not None and not self.is_eip7702

    @property
    def deploying_factory(self) -> str | None:
        """The factory when this op deploys its account; None for a deployed or an EIP-7702 account."""
        return self.factory if self.deploys_account else None

    def with_changes(self, **changes) -> "UserOperation":
        return replace(self, **changes)

    def total_gas_limit(self) -> int:
        """The most gas the EntryPoint may charge for (used for prefund and bundle packing)."""
        return (
            self.pre_verification_gas
            + self.verification_gas_limit
            + self.call_gas_limit
            + self.paymaster_verification_gas_limit
            + self.paymaster_post_op_gas_limit
        )

    def max_cost(self) -> int:
        return self.total_gas_limit() * self.max_fee_per_gas

    def gas_price(self, base_fee: int) -> int:
        return min(self.max_fee_per_gas, base_fee + self.max_priority_fee_per_gas)


# ---------------------------------------------------------------- the JSON-RPC shape


def _hex(n: int) -> str:
    return hex(n)


def _data(b: bytes) -> str:
    return "0x" + b.hex()


def format_user_operation(op: UserOperation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sender": to_checksum_address(op.sender),
        "nonce": _hex(op.nonce),
        "callData": _data(op.call_data),
        "callGasLimit": _hex(op.call_gas_limit),
        "verificationGasLimit": _hex(op.verification_gas_limit),
        "preVerificationGas": _hex(op.pre_verification_gas),
        "maxFeePerGas": _hex(op.max_fee_per_gas),
        "maxPriorityFeePerGas": _hex(op.max_priority_fee_per_gas),
        "signature": _data(op.signature),
    }
    if op.factory is not None:
        out["factory"] = "0x7702" if op.is_eip7702 else to_checksum_address(op.factory)
        out["factoryData"] = _data(op.factory_data)
    if op.paymaster is not None:
        out["paymaster"] = to_checksum_address(op.paymaster)
        out["paymasterVerificationGasLimit"] = _hex(op.paymaster_verification_gas_limit)
        out["paymasterPostOpGasLimit"] = _hex(op.paymaster_post_op_gas_limit)
        out["paymasterData"] = _data(op.paymaster_data)
        if op.paymaster_signature:
            out["paymasterSignature"] = _data(op.paymaster_signature)
    if op.eip7702_auth is not None:
        a = op.eip7702_auth
        out["eip7702Auth"] = {
            "chainId": _hex(a.chain_id),
            "address": to_checksum_address(a.address),
            "nonce": _hex(a.nonce),
            "yParity": _hex(a.y_parity),
            "r": _hex(a.r),
            "s": _hex(a.s),
        }
    return out
