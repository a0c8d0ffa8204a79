"""EIP-1559 fees: for bundle transactions, and the prices clients ask for their ops
(pimlico_getUserOperationGasPrice / rundler_maxPriorityFeePerGas), from one oracle."""
from __future__ import annotations

from dataclasses import dataclass

from .types import PinnedBlock
from .client import NodeClient

DEFAULT_PRIORITY_FEE = 10**9  # when the node has no eth_maxPriorityFeePerGas
# client tiers: the tip the node suggests, raised by these percentages (slow, standard, fast)
TIER_PERCENT = {"slow": 100, "standard": 110, "fast": 125}


async def node_priority_fee(node: NodeClient, min_priority_fee: int = 0) -> int:
    try:
        priority = int(await node.call("eth_maxPriorityFeePerGas"), 16)
    except Exception:
        priority = DEFAULT_PRIORITY_FEE
    return max(priority, min_priority_fee)


async def suggest_fees(node: NodeClient, head: PinnedBlock, min_priority_fee: int = 0) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) for a transaction in the next blocks."""
    priority = await node_priority_fee(node, min_priority_fee)
    return 2 * head.base_fee + priority, priority


@dataclass(frozen=True, slots=True)
class GasPrice:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


async def user_operation_gas_prices(node: NodeClient, head: PinnedBlock, min_priority_fee: int = 0) -> dict[str, GasPrice]:
    """slow / standard / fast prices for a UserOperation. Every tier pays at least the bundler's
    minimum tip, and a maxFeePerGas of twice the base fee plus the tip, so the op stays
    includable through several full blocks (the base fee rises at most 12.5% per block)."""
    priority = await node_priority_fee(node, min_priority_fee)
    out = {}
    for tier, percent in TIER_PERCENT.items():
        tip = max(-(-priority * percent // 100), min_priority_fee)
        out[tier] = GasPrice(2 * head.base_fee + tip, tip)
    return out
