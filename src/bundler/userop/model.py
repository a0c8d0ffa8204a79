"""The UserOperation of EntryPoint v0.7 / v0.8 in its unpacked (RPC) shape.

Addresses are lower-case 0x-hex strings (cheap to compare and use as keys; checksummed only
at the RPC edge), quantities are ints, byte fields are bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

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
