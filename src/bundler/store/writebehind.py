"""Write-behind queue shared by the SQL stores: writes return at once and are coalesced per key;
one writer thread commits whatever has queued up in a single transaction (group commit), and
`await flush()` returns once everything written before it is committed."""
from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
import time

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


class StoreError(Exception):
    pass


class WriteBehind:
    """Subclasses implement _writer_connect(), _commit(conn, flags, tables) and optionally
    _prune(conn) / _merge_back(table, key, old, new)."""

    def _start_writer(self, name: str) -> None:
        self._cv = threading.Condition()
        self._tables: dict[str, dict] = {}
        self._flags: set[str] = set()
        self._seq = 0               # writes issued
        self._committed = 0         # writes durable
        self._error: BaseException | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # flush() callers as a heap by the sequence number they wait for: a commit wakes the
        # ones it covers without scanning every waiter (64 concurrent admissions made that scan
        # a tenth of a session op's CPU)
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._waiter_ids = itertools.count()
        # the loop that has a wake of the writer scheduled (see _notify_writer)
        self._wake_loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._writer, name=name, daemon=True)
        self._thread.start()

    # -- queueing (loop thread) ----------------------------------------------------------
    def _queue(self, table: str, key, value, combine=None) -> int:
        with self._cv:
            self._seq += 1
            pending = self._tables.setdefault(table, {})
            if combine is not None and key in pending:
                value = combine(pending[key], value)
            pending[key] = value
            self._notify_writer()
            return self._seq

    def _queue_flag(self, flag: str, clears: tuple[str, ...] = ()) -> int:
        """A whole-table operation (e.g. clear) applied before the rows queued after it."""
        with self._cv:
            self._seq += 1
            for t in clears:
                self._tables.pop(t, None)
            self._flags.add(flag)
            self._notify_writer()
            return self._seq

    def _notify_writer(self) -> None:
        """Wake the writer (the caller holds _cv). From a running event loop, once the loop has
        run what is ready now, so every write of this loop iteration shares one commit: woken at
        once, the writer took the queue whenever the loop released the GIL (a coincurve call):
        about 4 admissions per commit under 64 concurrent ones, and a commit costs 100-200 us of
        CPU (fsync, WAL pages) whatever its size. Elsewhere (no running loop: another thread,
        synchronous use) at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._cv.notify()
            return
        if self._wake_loop is loop:
            return  # this loop wakes the writer after the current iteration already
        self._wake_loop = loop
        loop.call_soon(self._wake_writer, loop)

    def _wake_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cv:
            if self._wake_loop is loop:
                self._wake_loop = None
            self._cv.notify()

    @contextlib.contextmanager
    def batch(self):
        """Writes queued inside the block are committed together: the writer thread cannot take
        the queue while the (re-entrant) lock is held."""
        with self._cv:
            yield

    # -- durability ---------------------------------------------------------------------
    async def flush(self) -> None:
        with self._cv:
            target = self._seq
            if self._committed >= target:
                return
            # the writes may have scheduled their wake in a loop that stopped before running it
            self._notify_writer()
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut = loop.create_future()
        heapq.heappush(self._waiters, (target, next(self._waiter_ids), fut))
        with self._cv:  # the writer may have committed while we registered
            committed, error = self._committed, self._error
        self._wake(committed, error)
        await fut

    def _wake(self, committed: int, error: BaseException | None) -> None:
        waiters = self._waiters
        while waiters and (waiters[0][0] <= committed or error is not None):
            target, _, fut = heapq.heappop(waiters)
            if fut.done():
                continue
            if committed >= target:
                fut.set_result(None)
            else:
                fut.set_exception(StoreError(f"could not write to {self.describe()}: {error}"))

    def describe(self) -> str:
        return type(self).__name__

    # -- writer thread --------------------------------------------------------------------
    def _writer(self) -> None:
        conn = None
        last_prune = time.time()
        try:
            while True:
                with self._cv:
                    while not (self._tables or self._flags) and not self._closing:
                        self._cv.wait(timeout=60)
                        if time.time() - last_prune > PRUNE_EVERY_S:
                            break
                    if self._closing and not (self._tables or self._flags):
                        return
                    flags, tables = self._flags, self._tables
                    self._flags, self._tables = set(), {}
                    upto = self._seq
                error = None
                try:
                    if conn is None:
                        conn = self._writer_connect()
                    if flags or tables:
                        self._commit(conn, flags, tables)
                    if time.time() - last_prune > PRUNE_EVERY_S:
                        last_prune = time.time()
                        self._prune(conn)
                except Exception as e:  # disk full, I/O error, server gone: keep the rows, retry
                    error = e
                    log.error("%s: write failed (%s); retrying", self.describe(), e)
                    conn = self._writer_reset(conn)
                    with self._cv:
                        self._flags |= flags
                        for table, rows in tables.items():
                            mine = self._tables.setdefault(table, {})
                            for k, v in rows.items():
                                mine[k] = self._merge_back(table, k, v, mine[k]) if k in mine else v
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
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass

    def _stop_writer(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=30)

    # -- hooks ------------------------------------------------------------------------------
    def _writer_connect(self):
        raise NotImplementedError

    def _writer_reset(self, conn):
        """After a failed commit: roll back (or drop the connection); return what to use next."""
        try:
            conn.rollback()
        except Exception:
            pass
        return conn

    def _commit(self, conn, flags: set[str], tables: dict[str, dict]) -> None:
        raise NotImplementedError

    def _prune(self, conn) -> None:
        pass

    def _merge_back(self, table: str, key, failed, newer):
        """A failed batch's row under a row written since: the newer one wins by default."""
        return newer
