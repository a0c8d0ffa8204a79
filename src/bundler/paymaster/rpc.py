"""pm_* JSON-RPC methods (ERC-7677), served on the bundler's URL and on --paymaster-path alone.

    pm_getPaymasterStubData(userOp, entryPoint, chainId, context) -> placeholder fields for estimation
    pm_getPaymasterData(userOp, entryPoint, chainId, context)     -> the signed paymaster fields
    pm_getSponsorshipStatus(policyId, sender?)                    -> what is left of the budgets

Parameters are parsed here; the answers come from paymaster.service."""
from __future__ import annotations

from typing import Any

from pjrpc.server import MethodRegistry

from ..errors import InvalidParams
from ..rpc.methods import _entry_point
from ..userop.codec import decode_user_operation, parse_address, parse_quantity


def paymaster_registry(bundler) -> MethodRegistry:
    r = MethodRegistry()

    def service():
        if getattr(bundler, "paymaster", None) is None:
            raise InvalidParams("this bundler sponsors no gas: no paymaster signer key is configured "
                                "(--paymaster-signer-key-file or BUNDLER_PAYMASTER_SIGNER_KEY)")
        return bundler.paymaster

    def parse(user_op: Any, entry_point: Any, chain_id: Any):
        ep = _entry_point(bundler, entry_point)
        # ERC-7677: the op is not signed yet, and its gas may still be zero (stub data)
        op = decode_user_operation(user_op, for_estimation=True)
        return op, ep, parse_quantity(chain_id, "chainId")

    @r.add(name="pm_getPaymasterStubData")
    async def get_paymaster_stub_data(user_op: Any, entry_point: Any, chain_id: Any, context: Any = None) -> dict:
        op, ep, chain = parse(user_op, entry_point, chain_id)
        return await service().stub_data(op, ep, chain, context)

    @r.add(name="pm_getPaymasterData")
    async def get_paymaster_data(user_op: Any, entry_point: Any, chain_id: Any, context: Any = None) -> dict:
        op, ep, chain = parse(user_op, entry_point, chain_id)
        return await service().paymaster_data(op, ep, chain, context)

    @r.add(name="pm_getSponsorshipStatus")
    async def get_sponsorship_status(policy_id: Any, sender: Any = None) -> dict:
        if not isinstance(policy_id, str):
            raise InvalidParams("invalid policyId: expected a string")
        who = parse_address(sender, "sender") if sender is not None else None
        header = bundler.head.latest or await bundler.head.fresh()
        return service().budget_status(policy_id, who, header.timestamp)

    return r
