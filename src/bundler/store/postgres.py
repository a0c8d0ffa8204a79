"""PostgreSQL store: several bundler instances share one mempool and one op index.

Nothing about ops is cached (another instance may change any row); only rows this process
wrote and has not committed yet are served from memory, so it reads its own writes. Writes go
through the same write-behind queue as SqliteStore (group commit, `await flush()`).

Sharing rules, each decided inside PostgreSQL (functions in SCHEMA), never by a read in Python
followed by a write:
- **one live op per (entry point, sender, nonce) slot** across all instances: admission calls
  bundler_admit(), which under the slot's advisory lock refuses a known op, refuses a slot whose
  op is in a bundle, and replaces a pending op only under the fee-bump rule; a partial unique
  index keeps the invariant whatever else writes;
- **claims**: an op is bundled only by the instance that claims it (bundler_claim(): pending
  rows picked FOR UPDATE SKIP LOCKED, never a sender with an op in another bundle or with a
  lower nonce still unclaimed); every later op write goes through bundler_write_op(), which
  never overwrites a row claimed by another instance, and never a mined row with anything the
  writer decided without knowing it was mined;
- **leases**: each instance holds a row in bundler_instances renewed every few seconds on the
  connection that holds its executor advisory locks. An instance whose lease expired, or whose
  database session is gone (killed), is dead: any instance then puts its unsent claims back
  to pending and adopts its in-flight transactions (follows them from the chain);
- **the bundle record** (in-flight row) and its ops' `submitted` + tx hash are one transaction
  that also checks the claims are still this instance's (record_bundle), before broadcast;
- each executor key is held with a session-level advisory lock: two instances configured with
  the same key refuse to run together (their nonces would collide);
- reputation counters are added atomically (add_reputation), not overwritten.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import psycopg

from .codec import (
    OP_COLUMNS, inflight_from_row, inflight_row, op_from_json, op_from_row, op_row, op_to_json,
    reputation_from_row,
    merge_session_activity, session_activity_row, SPONSORSHIP_COLUMNS, sponsorship_from_row, sponsorship_row,
)
from .records import (
    ACTIVE, Budget, InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, SlotVerdict, Sponsorship,
    SponsorshipState,
)
from .base import ClaimLost, LeaseLost
from .sqlite import WrongChain
from .writebehind import StoreError, WriteBehind

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
RECENT_ACTIVITY_KEPT = 10_000  # session log entries this instance also keeps in memory
_SCHEMA_LOCK = 0x4337_0001
# the lease of an instance still starting (simulation workers...) before it serves and claims;
# lock_executors starts the real one. A process killed meanwhile is seen dead by its session.
STARTUP_GRACE_S = 120.0

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
ALTER TABLE bundler_ops ADD COLUMN IF NOT EXISTS max_fee NUMERIC;
ALTER TABLE bundler_ops ADD COLUMN IF NOT EXISTS max_priority NUMERIC;
ALTER TABLE bundler_ops ADD COLUMN IF NOT EXISTS claim_owner TEXT;
ALTER TABLE bundler_inflight ADD COLUMN IF NOT EXISTS owner TEXT;
CREATE INDEX IF NOT EXISTS bundler_ops_sender ON bundler_ops(entry_point, sender)
    WHERE status IN ('pending', 'submitted');
CREATE INDEX IF NOT EXISTS bundler_ops_claim_owner ON bundler_ops(claim_owner) WHERE claim_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS bundler_instances (
    id TEXT PRIMARY KEY,
    lease_until DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    backend_pid INTEGER NOT NULL,
    backend_start TIMESTAMPTZ,
    executors TEXT[] NOT NULL DEFAULT '{}',
    host TEXT
);

CREATE OR REPLACE FUNCTION bundler_now() RETURNS DOUBLE PRECISION LANGUAGE sql VOLATILE AS
$$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

CREATE OR REPLACE FUNCTION bundler_slot_key(ep TEXT, sender TEXT, nonce TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended('slot:' || ep || ':' || sender || ':' || nonce, 0) $$;

-- dead: lease expired, or its database session (which holds its executor locks) is gone
CREATE OR REPLACE FUNCTION bundler_dead_instances(p_me TEXT) RETURNS SETOF TEXT LANGUAGE sql VOLATILE AS $$
    SELECT i.id FROM bundler_instances i WHERE i.id <> p_me AND (i.lease_until < bundler_now() OR NOT EXISTS (
        SELECT 1 FROM pg_stat_activity a WHERE a.pid = i.backend_pid
        AND (a.backend_start IS NULL OR i.backend_start IS NULL OR a.backend_start = i.backend_start)))
$$;

CREATE OR REPLACE FUNCTION bundler_admit(
    p_hash TEXT, p_entry_point TEXT, p_sender TEXT, p_nonce TEXT, p_op TEXT, p_valid_after BIGINT,
    p_valid_until BIGINT, p_prefund TEXT, p_delegate TEXT, p_received_at DOUBLE PRECISION,
    p_max_fee NUMERIC, p_max_priority NUMERIC, p_bump INTEGER,
    OUT outcome TEXT, OUT holder TEXT, OUT holder_max_fee NUMERIC, OUT holder_max_priority NUMERIC)
LANGUAGE plpgsql AS $$
DECLARE
    known TEXT;
    cur RECORD;
    now_s DOUBLE PRECISION := bundler_now();
BEGIN
    PERFORM pg_advisory_xact_lock(bundler_slot_key(p_entry_point, p_sender, p_nonce));
    SELECT status INTO known FROM bundler_ops WHERE hash = p_hash;
    -- a mined op's nonce is used: an instance that simulated it before the block landed must
    -- not put it back to pending (a reorg re-queues it through bundler_write_op, not here)
    IF known IN ('pending', 'submitted', 'mined') THEN
        outcome := 'known'; holder := known; RETURN;
    END IF;
    SELECT hash, status, max_fee, max_priority INTO cur FROM bundler_ops
        WHERE entry_point = p_entry_point AND sender = p_sender AND nonce = p_nonce
        AND status IN ('pending', 'submitted') AND hash <> p_hash;
    IF FOUND THEN
        holder := cur.hash; holder_max_fee := cur.max_fee; holder_max_priority := cur.max_priority;
        IF cur.status = 'submitted' THEN
            outcome := 'in_bundle'; RETURN;
        END IF;
        IF cur.max_fee IS NULL OR cur.max_priority IS NULL
                OR p_max_fee * 100 < cur.max_fee * (100 + p_bump)
                OR p_max_priority * 100 < cur.max_priority * (100 + p_bump) THEN
            outcome := 'underpriced'; RETURN;
        END IF;
        UPDATE bundler_ops SET status = 'dropped', reason = 'replaced by ' || p_hash || ' with higher fees',
            claimed_by = NULL, claim_owner = NULL, claimed_at = NULL, updated_at = now_s WHERE hash = cur.hash;
    END IF;
    INSERT INTO bundler_ops (hash, entry_point, sender, nonce, op, status, valid_after, valid_until, prefund,
            eip7702_delegate, received_at, updated_at, max_fee, max_priority)
        VALUES (p_hash, p_entry_point, p_sender, p_nonce, p_op, 'pending', p_valid_after, p_valid_until, p_prefund,
            p_delegate, p_received_at, now_s, p_max_fee, p_max_priority)
        ON CONFLICT (hash) DO UPDATE SET op = EXCLUDED.op, status = 'pending', reason = NULL, error_code = NULL,
            tx_hash = NULL, block_number = NULL, block_hash = NULL, valid_after = EXCLUDED.valid_after,
            valid_until = EXCLUDED.valid_until, prefund = EXCLUDED.prefund,
            eip7702_delegate = EXCLUDED.eip7702_delegate, received_at = EXCLUDED.received_at,
            updated_at = EXCLUDED.updated_at, max_fee = EXCLUDED.max_fee, max_priority = EXCLUDED.max_priority,
            claimed_by = NULL, claim_owner = NULL, claimed_at = NULL;
    outcome := 'admitted';
END $$;

-- every op row write of the write-behind queue: 'claimed' (another instance's claim: its owner
-- decides), 'mined' (the row is mined and the writer did not know), 'slot' (another op holds
-- the slot), 'written'
CREATE OR REPLACE FUNCTION bundler_write_op(
    p_hash TEXT, p_entry_point TEXT, p_sender TEXT, p_nonce TEXT, p_op TEXT, p_status TEXT, p_reason TEXT,
    p_error_code INTEGER, p_tx_hash TEXT, p_block_number BIGINT, p_block_hash TEXT, p_valid_after BIGINT,
    p_valid_until BIGINT, p_prefund TEXT, p_delegate TEXT, p_received_at DOUBLE PRECISION,
    p_updated_at DOUBLE PRECISION, p_max_fee NUMERIC, p_max_priority NUMERIC, p_knew_mined BOOLEAN, p_me TEXT)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    cur RECORD;
    found_row BOOLEAN;
BEGIN
    PERFORM pg_advisory_xact_lock(bundler_slot_key(p_entry_point, p_sender, p_nonce));
    SELECT status, claim_owner INTO cur FROM bundler_ops WHERE hash = p_hash FOR UPDATE;
    found_row := FOUND;
    IF found_row AND cur.claim_owner IS NOT NULL AND cur.claim_owner <> p_me AND p_status <> 'mined' THEN
        RETURN 'claimed';
    END IF;
    IF found_row AND cur.status = 'mined' AND p_status <> 'mined' AND NOT p_knew_mined THEN
        RETURN 'mined';
    END IF;
    IF p_status IN ('pending', 'submitted') AND (NOT found_row OR cur.status NOT IN ('pending', 'submitted'))
            AND EXISTS (SELECT 1 FROM bundler_ops WHERE entry_point = p_entry_point AND sender = p_sender
                        AND nonce = p_nonce AND status IN ('pending', 'submitted') AND hash <> p_hash) THEN
        RETURN 'slot';
    END IF;
    IF found_row THEN
        UPDATE bundler_ops SET op = p_op, status = p_status, reason = p_reason, error_code = p_error_code,
            tx_hash = p_tx_hash, block_number = p_block_number, block_hash = p_block_hash,
            valid_after = p_valid_after, valid_until = p_valid_until, prefund = p_prefund,
            eip7702_delegate = p_delegate, received_at = p_received_at, updated_at = p_updated_at,
            max_fee = p_max_fee, max_priority = p_max_priority,
            claim_owner = CASE WHEN p_status = 'submitted' THEN p_me END,
            claimed_by = CASE WHEN p_status = 'submitted' THEN claimed_by END,
            claimed_at = CASE WHEN p_status = 'submitted' THEN claimed_at END
        WHERE hash = p_hash;
    ELSE
        INSERT INTO bundler_ops (hash, entry_point, sender, nonce, op, status, reason, error_code, tx_hash,
                block_number, block_hash, valid_after, valid_until, prefund, eip7702_delegate, received_at,
                updated_at, max_fee, max_priority, claim_owner)
            VALUES (p_hash, p_entry_point, p_sender, p_nonce, p_op, p_status, p_reason, p_error_code, p_tx_hash,
                p_block_number, p_block_hash, p_valid_after, p_valid_until, p_prefund, p_delegate, p_received_at,
                p_updated_at, p_max_fee, p_max_priority, CASE WHEN p_status = 'submitted' THEN p_me END);
    END IF;
    RETURN 'written';
END $$;

-- claim pending ops for a bundle of executor p_executor: skip senders another claim is deciding
-- right now, senders with an op in any bundle, and ops whose lower nonce (same key) stays pending
CREATE OR REPLACE FUNCTION bundler_claim(p_hashes TEXT[], p_executor TEXT, p_me TEXT) RETURNS SETOF TEXT
LANGUAGE plpgsql AS $$
DECLARE
    s RECORD;
    senders TEXT[] := '{}';
    claimed TEXT[];
    now_s DOUBLE PRECISION := bundler_now();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM bundler_instances WHERE id = p_me AND lease_until > now_s) THEN
        RAISE EXCEPTION 'bundler lease lost' USING ERRCODE = 'P4337';
    END IF;
    FOR s IN SELECT DISTINCT entry_point || ':' || sender AS k FROM bundler_ops
             WHERE hash = ANY(p_hashes) AND status = 'pending' ORDER BY 1 LOOP
        IF pg_try_advisory_xact_lock(hashtextextended('sender:' || s.k, 0)) THEN
            senders := senders || s.k;
        END IF;
    END LOOP;
    WITH got AS (
        UPDATE bundler_ops b SET status = 'submitted', claimed_by = p_executor, claim_owner = p_me, claimed_at = now_s
        WHERE b.hash IN (SELECT hash FROM bundler_ops WHERE hash = ANY(p_hashes) AND status = 'pending'
                         AND entry_point || ':' || sender = ANY(senders) FOR UPDATE SKIP LOCKED)
          AND NOT EXISTS (SELECT 1 FROM bundler_ops o WHERE o.entry_point = b.entry_point AND o.sender = b.sender
                          AND o.status = 'submitted')
        RETURNING b.hash)
    SELECT coalesce(array_agg(hash), '{}') INTO claimed FROM got;
    -- an op whose lower nonce of the same key was not claimed with it would fail (AA25): give it back
    WITH back AS (
        UPDATE bundler_ops b SET status = 'pending', claimed_by = NULL, claim_owner = NULL, claimed_at = NULL
        WHERE b.hash = ANY(claimed) AND EXISTS (
            SELECT 1 FROM bundler_ops o WHERE o.entry_point = b.entry_point AND o.sender = b.sender
            AND o.status = 'pending' AND o.nonce::numeric < b.nonce::numeric
            AND div(o.nonce::numeric, 18446744073709551616) = div(b.nonce::numeric, 18446744073709551616))
        RETURNING b.hash)
    SELECT array(SELECT unnest(claimed) EXCEPT SELECT hash FROM back) INTO claimed;
    RETURN QUERY SELECT unnest(claimed);
END $$;
"""

