"""Bounds on what one simulation may cost: wall time per call and memory per worker process.

Time: inside a worker process, each call runs under an interval timer (SIGALRM) that raises
`SimulationDeadline` where the interpreter is (py-evm is pure Python, so that is between two
opcodes or inside a blocking node read); the worker is then free for the next call at once.
The event loop also waits at most a little longer than that (a backstop, and the only bound
in in-process thread mode, where signals cannot reach the simulation thread).

Memory: each worker process gets an address-space limit (RLIMIT_AS) in its initializer;
an allocation past it raises MemoryError in that worker, answered as a clear error.
"""
from __future__ import annotations

import contextlib
import resource
import signal
import threading

from ..errors import BundlerError
from ..lifetime import die_with_parent
from .config import SimConfig


class SimulationDeadline(BaseException):
    """Raised inside a worker when its call ran out of time. A BaseException so that no
    `except Exception` inside the EVM or a library swallows it."""


class SimulationTimeout(BundlerError):
    code = -32603

    def __init__(self, seconds: float, what: str):
        super().__init__(
            f"{what} aborted after {seconds:g} s (--sim-timeout-s): the UserOperation needs too much "
            f"computation to simulate (lower its gas limits or simplify its validation), or the node "
            f"is too slow to answer state reads"
        )


class SimulationOutOfMemory(BundlerError):
    code = -32603

    def __init__(self, limit_mb: int, what: str):
        super().__init__(
            f"{what} exceeded the simulation worker's memory limit of {limit_mb} MiB (--sim-memory-mb)"
        )


_armed = False


def _on_alarm(_signum, _frame) -> None:
    if _armed:
        raise SimulationDeadline()


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise SimulationDeadline in this (main) thread after `seconds`."""
    global _armed
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _armed = False  # first, so a signal arriving now does nothing
        signal.setitimer(signal.ITIMER_REAL, 0)


def set_memory_limit(limit_mb: int) -> None:
    if limit_mb > 0:
        limit = limit_mb * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def init_limited_process(node_url: str, config: SimConfig, memory_mb: int, parent_pid: int | None = None) -> None:
    """ProcessPoolExecutor initializer: tied to the life of the bundler (`parent_pid`, given so
    a bundler that died before this ran is noticed too), the memory limit, then the usual
    worker set-up."""
    from .worker import init_process  # py-evm: imported in the worker process, not the bundler's

    die_with_parent(parent_pid)
    set_memory_limit(memory_mb)
    init_process(node_url, config)


def run_limited(seconds: float, method: str, *args: object, **kwargs: object):
    from .worker import run_in_process

    try:
        with deadline(seconds):
            return run_in_process(method, *args, **kwargs)
    except SimulationDeadline:
        # the call may have stopped half-way through filling a state cache: start afresh
        from . import worker

        if worker._WORKER is not None:
            worker._WORKER._blocks.clear()
        raise


def memory_limit_mb() -> int:
    """This process's RLIMIT_AS in MiB (0: none); for tests and stats."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return 0 if soft == resource.RLIM_INFINITY else soft // (1024 * 1024)
