"""In-process op index (the default until a durable store is configured)."""
from __future__ import annotations

import time

from .records import OpRecord, OpStatus, SessionActivity


class MemoryStore:
    def __init__(self, max_finished: int = 100_000, max_activity_per_session: int = 10_000):
        self._records: dict[str, OpRecord] = {}
        self._max_finished = max_finished
        # (account, session key) -> {op hash -> activity}, oldest first
        self._activity: dict[tuple[str, str], dict[str, SessionActivity]] = {}
        self._max_activity = max_activity_per_session

    def put(self, record: OpRecord) -> None:
        record.updated_at = time.time()
        self._records[record.hash] = record
        if len(self._records) > self._max_finished * 2:
            self._evict_finished()

    def get(self, op_hash: str) -> OpRecord | None:
        return self._records.get(op_hash)

    def update(self, op_hash: str, **fields) -> OpRecord | None:
        record = self._records.get(op_hash)
        if record is None:
            return None
        for k, v in fields.items():
            setattr(record, k, v)
        record.updated_at = time.time()
        return record

    def with_status(self, *statuses: OpStatus) -> list[OpRecord]:
        return [r for r in self._records.values() if r.status in statuses]

    def clear(self) -> None:
        self._records.clear()
        self._activity.clear()

    # -- session audit log (session_getActivity) --
    def add_session_activity(self, activity: SessionActivity) -> None:
        """Log one op of a session key. Idempotent per op hash (a re-add replaces the entry).
        Keeps the newest max_activity_per_session entries per (account, session key)."""
        log = self._activity.setdefault((activity.account, activity.session_key), {})
        log.pop(activity.op_hash, None)
        log[activity.op_hash] = activity
        while len(log) > self._max_activity:
            del log[next(iter(log))]

    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]:
        """Every logged op of that session, oldest first (addresses lower-case)."""
        return list(self._activity.get((account.lower(), session_key.lower()), {}).values())

    def _evict_finished(self) -> None:
        finished = sorted(
            (r for r in self._records.values() if r.status in (OpStatus.MINED, OpStatus.DROPPED)),
            key=lambda r: r.updated_at,
        )
        for r in finished[: len(finished) - self._max_finished]:
            del self._records[r.hash]