# before the live-slot index can exist: of several live ops in one slot (written by an older
# version) keep the one in a bundle, else the newest
_DEDUPE_SLOTS = """
UPDATE bundler_ops o SET status = 'dropped', reason = 'another op holds this sender and nonce', claimed_by = NULL
WHERE o.status IN ('pending', 'submitted') AND EXISTS (
    SELECT 1 FROM bundler_ops k WHERE k.entry_point = o.entry_point AND k.sender = o.sender AND k.nonce = o.nonce
    AND k.status IN ('pending', 'submitted') AND k.hash <> o.hash
    AND (k.status = 'submitted', coalesce(k.received_at, 0), k.hash)
        > (o.status = 'submitted', coalesce(o.received_at, 0), o.hash));
CREATE UNIQUE INDEX IF NOT EXISTS bundler_ops_live_slot ON bundler_ops(entry_point, sender, nonce)
    WHERE status IN ('pending', 'submitted');
"""

_COLS = ", ".join(OP_COLUMNS)
_OP_SELECT = f"SELECT {_COLS} FROM bundler_ops"
_SPONSORSHIP_LOCK = 0x4337_0002
_SPONSORSHIP_UPSERT = (
    f"INSERT INTO bundler_sponsorships ({', '.join(SPONSORSHIP_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in SPONSORSHIP_COLUMNS)}) ON CONFLICT (op_hash) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in SPONSORSHIP_COLUMNS if c != "op_hash")
)
_OP_WRITE = f"SELECT bundler_write_op({', '.join('%s' for _ in range(len(OP_COLUMNS) + 4))})"
_ADMIT = f"SELECT outcome, holder, holder_max_fee, holder_max_priority FROM bundler_admit({', '.join(['%s'] * 13)})"
_DEAD = "SELECT bundler_dead_instances(%(me)s)"
LEASE_LOST_SQLSTATE = "P4337"
_INFLIGHT_UPSERT = (
    "INSERT INTO bundler_inflight (executor, nonce, entry_point, op_hashes, attempts, created_at, owner) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (executor, nonce) DO UPDATE SET entry_point = EXCLUDED.entry_point, "
    "op_hashes = EXCLUDED.op_hashes, attempts = EXCLUDED.attempts "
    "WHERE bundler_inflight.owner = %s OR bundler_inflight.owner IS NULL"
)


