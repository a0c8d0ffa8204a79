"""Fault injection for tests. Unset in production: both kinds are no-ops.

Crash points (the restart tests): with BUNDLER_FAULT=<name> in its environment, the process
kills itself with SIGKILL when it reaches that point (nothing is flushed, nothing cleaned up),
like a power cut or an OOM kill at the worst moment.

Fail points (supervision and retry tests): `fail_point(name)` raises InjectedFault while the
point is armed, by `arm(name, times)` in-process or BUNDLER_FAIL=<name>[:<times>][,...] in the
environment (no count: every time), like a bug or a node failure at that spot. A point armed
in-process for one object (`arm(name, times, scope=obj)`) fires only where that object calls
`fail_point(name, scope=obj)`: a test running several bundlers in one process fails just its own.
"""
from __future__ import annotations

import os
import signal
from typing import Any

_POINT = os.environ.get("BUNDLER_FAULT", "")
FOREVER = -1


class InjectedFault(Exception):
    """Raised by an armed fail point."""


def _from_env(value: str) -> dict[str, int]:
    armed = {}
    for item in filter(None, (x.strip() for x in value.split(","))):
        name, _, times = item.partition(":")
        armed[name] = int(times) if times else FOREVER
    return armed


_ARMED: dict[str, int] = _from_env(os.environ.get("BUNDLER_FAIL", ""))
_SCOPES: dict[str, Any] = {}  # name -> the one object the point is armed for
fired: dict[str, int] = {}  # how often each point raised (tests read it)


def crash_point(name: str) -> None:
    if _POINT and _POINT == name:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(name: str, times: int = 1, scope: Any = None) -> None:
    _ARMED[name] = times
    if scope is None:
        _SCOPES.pop(name, None)
    else:
        _SCOPES[name] = scope


def disarm(name: str) -> None:
    _ARMED.pop(name, None)
    _SCOPES.pop(name, None)


def fail_point(name: str, scope: Any = None) -> None:
    left = _ARMED.get(name)
    if left is None or left == 0:
        return
    armed_for = _SCOPES.get(name)
    if armed_for is not None and armed_for is not scope:
        return
    if left > 0:
        _ARMED[name] = left - 1
    fired[name] = fired.get(name, 0) + 1
    raise InjectedFault(f"injected failure at {name}")
