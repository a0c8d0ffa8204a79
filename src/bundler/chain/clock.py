"""When will an op sent now be included? The time range an account or paymaster returns
(validAfter / validUntil) is judged by the EntryPoint against the timestamp of the block that
includes the op, not the head block's: this module turns the headers the bundler has seen into
bounds on that timestamp.

    window = clock.window(head)     # InclusionWindow(earliest, latest)

earliest  a timestamp the including block cannot be below: the head's plus the chain's slot
          when it has one (12 s on Ethereum, 2 s on OP chains: such a chain never produces a
          shorter interval), else the head's own (anvil gives consecutive blocks the same
          timestamp when they come within its clock's second, so "a block is later than its
          parent" does not hold everywhere). A slot is trusted only from MIN_SLOT_SAMPLES
          intervals between consecutive blocks, the shortest at least 2 s and every one a
          multiple of it (missed slots): a chain that mines on demand (anvil automine, where
          evm_mine may also jump the clock) shows arbitrary intervals and may put the next
          block in the head's second, and a bundle sent for a timestamp it does not get
          reverts on chain (AA22), at the executor's cost. The wall clock is deliberately not used:
          a dev chain's timestamps can run ahead of it and a lagging chain's behind it. An op
          is *due* when it is valid at `earliest`; the pre-send bundle check runs with it as
          the block timestamp (eth_call block override / py-evm block context).
latest    a timestamp the including block is not expected to exceed: one block time (the
          median observed interval, clamped to [1, MAX_BLOCK_TIME_S]) after the next block,
          where "the next block" is the later of head + block time and the chain's clock
          now (wall clock plus the largest offset seen between a header's timestamp and the
          moment it was first seen, which covers dev chains moved with evm_increaseTime). An
          op whose validUntil is before `latest` would revert on chain (AA22) and the executor
          would pay: admission refuses it and the builder drops it.

EntryPoint v0.9 also takes validity ranges of block numbers (sim.results.ValidationData
.block_range). The same window in blocks:

next_block  the number of the block that includes an op sent now, at the earliest: head + 1.
            The pre-send bundle check runs as that block (block override `number`); a range
            is *due* when next_block > validAfterBlock (EntryPoint v0.9: block.number > after).
last_block  the block expected by `latest`: next_block + 1 (one block time after the next).
            A range ending before it is refused at admission and dropped by the builder.
Seconds convert to blocks by the observed block time (`blocks(s)`): a range that starts
within --valid-after-max-wait seconds' worth of blocks is held, as a validAfter is.

Pure bookkeeping: the head tracker feeds it every new header; it never calls the node.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .types import PinnedBlock

MAX_BLOCK_TIME_S = 30  # a longer observed interval (an idle dev chain) is not a block time
MIN_SLOT_SAMPLES = 3  # intervals seen before the shortest one counts as the chain's slot
SAMPLES = 32


@dataclass(frozen=True, slots=True)
class InclusionWindow:
    earliest: int
    latest: int
    next_block: int = 0  # block number bounds (v0.9 block ranges), see the module doc
    block_time: int = 1

    @property
    def last_block(self) -> int:
        return self.next_block + 1

    def blocks(self, seconds: int) -> int:
        """Whole blocks within `seconds` at the observed block time (the wait a block range may
        be held, rounded down)."""
        return max(0, seconds) // max(1, self.block_time)

    def block_due(self, valid_after_block: int) -> bool:
        """A block range valid in the next block (block.number > validAfterBlock)?"""
        return valid_after_block < self.next_block

    def wait_blocks(self, valid_after_block: int) -> int:
        """Blocks the chain must advance beyond `next_block` to make the range valid."""
        return max(0, valid_after_block + 1 - self.next_block)

    def due(self, valid_after: int, strict: bool) -> bool:
        """Valid at `earliest`? `strict`: the EntryPoint wants timestamp > validAfter (v0.8 and
        later), else timestamp >= validAfter (v0.7)."""
        return valid_after < self.earliest if strict else valid_after <= self.earliest

    def wait_s(self, valid_after: int, strict: bool) -> int:
        """Seconds the including block's timestamp must advance beyond `earliest` to make the
        op valid (0 when it is due)."""
        return max(0, valid_after + (1 if strict else 0) - self.earliest)


class InclusionClock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._last: tuple[int, int] | None = None  # (number, timestamp) of the newest header
        self._intervals: deque[int] = deque(maxlen=SAMPLES)  # between consecutive blocks
        self._skews: deque[float] = deque(maxlen=SAMPLES)  # header timestamp - wall when seen

    def observe(self, number: int, timestamp: int) -> None:
        """A header seen for the first time (the head tracker calls this)."""
        if self._last is not None:
            last_number, last_ts = self._last
            if number == last_number + 1 and timestamp >= last_ts:
                self._intervals.append(timestamp - last_ts)
        if self._last is None or number >= self._last[0]:
            self._last = (number, timestamp)
        self._skews.append(timestamp - self.wall())

    @property
    def block_time(self) -> int:
        if not self._intervals:
            return 1
        return max(1, min(MAX_BLOCK_TIME_S, round(statistics.median(self._intervals))))

    @property
    def min_interval(self) -> int:
        """The chain's slot (the least a block's timestamp exceeds its parent's), 0 unless the
        intervals seen show one (module doc)."""
        if len(self._intervals) < MIN_SLOT_SAMPLES:
            return 0
        slot = min(self._intervals)
        if slot < 2 or any(i % slot for i in self._intervals):
            return 0
        return slot

    def chain_now(self) -> int:
        """The chain's clock now, on the late side (the largest offset seen)."""
        skew = max(self._skews) if self._skews else 0.0
        return int(self.wall() + max(skew, 0.0) + 0.999)

    def window(self, head: PinnedBlock) -> InclusionWindow:
        """Bounds on the timestamp (and number) of the block that includes an op sent now,
        `head` being the latest header (anything with .timestamp and .number)."""
        block_time = self.block_time
        earliest = head.timestamp + self.min_interval
        latest = max(head.timestamp + block_time, self.chain_now()) + block_time
        return InclusionWindow(earliest, max(latest, earliest), next_block=head.number + 1,
                               block_time=block_time)
