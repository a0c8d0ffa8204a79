"""In-process op index (the default until a durable store is configured)."""
from __future__ import annotations

import time

from .records import OpRecord, OpStatus


class MemoryStore:
    def __init__(self, max_finished: int = 100_000):
        self._records: dict[str, OpRecord] = {}
        self._max_finished = max_finished

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

    def _evict_finished(self) -> None:
        finished = sorted(
            (r for r in self._records.values() if r.status in (OpStatus.MINED, OpStatus.DROPPED)),
            key=lambda r: r.updated_at,
        )
        for r in finished[: len(finished) - self._max_finished]:
            del self._records[r.hash]
