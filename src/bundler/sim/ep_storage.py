"""The EntryPoint's storage layout the bundler writes overrides for (deposits, nonces), and the
override that validates an op queued behind another of its sender. No py-evm here."""
from __future__ import annotations

from eth_hash.auto import keccak

from ..entrypoint import EntryPointVersion
from ..userop import UserOperation
from .types import AccountOverride

DEPOSITS_SLOT = 0
NONCES_SLOT = 1


def _b20(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def mapping_slot(key: bytes | int, slot: int) -> int:
    k = key.rjust(32, b"\x00") if isinstance(key, bytes) else _word(key)
    return int.from_bytes(keccak(k + _word(slot)), "big")


def deposit_slot(account: str) -> int:
    return mapping_slot(_b20(account), DEPOSITS_SLOT)


def nonce_slot(sender: str, key: int) -> int:
    inner = mapping_slot(_b20(sender), NONCES_SLOT)
    return mapping_slot(key, inner)


def queued_nonce_override(ep: EntryPointVersion, op: UserOperation) -> dict[str, AccountOverride]:
    """State override under which the EntryPoint expects `op`'s nonce: how an op queued behind
    a pending op of the same sender is validated, as if that one were mined."""
    return {ep.address.lower(): AccountOverride(state_diff={nonce_slot(op.sender, op.nonce_key): op.nonce_sequence})}


