"""PostgreSQL store: several bundler instances share one mempool and one op index.

Nothing about ops is cached (another instance may change any row); only rows this process
wrote and has not committed yet are served from memory, so it reads its own writes. Writes go
through the same write-behind queue as SqliteStore (group commit, `await flush()`).

Sharing rules:
- an op is bundled only by the instance that **claims** it: one UPDATE ... WHERE status =
  'pending' over rows picked FOR UPDATE SKIP LOCKED, so two instances racing for the same ops
  get disjoint sets and never wait on each other;
- a row write that puts an op back to 'pending' clears the claim; other writes keep it;
- each executor key is held with a session-level advisory lock: two instances configured with
  the same key refuse to run together (their nonces would collide);
- reputation counters are added atomically (add_reputation), not overwritten.
"""
from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict

import psycopg

from .codec import (
    OP_COLUMNS, inflight_from_row, inflight_row, op_from_row, op_row, op_to_json, reputation_from_row,
    merge_session_activity, session_activity_row, SPONSORSHIP_COLUMNS, sponsorship_from_row, sponsorship_row,
)
from .records import Budget, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, Sponsorship, SponsorshipState
from .sqlite import WrongChain
from .writebehind import StoreError, WriteBehind

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
RECENT_ACTIVITY_KEPT = 10_000  # session log entries this instance also keeps in memory
_SCHEMA_LOCK = 0x4337_0001

SCHEMA = """
CREATE TABLE IF NOT EXISTS bundler_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundler_ops (
    hash TEXT PRIMARY KEY,
    entry_point TEXT NOT NULL,
    sender TEXT NOT NULL,
    nonce TEXT NOT NULL,
    op TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    error_code INTEGER,
    tx_hash TEXT,
    block_number BIGINT,
    block_hash TEXT,
    valid_after BIGINT,
    valid_until BIGINT,
    prefund TEXT,
    eip7702_delegate TEXT,
    received_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION,
    claimed_by TEXT,
    claimed_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS bundler_ops_active ON bundler_ops(status) WHERE status IN ('pending', 'submitted');
CREATE INDEX IF NOT EXISTS bundler_ops_mined_block ON bundler_ops(block_number) WHERE status = 'mined';
CREATE INDEX IF NOT EXISTS bundler_ops_finished_age ON bundler_ops(updated_at) WHERE status IN ('mined', 'dropped');
CREATE TABLE IF NOT EXISTS bundler_reputation (
    address TEXT PRIMARY KEY,
    ops_seen BIGINT NOT NULL,
    ops_included BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS bundler_session_activity (
    op_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    session_key TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS bundler_session_activity_key
    ON bundler_session_activity(account, session_key, received_at);
CREATE TABLE IF NOT EXISTS bundler_sponsorships (
    op_hash TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    amount NUMERIC(78, 0) NOT NULL,
    valid_until BIGINT NOT NULL,
    state TEXT NOT NULL,
    from_block BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS bundler_sponsorships_budget ON bundler_sponsorships(policy_id, period_start, sender);
CREATE INDEX IF NOT EXISTS bundler_sponsorships_open ON bundler_sponsorships(state) WHERE state = 'reserved';
CREATE TABLE IF NOT EXISTS bundler_inflight (
    executor TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    entry_point TEXT NOT NULL,
    op_hashes TEXT NOT NULL,
    attempts TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (executor, nonce)
);
"""

_COLS = ", ".join(OP_COLUMNS)
_OP_SELECT = f"SELECT {_COLS} FROM bundler_ops"
_OP_UPSERT = (
    f"INSERT INTO bundler_ops ({_COLS}) VALUES ({', '.join('%s' for _ in OP_COLUMNS)}) "
    "ON CONFLICT (hash) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in OP_COLUMNS if c != "hash")
    + ", claimed_by = CASE WHEN EXCLUDED.status = 'pending' THEN NULL ELSE bundler_ops.claimed_by END"
)
_SPONSORSHIP_LOCK = 0x4337_0002
_SPONSORSHIP_UPSERT = (
    f"INSERT INTO bundler_sponsorships ({', '.join(SPONSORSHIP_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in SPONSORSHIP_COLUMNS)}) ON CONFLICT (op_hash) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in SPONSORSHIP_COLUMNS if c != "op_hash")
)
_CLAIM = (
    "UPDATE bundler_ops SET status = 'submitted', claimed_by = %s, claimed_at = %s "
    "WHERE hash IN (SELECT hash FROM bundler_ops WHERE hash = ANY(%s) AND status = 'pending' "
    "FOR UPDATE SKIP LOCKED) RETURNING hash"
)


