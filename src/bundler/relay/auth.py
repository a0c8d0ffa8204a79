"""Signed requests: every relay request (and every webhook the relay sends) carries a signature
of the sender's own secp256k1 key over the method, path, a timestamp, a one-time nonce and the
SHA-256 of the body. No shared secret travels or is stored.

    X-Relay-Timestamp   unix seconds; refused when further than max_skew_s from the relay's clock
    X-Relay-Nonce       16..64 url-safe characters, never reused by that signer within the window
    X-Relay-Signature   0x + 65 bytes: EIP-191 personal_sign of `canonical_message(...)`
    X-Relay-Credential  the credential id (backend requests), or
    X-Relay-Owner       the account whose owner signs (owner requests)

personal_sign (the "\\x19Ethereum Signed Message" prefix) so any wallet library signs it:
viem's `signMessage`, eth_account's `sign_message(encode_defunct(text=...))`.
"""
from __future__ import annotations

import re

# the scheme has one implementation, in the session SDK (backends sign with it)
from session_sdk.relay import (  # noqa: F401  (re-exported)
    HEADER_CREDENTIAL, HEADER_NONCE, HEADER_OWNER, HEADER_SIGNATURE, HEADER_TIMESTAMP, SCHEME, canonical_message,
    message_digest, sign_request,
)

from ..sessions.recover import recover_signer

_NONCE = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
_SIG = re.compile(r"^0x[0-9a-fA-F]{130}$")


class AuthError(Exception):
    """Refused authentication (HTTP 401); the message says what was wrong, never a secret."""


def signer_of(method: str, path: str, headers, body: bytes, now: float, max_skew_s: float) -> tuple[str, str]:
    """(recovered address, nonce) of a signed request, or AuthError. Replay of the nonce is
    checked by the caller (it needs the store)."""
    ts, nonce, sig = (headers.get(h) for h in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE))
    if ts is None or nonce is None or sig is None:
        raise AuthError(f"unsigned request: {HEADER_TIMESTAMP}, {HEADER_NONCE} and {HEADER_SIGNATURE} are required")
    if not ts.isdigit():
        raise AuthError(f"{HEADER_TIMESTAMP} must be unix seconds")
    if abs(int(ts) - now) > max_skew_s:
        raise AuthError(f"stale request: {HEADER_TIMESTAMP} {ts} is more than {max_skew_s:.0f} s from the relay's "
                        f"clock ({int(now)})")
    if not _NONCE.match(nonce):
        raise AuthError(f"{HEADER_NONCE} must be 16 to 64 characters of [A-Za-z0-9_-]")
    if not _SIG.match(sig):
        raise AuthError(f"{HEADER_SIGNATURE} must be 0x followed by 65 bytes of hex")
    signer = recover_signer(message_digest(canonical_message(method, path, ts, nonce, body)), bytes.fromhex(sig[2:]))
    if signer is None:
        raise AuthError("bad signature")
    return signer, nonce
