"""SessionAccount's events: signatures, topics and the decoding of SessionUsed logs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eth_abi import decode
from eth_hash.auto import keccak

from .types import SESSION_SPEC_T, Scope

CONSUMPTION_T = "(uint8,uint32,uint32,uint256)"

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
    """What one call took from one cumulative limit (the contract's Consumption struct): the
    SessionUsed event's records, and the bundler evaluator's own for ops not mined yet."""

    scope: int
    policy_index: int
    constraint_index: int
    amount: int

    @property
    def key(self) -> tuple[int, int, int]:
        """(scope, policy index, constraint index): which limit it counts against."""
        return (self.scope, self.policy_index, self.constraint_index)


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
