"""The chain watcher's reorg updates without a node: where the ops of a reorged bundle are now
(in the new chain, pending in the node again, or nowhere) as a ChainUpdate value."""
from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode

from bundler.chain.reorgs import ChainWatcher, MinedBundle
from bundler.chain.types import ChainUpdate, MinedOp, PendingBundle
from bundler.chain.userop_logs import USER_OPERATION_EVENT_TOPIC

EP = "0x" + "ee" * 20
SENDER = "0x" + "00" * 12 + "aa" * 20
OPS = ["0x" + f"{i:064x}" for i in (1, 2)]
OLD = MinedBundle("0x" + "bb" * 32, 10, "0x" + "01" * 32, list(OPS), "0x" + "cc" * 20, EP)


def event(op_hash: str, tx_hash: str, block: int) -> dict:
    return {"address": EP, "topics": [USER_OPERATION_EVENT_TOPIC, op_hash, SENDER, "0x" + "00" * 32],
            "data": "0x" + encode(["uint256", "bool", "uint256", "uint256"], [0, True, 1, 1]).hex(),
            "transactionHash": tx_hash, "blockNumber": hex(block), "blockHash": "0x" + "02" * 32}


@dataclass
class Head:
    latest: None = None


class Node:
    def __init__(self, receipt=None, tx=None, logs=None):
        self.receipt, self.tx, self.logs = receipt, tx, logs or {}
        self.log_queries: list[str] = []

    async def get_receipt(self, tx_hash):
        return self.receipt

    async def get_transaction(self, tx_hash):
        return self.tx

    async def call(self, method, *params):
        assert method == "eth_getRawTransactionByHash"
        return "0xf00d"

    async def get_logs(self, query):
        op_hash = query["topics"][1]
        assert query["address"] == [EP]
        self.log_queries.append(op_hash)
        return self.logs.get(op_hash, [])


def watcher(node: Node, seen: list[ChainUpdate]) -> ChainWatcher:
    async def on_update(update: ChainUpdate) -> None:
        seen.append(update)
    return ChainWatcher(node, Head(), 64, on_update, reinject_grace_s=0.0)  # type: ignore[arg-type]


async def test_bundle_in_the_new_chain_reports_its_ops_mined_there_and_the_rest_unmined():
    receipt = {"transactionHash": OLD.tx_hash, "status": "0x1", "blockNumber": hex(11), "blockHash": "0x" + "03" * 32,
               "logs": [event(OPS[0], OLD.tx_hash, 11)]}
    w = watcher(Node(receipt=receipt), seen := [])
    await w._reorged(OLD)
    assert seen == [ChainUpdate(mined=[MinedOp(OPS[0], OLD.tx_hash, 11, "0x" + "03" * 32)], unmined=[OPS[1]])]
    again = w.bundles[OLD.tx_hash]  # followed where it is now, for the next reorg
    assert (again.block_number, again.block_hash, again.op_hashes) == (11, "0x" + "03" * 32, [OPS[0]])


async def test_bundle_pending_in_the_node_again_is_reported_for_its_sender_to_follow():
    tx = {"blockHash": None, "from": "0x" + "CC" * 20, "nonce": "0x7", "to": EP, "maxFeePerGas": "0x64",
          "maxPriorityFeePerGas": "0x2"}
    w = watcher(Node(tx=tx), seen := [])
    await w._reorged(OLD)
    assert seen == [ChainUpdate(pending=[PendingBundle(OLD.tx_hash, "0x" + "cc" * 20, 7, EP, "0xf00d", 100, 2, OPS)])]


async def test_bundle_gone_reports_its_ops_unmined_unless_another_transaction_mined_them():
    other = "0x" + "dd" * 32
    node = Node(logs={OPS[1]: [event(OPS[1], other, 12)]})
    w = watcher(node, seen := [])
    await w._reorged(OLD)
    assert seen == [ChainUpdate(mined=[MinedOp(OPS[1], other, 12, "0x" + "02" * 32)], unmined=[OPS[0]],
                                lost_txs=[OLD.tx_hash])]
    assert node.log_queries == OPS


async def test_a_failed_update_keeps_the_bundle_tracked_for_the_next_round():
    async def failing(update: ChainUpdate) -> None:
        raise RuntimeError("pool busy")
    node = Node()
    w = ChainWatcher(node, Head(), 64, failing, reinject_grace_s=0.0)  # type: ignore[arg-type]
    w.track(OLD)
    w.hashes = {10: OLD.block_hash}
    w._head_hash = "0x" + "09" * 32

    async def block(tag_or_hash):  # block 10 replaced by another one
        return {"number": hex(10), "hash": "0x" + "04" * 32, "parentHash": "0x" + "05" * 32}
    w._block = block  # type: ignore[method-assign]
    assert [b.tx_hash for b in await w.check()] == [OLD.tx_hash]
    assert OLD.tx_hash in w.bundles
