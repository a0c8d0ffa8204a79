"""What the bundler remembers: every UserOperation it acknowledged (with what the builder needs
to bundle it again after a restart), reputation counters, and the executor's in-flight
transactions."""
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


ACTIVE = (OpStatus.PENDING, OpStatus.SUBMITTED)
FINISHED = (OpStatus.MINED, OpStatus.DROPPED)


@dataclass(slots=True)
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
    # what admission learnt and the builder needs (kept so a restart can rebuild the pool)
    valid_after: int = 0
    valid_until: int = 0
    prefund: int = 0
    eip7702_delegate: str | None = None
    received_at: float = field(default_factory=time.time)


@dataclass
class ReputationRow:
    """Key-value row for the reputation engine (ERC-7562 counters per entity address)."""

    address: str
    ops_seen: int = 0
    ops_included: int = 0
    updated_at: float = field(default_factory=time.time)


@dataclass
class TxAttempt:
    """One signed transaction sent (or about to be sent) for an in-flight nonce."""

    tx_hash: str
    raw: str  # 0x-hex signed transaction, so it can be broadcast again after a restart
    max_fee: int
    priority: int
    sent_at: float = field(default_factory=time.time)


@dataclass
class InflightTx:
    """A bundle transaction of one executor key, not yet mined: every attempt (the first one and
    its fee-bumped replacements) shares the nonce and carries the same ops."""

    executor: str
    nonce: int
    entry_point: str
    op_hashes: list[str]
    attempts: list[TxAttempt] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, int]:
        return (self.executor, self.nonce)

    @property
    def tx_hashes(self) -> list[str]:
        return [a.tx_hash for a in self.attempts]

    @property
    def latest(self) -> TxAttempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def current(self) -> TxAttempt:
        """The attempt sent last, for a bundle known to be signed (one is recorded only with its first
        attempt; a row without any is corrupt, and saying so beats an AttributeError on None)."""
        if not self.attempts:
            raise LookupError(f"bundle of executor {self.executor} nonce {self.nonce} has no signed attempt")
        return self.attempts[-1]


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


class SponsorshipState(str, enum.Enum):
    RESERVED = "reserved"  # signed; counts its maximum cost until its op's fate is known
    SETTLED = "settled"    # mined: counts what it actually cost
    RELEASED = "released"  # dropped, or expired unused: counts nothing


@dataclass
class Sponsorship:
    """One op the paymaster service signed for, and what it counts against its policy's budgets
    (the global one and the sender's, in the period it was signed in)."""

    op_hash: str  # the op's userOpHash with the paymaster data signed (the account signature is not in it)
    policy_id: str
    sender: str  # lower-case
    entry_point: str
    period_start: int  # unix seconds; budgets count per policy and period
    amount: int  # wei: the op's maximum cost while reserved, the actual gas cost once settled
    valid_until: int  # the paymaster signature's window: unused after it
    state: SponsorshipState = SponsorshipState.RESERVED
    from_block: int = 0  # head when signed: where to look for the op on chain
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Budget:
    """A spend limit of a policy in one period: the whole policy's, or one sender's."""

    policy_id: str
    period_start: int
    limit: int  # wei
    sender: str | None = None  # None: the policy's global budget

    @property
    def scope(self) -> str:
        return "global" if self.sender is None else "account"


@dataclass
class SlotVerdict:
    """What the store decided about an op for its (entry point, sender, nonce) slot. A shared
    store decides across instances: at most one live (pending or submitted) op per slot."""

    admitted: bool
    refusal: str = ""              # "known" | "in_bundle" | "underpriced" when not admitted
    holder: str | None = None      # hash of the op holding the slot (for "known": its status)
    holder_fees: tuple[int, int] | None = None  # its (maxFeePerGas, maxPriorityFeePerGas)
    replaced: str | None = None    # hash of the op this one replaced, if any
