"""EIP-1559 fees for bundle transactions."""
from __future__ import annotations

from ..sim.types import PinnedBlock
from .client import NodeClient


async def suggest_fees(node: NodeClient, head: PinnedBlock, min_priority_fee: int = 0) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) for a transaction in the next blocks."""
    try:
        priority = int(await node.call("eth_maxPriorityFeePerGas"), 16)
    except Exception:
        priority = 10**9
    priority = max(priority, min_priority_fee)
    return 2 * head.base_fee + priority, priority
