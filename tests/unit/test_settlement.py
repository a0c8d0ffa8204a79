"""Settlement without a node: a resolved bundle transaction (mined, reverted, or its nonce taken
by another transaction) told to a fake pool, with the in-flight row removed in the same commit;
bundles found in flight at start-up followed through a fake tracker and settled."""
from __future__ import annotations

from contextlib import contextmanager

from eth_abi import encode

from bundler.builder.executor_key import Executor
from bundler.builder.settlement import Settlement
from bundler.builder.tracker import FollowResult
from bundler.chain.userop_logs import USER_OPERATION_EVENT_TOPIC
from bundler.entrypoint import V07
from bundler.store.records import InflightTx, TxAttempt

A, B = "0x" + "aa" * 32, "0x" + "bb" * 32
TX, OTHER_TX = "0x" + "77" * 32, "0x" + "78" * 32
BLOCK_HASH = "0x" + "b1" * 32
KEY = "0x" + "11" * 32


def event(op_hash: str) -> dict:
    return {"address": V07.address, "topics": [USER_OPERATION_EVENT_TOPIC, op_hash, "0x" + "00" * 12 + "5e" * 20,
                                               "0x" + "00" * 32],
            "data": "0x" + encode(["uint256", "bool", "uint256", "uint256"], [0, True, 1_000, 900]).hex()}


def receipt(status: str, *included: str) -> dict:
    return {"transactionHash": TX, "blockNumber": hex(42), "blockHash": BLOCK_HASH, "status": status,
            "logs": [event(h) for h in included]}


class FakePool:
    def __init__(self, rows: "FakeRows"):
        self.rows = rows
        self.results: list[tuple[list[str], object, bool]] = []
        self.back: list[tuple[list[str], str]] = []

    def apply_bundle_result(self, op_hashes, outcome):
        self.results.append((op_hashes, outcome, self.rows.in_batch))
        return [] if outcome.reverted else [h for h in op_hashes if h in outcome.included]

    async def back_to_pool(self, op_hashes, context, found_mined):
        self.back.append((op_hashes, context))
        for h in op_hashes:
            await found_mined(h, V07.address)


class FakeRows:
    def __init__(self):
        self.in_batch = False
        self.deleted: list[tuple[str, int, bool]] = []
        self.put: list[InflightTx] = []
        self.flushes = 0

    @contextmanager
    def batch(self):
        self.in_batch = True
        try:
            yield
        finally:
            self.in_batch = False

    def delete_inflight(self, executor, nonce):
        self.deleted.append((executor, nonce, self.in_batch))

    def put_inflight(self, tx):
        self.put.append(tx)

    async def record_bundle(self, inflight):
        raise AssertionError("settlement sends nothing")

    async def flush(self):
        self.flushes += 1


class FakeTracker:
    def __init__(self, result: FollowResult):
        self.result = result
        self.resumed: list[tuple[int, object]] = []

    async def follow(self, inflight, executor):
        self.resumed.append((inflight.nonce, executor))
        return self.result

    async def resume(self, inflight, executor):
        self.resumed.append((inflight.nonce, executor))
        return self.result


class FakeWatcher:
    def __init__(self):
        self.tracked = []

    def track(self, bundle):
        self.tracked.append(bundle)


def inflight(executor: str, nonce: int = 3) -> InflightTx:
    return InflightTx(executor=executor, nonce=nonce, entry_point=V07.address, op_hashes=[A, B],
                      attempts=[TxAttempt(TX, "0x02", 10, 1)])


def settlement(follow: FollowResult, executors=()):
    rows = FakeRows()
    pool, tracker, watcher = FakePool(rows), FakeTracker(follow), FakeWatcher()
    looked_up: list[str] = []
    unsettled: list[int] = []

    async def found_mined(op_hash, entry_point):
        looked_up.append(op_hash)
        return False

    s = Settlement(pool=pool, rows=rows, tracker=tracker, executors=list(executors), found_mined=found_mined,
                   on_unsettled=lambda: unsettled.append(1))
    s.watcher = watcher
    return s, pool, rows, tracker, watcher, looked_up, unsettled


async def test_a_mined_bundle_settles_its_ops_in_one_commit_and_tracks_the_included_ones():
    s, pool, rows, _t, watcher, _l, _u = settlement(FollowResult(None))
    result = await s.settle(inflight("0xexec"), FollowResult(receipt("0x1", A)), dropped={"0xcc": "AA23"})
    assert (result.status, result.tx_hash, result.block_number, result.included) == ("mined", TX, 42, [A])
    assert result.dropped == {"0xcc": "AA23"}
    [(hashes, outcome, in_batch)] = pool.results
    assert hashes == [A, B] and outcome.included == {A} and not outcome.reverted and in_batch
    assert (outcome.block_number, outcome.block_hash) == (42, BLOCK_HASH)
    assert rows.deleted == [("0xexec", 3, True)] and rows.flushes == 1  # the row goes in the same commit
    [tracked] = watcher.tracked
    assert (tracked.tx_hash, tracked.op_hashes, tracked.executor) == (TX, [A], "0xexec")


async def test_a_reverted_bundle_is_reported_reverted_and_nothing_is_tracked():
    s, pool, rows, _t, watcher, _l, _u = settlement(FollowResult(None))
    result = await s.settle(inflight("0xexec"), FollowResult(receipt("0x0", A, B)))
    assert result.status == "reverted" and result.included == []
    [(_h, outcome, _b)] = pool.results
    assert outcome.reverted and outcome.included == set()
    assert watcher.tracked == [] and rows.deleted == [("0xexec", 3, True)]


async def test_a_nonce_taken_by_another_transaction_sends_the_ops_back_to_the_pool():
    executor = Executor(KEY)
    executor.consumed(7)
    s, pool, rows, _t, _w, looked_up, _u = settlement(FollowResult(None))
    result = await s.settle(inflight(executor.address), FollowResult(None, foreign=True), executor=executor)
    assert (result.status, result.tx_hash, result.block_number) == ("not_mined", TX, None)
    assert pool.back == [([A, B], "bundle nonce taken by another transaction")] and looked_up == [A, B]
    assert pool.results == [] and rows.deleted == [(executor.address, 3, False)]
    assert executor._nonce is None  # asked of the node again before its next bundle


async def test_resume_follows_with_the_key_when_it_is_ours_and_reports_an_unsettled_bundle():
    executor = Executor(KEY)
    s, pool, _r, tracker, _w, _l, unsettled = settlement(FollowResult(None), executors=[executor])
    result = await s.resume(inflight(executor.address, nonce=5))
    assert tracker.resumed == [(5, executor)] and result.status == "not_mined" and unsettled == [1]
    # a key not ours (no longer configured, or a dead instance's): followed without replacing
    other, pool2, _r2, tracker2, _w2, _l2, unsettled2 = settlement(FollowResult(receipt("0x1", A, B)))
    mined = await other.resume(inflight("0xnotours", nonce=6))
    assert tracker2.resumed == [(6, None)] and mined.status == "mined" and mined.included == [A, B]
    assert unsettled2 == []


async def test_follow_again_follows_without_a_key_and_settles():
    s, pool, rows, tracker, watcher, _l, _u = settlement(FollowResult(receipt("0x1", B)))
    result = await s.follow_again(inflight("0xexec", nonce=9))
    assert tracker.resumed == [(9, None)] and result.included == [B] and rows.deleted == [("0xexec", 9, True)]
