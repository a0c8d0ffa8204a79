"""What admission needs of the sessions service (sessions.service.SessionService): recognise a
session op, check its policy before any simulation, decide the fast path, account it once it
enters the pool. Admission holds the session op it got from prepare() without looking inside."""
from __future__ import annotations

from typing import Protocol, TypeVar

from ..chain.clock import InclusionWindow
from ..chain.types import PinnedBlock
from ..entrypoint import EntryPointVersion
from ..userop.model import UserOperation
from .mempool import PoolEntry

SessionOpT = TypeVar("SessionOpT")


class FastValidation(Protocol):
    """What admission reads of a validation decided without simulating (the same members a
    sim.results.ValidationResult has)."""

    @property
    def valid_after(self) -> int: ...

    @property
    def valid_until(self) -> int: ...

    @property
    def valid_after_block(self) -> int: ...

    @property
    def valid_until_block(self) -> int: ...

    @property
    def prefund(self) -> int: ...

    @property
    def aggregator(self) -> str | None: ...


class SessionGate(Protocol[SessionOpT]):
    async def prepare(self, op: UserOperation, ep: EntryPointVersion, header: PinnedBlock,
                      op_hash: str | None) -> SessionOpT | None:
        """The op as a session op with its account's state at `header`; None when it is not one."""
        ...

    @property
    def max_ops_per_sender(self) -> int:
        """The per-sender cap for session ops (their policy is verified, so it may exceed the default)."""
        ...

    def precheck(self, sop: SessionOpT, replacing: str | None, window: InclusionWindow) -> FastValidation | None:
        """Signatures, policy and time range (raising the ERC-7769 error); the fast-path outcome or None."""
        ...

    def recheck(self, sop: SessionOpT, replaced: PoolEntry | None) -> None:
        """Right before the op enters the pool: evaluate again if the session's pending ops changed."""
        ...

    def admitted(self, sop: SessionOpT, entry: PoolEntry) -> None:
        """The op enters the pool now: account it in the session ledger."""
        ...
