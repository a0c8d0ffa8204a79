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

import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

from .codec import (
    OP_COLUMNS, inflight_from_row, inflight_row, op_from_row, op_row, op_to_json, reputation_from_row,
    reputation_row,
    merge_session_activity, session_activity_row, SPONSORSHIP_COLUMNS, sponsorship_from_row, sponsorship_row,
)
from .memory import MemoryStore
from .records import ACTIVE, FINISHED, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity
from .writebehind import StoreError, WriteBehind
from ..userop.model import UserOperation

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
SPONSORSHIP_KEEP_S = 400 * 86400  # finished sponsorships older than this count in no budget period
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
CREATE TABLE IF NOT EXISTS session_activity (
    op_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    session_key TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_activity_key ON session_activity(account, session_key, received_at);
CREATE TABLE IF NOT EXISTS sponsorships (
    op_hash TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    amount TEXT NOT NULL,
    valid_until INTEGER NOT NULL,
    state TEXT NOT NULL,
    from_block INTEGER NOT NULL,
    created_at REAL NOT NULL
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
# a status change of an op whose row is there: every column but the op's JSON (OP_COLUMNS[4])
_OP_JSON_AT = 4
_OP_UPDATE = (f"UPDATE ops SET {', '.join(c + ' = ?' for c in OP_COLUMNS[1:] if c != OP_COLUMNS[_OP_JSON_AT])} "
              f"WHERE {OP_COLUMNS[0]} = ?")


def _op_write(op_changed: bool, record: OpRecord) -> tuple[bool, UserOperation, tuple]:
    """A queued op row: (whole, op, row without the op's JSON). `whole`: the op is new or
    changed, so the row is written whole, its JSON made in the writer thread; otherwise only the
    other columns are updated. Nothing is kept per pending op for it (a cache of each op's JSON
    was about 730 bytes per pending op): the JSON is made again only if the row is missing."""
    return op_changed, record.op, op_row(record, "")


def _coalesced(older: tuple, newer: tuple) -> tuple:
    """Two queued writes of one op row: the newer one, written whole if either was."""
    return (older[0] or newer[0],) + newer[1:]


class DiskOnlyFilter:
    """A Bloom filter of the op hashes whose rows only the file holds (finished ops evicted from
    memory, or found there at start-up). A hash not in it and not in memory is not in the file
    either, so looking up a new op's hash (every admission does) needs no query; a false
    positive (about 3% at a million rows) only costs the query. Only this process writes the
    file (the data dir lock), and every row it writes is in memory first."""

    BITS = 1 << 23  # 1 MiB
    PROBES = 3

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def _positions(self, key: str):
        for i in range(self.PROBES):
            yield hash((i, key)) & (self.BITS - 1)

    def add(self, key: str) -> None:
        for p in self._positions(key):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class DataDirInUse(StoreError):
    pass


class WrongChain(StoreError):
    pass


class SqliteStore(WriteBehind, MemoryStore):
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
        self._lock_fd: int | None = self._acquire_lock()
        self._disk_only = DiskOnlyFilter()
        try:
            self._read = self._connect()
            self._read.executescript(SCHEMA)
            self._read.commit()
            self._load()
        except BaseException:
            self._release_lock()
            raise
        self._clear_seq = 0         # seq of the last clear() (reads miss the file until durable)
        self._row_seq: dict[str, int] = {}
        self._start_writer("store-writer")

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
        """Active ops, reputation and in-flight transactions into memory; the hashes of the
        finished ops into the filter of rows that only the file holds."""
        rows = self._read.execute(_OP_SELECT + " WHERE status IN ('pending', 'submitted')").fetchall()
        for row in rows:
            record = op_from_row(row)
            self._records[record.hash] = record
        for (h,) in self._read.execute("SELECT hash FROM ops WHERE status NOT IN ('pending', 'submitted')"):
            self._disk_only.add(h)
        for row in self._read.execute("SELECT address, ops_seen, ops_included, updated_at FROM reputation"):
            r = reputation_from_row(row)
            self._reputation[r.address] = r
        for row in self._read.execute(
                "SELECT executor, nonce, entry_point, op_hashes, attempts, created_at FROM inflight"):
            t = inflight_from_row(row)
            self._inflight[t.key] = t
        # every sponsorship whose period may still be counted (the others are pruned)
        self._loading_sponsorships = True
        try:
            for row in self._read.execute(f"SELECT {', '.join(SPONSORSHIP_COLUMNS)} FROM sponsorships"):
                self._put_sponsorship(sponsorship_from_row(row))
        finally:
            self._loading_sponsorships = False
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
        if record is not None or self._clear_seq > self._committed or op_hash not in self._disk_only:
            return record
        row = self._read.execute(_OP_SELECT + " WHERE hash = ?", (op_hash,)).fetchone()
        if row is None:
            return None
        record = op_from_row(row)
        self._records[record.hash] = record
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
    def describe(self) -> str:
        return str(self.path)

    def _written(self, record: OpRecord, op_changed: bool = True) -> None:
        seq = self._queue("ops", record.hash, _op_write(op_changed, record), combine=_coalesced)
        # only finished records are ever evicted, once their last write is durable: the
        # sequence number is kept for those alone (not 58 bytes per pending op)
        if record.status in FINISHED:
            self._row_seq[record.hash] = seq
        else:
            self._row_seq.pop(record.hash, None)

    def _evictable(self, op_hash: str) -> bool:
        return self._row_seq.get(op_hash, 0) <= self._committed

    def _evict(self) -> None:
        before = set(self._finished)
        super()._evict()
        for h in before - set(self._finished):
            self._row_seq.pop(h, None)
            self._disk_only.add(h)

    def clear(self) -> None:
        super().clear()
        self._row_seq.clear()
        self._clear_seq = self._queue_flag("clear_ops", clears=("ops", "session_activity"))

    def put_reputation(self, row: ReputationRow) -> None:
        super().put_reputation(row)
        self._queue("reputation", row.address, reputation_row(row))

    def add_reputation(self, address: str, ops_seen: int = 0, ops_included: int = 0) -> ReputationRow:
        row = super().add_reputation(address, ops_seen, ops_included)
        self._queue("reputation", row.address, reputation_row(row))
        return row

    def clear_reputation(self) -> None:
        super().clear_reputation()
        self._queue_flag("clear_reputation", clears=("reputation",))

    # -- session audit log: kept on disk (session_getActivity is an audit trail) -------------
    def add_session_activity(self, activity: SessionActivity) -> None:
        super().add_session_activity(activity)
        self._queue("session_activity", activity.op_hash, session_activity_row(activity))

    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]:
        """Everything logged for that session, on disk and not yet written, oldest first."""
        account, session_key = account.lower(), session_key.lower()
        rows = self._read.execute(
            "SELECT body FROM session_activity WHERE account = ? AND session_key = ? ORDER BY received_at",
            (account, session_key),
        ).fetchall()
        # this process's entries are newer and maybe not committed yet
        return merge_session_activity((r[0] for r in rows), super().session_activity(account, session_key))

    def _written_sponsorship(self, sponsorship) -> None:
        if not getattr(self, "_loading_sponsorships", False):
            self._queue("sponsorships", sponsorship.op_hash, sponsorship_row(sponsorship))

    def put_inflight(self, tx: InflightTx) -> None:
        super().put_inflight(tx)
        self._queue("inflight", tx.key, inflight_row(tx))

    def delete_inflight(self, executor: str, nonce: int) -> None:
        super().delete_inflight(executor, nonce)
        self._queue("inflight", (executor, nonce), None)

    # -- writer thread ----------------------------------------------------------------------------
    def _writer_connect(self):
        return self._connect()

    def _commit(self, conn, flags: set[str], tables: dict[str, dict]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if "clear_ops" in flags:
            conn.execute("DELETE FROM ops")
        if tables.get("ops"):
            self._commit_ops(conn, tables["ops"].values())
        if "clear_reputation" in flags:
            conn.execute("DELETE FROM reputation")
        for address, row in tables.get("reputation", {}).items():
            if row is None:
                conn.execute("DELETE FROM reputation WHERE address = ?", (address,))
            else:
                conn.execute("INSERT OR REPLACE INTO reputation (address, ops_seen, ops_included, updated_at) "
                             "VALUES (?, ?, ?, ?)", row)
        if "clear_ops" in flags:
            conn.execute("DELETE FROM session_activity")
        if tables.get("session_activity"):
            conn.executemany("INSERT OR REPLACE INTO session_activity (op_hash, account, session_key, body, "
                             "received_at) VALUES (?, ?, ?, ?, ?)", list(tables["session_activity"].values()))
        if tables.get("sponsorships"):
            conn.executemany(f"INSERT OR REPLACE INTO sponsorships ({', '.join(SPONSORSHIP_COLUMNS)}) "
                             f"VALUES ({', '.join('?' for _ in SPONSORSHIP_COLUMNS)})",
                             list(tables["sponsorships"].values()))
        for (executor, nonce), row in tables.get("inflight", {}).items():
            if row is None:
                conn.execute("DELETE FROM inflight WHERE executor = ? AND nonce = ?", (executor, nonce))
            else:
                conn.execute("INSERT OR REPLACE INTO inflight (executor, nonce, entry_point, op_hashes, attempts, "
                             "created_at) VALUES (?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")

    @staticmethod
    def _commit_ops(conn, writes) -> None:
        rows = []
        for op_changed, op, row in writes:
            if not op_changed:
                update = row[1:_OP_JSON_AT] + row[_OP_JSON_AT + 1:] + row[:1]
                if conn.execute(_OP_UPDATE, update).rowcount:
                    continue
                # not in the file (pruned meanwhile): the whole row after all
            rows.append(row[:_OP_JSON_AT] + (op_to_json(op),) + row[_OP_JSON_AT + 1:])
        if rows:
            conn.executemany(_OP_UPSERT, rows)

    def _merge_back(self, table: str, key, failed, newer):
        return _coalesced(failed, newer) if table == "ops" and failed is not None and newer is not None else newer

    def _prune(self, conn) -> None:
        if self._retention_s <= 0:
            return
        cutoff = time.time() - self._retention_s
        cur = conn.execute("DELETE FROM ops WHERE status IN ('mined', 'dropped') AND updated_at < ?", (cutoff,))
        if cur.rowcount:
            log.info("store: pruned %d finished ops older than %.0f s", cur.rowcount, self._retention_s)
        # finished sponsorships of long-past periods (a budget period is at most SPONSORSHIP_KEEP_S)
        conn.execute("DELETE FROM sponsorships WHERE state != 'reserved' AND created_at < ?",
                     (time.time() - SPONSORSHIP_KEEP_S,))

    def close(self) -> None:
        if self._lock_fd is None:
            return
        self._stop_writer()
        try:
            self._read.close()
        finally:
            self._release_lock()


__all__ = ["ACTIVE", "DataDirInUse", "SqliteStore", "StoreError", "WrongChain"]
