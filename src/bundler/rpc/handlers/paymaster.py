"""pm_* (ERC-7677), served on the bundler's URL and on --paymaster-path alone.

    pm_getPaymasterStubData(userOp, entryPoint, chainId, context) -> placeholder fields for estimation
    pm_getPaymasterData(userOp, entryPoint, chainId, context)     -> the signed paymaster fields
    pm_getSponsorshipStatus(policyId, sender?)                    -> what is left of the budgets

Parameters are parsed here; the answers come from paymaster.service."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from pjrpc.server import MethodRegistry

from ...chain.types import PinnedBlock
from ...entrypoint import EntryPointVersion
from ...errors import InvalidParams
from ...userop.codec import decode_user_operation, parse_address, parse_quantity
from ...userop.model import UserOperation
from ..params import decode_entry_point


class Sponsor(Protocol):
    """paymaster.service.SponsorService"""

    async def stub_data(self, op: UserOperation, ep: EntryPointVersion, chain_id: int, context: Any) -> dict: ...

    async def paymaster_data(self, op: UserOperation, ep: EntryPointVersion, chain_id: int, context: Any) -> dict: ...

    def budget_status(self, policy_id: str, sender: str | None, now: int) -> dict: ...


class Head(Protocol):
    """chain.head.HeadTracker: the latest header, or a fresh one."""

    latest: PinnedBlock | None

    async def fresh(self) -> PinnedBlock: ...


@dataclass(frozen=True)
class PaymasterServices:
    entry_points: Sequence[EntryPointVersion]
    sponsor: Sponsor | None  # None: no paymaster signer key configured
    head: Head


def paymaster_registry(services: PaymasterServices) -> MethodRegistry:
    r = MethodRegistry()

    def service() -> Sponsor:
        if services.sponsor is None:
            raise InvalidParams("this bundler sponsors no gas: no paymaster signer key is configured "
                                "(--paymaster-signer-key-file or BUNDLER_PAYMASTER_SIGNER_KEY)")
        return services.sponsor

    def parse(user_op: Any, entry_point: Any, chain_id: Any) -> tuple[UserOperation, EntryPointVersion, int]:
        ep = decode_entry_point(entry_point, services.entry_points)
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
        header = services.head.latest or await services.head.fresh()
        return service().budget_status(policy_id, who, header.timestamp)

    return r
