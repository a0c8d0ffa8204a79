"""Gas price methods that client SDKs call on their bundler: permissionless' (Pimlico's)
pimlico_getUserOperationGasPrice and Rundler's rundler_maxPriorityFeePerGas, both from the fee
oracle in chain.fees."""
from __future__ import annotations

from pjrpc.server import MethodRegistry

from ..chain.fees import user_operation_gas_prices


def fee_registry(bundler) -> MethodRegistry:
    r = MethodRegistry()

    async def prices():
        header = await bundler.head.fresh()
        return await user_operation_gas_prices(bundler.node, header, bundler.config.min_priority_fee)

    @r.add(name="pimlico_getUserOperationGasPrice")
    async def pimlico_gas_price() -> dict:
        return {tier: price.to_json() for tier, price in (await prices()).items()}

    @r.add(name="rundler_maxPriorityFeePerGas")
    async def rundler_priority_fee() -> str:
        return hex((await prices())["standard"].max_priority_fee_per_gas)

    return r
