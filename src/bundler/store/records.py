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
