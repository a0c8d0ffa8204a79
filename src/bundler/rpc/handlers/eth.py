"""eth_* (ERC-4337 / ERC-7769) and web3_clientVersion."""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from eth_utils import to_checksum_address
from pjrpc.server import MethodRegistry

from ... import CLIENT_VERSION
from ...chain.lookup import FoundOp
from ...chain.userop_logs import OpReceipt
from ...chain.types import StateOverrides
from ...entrypoint import EntryPointVersion
from ...gas.estimate import GasLimits
from ...userop.codec import decode_user_operation
from ...userop.model import UserOperation
from ..params import decode_entry_point, decode_op_hash, decode_state_override
from ..results import encode_found_op, encode_gas_limits, encode_receipt


class Admits(Protocol):
    """The pool's admission (pool.pool.Pool.add): the op's hash or a BundlerError."""

    async def add(self, op: UserOperation, entry_point: EntryPointVersion) -> str: ...


class GasEstimator(Protocol):
    """gas.estimate.Estimator"""

    async def estimate(self, op: UserOperation, ep: EntryPointVersion,
                       state_override: StateOverrides | None = None) -> GasLimits: ...


class OpLookup(Protocol):
    """chain.lookup.UserOpLookup: an op by hash (pool, store, chain) and its receipt."""

    async def by_hash(self, op_hash: str) -> FoundOp | None: ...

    async def receipt(self, op_hash: str) -> OpReceipt | None: ...


class SubmissionMetrics(Protocol):
    """metrics.Metrics.submission: counts and times eth_sendUserOperation."""

    def submission(self, entry_point: Any) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class EthServices:
    chain_id: int
    entry_points: Sequence[EntryPointVersion]
    pool: Admits
    estimator: GasEstimator
    lookup: OpLookup
    metrics: SubmissionMetrics


def eth_registry(services: EthServices) -> MethodRegistry:
    r = MethodRegistry()

    @r.add(name="eth_chainId")
    async def chain_id() -> str:
        return hex(services.chain_id)

    @r.add(name="eth_supportedEntryPoints")
    async def supported_entry_points() -> list[str]:
        return [to_checksum_address(ep.address) for ep in services.entry_points]

    @r.add(name="web3_clientVersion")
    async def client_version() -> str:
        return CLIENT_VERSION

    @r.add(name="eth_sendUserOperation")
    async def send_user_operation(user_op: Any, entry_point: Any) -> str:
        with services.metrics.submission(entry_point):  # counts, latency, op hash on log lines
            ep = decode_entry_point(entry_point, services.entry_points)
            op = decode_user_operation(user_op)
            return await services.pool.add(op, ep)

    @r.add(name="eth_estimateUserOperationGas")
    async def estimate_user_operation_gas(user_op: Any, entry_point: Any, state_override: Any = None) -> dict:
        ep = decode_entry_point(entry_point, services.entry_points)
        op = decode_user_operation(user_op, for_estimation=True)
        return encode_gas_limits(await services.estimator.estimate(op, ep, decode_state_override(state_override)))

    @r.add(name="eth_getUserOperationByHash")
    async def get_user_operation_by_hash(op_hash: Any) -> dict | None:
        return encode_found_op(await services.lookup.by_hash(decode_op_hash(op_hash)))

    @r.add(name="eth_getUserOperationReceipt")
    async def get_user_operation_receipt(op_hash: Any) -> dict | None:
        return encode_receipt(await services.lookup.receipt(decode_op_hash(op_hash)))

    return r
