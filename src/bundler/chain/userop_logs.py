"""UserOperationEvent / UserOperationRevertReason logs -> op receipts (`OpReceipt`), and the op
itself recovered from a handleOps transaction (also for ops this bundler did not send)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_hash.auto import keccak

from .. import entrypoint as eps
from ..userop.packing import PACKED_USEROP_TYPE
from .client import NodeClient

USER_OPERATION_EVENT_TOPIC = "0x" + keccak(eps.USER_OPERATION_EVENT.encode()).hex()
REVERT_REASON_TOPIC = "0x" + keccak(eps.USER_OPERATION_REVERT_REASON.encode()).hex()
BEFORE_EXECUTION_TOPIC = "0x" + keccak(eps.BEFORE_EXECUTION.encode()).hex()
HANDLE_OPS_SELECTOR = eps.HANDLE_OPS_SELECTOR
HANDLE_AGGREGATED_OPS_SELECTOR = keccak(
    f"handleAggregatedOps(({PACKED_USEROP_TYPE}[],address,bytes)[],address)".encode()
)[:4]


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:]


async def find_event_log(node: NodeClient, op_hash: str, entry_points: list[str], from_block: int) -> dict | None:
    logs = await node.get_logs({
        "address": entry_points,
        "topics": [USER_OPERATION_EVENT_TOPIC, op_hash],
        "fromBlock": hex(max(from_block, 0)),
        "toBlock": "latest",
    })
    logs = [log for log in logs if not log.get("removed")]
    return logs[-1] if logs else None


@dataclass(frozen=True, slots=True)
class OpReceipt:
    """A mined op, from its bundle's transaction receipt (rpc/results.py encode_receipt writes
    eth_getUserOperationReceipt's form). `logs` and `receipt` are the node's own objects."""

    op_hash: str
    entry_point: str  # lower case
    sender: str
    nonce: int
    paymaster: str  # the zero address when unsponsored
    actual_gas_cost: int
    actual_gas_used: int
    success: bool
    reason: bytes  # the revert data of the op's call, empty when it succeeded
    logs: list[dict[str, Any]]
    receipt: dict[str, Any]


def build_receipt(op_hash: str, tx_receipt: dict) -> OpReceipt | None:
    """The op's receipt from the bundle transaction's receipt, or None if the op is not in it."""
    logs = tx_receipt["logs"]
    event_index = None
    for i, log in enumerate(logs):
        if log["topics"] and log["topics"][0] == USER_OPERATION_EVENT_TOPIC and log["topics"][1] == op_hash:
            event_index = i
            break
    if event_index is None:
        return None
    event = logs[event_index]
    entry_point = event["address"].lower()
    # this op's logs: after the previous op's UserOperationEvent (or BeforeExecution)
    start = 0
    for j in range(event_index - 1, -1, -1):
        t0 = logs[j]["topics"][0] if logs[j]["topics"] else None
        if logs[j]["address"].lower() == entry_point and t0 in (USER_OPERATION_EVENT_TOPIC, BEFORE_EXECUTION_TOPIC):
            start = j + 1
            break
    op_logs = [
        log for log in logs[start:event_index]
        if not (log["address"].lower() == entry_point and log["topics"]
                and log["topics"][0] == REVERT_REASON_TOPIC)
    ]
    reason = b""
    for log in logs[start:event_index]:
        if log["address"].lower() == entry_point and log["topics"] and log["topics"][0] == REVERT_REASON_TOPIC \
                and log["topics"][1] == op_hash:
            (_nonce, revert) = decode(["uint256", "bytes"], bytes.fromhex(log["data"][2:]))
            reason = revert
    nonce, success, actual_gas_cost, actual_gas_used = decode(
        ["uint256", "bool", "uint256", "uint256"], bytes.fromhex(event["data"][2:])
    )
    paymaster = _topic_address(event["topics"][3])
    return OpReceipt(
        op_hash=op_hash, entry_point=entry_point, sender=_topic_address(event["topics"][2]), nonce=nonce,
        paymaster=paymaster, actual_gas_cost=actual_gas_cost, actual_gas_used=actual_gas_used,
        success=bool(success), reason=reason, logs=op_logs, receipt=tx_receipt,
    )


def decode_handle_ops(calldata: bytes) -> list[tuple]:
    """Packed ops in a handleOps / handleAggregatedOps call."""
    selector, body = calldata[:4], calldata[4:]
    if selector == HANDLE_OPS_SELECTOR:
        ops, _beneficiary = decode([f"{PACKED_USEROP_TYPE}[]", "address"], body)
        return list(ops)
    if selector == HANDLE_AGGREGATED_OPS_SELECTOR:
        per_aggregator, _b = decode([f"({PACKED_USEROP_TYPE}[],address,bytes)[]", "address"], body)
        return [op for group in per_aggregator for op in group[0]]
    return []
