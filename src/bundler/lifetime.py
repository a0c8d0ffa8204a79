"""Child processes die with the bundler, even after `kill -9` of it (no shutdown code runs
then): simulation workers, the multiprocessing resource tracker (it exits once every holder
of its pipe, the workers included, is gone) and anvil under `bundler dev`.

On Linux each child asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG).
The signal follows the *thread* that started the child, so children are started from
long-lived threads only (the event loop's, the process pool's manager thread, the main
thread of `bundler dev`). A Python child also runs a parent-watch thread that exits the
process once its parent is gone: the fallback where prctl does not exist.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 0.5

_LIBC = None
if sys.platform.startswith("linux"):
    try:  # loaded up front: a preexec_fn runs between fork and exec, no time for dlopen
        _LIBC = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - a libc without symbols exported
        _LIBC = None


def _ask_kernel_for_death_signal() -> bool:
    if _LIBC is None:
        return False
    return _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a Python child process, first thing: it dies when `parent_pid` (default: its
    current parent) does."""
    parent = parent_pid if parent_pid is not None else os.getppid()
    _ask_kernel_for_death_signal()
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:  # re-parented: the bundler is gone
            os._exit(1)


def death_signal_preexec():
    """A `preexec_fn` for subprocess.Popen of a program we cannot change (anvil): the kernel
    kills it when the calling process dies. None where the kernel cannot do that."""
    if _LIBC is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _ask_kernel_for_death_signal()
        if os.getppid() != parent:
            os._exit(1)

    return preexec
