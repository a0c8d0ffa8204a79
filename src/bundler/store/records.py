"""What the bundler remembers about every UserOperation it acknowledged."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from ..userop.model import UserOperation


class OpStatus(str, enum.Enum):
    PENDING = "pending"        # in the mempool
    SUBMITTED = "submitted"    # in a bundle transaction not yet mined
    MINED = "mined"
    DROPPED = "dropped"        # removed without inclusion; `reason` says why


@dataclass
class OpRecord:
    hash: str
    entry_point: str
    op: UserOperation
    status: OpStatus = OpStatus.PENDING
    reason: str | None = None
    error_code: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    updated_at: float = field(default_factory=time.time)


@dataclass
class SessionActivity:
    """One UserOperation a session key sent through this bundler: the audit log behind
    session_getActivity. Plain JSON-able values only (a durable store keeps it as one row).

    The op's status is not duplicated here: readers join on `op_hash` with the op index
    (OpRecord: pending / submitted / mined / dropped + reason)."""

    op_hash: str
    account: str  # lower-case address
    session_key: str  # lower-case address of the session signer
    entry_point: str
    nonce: int
    mode: str  # "session" (0x01) or "enable" (0x02: granted and used in the same op)
    period_index: int
    calls: list[dict]  # [{"target": "0x…", "value": int, "data": "0x…"}]
    consumed: list[dict]  # [{"scope": int, "policyIndex": int, "constraintIndex": int, "amount": int}]
    received_at: float = field(default_factory=time.time)
