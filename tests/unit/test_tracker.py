"""The transaction tracker without a node: a fake chain that mines on command, refuses
replacements as underpriced, or lets the nonce go to someone else."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.typed_transactions import TypedTransaction
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from bundler.builder.executor_key import Executor
from bundler.builder.tracker import TransactionTracker, bump
from bundler.chain.client import NodeRpcError
from bundler.chain.types import PinnedBlock
from bundler.errors import BundlerError
from bundler.store.records import InflightTx

KEY = Executor("0x" + "42" * 32)
EP = "0x" + "ee" * 20


@dataclass
class Config:
    tx_replace_after_s: float = 0.0  # every poll without a receipt is a replacement round
    fee_bump_percent: int = 10
    max_fee_multiplier: int = 4


def header(number: int) -> PinnedBlock:
    return PinnedBlock(number=number, hash=number.to_bytes(32, "big"), timestamp=1000 + number,
                       base_fee=1, gas_limit=30_000_000)


class FakeChain:
    """Node + head: keeps what was broadcast, mines the transaction chosen by `mine_after`
    blocks, refuses the first `underpriced` replacements."""

    def __init__(self, mine_after: int | None = None, underpriced: int = 0, refuse_first: str | None = None):
        self.block = 1
        self.latest: PinnedBlock | None = header(1)
        self.sent: list[str] = []   # tx hashes accepted, in order
        self.raw: dict[str, str] = {}
        self.receipts: dict[str, dict] = {}
        self.mined_nonce = 0
        self.mine_after = mine_after
        self.underpriced = underpriced
        self.refuse_first = refuse_first

    async def send_raw_transaction(self, raw: bytes) -> str:
        tx_hash = "0x" + keccak(raw).hex()
        if self.refuse_first is not None:
            message, self.refuse_first = self.refuse_first, None
            raise NodeRpcError(-32000, message)
        if self.sent and self.underpriced:
            self.underpriced -= 1
            raise NodeRpcError(-32000, "replacement transaction underpriced")
        self.sent.append(tx_hash)
        self.raw[tx_hash] = "0x" + raw.hex()
        return tx_hash

    async def get_nonce(self, address: str, tag: str = "pending") -> int:
        return self.mined_nonce

    async def batch(self, calls: list[tuple[str, list]]) -> list:
        out: list = []
        for method, params in calls:
            if method == "eth_getTransactionReceipt":
                out.append(self.receipts.get(params[0]))
            elif method == "eth_getTransactionCount":
                out.append(hex(self.mined_nonce))
            else:
                out.append(None)
        return out

    async def fresh(self) -> PinnedBlock:
        assert self.latest is not None
        return self.latest

    async def wait_new_block(self, after: int | None, timeout: float) -> PinnedBlock | None:
        """Each wait is one new block; the latest broadcast is mined when its time has come."""
        self.block += 1
        self.latest = header(self.block)
        if self.mine_after is not None and self.block > self.mine_after and self.sent:
            tx_hash = self.sent[-1]
            self.receipts[tx_hash] = {"transactionHash": tx_hash, "status": "0x1",
                                      "blockNumber": hex(self.block), "blockHash": "0x" + self.latest.hash.hex()}
            self.mined_nonce += 1
        assert self.block < 200, "the tracker never stopped following"
        return self.latest


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], InflightTx] = {}
        self.recorded: list[InflightTx] = []

    async def record_bundle(self, inflight: InflightTx) -> None:
        self.recorded.append(inflight)
        self.rows[(inflight.executor, inflight.nonce)] = inflight

    def put_inflight(self, tx: InflightTx) -> None:
        self.rows[(tx.executor, tx.nonce)] = tx

    def delete_inflight(self, executor: str, nonce: int) -> None:
        self.rows.pop((executor, nonce), None)

    async def flush(self) -> None:
        pass


def tracker(chain: FakeChain, config: Config | None = None) -> tuple[TransactionTracker, MemoryStore]:
    store = MemoryStore()
    return TransactionTracker(chain, chain, store, config or Config(), chain_id=31337), store


async def send(t: TransactionTracker, chain: FakeChain, seen: list[InflightTx] | None = None) -> InflightTx:
    KEY.forget_nonce()
    return await t.send_new(KEY, EP, ["0x01", "0x02"], b"\x12\x34", 100_000, 1000, 100,
                            before_send=(seen.append if seen is not None else None))


async def test_send_persists_before_broadcast_and_follows_to_the_receipt():
    chain = FakeChain(mine_after=1)
    t, store = tracker(chain, Config(tx_replace_after_s=3600))
    seen: list[InflightTx] = []
    inflight = await send(t, chain, seen)
    assert store.recorded == [inflight] and seen == [inflight]
    assert chain.sent == [inflight.latest.tx_hash]
    tx = TypedTransaction.from_bytes(HexBytes(inflight.latest.raw)).as_dict()
    assert (tx["nonce"], tx["maxFeePerGas"], tx["maxPriorityFeePerGas"], bytes(tx["data"])) == (0, 1000, 100, b"\x12\x34")
    followed = await t.follow(inflight, KEY)
    assert followed.receipt is not None and followed.receipt["transactionHash"] == inflight.latest.tx_hash
    assert not followed.foreign and t.replace_rounds == 0 and len(inflight.attempts) == 1


async def test_a_stuck_transaction_is_replaced_with_bumped_fees_until_mined():
    chain = FakeChain(mine_after=3)  # mined only after three blocks: replaced meanwhile
    t, store = tracker(chain)
    inflight = await send(t, chain)
    followed = await t.follow(inflight, KEY)
    assert t.replace_rounds >= 2 and len(inflight.attempts) == t.replace_rounds + 1
    fees = [(a.max_fee, a.priority) for a in inflight.attempts]
    for (fee, prio), (next_fee, next_prio) in zip(fees, fees[1:]):
        assert next_fee == bump(fee, 10) and next_prio == bump(prio, 10)
    # same nonce each time, and the mined attempt is the last one sent
    nonces = {TypedTransaction.from_bytes(HexBytes(a.raw)).as_dict()["nonce"] for a in inflight.attempts}
    assert nonces == {0}
    assert followed.receipt is not None and followed.receipt["transactionHash"] == inflight.attempts[-1].tx_hash
    assert store.rows[(KEY.address, 0)].attempts == inflight.attempts  # every attempt persisted


async def test_underpriced_replacement_is_bumped_again_and_the_fee_cap_holds():
    chain = FakeChain(mine_after=None, underpriced=2)
    t, _ = tracker(chain, Config(max_fee_multiplier=2))
    inflight = await send(t, chain)
    assert await t.replace(inflight, KEY) is True
    assert t.underpriced_refusals == 2 and len(inflight.attempts) == 2
    assert inflight.latest.max_fee == bump(bump(bump(1000, 10), 10), 10)
    while await t.replace(inflight, KEY):
        assert len(inflight.attempts) < 20
    assert inflight.latest.max_fee == 2000  # capped at 2x the first attempt, never above
    assert all(a.max_fee <= 2000 for a in inflight.attempts)


async def test_a_nonce_used_by_a_foreign_transaction_is_reported(monkeypatch):
    monkeypatch.setattr("bundler.builder.tracker.FOREIGN_NONCE_GRACE_POLLS", 1)
    chain = FakeChain()
    t, _ = tracker(chain, Config(tx_replace_after_s=3600))
    inflight = await send(t, chain)
    chain.mined_nonce = 1  # someone else's transaction took nonce 0
    followed = await t.follow(inflight, KEY)
    assert followed.foreign and followed.receipt is None


async def test_a_refused_first_broadcast_forgets_the_row_and_raises():
    chain = FakeChain(refuse_first="insufficient funds for gas")
    t, store = tracker(chain)
    with pytest.raises(BundlerError, match="insufficient funds"):
        await send(t, chain)
    assert store.rows == {} and chain.sent == []


async def test_nonce_too_low_retries_once_with_the_nodes_nonce():
    chain = FakeChain(refuse_first="nonce too low")
    chain.mined_nonce = 5
    t, store = tracker(chain)
    inflight = await send(t, chain)
    assert inflight.nonce == 5 and list(store.rows) == [(KEY.address, 5)] and len(chain.sent) == 1


class GappedChain(FakeChain):
    """A node that mines only in nonce order: a transaction above a missing nonce waits
    (queued) and is not counted by the "pending" nonce, as geth and anvil do."""

    def _nonce_of(self, tx_hash: str) -> int:
        return TypedTransaction.from_bytes(HexBytes(self.raw[tx_hash])).as_dict()["nonce"]

    async def get_nonce(self, address: str, tag: str = "pending") -> int:
        if tag != "pending":
            return self.mined_nonce
        held = {self._nonce_of(h) for h in self.sent}
        nonce = self.mined_nonce
        while nonce in held:
            nonce += 1
        return nonce

    async def wait_new_block(self, after: int | None, timeout: float) -> PinnedBlock | None:
        self.block += 1
        self.latest = header(self.block)
        by_nonce = {self._nonce_of(h): h for h in self.sent}  # the last one sent for a nonce wins
        while self.mined_nonce in by_nonce:
            tx_hash = by_nonce[self.mined_nonce]
            self.receipts[tx_hash] = {"transactionHash": tx_hash, "status": "0x1",
                                      "blockNumber": hex(self.block), "blockHash": "0x" + self.latest.hash.hex()}
            self.mined_nonce += 1
        assert self.block < 200, "the tracker never stopped following"
        return self.latest


async def test_a_bundle_behind_a_nonce_gap_gets_the_gap_filled_and_is_mined():
    """After a reorg dropped the transactions of nonces 0 and 1, a bundle signed with the cached
    next nonce (2) can never be mined; bumping its fees does nothing. The tracker fills the gap
    with zero-value transfers to the executor itself, then the bundle is mined as usual."""
    chain = GappedChain()
    t, _ = tracker(chain)
    KEY.forget_nonce()
    KEY.consumed(1)  # the cache says 2: nonces 0 and 1 went with the reorged-out blocks
    inflight = await t.send_new(KEY, EP, ["0x01"], b"\x12\x34", 100_000, 1000, 100)
    assert inflight.nonce == 2 and await chain.get_nonce(KEY.address, "pending") == 0
    followed = await t.follow(inflight, KEY)
    assert followed.receipt is not None and followed.receipt["transactionHash"] in inflight.tx_hashes
    assert t.gap_fills == 2 and chain.mined_nonce == 3
    fillers = [TypedTransaction.from_bytes(HexBytes(chain.raw[h])).as_dict() for h in chain.sent[1:3]]
    assert [f["nonce"] for f in fillers] == [0, 1]
    assert all(to_checksum_address(f["to"]).lower() == KEY.address and f["value"] == 0 and f["gas"] == 21_000
               and bytes(f["data"]) == b"" for f in fillers)


async def test_a_bundle_stuck_without_a_gap_is_bumped_not_filled():
    chain = GappedChain()
    chain.mined_nonce = 4
    t, _ = tracker(chain)
    KEY.forget_nonce()
    KEY.consumed(4)  # cache says 5, the node holds nothing at 4: the gap is one nonce
    inflight = await t.send_new(KEY, EP, ["0x01"], b"\x12\x34", 100_000, 1000, 100)
    assert await t.fill_gap(inflight, KEY, mined_nonce=4) is True and t.gap_fills == 1
    # now nothing is missing below nonce 5: not a gap any more
    assert await t.fill_gap(inflight, KEY, mined_nonce=4) is False and t.gap_fills == 1
