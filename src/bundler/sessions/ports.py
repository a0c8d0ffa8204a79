"""What the session service uses of the pool and the store, as narrow Protocols (the app passes
the `Mempool`, `OpFates` and `Store`; a test can pass much less).

- `SessionPoolView`: the mempool read (an op by hash, a sender's ops) and followed (the
  pending-usage ledger's `LedgerKeeper` observes every add/remove).
- `SessionOpDropper`: the pool's writer of op status, for the ops of revoked or expired sessions.
- `SessionActivityStore`: the session audit log and an op's record (session_getActivity).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..pool.mempool import PoolEntry, PoolObserver
    from ..store.records import OpRecord, SessionActivity


class SessionPoolView(Protocol):
    def get(self, op_hash: str) -> PoolEntry | None: ...

    def for_sender(self, sender: str) -> list[PoolEntry]: ...

    def observe(self, observer: PoolObserver) -> None: ...


class SessionOpDropper(Protocol):
    def removed(self, entry: PoolEntry, reason: str, code: int | None = None) -> None: ...


class SessionActivityReader(Protocol):
    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]: ...


class SessionActivityStore(SessionActivityReader, Protocol):
    def add_session_activity(self, activity: SessionActivity) -> None: ...

    def get(self, op_hash: str) -> OpRecord | None: ...