class ExecutorInUse(StoreError):
    pass




class PostgresStore(WriteBehind):
    durable = True
    shared = True

    def __init__(self, dsn: str, *, retention_s: float = 7 * 86400, lease_s: float = 10.0):
        self.dsn = dsn
        self._retention_s = retention_s
        self.lease_s = lease_s
        self.instance_id = uuid.uuid4().hex
        try:
            # this connection holds the executor locks and renews the lease: the server drops it
            # (and so the locks) within about a lease if this host goes silent
            idle = max(1, int(lease_s / 2))
            self._read = psycopg.connect(dsn, autocommit=True, keepalives=1, keepalives_idle=idle,
                                         keepalives_interval=1, keepalives_count=max(1, int(lease_s / 4)))
            self._read.execute(f"SET tcp_keepalives_idle = {idle}")
            self._read.execute("SET tcp_keepalives_interval = 1")
            self._read.execute(f"SET tcp_keepalives_count = {max(1, int(lease_s / 4))}")
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from None
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._read.execute(SCHEMA)
            self._backfill_fees()
            self._read.execute(_DEDUPE_SLOTS)
            self._read.execute(
                "INSERT INTO bundler_instances (id, lease_until, started_at, backend_pid, backend_start, host) "
                "SELECT %s, bundler_now() + %s, bundler_now(), pg_backend_pid(), "
                "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), %s",
                (self.instance_id, max(lease_s, STARTUP_GRACE_S), f"{socket.gethostname()}:{os.getpid()}"))
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

    def _backfill_fees(self) -> None:
        """Rows of live ops written by a version without fee columns get them (the replacement
        rule compares fees in the database)."""
        rows = self._read.execute("SELECT hash, op FROM bundler_ops WHERE max_fee IS NULL "
                                  "AND status IN ('pending', 'submitted')").fetchall()
        for h, op_json in rows:
            op = op_from_json(op_json)
            self._read.execute("UPDATE bundler_ops SET max_fee = %s, max_priority = %s WHERE hash = %s",
                               (op.max_fee_per_gas, op.max_priority_fee_per_gas, h))

    # -- set-up --------------------------------------------------------------------------------
    def bind_chain(self, chain_id: int, genesis_hash: str) -> None:
        want = {"chain_id": str(chain_id), "genesis_hash": genesis_hash.lower()}
        with self._read.transaction():
            self._read.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            meta: dict[str, str] = dict(self._read.execute("SELECT key, value FROM bundler_meta").fetchall())
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

    def lock_executors(self, addresses: list[str]) -> None:
        """Hold each executor key for this instance (session advisory locks, released when the
        connection closes, also if the process is killed)."""
        for a in addresses:
            a = a.lower()
            key = zlib.crc32(a.encode()) - (1 << 31)
            got = _one_row(self._read.execute("SELECT pg_try_advisory_lock(%s, %s)", (0x4337, key)))[0]
            if not got:
                raise ExecutorInUse(f"executor {a} is used by another bundler instance sharing this database; "
                                    f"give every instance its own keys")
            self._locked_executors.add(a)
        # the lease runs from here (opening the store may be a while before serving): nothing
        # has been claimed under it yet, so restarting it is safe
        self._read.execute("UPDATE bundler_instances SET executors = %s, lease_until = bundler_now() + %s "
                           "WHERE id = %s", (sorted(self._locked_executors), self.lease_s, self.instance_id))

    def retire_previous(self) -> int:
        """After lock_executors: instances that listed one of our executors are dead (we hold
        the keys' locks, so their sessions are gone); their leases end now, so their work is
        taken over at once instead of after the lease."""
        cur = self._read.execute("UPDATE bundler_instances SET lease_until = 0 WHERE id <> %s AND executors && %s",
                                 (self.instance_id, sorted(self._locked_executors)))
        return cur.rowcount

    # -- lease and take-over -------------------------------------------------------------------
    def renew_lease(self) -> float:
        """Extend this instance's lease; returns the seconds granted. Raises LeaseLost if it had
        expired (others may have taken our work: we must not bundle any more)."""
        try:
            row = self._read.execute(
                "UPDATE bundler_instances SET lease_until = bundler_now() + %s WHERE id = %s "
                "AND lease_until > bundler_now() RETURNING lease_until", (self.lease_s, self.instance_id)).fetchone()
        except psycopg.OperationalError as e:  # the session (and the executor locks with it) is gone
            if self._read.closed or self._read.broken:
                raise LeaseLost(f"the PostgreSQL session holding this instance's lease and executor locks "
                                f"was lost: {e}") from None
            raise
        if row is None:
            raise LeaseLost("this instance's lease expired; other instances may have taken over its ops")
        return self.lease_s

    def take_over(self) -> tuple[list[str], list[InflightTx]]:
        """Work of dead instances: their claimed-but-unsent ops become pending again (returned
        hashes); their in-flight transactions become ours to follow (returned), with the claims
        of the ops inside them. One transaction; two survivors never adopt the same row."""
        me = {"me": self.instance_id}
        with self._read.transaction():
            dead = [r[0] for r in self._read.execute(_DEAD, me)]
            if not dead:
                return [], []
            released = [r[0] for r in self._read.execute(
                "UPDATE bundler_ops SET status = 'pending', claimed_by = NULL, claim_owner = NULL, claimed_at = NULL, "
                "updated_at = bundler_now() WHERE status = 'submitted' AND tx_hash IS NULL AND claim_owner = ANY(%s) "
                "RETURNING hash", (dead,))]
            adopted = [inflight_from_row(r) for r in self._read.execute(
                "UPDATE bundler_inflight SET owner = %s WHERE owner = ANY(%s) "
                "RETURNING executor, nonce, entry_point, op_hashes, attempts, created_at", (self.instance_id, dead))]
            hashes = [h for t in adopted for h in t.op_hashes]
            self._read.execute("UPDATE bundler_ops SET claim_owner = %s WHERE claim_owner = ANY(%s) AND hash = ANY(%s)",
                               (self.instance_id, dead, hashes))
            orphans = _one_row(self._read.execute(
                "SELECT count(*) FROM bundler_ops WHERE claim_owner = ANY(%s) AND status = 'submitted'", (dead,)
            ))[0]
            if orphans:
                log.warning("store: %d op(s) of dead instances carry a transaction hash but no in-flight "
                            "record; left as they are", orphans)
            else:
                self._read.execute("DELETE FROM bundler_instances i WHERE id = ANY(%s) AND NOT EXISTS ("
                                   "SELECT 1 FROM bundler_inflight f WHERE f.owner = i.id)", (dead,))
        if released or adopted:
            log.info("store: took over from %d dead instance(s): %d unsent op(s) back to pending, %d in-flight "
                     "transaction(s) to follow", len(dead), len(released), len(adopted))
        return released, adopted

    def adopt_own_inflight(self) -> list[InflightTx]:
        """At start-up: in-flight rows of our executor keys left by a dead (or older) instance."""
        with self._read.transaction():
            dead = [r[0] for r in self._read.execute(_DEAD, {"me": self.instance_id})]
            rows = self._read.execute(
                "UPDATE bundler_inflight SET owner = %s WHERE executor = ANY(%s) AND (owner IS NULL OR owner = ANY(%s)) "
                "RETURNING executor, nonce, entry_point, op_hashes, attempts, created_at",
                (self.instance_id, sorted(self._locked_executors), dead)).fetchall()
            adopted = [inflight_from_row(r) for r in rows]
            self._read.execute("UPDATE bundler_ops SET claim_owner = %s WHERE hash = ANY(%s) AND status = 'submitted'",
                               (self.instance_id, [h for t in adopted for h in t.op_hashes]))
        return adopted

    def owned_inflight(self) -> list[InflightTx]:
        """The in-flight rows this instance follows (written or adopted by it)."""
        rows = self._read.execute("SELECT executor, nonce FROM bundler_inflight WHERE owner = %s", (self.instance_id,))
        owned = {(r[0], int(r[1])) for r in rows}
        return [t for t in self.inflight() if t.key in owned]

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
        self._write(record, knew_mined=False)

    def update(self, op_hash: str, **fields: Any) -> OpRecord | None:
        record = self.get(op_hash)
        if record is None:
            return None
        # a write may move a mined op elsewhere only if its writer saw it mined (reorg handling)
        knew_mined = record.status == OpStatus.MINED
        for k, v in fields.items():
            setattr(record, k, v)
        record.updated_at = time.time()
        self._write(record, knew_mined)
        return record

    def _write(self, record: OpRecord, knew_mined: bool) -> None:
        op_json = self._op_json.get(record.hash)
        if op_json is None:
            op_json = self._op_json[record.hash] = op_to_json(record.op)
        self._dirty[record.hash] = record
        row = op_row(record, op_json) + (record.op.max_fee_per_gas, record.op.max_priority_fee_per_gas,
                                         knew_mined, self.instance_id)
        self._row_seq[record.hash] = self._queue("ops", record.hash, row)

    async def admit(self, record: OpRecord, replacing: str | None, bump_percent: int) -> SlotVerdict:
        """One statement decides the op's slot across all instances (bundler_admit); the local
        pool's idea of what it replaces is only a hint."""
        if record.hash in self._dirty or (replacing is not None and replacing in self._dirty):
            await self.flush()  # a queued write of these rows must not land after the decision
        op = record.op
        outcome, holder, fee, priority = _one_row(self._read.execute(_ADMIT, (
            record.hash, record.entry_point, op.sender, str(op.nonce), op_to_json(op), record.valid_after,
            record.valid_until, str(record.prefund), record.eip7702_delegate, record.received_at,
            op.max_fee_per_gas, op.max_priority_fee_per_gas, bump_percent)))
        if outcome == "admitted":
            return SlotVerdict(True, replaced=holder)
        fees = (int(fee), int(priority)) if fee is not None and priority is not None else None
        return SlotVerdict(False, refusal=outcome, holder=holder, holder_fees=fees)

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

    def active_summary(self, also: Sequence[str] = ()) -> dict[str, tuple[str, str | None, str | None]]:
        """hash -> (status, tx_hash, claim_owner) of every pending/submitted op, and of `also`
        whatever their status (the shared-pool sync's one query per round)."""
        if not self._db_visible():
            return {}
        rows = self._read.execute(
            "SELECT hash, status, tx_hash, claim_owner FROM bundler_ops "
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
        try:
            rows = self._read.execute("SELECT bundler_claim(%s, %s, %s)",
                                      (list(op_hashes), owner.lower(), self.instance_id)).fetchall()
        except psycopg.Error as e:
            if getattr(e, "sqlstate", None) == LEASE_LOST_SQLSTATE:
                raise LeaseLost("this instance's lease expired; it claims nothing any more") from None
            raise
        return {r[0] for r in rows}

    async def release(self, op_hashes: list[str], owner: str) -> None:
        """Give back claimed ops that were not sent (still without a transaction)."""
        await self.flush()
        self._read.execute(
            "UPDATE bundler_ops SET status = 'pending', claimed_by = NULL, claim_owner = NULL, claimed_at = NULL "
            "WHERE hash = ANY(%s) AND status = 'submitted' AND tx_hash IS NULL AND claim_owner = %s",
            (list(op_hashes), self.instance_id))

    async def record_bundle(self, inflight: InflightTx) -> None:
        """The in-flight row and its ops' tx hash in one transaction, only if every op is still
        claimed by this live instance; otherwise nothing is written and ClaimLost is raised."""
        await self.flush()
        me = self.instance_id
        hashes = list(dict.fromkeys(inflight.op_hashes))
        with self._read.transaction():
            cur = self._read.execute(
                "UPDATE bundler_ops SET tx_hash = %s, updated_at = bundler_now() WHERE hash = ANY(%s) "
                "AND status = 'submitted' AND claim_owner = %s AND tx_hash IS NULL AND EXISTS ("
                "SELECT 1 FROM bundler_instances WHERE id = %s AND lease_until > bundler_now())",
                (inflight.current.tx_hash, hashes, me, me))
            if cur.rowcount != len(hashes):
                raise ClaimLost(f"{len(hashes) - cur.rowcount} of the bundle's {len(hashes)} op(s) are no longer "
                                f"claimed by this instance; the transaction is not sent")
            cur = self._read.execute(_INFLIGHT_UPSERT, inflight_row(inflight) + (me, me))
            if cur.rowcount != 1:
                raise ClaimLost(f"executor {inflight.executor} nonce {inflight.nonce} is followed by another instance")

    async def release_stale(self, owners: list[str]) -> int:
        """At start-up: ops claimed by these (our) executors that never made it into a
        transaction (killed between claim and broadcast) become pending again."""
        await self.flush()
        cur = self._read.execute(
            "UPDATE bundler_ops SET status = 'pending', claimed_by = NULL, claim_owner = NULL WHERE status = 'submitted' "
            "AND tx_hash IS NULL AND claimed_by = ANY(%s) AND hash NOT IN (SELECT jsonb_array_elements_text(op_hashes::jsonb) "
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
        row = self.get_reputation(address)
        if row is None:  # the write is pending or committed: it is in one of the two reads
            raise StoreError(f"reputation of {address} missing right after adding to it")
        return row

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
        return int(_one_row(self._read.execute(query, params))[0])

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
            stored = inflight_from_row(row)
            out[stored.key] = stored
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
                # slot order: the advisory locks bundler_write_op takes never form a cycle
                rows = sorted(tables["ops"].values(), key=lambda r: (r[1], r[2], r[3]))
                cur.executemany(_OP_WRITE, rows)
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
            me = self.instance_id
            for (executor, nonce), row in tables.get("inflight", {}).items():
                if row is None:  # a row another instance adopted is its to delete
                    cur.execute("DELETE FROM bundler_inflight WHERE executor = %s AND nonce = %s "
                                "AND (owner = %s OR owner IS NULL)", (executor, nonce, me))
                else:
                    cur.execute(_INFLIGHT_UPSERT, row + (me, me))

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
            try:  # a clean stop: the lease ends now (others adopt what is left) and the keys are
                # free when this returns (closing alone frees them whenever the server gets to it)
                self._read.execute("UPDATE bundler_instances SET lease_until = 0 WHERE id = %s", (self.instance_id,))
                self._read.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass
            self._read.close()  # releases the executor locks
        finally:
            del self._read  # closed: close() again does nothing


def _one_row(cursor: psycopg.Cursor) -> tuple:
    """The row of a statement that returns exactly one (an aggregate, a function call, bundler_admit)."""
    row = cursor.fetchone()
    if row is None:
        raise StoreError("a statement that always returns one row returned none")
    return row


def _combine_rep(older, newer):
    """Coalesce two queued reputation writes of one address."""
    if newer[0] == "set":
        return newer
    kind, seen, included = older
    return (kind, seen + newer[1], included + newer[2])


__all__ = ["ExecutorInUse", "PostgresStore"]
