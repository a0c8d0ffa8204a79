"""Gas price methods that client SDKs call on their bundler: permissionless' (Pimlico's)
pimlico_getUserOperationGasPrice and Rundler's rundler_maxPriorityFeePerGas, both from the fee
oracle in chain.fees."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pjrpc.server import MethodRegistry

from ...chain.client import NodeClient
from ...chain.fees import GasPrice, user_operation_gas_prices
from ...chain.types import PinnedBlock
from ..results import encode_gas_prices


class FreshHead(Protocol):
    async def fresh(self) -> PinnedBlock: ...


@dataclass(frozen=True)
class FeeServices:
    head: FreshHead
    node: NodeClient
    min_priority_fee: int


def fee_registry(services: FeeServices) -> MethodRegistry:
    r = MethodRegistry()

    async def prices() -> dict[str, GasPrice]:
        header = await services.head.fresh()
        return await user_operation_gas_prices(services.node, header, services.min_priority_fee)

    @r.add(name="pimlico_getUserOperationGasPrice")
    async def pimlico_gas_price() -> dict:
        return encode_gas_prices(await prices())

    @r.add(name="rundler_maxPriorityFeePerGas")
    async def rundler_priority_fee() -> str:
        return hex((await prices())["standard"].max_priority_fee_per_gas)

    return r
