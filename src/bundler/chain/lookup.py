"""eth_getUserOperationByHash / eth_getUserOperationReceipt: from our own op index when we
know the op, from the EntryPoint's logs otherwise (ops sent by other bundlers)."""
from __future__ import annotations

from dataclasses import dataclass

from .. import entrypoint as eps
from ..errors import OpDropped
from ..store.records import OpStatus
from ..userop.model import UserOperation
from ..userop.packing import unpack
from ..store.base import Store
from .client import NodeClient
from .userop_logs import OpReceipt, build_receipt, decode_handle_ops, find_event_log


SUBMITTED_LOOKBACK_BLOCKS = 1024


@dataclass(frozen=True, slots=True)
class FoundOp:
    """An op found by its hash (rpc/results.py writes eth_getUserOperationByHash's form):
    the transaction fields are None while the op is pending or submitted."""

    op: UserOperation
    entry_point: str
    transaction_hash: str | None = None
    block_hash: str | None = None
    block_number: str | None = None  # as the node wrote it (hex quantity)


class UserOpLookup:
    def __init__(self, node: NodeClient, store: Store, entry_points: list[eps.EntryPointVersion],
                 chain_id: int, lookback_blocks: int):
        self.node = node
        self.store = store
        self.entry_points = entry_points
        self.chain_id = chain_id
        self.lookback_blocks = lookback_blocks

    def _raise_if_dropped(self, record) -> None:
        if record is not None and record.status == OpStatus.DROPPED:
            raise OpDropped(record.hash, record.reason or "unknown reason", record.error_code)

    async def _mined_tx_hash(self, op_hash: str, lookback: int | None = None) -> str | None:
        record = self.store.get(op_hash)
        self._raise_if_dropped(record)
        if record is not None and record.status == OpStatus.MINED and record.tx_hash:
            return record.tx_hash
        latest = await self.node.block_number()
        log = await find_event_log(
            self.node, op_hash, [ep.address for ep in self.entry_points],
            latest - (self.lookback_blocks if lookback is None else lookback)
        )
        return log["transactionHash"] if log else None

    async def receipt(self, op_hash: str) -> OpReceipt | None:
        tx_hash = await self._mined_tx_hash(op_hash)
        if tx_hash is None:
            return None
        tx_receipt = await self.node.get_receipt(tx_hash)
        if tx_receipt is None:  # reorged out since we recorded it
            return None
        return build_receipt(op_hash, tx_receipt)

    async def by_hash(self, op_hash: str) -> FoundOp | None:
        record = self.store.get(op_hash)
        mined_tx = None
        if record is not None and record.status == OpStatus.SUBMITTED:
            # its bundle may be mined a moment before the builder records it; agree with receipt()
            # (a recent bundle: a short log search, not the whole lookback)
            mined_tx = await self._mined_tx_hash(op_hash, SUBMITTED_LOOKBACK_BLOCKS)
        if record is not None and record.status in (OpStatus.PENDING, OpStatus.SUBMITTED) and mined_tx is None:
            return FoundOp(record.op, record.entry_point)
        tx_hash = mined_tx or await self._mined_tx_hash(op_hash)
        if tx_hash is None:
            return None
        tx = await self.node.get_transaction(tx_hash)
        if tx is None or tx.get("blockHash") is None:
            return None
        entry_point = tx["to"].lower() if tx.get("to") else None
        ep = eps.by_address(entry_point) if entry_point else None
        found = None
        if record is not None:
            found = record.op
        elif ep is not None:
            calldata = bytes.fromhex(tx["input"][2:])
            for packed in decode_handle_ops(calldata):
                op = unpack(packed)
                delegate = None
                if op.is_eip7702:  # the v0.8 hash covers the delegate the sender pointed to
                    code = await self.node.get_code(op.sender, tx["blockNumber"])
                    if code[:3] == b"\xef\x01\x00":
                        delegate = "0x" + code[3:23].hex()
                    else:
                        continue
                if "0x" + ep.user_op_hash(op, self.chain_id, delegate).hex() == op_hash:
                    found = op
                    break
        entry_point = entry_point or (record.entry_point if record is not None else None)
        if found is None or entry_point is None:
            return None
        return FoundOp(found, entry_point, tx_hash, tx["blockHash"], tx["blockNumber"])
