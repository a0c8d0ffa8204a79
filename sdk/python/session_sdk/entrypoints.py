"""The EntryPoint versions a SessionAccount can be bound to: address and userOpHash."""
from __future__ import annotations

from dataclasses import dataclass

from .packing import user_op_hash
from .userop import UserOperation


@dataclass(frozen=True, slots=True)
class EntryPoint:
    version: str
    address: str  # lower-case

    @property
    def supports_eip7702(self) -> bool:
        return self.version != "0.7"

    def user_op_hash(self, op: UserOperation, chain_id: int, eip7702_delegate: str | None = None) -> bytes:
        return user_op_hash(self.version, op, self.address, chain_id, eip7702_delegate)


V07 = EntryPoint("0.7", "0x0000000071727de22e5e9d8baf0edac6f37da032")
V08 = EntryPoint("0.8", "0x4337084d9e255ff0702461cf8895ce9e3b5ff108")
ENTRY_POINTS = {ep.version: ep for ep in (V07, V08)}


def entry_point(version_or_address: str) -> EntryPoint:
    key = version_or_address.lower()
    for ep in ENTRY_POINTS.values():
        if key in (ep.version, ep.address):
            return ep
    raise ValueError(f"unknown EntryPoint {version_or_address!r} (known: {', '.join(ENTRY_POINTS)})")
