"""The inclusion window in blocks and its slot rule (chain/clock.py), and how v0.9's block-range
failures map to errors (sim/results.py): pure logic, no node. The behaviour through
eth_sendUserOperation is in tests/integration/test_entrypoint_versions.py and test_time_windows.py."""
from __future__ import annotations

import pytest

TIME_RANGE = -32503


def test_inclusion_window_in_blocks():
    """v0.9 block ranges: the next block is head + 1 (due when it is past validAfterBlock), the
    latest expected is the one after it, and seconds convert to whole blocks at the observed
    block time (the hold limit of --valid-after-max-wait)."""
    from bundler.chain.clock import InclusionClock
    from bundler.sim import PinnedBlock

    wall = [1000.0]
    clock = InclusionClock(wall=lambda: wall[0])
    for n in range(1, 6):
        clock.observe(n, 1000 + n * 12)
    w = clock.window(PinnedBlock(number=5, timestamp=1060, base_fee=0, gas_limit=30_000_000))
    assert (w.next_block, w.last_block, w.block_time) == (6, 7, 12)
    assert w.block_due(5) and not w.block_due(6)
    assert (w.wait_blocks(5), w.wait_blocks(6), w.wait_blocks(9)) == (0, 1, 4)
    assert (w.blocks(60), w.blocks(59), w.blocks(-5)) == (5, 4, 0)


@pytest.mark.parametrize("intervals,slot", [
    ([12, 12], 0),            # too few to call it a slot
    ([12, 24, 12, 36], 12),   # Ethereum with missed slots
    ([2, 2, 2], 2),           # OP chains
    ([1, 1, 1, 1], 0),        # a one-second chain may still put the next block in the head's second
    ([3, 5, 7], 0),           # anvil automine / evm_mine jumps: no slot
    ([12, 18, 12], 0),
])
def test_earliest_inclusion_trusts_only_a_regular_slot(intervals, slot):
    """The earliest timestamp of the including block is head + slot only on a chain whose
    intervals show one; otherwise the head's own (a strict validAfter == head waits for a block
    after it instead of being bundled into an AA22 revert on anvil)."""
    from bundler.chain.clock import InclusionClock
    from bundler.sim import PinnedBlock

    clock = InclusionClock(wall=lambda: 0.0)
    ts = 1000
    clock.observe(1, ts)
    for n, gap in enumerate(intervals, start=2):
        ts += gap
        clock.observe(n, ts)
    assert clock.min_interval == slot
    head = PinnedBlock(number=len(intervals) + 1, timestamp=ts, base_fee=0, gas_limit=30_000_000)
    assert clock.window(head).earliest == ts + slot


def test_block_range_failures_are_time_range_errors():
    """v0.9 reverts AA27 / AA37 for a block range outside the block (where v0.7/v0.8 say
    AA22 / AA32): found at bundle time they answer -32503 like a time range, not -32500/-32504."""
    from eth_abi import encode as abi_encode

    from bundler.sim.results import SEL_FAILED_OP, decode_failure, failure_error

    for reason, who in (("AA27 outside valid block range", "account"), ("AA37 paymaster inval block range", "paymaster")):
        error = failure_error(decode_failure(SEL_FAILED_OP + abi_encode(["uint256", "string"], [0, reason])),
                              "0x" + "11" * 20)
        assert error.code == TIME_RANGE and f"the {who}'s block range" in error.message, error
