"""The relay's persistent state: backend credentials, grants (with their session keys encrypted
at rest), calls, request nonces seen (replay protection) and the audit trail.

One SQL implementation over two dialects: SQLite (the relay tables live in the bundler's own
database file, through a connection of their own) and PostgreSQL (tables `relay_*` next to the
`bundler_*` ones, so several instances share one relay). `--store memory` gets an in-memory
SQLite database. Writes are synchronous and committed at once: relay rows are few compared
with ops, and an acknowledged call or a destroyed key must not be lost to a crash.

Nothing here decrypts anything: `encrypted_key` is opaque bytes from relay.keystore.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from ..config import Config
    from ..store.base import Store

_COMMON = """
CREATE TABLE IF NOT EXISTS relay_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS relay_credentials (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    name TEXT NOT NULL,
    webhook_url TEXT,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    retired_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS relay_grants (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    account TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    session_address TEXT NOT NULL,
    encrypted_key TEXT,
    spec TEXT NOT NULL,
    permissions TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    grant_nonce BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    owner_signature TEXT,
    activation_op TEXT,
    owner_op TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_grants_account ON relay_grants(account, status);
CREATE INDEX IF NOT EXISTS relay_grants_credential ON relay_grants(credential_id, status);
CREATE TABLE IF NOT EXISTS relay_calls (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    account TEXT NOT NULL,
    calls TEXT NOT NULL,
    status TEXT NOT NULL,
    user_op_hash TEXT,
    lane BIGINT,
    nonce TEXT,
    error TEXT,
    receipt TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (credential_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS relay_calls_active ON relay_calls(status);
CREATE INDEX IF NOT EXISTS relay_calls_grant ON relay_calls(grant_id, status);
CREATE TABLE IF NOT EXISTS relay_request_nonces (
    principal TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (principal, nonce)
);
"""

SQLITE_SCHEMA = _COMMON + """
CREATE TABLE IF NOT EXISTS relay_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at DOUBLE PRECISION NOT NULL,
    credential_id TEXT,
    account TEXT,
    grant_id TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

POSTGRES_SCHEMA = _COMMON + """
CREATE TABLE IF NOT EXISTS relay_audit (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    credential_id TEXT,
    account TEXT,
    grant_id TEXT,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

_POSTGRES_SCHEMA_LOCK = 0x4337_0002

# call states; FINAL ones never change again
QUEUED, PENDING, MINED, DROPPED = "queued", "pending", "mined", "dropped"
DISPATCHING = "dispatching"  # claimed by one instance while it builds the op (shown as queued)
FINAL_CALL_STATES = (MINED, DROPPED)


@dataclass
class Credential:
    id: str
    address: str  # the backend's own key (the public part only)
    name: str
    webhook_url: str | None = None
    status: str = "active"  # active | retired
    created_at: float = field(default_factory=time.time)
    retired_at: float | None = None


@dataclass
class Grant:
    id: str
    credential_id: str
    account: str
    entry_point: str
    session_address: str
    encrypted_key: str | None  # None once the key is destroyed (revoked / retired)
    spec: str  # hex of the ABI-encoded SessionSpec (session_sdk.types.encode_spec)
    permissions: str  # the JSON the grant was prepared from
    mode: str  # enable | ownerOp
    status: str  # prepared | authorized | activating | active | revoked | retired | failed
    grant_nonce: int
    epoch: int = 0  # account.epoch() the enable signature names (revokeAllSessions moves it on)
    reason: str | None = None
    owner_signature: str | None = None  # enable mode: the owner's EIP-712 signature
    activation_op: str | None = None  # hash of the op that grants (enable op or owner op) in flight
    owner_op: str | None = None  # ownerOp mode: the unsigned grant op (RPC JSON) the owner signs
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class RelayCall:
    id: str
    credential_id: str
    idempotency_key: str
    grant_id: str
    account: str
    calls: str  # JSON [{to, value, data}]
    status: str = QUEUED
    user_op_hash: str | None = None
    lane: int | None = None
    nonce: str | None = None
    error: str | None = None  # JSON {code, message, data}
    receipt: str | None = None  # JSON of eth_getUserOperationReceipt
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class AuditEvent:
    at: float
    event: str
    credential_id: str | None
    account: str | None
    grant_id: str | None
    detail: dict[str, Any]
    id: int | None = None


def _columns(cls) -> list[str]:
    return [f.name for f in fields(cls)]


_CREDENTIAL_COLS = _columns(Credential)
_GRANT_COLS = _columns(Grant)
_CALL_COLS = _columns(RelayCall)


class DuplicateKey(Exception):
    """An insert hit a unique key (an idempotency key used twice, a nonce replayed)."""


class RelayStore:
    """Relay rows over one DB-API connection (sqlite3 or psycopg). Statements are written with
    `?` placeholders and rewritten for psycopg; one lock serialises use of the connection."""

    def __init__(self, conn, dialect: str):
        self._conn = conn
        self.dialect = dialect
        self._lock = threading.RLock()  # reentrant: statements inside transaction()
        if dialect == "sqlite":
            conn.executescript(SQLITE_SCHEMA)
        else:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_POSTGRES_SCHEMA_LOCK,))
                conn.execute(POSTGRES_SCHEMA)

    @classmethod
    def sqlite(cls, path: str, synchronous: str = "full") -> "RelayStore":
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            # the bundler's own setting (--store-sync): full survives power loss
            conn.execute(f"PRAGMA synchronous={'NORMAL' if synchronous.lower() == 'normal' else 'FULL'}")
        conn.execute("PRAGMA busy_timeout=30000")
        return cls(conn, "sqlite")

    @classmethod
    def postgres(cls, dsn: str) -> "RelayStore":
        import psycopg

        return cls(psycopg.connect(dsn, autocommit=True), "postgres")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """Several writes committed together (one fsync): no await inside."""
        with self._lock:
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                with self._conn.transaction():
                    yield

    def _sql(self, q: str) -> str:
        return q if self.dialect == "sqlite" else q.replace("?", "%s")

    def _exec(self, q: str, params: Iterable = ()) -> list[tuple]:
        return self._run(q, params)[0]

    def _run(self, q: str, params: Iterable = ()) -> tuple[list[tuple], int]:
        """(rows, rowcount)."""
        with self._lock:
            try:
                cur = self._conn.execute(self._sql(q), tuple(params))
            except Exception as e:
                if _is_unique_violation(e):
                    raise DuplicateKey(str(e)) from None
                raise
            return (cur.fetchall() if cur.description else []), cur.rowcount

    def _insert(self, table: str, cols: list[str], row: dict) -> None:
        self._exec(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                   [row[c] for c in cols])

    def _update(self, table: str, key: str, fields_: dict) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields_)
        self._exec(f"UPDATE {table} SET {sets} WHERE id = ?", [*fields_.values(), key])

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._exec("SELECT value FROM relay_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT INTO relay_meta (key, value) VALUES (?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def add_meta(self, key: str, value: str) -> str:
        """Insert unless present; the value stored (another instance's, if it was first)."""
        self._exec("INSERT INTO relay_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
        stored = self.get_meta(key)
        if stored is None:  # meta rows are never deleted: the row just inserted (or kept) is gone
            raise LookupError(f"relay meta {key!r} is missing right after it was written")
        return stored

    # -- request nonces (replay protection) ---------------------------------------------------
    def use_request_nonce(self, principal: str, nonce: str, expires_at: float) -> bool:
        """Record a signed request's nonce; False if it was seen before (a replay)."""
        try:
            self._exec("INSERT INTO relay_request_nonces (principal, nonce, expires_at) VALUES (?, ?, ?)",
                       (principal, nonce, expires_at))
        except DuplicateKey:
            return False
        return True

    def prune_request_nonces(self, now: float) -> None:
        self._exec("DELETE FROM relay_request_nonces WHERE expires_at < ?", (now,))

    # -- credentials ------------------------------------------------------------------------
    def add_credential(self, c: Credential) -> None:
        self._insert("relay_credentials", _CREDENTIAL_COLS, c.__dict__)

    def get_credential(self, credential_id: str) -> Credential | None:
        rows = self._exec(f"SELECT {', '.join(_CREDENTIAL_COLS)} FROM relay_credentials WHERE id = ?",
                          (credential_id,))
        return Credential(*rows[0]) if rows else None

    def update_credential(self, credential_id: str, **changes: Any) -> None:
        self._update("relay_credentials", credential_id, changes)

    # -- grants -----------------------------------------------------------------------------
    def add_grant(self, g: Grant) -> None:
        self._insert("relay_grants", _GRANT_COLS, g.__dict__)

    def get_grant(self, grant_id: str) -> Grant | None:
        rows = self._exec(f"SELECT {', '.join(_GRANT_COLS)} FROM relay_grants WHERE id = ?", (grant_id,))
        return Grant(*rows[0]) if rows else None

    def grants(self, *, credential_id: str | None = None, account: str | None = None,
               statuses: tuple[str, ...] = ()) -> list[Grant]:
        where, params = [], []
        if credential_id is not None:
            where.append("credential_id = ?")
            params.append(credential_id)
        if account is not None:
            where.append("account = ?")
            params.append(account)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        q = f"SELECT {', '.join(_GRANT_COLS)} FROM relay_grants"
        if where:
            q += " WHERE " + " AND ".join(where)
        return [Grant(*r) for r in self._exec(q + " ORDER BY created_at", params)]

    def update_grant(self, grant_id: str, **changes: Any) -> None:
        changes.setdefault("updated_at", time.time())
        self._update("relay_grants", grant_id, changes)

    def grants_with_keys(self) -> list[tuple[str, str]]:
        """(grant id, encrypted key) of every grant that still holds a key (for rotation)."""
        return [(r[0], r[1]) for r in self._exec(
            "SELECT id, encrypted_key FROM relay_grants WHERE encrypted_key IS NOT NULL")]

    # -- calls ------------------------------------------------------------------------------
    def add_call(self, c: RelayCall) -> None:
        """Raises DuplicateKey when the credential used this idempotency key already."""
        self._insert("relay_calls", _CALL_COLS, c.__dict__)

    def get_call(self, call_id: str) -> RelayCall | None:
        rows = self._exec(f"SELECT {', '.join(_CALL_COLS)} FROM relay_calls WHERE id = ?", (call_id,))
        return RelayCall(*rows[0]) if rows else None

    def call_by_idempotency_key(self, credential_id: str, key: str) -> RelayCall | None:
        rows = self._exec(f"SELECT {', '.join(_CALL_COLS)} FROM relay_calls "
                          "WHERE credential_id = ? AND idempotency_key = ?", (credential_id, key))
        return RelayCall(*rows[0]) if rows else None

    def calls(self, *, statuses: tuple[str, ...], grant_id: str | None = None) -> list[RelayCall]:
        q = (f"SELECT {', '.join(_CALL_COLS)} FROM relay_calls "
             f"WHERE status IN ({', '.join('?' for _ in statuses)})")
        params: list = list(statuses)
        if grant_id is not None:
            q += " AND grant_id = ?"
            params.append(grant_id)
        return [RelayCall(*r) for r in self._exec(q + " ORDER BY created_at", params)]

    def update_call(self, call_id: str, **changes: Any) -> None:
        changes.setdefault("updated_at", time.time())
        self._update("relay_calls", call_id, changes)

    def transition_call(self, call_id: str, from_statuses: tuple[str, ...], **changes: Any) -> bool:
        """Change the call only if its status is one of `from_statuses` (one atomic UPDATE), so
        instances sharing the store never both dispatch or both finish one call."""
        changes.setdefault("updated_at", time.time())
        sets = ", ".join(f"{k} = ?" for k in changes)
        _rows, count = self._run(
            f"UPDATE relay_calls SET {sets} WHERE id = ? AND status IN ({', '.join('?' for _ in from_statuses)})",
            [*changes.values(), call_id, *from_statuses])
        return count == 1

    def requeue_stale_dispatching(self, claimed_before: float) -> None:
        self._exec("UPDATE relay_calls SET status = ? WHERE status = ? AND updated_at < ?",
                   (QUEUED, DISPATCHING, claimed_before))

    # -- audit ------------------------------------------------------------------------------
    def audit(self, event: str, *, credential_id: str | None = None, account: str | None = None,
              grant_id: str | None = None, **detail: Any) -> None:
        self._exec("INSERT INTO relay_audit (at, credential_id, account, grant_id, event, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (time.time(), credential_id, account, grant_id, event, json.dumps(detail, sort_keys=True)))

    def audit_events(self, *, credential_id: str | None = None, account: str | None = None,
                     limit: int = 1000) -> list[AuditEvent]:
        """Oldest first. One of credential_id / account selects whose trail it is."""
        if (credential_id is None) == (account is None):
            raise ValueError("audit_events needs exactly one of credential_id, account")
        col, value = ("credential_id", credential_id) if credential_id is not None else ("account", account)
        rows = self._exec(f"SELECT id, at, event, credential_id, account, grant_id, detail FROM relay_audit "
                          f"WHERE {col} = ? ORDER BY id LIMIT ?", (value, limit))
        return [AuditEvent(id=r[0], at=r[1], event=r[2], credential_id=r[3], account=r[4], grant_id=r[5],
                           detail=json.loads(r[6])) for r in rows]


def _is_unique_violation(e: Exception) -> bool:
    if isinstance(e, sqlite3.IntegrityError):
        return "UNIQUE" in str(e) or "PRIMARY KEY" in str(e)
    sqlstate = getattr(e, "sqlstate", None)
    return sqlstate == "23505"


def open_relay_store(config: Config, store: Store) -> RelayStore:
    """The relay's tables in the same place as the bundler's store."""
    kind = getattr(config, "store", "sqlite")
    if kind == "postgres":
        return RelayStore.postgres(config.postgres_dsn)
    if kind == "sqlite":
        from .sqlite import SqliteStore

        if not isinstance(store, SqliteStore):  # open_store() opened config.store
            raise ValueError(f"store = sqlite, but the bundler's store is a {type(store).__name__}")
        return RelayStore.sqlite(str(store.path), getattr(config, "store_sync", "full"))
    return RelayStore.sqlite(":memory:")