class ExecutorInUse(StoreError):
    pass


class PostgresStore(WriteBehind):
    durable = True
    shared = True

    def __init__(self, dsn: str, *, retention_s: float = 7 * 86400):
        self.dsn = dsn
        self._retention_s = retention_s
        try:
            self._read = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from None
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._read.execute(SCHEMA)
        self._dirty: dict[str, OpRecord] = {}       # written here, not committed yet
        self._recent_activity: OrderedDict[str, SessionActivity] = OrderedDict()
        self._row_seq: dict[str, int] = {}
        self._op_json: dict[str, str] = {}
        self._inflight_dirty: dict[tuple[str, int], InflightTx | None] = {}
        self._inflight_seq: dict[tuple[str, int], int] = {}
        self._clear_seq = 0
        self._locked_executors: set[str] = set()
        self._rep_pending: dict[str, list[tuple]] = {}  # address -> uncommitted (seq, kind, seen, included)
        self._start_writer("pg-store-writer")

    def describe(self) -> str:
        return "PostgreSQL store"

    # -- set-up --------------------------------------------------------------------------------
    def bind_chain(self, chain_id: int, genesis_hash: str) -> None:
        want = {"chain_id": str(chain_id), "genesis_hash": genesis_hash.lower()}
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            meta = dict(self._read.execute("SELECT key, value FROM bundler_meta").fetchall())
            if "chain_id" in meta:
                if meta.get("chain_id") != want["chain_id"] or meta.get("genesis_hash") != want["genesis_hash"]:
                    raise WrongChain(
                        f"the PostgreSQL database belongs to chain {meta.get('chain_id')} (genesis "
                        f"{meta.get('genesis_hash')}), the node is on chain {chain_id} (genesis {genesis_hash}); "
                        f"use another database"
                    )
                return
            for k, v in {**want, "schema_version": SCHEMA_VERSION, "created_at": str(time.time())}.items():
                self._read.execute("INSERT INTO bundler_meta (key, value) VALUES (%s, %s) "
                                   "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (k, v))

    def lock_executors(self, addresses) -> None:
        """Hold each executor key for this instance (session advisory locks, released when the
        connection closes, also if the process is killed)."""
        for a in addresses:
            a = a.lower()
            key = zlib.crc32(a.encode()) - (1 << 31)
            got = self._read.execute("SELECT pg_try_advisory_lock(%s, %s)", (0x4337, key)).fetchone()[0]
            if not got:
                raise ExecutorInUse(f"executor {a} is used by another bundler instance sharing this database; "
                                    f"give every instance its own keys")
            self._locked_executors.add(a)

    # -- ops -------------------------------------------------------------------------------------
    def _settled(self) -> None:
        """Forget uncommitted copies once they are committed."""
        for h in [h for h, seq in self._row_seq.items() if seq <= self._committed]:
            self._row_seq.pop(h, None)
            self._dirty.pop(h, None)
            self._op_json.pop(h, None)

    def _db_visible(self) -> bool:
        return self._clear_seq <= self._committed

    def get(self, op_hash: str) -> OpRecord | None:
        self._settled()
        record = self._dirty.get(op_hash)
        if record is not None or not self._db_visible():
            return record
        row = self._read.execute(_OP_SELECT + " WHERE hash = %s", (op_hash,)).fetchone()
        return op_from_row(row) if row else None

    def put(self, record: OpRecord) -> None:
        record.updated_at = time.time()
        self._op_json.pop(record.hash, None)
        self._write(record)

    def update(self, op_hash: str, **fields) -> OpRecord | None:
        record = self.get(op_hash)
        if record is None:
            return None
        for k, v in fields.items():
            setattr(record, k, v)
        record.updated_at = time.time()
        self._write(record)
        return record

    def _write(self, record: OpRecord) -> None:
        op_json = self._op_json.get(record.hash)
        if op_json is None:
            op_json = self._op_json[record.hash] = op_to_json(record.op)
        self._dirty[record.hash] = record
        self._row_seq[record.hash] = self._queue("ops", record.hash, op_row(record, op_json))

    def _select_many(self, where: str, params) -> dict[str, OpRecord]:
        self._settled()
        out: dict[str, OpRecord] = {}
        if self._db_visible():
            for row in self._read.execute(_OP_SELECT + " WHERE " + where, params):
                out[row[0]] = op_from_row(row)
        return out

    def with_status(self, *statuses: OpStatus) -> list[OpRecord]:
        out = self._select_many("status = ANY(%s)", ([s.value for s in statuses],))
        for h, r in self._dirty.items():
            if r.status in statuses:
                out[h] = r
            else:
                out.pop(h, None)
        return list(out.values())

    def mined_since(self, block_number: int) -> list[OpRecord]:
        out = self._select_many("status = 'mined' AND block_number >= %s", (block_number,))
        for h, r in self._dirty.items():
            if r.status == OpStatus.MINED and r.block_number is not None and r.block_number >= block_number:
                out[h] = r
            else:
                out.pop(h, None)
        return list(out.values())

    def active_summary(self, also: list[str] = ()) -> dict[str, tuple[str, str | None, str | None]]:
        """hash -> (status, tx_hash, claimed_by) of every pending/submitted op, and of `also`
        whatever their status (the shared-pool sync's one query per round)."""
        if not self._db_visible():
            return {}
        rows = self._read.execute(
            "SELECT hash, status, tx_hash, claimed_by FROM bundler_ops "
            "WHERE status IN ('pending', 'submitted') OR hash = ANY(%s)", (list(also),)).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def clear(self) -> None:
        self._dirty.clear()
        self._row_seq.clear()
        self._op_json.clear()
        self._recent_activity.clear()
        self._clear_seq = self._queue_flag("clear_ops", clears=("ops", "session_activity"))

    # -- session audit log (session_getActivity), shared by the instances ---------------------
    def add_session_activity(self, activity: SessionActivity) -> None:
        self._recent_activity[activity.op_hash] = activity  # readable before the writer commits
        while len(self._recent_activity) > RECENT_ACTIVITY_KEPT:
            self._recent_activity.popitem(last=False)
        self._queue("session_activity", activity.op_hash, session_activity_row(activity))

    def session_activity(self, account: str, session_key: str) -> list[SessionActivity]:
        account, session_key = account.lower(), session_key.lower()
        rows = self._read.execute(
            "SELECT body FROM bundler_session_activity WHERE account = %s AND session_key = %s "
            "ORDER BY received_at", (account, session_key)).fetchall()
        recent = [a for a in self._recent_activity.values()
                  if a.account == account and a.session_key == session_key]
        return merge_session_activity((r[0] for r in rows), recent)

    # -- claims ------------------------------------------------------------------------------------
    async def claim(self, op_hashes: list[str], owner: str) -> set[str]:
        """Mark pending ops submitted by `owner`; returns the hashes this instance got."""
        await self.flush()  # our own writes of these rows first
        rows = self._read.execute(_CLAIM, (owner, time.time(), list(op_hashes))).fetchall()
        return {r[0] for r in rows}

    async def release(self, op_hashes: list[str], owner: str) -> None:
        """Give back claimed ops that were not sent (still without a transaction)."""
        await self.flush()
        self._read.execute(
            "UPDATE bundler_ops SET status = 'pending', claimed_by = NULL WHERE hash = ANY(%s) "
            "AND status = 'submitted' AND tx_hash IS NULL AND claimed_by = %s", (list(op_hashes), owner))

    async def release_stale(self, owners: list[str]) -> int:
        """At start-up: ops claimed by these (our) executors that never made it into a
        transaction (killed between claim and broadcast) become pending again."""
        await self.flush()
        cur = self._read.execute(
            "UPDATE bundler_ops SET status = 'pending', claimed_by = NULL WHERE status = 'submitted' "
            "AND claimed_by = ANY(%s) AND hash NOT IN (SELECT jsonb_array_elements_text(op_hashes::jsonb) "
            "FROM bundler_inflight)", ([o.lower() for o in owners],))
        return cur.rowcount

    # -- reputation ---------------------------------------------------------------------------------
    def get_reputation(self, address: str) -> ReputationRow | None:
        address = address.lower()
        committed = self._committed  # before reading: writes committed later are applied twice
        row = self._read.execute("SELECT address, ops_seen, ops_included, updated_at FROM bundler_reputation "
                                 "WHERE address = %s", (address,)).fetchone()
        out = reputation_from_row(row) if row else None
        pending = self._rep_pending.get(address, [])
        # prune with the snapshot: a write committed after our SELECT ran is not in `row` yet
        pending[:] = [p for p in pending if p[0] > committed]
        for seq, kind, seen, included in pending:
            if kind == "set" or out is None:
                out = ReputationRow(address, 0, 0)
                if kind == "set":
                    out.ops_seen, out.ops_included = seen, included
                    continue
            out.ops_seen += seen
            out.ops_included += included
        return out

    def put_reputation(self, row: ReputationRow) -> None:
        row.address = row.address.lower()
        seq = self._queue("reputation", row.address, ("set", row.ops_seen, row.ops_included))
        self._rep_pending.setdefault(row.address, []).append((seq, "set", row.ops_seen, row.ops_included))

    def add_reputation(self, address: str, ops_seen: int = 0, ops_included: int = 0) -> ReputationRow:
        address = address.lower()
        seq = self._queue("reputation", address, ("add", ops_seen, ops_included), combine=_combine_rep)
        self._rep_pending.setdefault(address, []).append((seq, "add", ops_seen, ops_included))
        return self.get_reputation(address)

    def reputation_rows(self) -> list[ReputationRow]:
        addresses = {r[0] for r in self._read.execute("SELECT address FROM bundler_reputation")}
        addresses |= set(self._rep_pending)
        rows = [self.get_reputation(a) for a in sorted(addresses)]
        return [r for r in rows if r is not None]

    def clear_reputation(self) -> None:
        self._rep_pending.clear()
        self._queue_flag("clear_reputation", clears=("reputation",))

    # -- paymaster sponsorships: written at once (not behind), so every instance counts them -----
    def reserve_sponsorship(self, sponsorship: Sponsorship, budgets: list[Budget]) -> tuple[Budget, int] | None:
        """Check every budget and insert in one transaction, serialised per policy with a
        transaction advisory lock: two instances never both take the last of a budget."""
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                               (_SPONSORSHIP_LOCK, zlib.crc32(sponsorship.policy_id.encode()) - (1 << 31)))
            for budget in budgets:
                spent = self._spent(budget, exclude=sponsorship.op_hash)
                if spent + sponsorship.amount > budget.limit:
                    return budget, spent
            self._read.execute(_SPONSORSHIP_UPSERT, sponsorship_row(sponsorship))
        return None

    def _spent(self, budget: Budget, exclude: str | None = None) -> int:
        query = ("SELECT COALESCE(SUM(amount), 0) FROM bundler_sponsorships WHERE policy_id = %s "
                 "AND period_start = %s AND state != 'released' AND op_hash != %s")
        params: list = [budget.policy_id, budget.period_start, exclude or ""]
        if budget.sender is not None:
            query += " AND sender = %s"
            params.append(budget.sender)
        return int(self._read.execute(query, params).fetchone()[0])

    def sponsorship_spent(self, budget: Budget) -> int:
        return self._spent(budget)

    def get_sponsorship(self, op_hash: str) -> Sponsorship | None:
        row = self._read.execute(f"SELECT {', '.join(SPONSORSHIP_COLUMNS)} FROM bundler_sponsorships "
                                 "WHERE op_hash = %s", (op_hash,)).fetchone()
        return sponsorship_from_row(row) if row else None

    def open_sponsorships(self) -> list[Sponsorship]:
        rows = self._read.execute(f"SELECT {', '.join(SPONSORSHIP_COLUMNS)} FROM bundler_sponsorships "
                                  "WHERE state = 'reserved'").fetchall()
        return [sponsorship_from_row(r) for r in rows]

    def finish_sponsorship(self, op_hash: str, state: SponsorshipState, amount: int = 0) -> Sponsorship | None:
        """Only the first instance to settle a reservation changes it."""
        row = self._read.execute(
            "UPDATE bundler_sponsorships SET state = %s, amount = CASE WHEN %s THEN %s ELSE amount END "
            f"WHERE op_hash = %s AND state = 'reserved' RETURNING {', '.join(SPONSORSHIP_COLUMNS)}",
            (state.value, state == SponsorshipState.SETTLED, str(amount), op_hash)).fetchone()
        return sponsorship_from_row(row) if row else None

    # -- in-flight ------------------------------------------------------------------------------------
    def put_inflight(self, tx: InflightTx) -> None:
        self._inflight_dirty[tx.key] = tx
        self._inflight_seq[tx.key] = self._queue("inflight", tx.key, inflight_row(tx))

    def delete_inflight(self, executor: str, nonce: int) -> None:
        self._inflight_dirty[(executor, nonce)] = None
        self._inflight_seq[(executor, nonce)] = self._queue("inflight", (executor, nonce), None)

    def inflight(self) -> list[InflightTx]:
        for k in [k for k, seq in self._inflight_seq.items() if seq <= self._committed]:
            self._inflight_seq.pop(k, None)
            self._inflight_dirty.pop(k, None)
        out = {}
        for row in self._read.execute(
                "SELECT executor, nonce, entry_point, op_hashes, attempts, created_at FROM bundler_inflight"):
            t = inflight_from_row(row)
            out[t.key] = t
        for k, t in self._inflight_dirty.items():
            if t is None:
                out.pop(k, None)
            else:
                out[k] = t
        return sorted(out.values(), key=lambda t: (t.executor, t.nonce))

    # -- writer thread -----------------------------------------------------------------------------------
    def _writer_connect(self):
        return psycopg.connect(self.dsn)

    def _writer_reset(self, conn):
        try:
            conn.close()
        except Exception:
            pass
        return None  # reconnect on the next round

    def _commit(self, conn, flags: set[str], tables: dict[str, dict]) -> None:
        with conn.transaction():
            cur = conn.cursor()
            if "clear_ops" in flags:
                cur.execute("DELETE FROM bundler_ops")
            if tables.get("ops"):
                cur.executemany(_OP_UPSERT, list(tables["ops"].values()))
            if "clear_reputation" in flags:
                cur.execute("DELETE FROM bundler_reputation")
            now = time.time()
            for address, (kind, seen, included) in sorted(tables.get("reputation", {}).items()):
                if kind == "set":
                    cur.execute("INSERT INTO bundler_reputation (address, ops_seen, ops_included, updated_at) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT (address) DO UPDATE SET "
                                "ops_seen = EXCLUDED.ops_seen, ops_included = EXCLUDED.ops_included, "
                                "updated_at = EXCLUDED.updated_at", (address, seen, included, now))
                else:
                    cur.execute("INSERT INTO bundler_reputation (address, ops_seen, ops_included, updated_at) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT (address) DO UPDATE SET "
                                "ops_seen = bundler_reputation.ops_seen + EXCLUDED.ops_seen, "
                                "ops_included = bundler_reputation.ops_included + EXCLUDED.ops_included, "
                                "updated_at = EXCLUDED.updated_at", (address, seen, included, now))
            if "clear_ops" in flags:
                cur.execute("DELETE FROM bundler_session_activity")
            if tables.get("session_activity"):
                cur.executemany("INSERT INTO bundler_session_activity (op_hash, account, session_key, body, "
                                "received_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (op_hash) DO UPDATE "
                                "SET body = EXCLUDED.body", list(tables["session_activity"].values()))
            for (executor, nonce), row in tables.get("inflight", {}).items():
                if row is None:
                    cur.execute("DELETE FROM bundler_inflight WHERE executor = %s AND nonce = %s", (executor, nonce))
                else:
                    cur.execute("INSERT INTO bundler_inflight (executor, nonce, entry_point, op_hashes, attempts, "
                                "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (executor, nonce) DO UPDATE "
                                "SET entry_point = EXCLUDED.entry_point, op_hashes = EXCLUDED.op_hashes, "
                                "attempts = EXCLUDED.attempts", row)

    def _merge_back(self, table: str, key, failed, newer):
        if table == "reputation":
            return _combine_rep(failed, newer)
        return newer

    def _prune(self, conn) -> None:
        if self._retention_s <= 0:
            return
        with conn.transaction():
            cur = conn.execute("DELETE FROM bundler_ops WHERE status IN ('mined', 'dropped') AND updated_at < %s",
                               (time.time() - self._retention_s,))
        if cur.rowcount:
            log.info("store: pruned %d finished ops", cur.rowcount)

    async def flush(self) -> None:
        await super().flush()

    def close(self) -> None:
        if getattr(self, "_read", None) is None:
            return
        self._stop_writer()
        try:
            self._read.close()  # releases the executor locks
        finally:
            self._read = None


def _combine_rep(older, newer):
    """Coalesce two queued reputation writes of one address."""
    if newer[0] == "set":
        return newer
    kind, seen, included = older
    return (kind, seen + newer[1], included + newer[2])


__all__ = ["ExecutorInUse", "PostgresStore"]
