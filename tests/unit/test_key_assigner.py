"""The key assigner without a node: round robin over free keys; a key is busy while a bundle
holds its lock or was started on it, and takes nothing while its balance is low."""
from __future__ import annotations

from bundler.builder.assigner import KeyAssigner
from bundler.builder.executor_key import Executor

KEYS = [Executor("0x" + f"{i:02x}" * 32) for i in (0x11, 0x22, 0x33)]


def test_free_keys_in_turn_and_a_started_bundle_keeps_its_key_busy():
    keys = KeyAssigner(KEYS)
    assert [keys.free() for _ in range(4)] == [KEYS[0], KEYS[1], KEYS[2], KEYS[0]]
    keys.started(KEYS[1])
    keys.started(KEYS[1])
    assert [keys.free() for _ in range(3)] == [KEYS[2], KEYS[0], KEYS[2]]
    assert keys.finished(KEYS[1]) is False  # one more bundle is still on it
    assert keys.usable(KEYS[1]) is False
    assert keys.finished(KEYS[1]) is True and keys.usable(KEYS[1]) is True


async def test_a_locked_key_is_skipped_and_all_busy_picks_the_next_in_turn():
    keys = KeyAssigner(KEYS)
    async with KEYS[0].lock:
        assert keys.free() is KEYS[1]
        keys.started(KEYS[1])
        keys.started(KEYS[2])
        assert keys.any_usable() is False and keys.free() is None
        # every key busy: the next in turn, the bundle will wait for its lock
        assert [keys.pick() for _ in range(3)] == [KEYS[2], KEYS[0], KEYS[1]]
    assert keys.any_usable() is True and keys.pick() is KEYS[0]


def test_a_key_below_its_minimum_balance_takes_nothing():
    low = {KEYS[0].address}
    keys = KeyAssigner(KEYS, is_low=lambda address: address in low)
    assert [keys.free() for _ in range(3)] == [KEYS[1], KEYS[2], KEYS[1]]
    low.clear()
    assert keys.free() is KEYS[2] and keys.free() is KEYS[0]
