"""Supervision of the bundler's long-running tasks (head tracker, builder loop, chain watcher,
session watcher, monitors, ...): a task that dies never does so silently.

When one raises (or returns, which a long-running loop never should), the supervisor logs the
traceback at ERROR, counts it in `bundler_task_failures_total{task}`, sets
`bundler_task_up{task}` to 0, and starts it again after an exponential backoff (the `backoff`
library's wait generator, with full jitter: 1 s, 2 s, 4 s, ... up to 30 s; back to 1 s once a
run has lasted a minute). `/health` answers 503 naming the task while it is down and for a
minute after it last failed, so a task that keeps failing keeps the bundler unhealthy.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import backoff

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a run this long resets the backoff
RECENT_FAILURE_S = 60.0  # /health reports a task this long after its last failure


class TaskReturned(Exception):
    """A long-running task's coroutine returned: it stopped doing its work."""


@dataclass
class TaskState:
    name: str
    up: bool = False
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None  # time.monotonic()


class Supervisor:
    def __init__(self, metrics: Metrics | None = None, *, first_backoff_s: float = 1.0, recent_failure_s: float = RECENT_FAILURE_S):
        self.metrics = metrics
        self.first_backoff_s = first_backoff_s
        self.recent_failure_s = recent_failure_s
        self.states: dict[str, TaskState] = {}
        self.tasks: list[asyncio.Task] = []

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task:
        """Run `run()` (a coroutine function) under supervision, as the task `name`."""
        self.states[name] = TaskState(name, up=True)
        task = asyncio.create_task(self._supervise(name, run), name=name)
        self.tasks.append(task)
        return task

    def _set_up(self, state: TaskState, up: bool) -> None:
        state.up = up
        if self.metrics is not None:
            self.metrics.task_up.labels(state.name).set(1 if up else 0)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        state = self.states[name]
        waits = backoff.expo(factor=self.first_backoff_s, max_value=MAX_BACKOFF_S)
        next(waits)  # backoff's generators are primed with one next()
        while True:
            started = time.monotonic()
            self._set_up(state, True)
            try:
                await run()
                raise TaskReturned(f"task {name} returned")
            except asyncio.CancelledError:
                self._set_up(state, False)
                raise
            except Exception as e:
                self._set_up(state, False)
                if time.monotonic() - started >= STABLE_AFTER_S:
                    waits = backoff.expo(factor=self.first_backoff_s, max_value=MAX_BACKOFF_S)
                    next(waits)
                wait = backoff.full_jitter(next(waits))
                state.failures += 1
                state.last_error = f"{type(e).__name__}: {e}"[:300]
                state.last_failure_at = time.monotonic()
                if self.metrics is not None:
                    self.metrics.task_failures.labels(name).inc()
                log.error("background task %s failed (failure %d); restarting it in %.1f s",
                          name, state.failures, wait, exc_info=True)
                await asyncio.sleep(wait)
                log.info("restarting background task %s", name)

    def problems(self) -> list[str]:
        """For /health: tasks down, or failed within the last recent_failure_s."""
        now = time.monotonic()
        out = []
        for s in self.states.values():
            recent = s.last_failure_at is not None and now - s.last_failure_at < self.recent_failure_s
            if not s.up or recent:
                out.append(f"background task {s.name} {'is down' if not s.up else 'restarted'} after "
                           f"{s.failures} failure(s); last error: {s.last_error}")
        return out

    def report(self) -> dict[str, dict]:
        return {s.name: {"up": s.up, "failures": s.failures, "lastError": s.last_error}
                for s in self.states.values()}
