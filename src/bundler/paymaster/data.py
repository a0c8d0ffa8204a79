"""paymasterData of contracts/SponsorPaymaster.sol and the digest its signer signs.

paymasterAndData = paymaster (20) | paymasterVerificationGasLimit (16) | paymasterPostOpGasLimit (16)
                 | validUntil (6) | validAfter (6) | costLimit (16, 0: none)
                 | prefixLength (1) | signaturePrefix (prefixLength) | signature (65)

On EntryPoint v0.9 the signature may instead ride outside the userOpHash as the op's
`paymasterSignature` (paymasterData = the terms alone): `encode_terms` + that field; the
contract takes it from v0.9's suffix and checks the same digest.

`signaturePrefix` binds the first bytes of the account's own signature: a policy that sponsors
one session key puts mode 0x01 + that key there, so the sponsorship cannot be reused by the
account owner or another key for the same op. The digest must equal the contract's getHash
(tests/integration/test_paymaster_contract.py checks it against the deployed contract).
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_hash.auto import keccak

from ..userop.model import UserOperation
from ..userop.packing import account_gas_limits, gas_fees, init_code

SIGNATURE_LENGTH = 65
MAX_PREFIX_LENGTH = 255
UINT48_MAX = (1 << 48) - 1
UINT128_MAX = (1 << 128) - 1
# a well-formed signature of nobody: the stub's placeholder (the contract answers "signature
# failed", which estimation tolerates, instead of reverting)
STUB_SIGNATURE = b"\xff" * 32 + b"\x7f" * 32 + b"\x1c"


@dataclass(frozen=True)
class Terms:
    """What the signer agrees to, besides the op itself."""

    valid_until: int
    valid_after: int = 0
    cost_limit: int = 0  # wei; 0: no cap beyond the op's own gas fields
    signature_prefix: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.valid_after <= UINT48_MAX and 0 <= self.valid_until <= UINT48_MAX):
            raise ValueError("validity window must fit in uint48")
        if not 0 <= self.cost_limit <= UINT128_MAX:
            raise ValueError("cost limit must fit in uint128")
        if len(self.signature_prefix) > MAX_PREFIX_LENGTH:
            raise ValueError("signature prefix longer than 255 bytes")


def encode_terms(terms: Terms) -> bytes:
    """paymasterData without the signature (v0.9's separate paymasterSignature layout)."""
    return (
        terms.valid_until.to_bytes(6, "big")
        + terms.valid_after.to_bytes(6, "big")
        + terms.cost_limit.to_bytes(16, "big")
        + bytes([len(terms.signature_prefix)])
        + terms.signature_prefix
    )


def encode_paymaster_data(terms: Terms, signature: bytes) -> bytes:
    """paymasterData with the signature inside (every EntryPoint version)."""
    if len(signature) != SIGNATURE_LENGTH:
        raise ValueError("paymaster signature must be 65 bytes")
    return encode_terms(terms) + signature


def decode_terms(data: bytes) -> Terms:
    """The terms of a signature-less paymasterData; ValueError if it is not this layout."""
    if len(data) < 29 or len(data) != 29 + data[28]:
        raise ValueError("paymasterData is not SponsorPaymaster terms")
    return Terms(
        valid_until=int.from_bytes(data[0:6], "big"),
        valid_after=int.from_bytes(data[6:12], "big"),
        cost_limit=int.from_bytes(data[12:28], "big"),
        signature_prefix=bytes(data[29:]),
    )


def sponsor_hash(op: UserOperation, terms: Terms, *, chain_id: int, entry_point: str, paymaster: str) -> bytes:
    """SponsorPaymaster.getHash: every op field but the signatures, the chain, the EntryPoint,
    the paymaster and the terms."""
    paymaster_gas = (op.paymaster_verification_gas_limit.to_bytes(16, "big")
                     + op.paymaster_post_op_gas_limit.to_bytes(16, "big"))
    return keccak(encode(
        ["address", "uint256", "bytes32", "bytes32", "bytes32", "bytes32", "uint256", "bytes32",
         "uint256", "address", "address", "uint48", "uint48", "uint128", "bytes32"],
        [op.sender, op.nonce, keccak(init_code(op)), keccak(op.call_data), account_gas_limits(op),
         paymaster_gas, op.pre_verification_gas, gas_fees(op), chain_id, entry_point, paymaster,
         terms.valid_until, terms.valid_after, terms.cost_limit, keccak(terms.signature_prefix)],
    ))


def eip191_digest(message_hash: bytes) -> bytes:
    """What the contract recovers from: personal_sign of the 32-byte hash."""
    return keccak(b"\x19Ethereum Signed Message:\n32" + message_hash)
