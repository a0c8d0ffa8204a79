"""Which executor key takes the next bundle.

A key is free when no bundle holds its lock, none was started on it and not finished, and its
balance is not below the minimum. Free keys are taken round robin; when none is free the next
key in turn is picked and the bundle queues on its lock. Parallel bundles (one per free key)
never share an op: the builder reserves the selected ops before it starts each one.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .executor_key import Executor


class KeyAssigner:
    def __init__(self, executors: Sequence[Executor], is_low: Callable[[str], bool] = lambda _address: False):
        self.executors = list(executors)
        self.is_low = is_low  # BalanceGuard.is_low: a key below the minimum balance takes nothing
        self._next = 0
        self._busy: dict[Executor, int] = {}  # bundles started and not finished, per key

    def usable(self, ex: Executor) -> bool:
        return not ex.lock.locked() and not self._busy.get(ex) and not self.is_low(ex.address)

    def any_usable(self) -> bool:
        return any(self.usable(ex) for ex in self.executors)

    def free(self) -> Executor | None:
        """The next free key in turn (and the turn moves past it), or None."""
        for i in range(len(self.executors)):
            ex = self.executors[(self._next + i) % len(self.executors)]
            if self.usable(ex):
                self._next = (self._next + i + 1) % len(self.executors)
                return ex
        return None

    def pick(self) -> Executor:
        """A free key, or, all busy, the next one in turn (the bundle waits for its lock)."""
        ex = self.free()
        if ex is None:
            ex = self.executors[self._next]
            self._next = (self._next + 1) % len(self.executors)
        return ex

    def started(self, ex: Executor) -> None:
        self._busy[ex] = self._busy.get(ex, 0) + 1

    def finished(self, ex: Executor) -> bool:
        """One bundle on `ex` is over; True when none is left on it."""
        self._busy[ex] -= 1
        if self._busy[ex]:
            return False
        del self._busy[ex]
        return True
