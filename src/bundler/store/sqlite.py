"""The default durable store: one SQLite file in WAL mode under the data dir.

Everything active (pending and submitted ops, reputation, in-flight transactions) is held in
memory and read from there; finished ops are read from the file when they are not cached.
Writes return at once and are queued; one writer thread commits whatever has queued up in a
single transaction (group commit), so many concurrent eth_sendUserOperation calls share one
fsync. `await flush()` returns once everything written before it is committed.

The data dir is locked (flock) so two bundler processes never share it, and it is bound to
one chain (chain id + genesis hash): pointing it at another chain refuses to start.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from .codec import (
    OP_COLUMNS, inflight_from_row, inflight_row, op_from_row, op_row, op_to_json, reputation_from_row,
    reputation_row,
)
from .memory import MemoryStore
from .records import ACTIVE, FINISHED, InflightTx, OpRecord, OpStatus, ReputationRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
DB_FILE = "bundler.sqlite"
LOCK_FILE = "LOCK"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    hash TEXT PRIMARY KEY,
    entry_point TEXT NOT NULL,
    sender TEXT NOT NULL,
    nonce TEXT NOT NULL,
    op TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    error_code INTEGER,
    tx_hash TEXT,
    block_number INTEGER,
    block_hash TEXT,
    valid_after INTEGER,
    valid_until INTEGER,
    prefund TEXT,
    eip7702_delegate TEXT,
    received_at REAL,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS ops_active ON ops(status) WHERE status IN ('pending', 'submitted');
CREATE INDEX IF NOT EXISTS ops_mined_block ON ops(block_number) WHERE status = 'mined';
CREATE INDEX IF NOT EXISTS ops_finished_age ON ops(updated_at) WHERE status IN ('mined', 'dropped');
CREATE TABLE IF NOT EXISTS reputation (
    address TEXT PRIMARY KEY,
    ops_seen INTEGER NOT NULL,
    ops_included INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inflight (
    executor TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    entry_point TEXT NOT NULL,
    op_hashes TEXT NOT NULL,
    attempts TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (executor, nonce)
);
"""

_OP_SELECT = f"SELECT {', '.join(OP_COLUMNS)} FROM ops"
_OP_UPSERT = (f"INSERT OR REPLACE INTO ops ({', '.join(OP_COLUMNS)}) "
              f"VALUES ({', '.join('?' for _ in OP_COLUMNS)})")


class StoreError(Exception):
    pass


class DataDirInUse(StoreError):
    pass


class WrongChain(StoreError):
    pass


