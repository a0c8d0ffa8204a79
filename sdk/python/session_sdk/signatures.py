"""UserOperation.signature of a SessionAccount: the three layouts, their encoders and parser, and
raw-digest ECDSA signing.

    0x00 owner    0x00 ‖ r ‖ s ‖ v                                        (66 bytes)
    0x01 session  0x01 ‖ signer (20) ‖ periodIndex (6, big-endian) ‖ r ‖ s ‖ v  (92 bytes)
    0x02 enable   0x02 ‖ abi.encode(SessionSpec, uint64 nonce, bytes ownerSig,
                                     uint48 periodIndex, bytes sessionSig)
                  ownerSig over EIP-712 EnableSession{spec, nonce, epoch} (eip712.py)

ECDSA signatures are over the raw digest (userOpHash, or the EIP-712 enable digest for the
owner in mode 0x02), v ∈ {27, 28} (0/1 accepted), s ≤ n/2.
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode, encode
from eth_hash.auto import keccak

from .types import SESSION_SPEC_T, UINT48_MAX, SessionSpec, lower_address

MODE_OWNER = 0x00
MODE_SESSION = 0x01
MODE_ENABLE = 0x02

OWNER_SIGNATURE_LENGTH = 66
SESSION_SIGNATURE_LENGTH = 92
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2  # the largest s a low-s signature (EIP-2) may carry
ENABLE_PAYLOAD_TYPES = [SESSION_SPEC_T, "uint64", "bytes", "uint48", "bytes"]

# A well-formed 65-byte signature for gas estimation: the contract takes the full path
# (ecrecover runs, s is low) and returns SIG_VALIDATION_FAILED instead of reverting.
DUMMY_ECDSA_SIGNATURE = (1).to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"


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
        + bytes.fromhex(lower_address(signer)[2:])
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


def public_key_address(uncompressed: bytes) -> str:
    """The lower-case 0x address of a secp256k1 public key in its 65-byte uncompressed form
    (0x04 ‖ x ‖ y): the last 20 bytes of keccak(x ‖ y)."""
    if len(uncompressed) != 65 or uncompressed[0] != 4:
        raise ValueError(f"expected a 65-byte uncompressed public key, got {len(uncompressed)} bytes")
    return "0x" + keccak(uncompressed[1:])[12:].hex()
