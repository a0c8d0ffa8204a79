"""Crash points for the restart tests: with BUNDLER_FAULT=<name> in its environment, the process
kills itself with SIGKILL when it reaches that point (nothing is flushed, nothing cleaned up),
like a power cut or an OOM kill at the worst moment. Unset in production: a no-op."""
from __future__ import annotations

import os
import signal

_POINT = os.environ.get("BUNDLER_FAULT", "")


def crash_point(name: str) -> None:
    if _POINT and _POINT == name:
        os.kill(os.getpid(), signal.SIGKILL)