class SqliteStore(MemoryStore):
    durable = True

    def __init__(self, data_dir: str | os.PathLike, *, synchronous: str = "full",
                 max_finished_cached: int = 10_000, retention_s: float = 7 * 86400):
        super().__init__(max_finished_cached)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILE
        if synchronous.lower() not in ("full", "normal", "extra"):
            raise ValueError("synchronous must be full, normal or extra")
        self._synchronous = synchronous.upper()
        self._retention_s = retention_s
        self._lock_fd = self._acquire_lock()
        try:
            self._read = self._connect()
            self._read.executescript(SCHEMA)
            self._read.commit()
            self._load()
        except BaseException:
            self._release_lock()
            raise
        # write-behind queue, touched under _cv by the loop thread and the writer thread
        self._cv = threading.Condition()
        self._pending_ops: dict[str, tuple] = {}
        self._pending_rep: dict[str, tuple | None] = {}
        self._pending_inflight: dict[tuple[str, int], tuple | None] = {}
        self._pending_clear_ops = False
        self._pending_clear_rep = False
        self._seq = 0               # writes issued
        self._committed = 0         # writes durable
        self._clear_seq = 0         # seq of the last clear() (reads miss the file until durable)
        self._row_seq: dict[str, int] = {}
        self._op_json: dict[str, str] = {}
        self._error: BaseException | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._thread = threading.Thread(target=self._writer, name="store-writer", daemon=True)
        self._thread.start()

    # -- set-up ---------------------------------------------------------------------------
    def _acquire_lock(self) -> int:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(
                f"data dir {self.data_dir} is in use by another bundler process"
                + (f" (pid {holder})" if holder else "") + "; give each instance its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _load(self) -> None:
        """Active ops, reputation and in-flight transactions into memory."""
        rows = self._read.execute(_OP_SELECT + " WHERE status IN ('pending', 'submitted')").fetchall()
        for row in rows:
            record = op_from_row(row)
            self._records[record.hash] = record
        for row in self._read.execute("SELECT address, ops_seen, ops_included, updated_at FROM reputation"):
            r = reputation_from_row(row)
            self._reputation[r.address] = r
        for row in self._read.execute(
                "SELECT executor, nonce, entry_point, op_hashes, attempts, created_at FROM inflight"):
            t = inflight_from_row(row)
            self._inflight[t.key] = t
        if rows or self._inflight:
            log.info("store %s: %d active ops, %d in-flight transactions, %d reputation rows",
                     self.path, len(rows), len(self._inflight), len(self._reputation))

    def bind_chain(self, chain_id: int, genesis_hash: str) -> None:
        """Remember the chain on first use; refuse a data dir written for another chain."""
        meta = dict(self._read.execute("SELECT key, value FROM meta").fetchall())
        want = {"chain_id": str(chain_id), "genesis_hash": genesis_hash.lower()}
        if "chain_id" in meta:
            if meta.get("chain_id") != want["chain_id"] or meta.get("genesis_hash") != want["genesis_hash"]:
                raise WrongChain(
                    f"data dir {self.data_dir} belongs to chain {meta.get('chain_id')} "
                    f"(genesis {meta.get('genesis_hash')}), the node is on chain {chain_id} "
                    f"(genesis {genesis_hash}); use another --data-dir"
                )
            return
        self._read.execute("BEGIN IMMEDIATE")
        try:
            for k, v in {**want, "schema_version": SCHEMA_VERSION, "created_at": str(time.time())}.items():
                self._read.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, v))
            self._read.execute("COMMIT")
        except BaseException:
            self._read.execute("ROLLBACK")
            raise

    # -- reads ----------------------------------------------------------------------------
    def get(self, op_hash: str) -> OpRecord | None:
        record = self._records.get(op_hash)
        if record is not None or self._clear_seq > self._committed:
            return record
        row = self._read.execute(_OP_SELECT + " WHERE hash = ?", (op_hash,)).fetchone()
        if row is None:
            return None
        record = op_from_row(row)
        self._records[record.hash] = record
        self._op_json[record.hash] = row[4]
        self._track(record)
        return record

    def with_status(self, *statuses: OpStatus) -> list[OpRecord]:
        out = {r.hash: r for r in self._records.values() if r.status in statuses}
        finished = [s.value for s in statuses if s in FINISHED]
        if finished and self._clear_seq <= self._committed:
            q = _OP_SELECT + f" WHERE status IN ({', '.join('?' for _ in finished)})"
            for row in self._read.execute(q, finished):
                if row[0] not in out and row[0] not in self._records:
                    out[row[0]] = op_from_row(row)
        return list(out.values())

    def mined_since(self, block_number: int) -> list[OpRecord]:
        out = {r.hash: r for r in super().mined_since(block_number)}
        if self._clear_seq <= self._committed:
            for row in self._read.execute(_OP_SELECT + " WHERE status = 'mined' AND block_number >= ?",
                                          (block_number,)):
                if row[0] not in out and row[0] not in self._records:
                    out[row[0]] = op_from_row(row)
        return list(out.values())

    # -- writes (queued) ----------------------------------------------------------------------
    def _written(self, record: OpRecord) -> None:
        op_json = self._op_json.get(record.hash)
        if op_json is None:
            op_json = self._op_json[record.hash] = op_to_json(record.op)
        row = op_row(record, op_json)
        with self._cv:
            self._seq += 1
            self._pending_ops[record.hash] = row
            self._row_seq[record.hash] = self._seq
            self._cv.notify()

    def _evictable(self, op_hash: str) -> bool:
        return self._row_seq.get(op_hash, 0) <= self._committed

    def _evict(self) -> None:
        before = set(self._finished)
        super()._evict()
        for h in before - set(self._finished):
            self._op_json.pop(h, None)
            self._row_seq.pop(h, None)

    def put(self, record: OpRecord) -> None:
        self._op_json.pop(record.hash, None)  # a put may carry another op under a known hash
        super().put(record)

    def clear(self) -> None:
        super().clear()
        self._op_json.clear()
        self._row_seq.clear()
        with self._cv:
            self._seq += 1
            self._clear_seq = self._seq
            self._pending_ops.clear()
            self._pending_clear_ops = True
            self._cv.notify()

    def put_reputation(self, row: ReputationRow) -> None:
        super().put_reputation(row)
        self._queue(self._pending_rep, row.address, reputation_row(row))

    def clear_reputation(self) -> None:
        super().clear_reputation()
        with self._cv:
            self._seq += 1
            self._pending_rep.clear()
            self._pending_clear_rep = True
            self._cv.notify()

    def put_inflight(self, tx: InflightTx) -> None:
        super().put_inflight(tx)
        self._queue(self._pending_inflight, tx.key, inflight_row(tx))

    def delete_inflight(self, executor: str, nonce: int) -> None:
        super().delete_inflight(executor, nonce)
        self._queue(self._pending_inflight, (executor, nonce), None)

    def _queue(self, table: dict, key, row) -> None:
        with self._cv:
            self._seq += 1
            table[key] = row
            self._cv.notify()

    # -- durability ---------------------------------------------------------------------------
    async def flush(self) -> None:
        with self._cv:
            target = self._seq
            if self._committed >= target:
                return
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut = loop.create_future()
        self._waiters.append((target, fut))
        with self._cv:  # the writer may have committed while we registered
            committed, error = self._committed, self._error
        self._wake(committed, error)
        await fut

    def _wake(self, committed: int, error: BaseException | None) -> None:
        """On the loop thread: resolve the waiters whose writes are committed (or failed)."""
        keep = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if committed >= target:
                fut.set_result(None)
            elif error is not None:
                fut.set_exception(StoreError(f"could not write to {self.path}: {error}"))
            else:
                keep.append((target, fut))
        self._waiters = keep

    def _writer(self) -> None:
        conn = self._connect()
        last_prune = 0.0
        try:
            while True:
                with self._cv:
                    while not self._has_pending() and not self._closing:
                        self._cv.wait(timeout=60)
                        if time.time() - last_prune > 3600:
                            break
                    if self._closing and not self._has_pending():
                        return
                    batch = (self._pending_clear_ops, self._pending_ops, self._pending_clear_rep,
                             self._pending_rep, self._pending_inflight)
                    upto = self._seq
                    self._pending_clear_ops, self._pending_clear_rep = False, False
                    self._pending_ops, self._pending_rep, self._pending_inflight = {}, {}, {}
                error = None
                try:
                    self._commit(conn, *batch)
                    if time.time() - last_prune > 3600:
                        last_prune = time.time()
                        self._prune(conn)
                except Exception as e:  # disk full, I/O error: keep the rows, retry, tell waiters
                    error = e
                    log.error("store write failed (%s); retrying", e)
                    try:
                        conn.rollback()
                    except sqlite3.Error:
                        pass
                    with self._cv:
                        self._requeue(*batch)
                with self._cv:
                    if error is None:
                        self._committed = upto
                        self._error = None
                    else:
                        self._error = error
                    committed = self._committed
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(self._wake, committed, error)
                    except RuntimeError:  # loop closed meanwhile
                        pass
                if error is not None:
                    time.sleep(0.5)
        finally:
            conn.close()

    def _has_pending(self) -> bool:
        return bool(self._pending_clear_ops or self._pending_ops or self._pending_clear_rep
                    or self._pending_rep or self._pending_inflight)

    @staticmethod
    def _commit(conn, clear_ops, ops, clear_rep, rep, inflight) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if clear_ops:
            conn.execute("DELETE FROM ops")
        if ops:
            conn.executemany(_OP_UPSERT, list(ops.values()))
        if clear_rep:
            conn.execute("DELETE FROM reputation")
        for address, row in rep.items():
            if row is None:
                conn.execute("DELETE FROM reputation WHERE address = ?", (address,))
            else:
                conn.execute("INSERT OR REPLACE INTO reputation (address, ops_seen, ops_included, updated_at) "
                             "VALUES (?, ?, ?, ?)", row)
        for (executor, nonce), row in inflight.items():
            if row is None:
                conn.execute("DELETE FROM inflight WHERE executor = ? AND nonce = ?", (executor, nonce))
            else:
                conn.execute("INSERT OR REPLACE INTO inflight (executor, nonce, entry_point, op_hashes, attempts, "
                             "created_at) VALUES (?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")

    def _requeue(self, clear_ops, ops, clear_rep, rep, inflight) -> None:
        """Put a failed batch back under anything written since (newer rows win)."""
        if clear_ops:
            self._pending_clear_ops = True
        if clear_rep:
            self._pending_clear_rep = True
        for mine, theirs in ((self._pending_ops, ops), (self._pending_rep, rep), (self._pending_inflight, inflight)):
            for k, v in theirs.items():
                mine.setdefault(k, v)

    def _prune(self, conn) -> None:
        if self._retention_s <= 0:
            return
        cutoff = time.time() - self._retention_s
        cur = conn.execute("DELETE FROM ops WHERE status IN ('mined', 'dropped') AND updated_at < ?", (cutoff,))
        if cur.rowcount:
            log.info("store: pruned %d finished ops older than %.0f s", cur.rowcount, self._retention_s)

    def close(self) -> None:
        if self._lock_fd is None:
            return
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=30)
        try:
            self._read.close()
        finally:
            self._release_lock()


__all__ = ["ACTIVE", "DataDirInUse", "SqliteStore", "StoreError", "WrongChain"]
