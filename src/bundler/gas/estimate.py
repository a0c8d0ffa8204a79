"""eth_estimateUserOperationGas: limits measured in simulation, with margins, plus
preVerificationGas from the op's calldata (EIP-7623 floor included)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..chain.head import HeadTracker
from ..config import Config
from ..sim.protocol import GasEstimator
from ..chain.types import StateOverrides
from ..entrypoint import EntryPointVersion
from ..pool.admission import MIN_CALL_GAS_LIMIT
from ..userop.model import UserOperation
from .pvg import estimate_pre_verification_gas



@dataclass(frozen=True, slots=True)
class GasLimits:
    """An estimate (rpc/results.py encodes it); the paymaster limits only for a sponsored op."""

    pre_verification_gas: int
    verification_gas_limit: int
    call_gas_limit: int
    paymaster_verification_gas_limit: int | None = None
    paymaster_post_op_gas_limit: int | None = None


class Estimator:
    def __init__(self, *, head: HeadTracker, simulator: GasEstimator, config: Config, chain_id: int, sessions=None,
                 queued_nonce: Callable[[UserOperation, EntryPointVersion], StateOverrides | None] | None = None):
        self.head = head
        # the state override under which an op queued behind pending ops of its sender is
        # validated at admission (Admission.nonce_override): estimation must agree with it, so a
        # client can estimate nonce n+1 while n is still in the mempool
        self.queued_nonce = queued_nonce
        self.sessions = sessions  # session ops: policy errors, and a verification gas floor
        self.simulator = simulator
        self.config = config
        self.chain_id = chain_id

    async def estimate(self, op: UserOperation, ep: EntryPointVersion,
                       state_override: StateOverrides | None = None) -> GasLimits:
        header = await self.head.fresh()
        floor = await self.sessions.check_estimate(op, ep, header, state_override) if self.sessions else 0
        overrides = state_override
        if self.queued_nonce is not None:
            overrides = merge_state_overrides(self.queued_nonce(op, ep), state_override)
        measured = await self.simulator.estimate_gas(op, ep, header, overrides=overrides)
        sponsored = op.paymaster is not None
        return GasLimits(
            pre_verification_gas=estimate_pre_verification_gas(op),
            verification_gas_limit=max(measured.verification_gas_limit, floor),
            # never below what admission requires of an op with callData (a cheap call, e.g.
            # one without value to an empty account, measures less)
            call_gas_limit=max(measured.call_gas_limit, MIN_CALL_GAS_LIMIT if op.call_data else 0),
            paymaster_verification_gas_limit=measured.paymaster_verification_gas_limit if sponsored else None,
            paymaster_post_op_gas_limit=measured.paymaster_post_op_gas_limit if sponsored else None,
        )


def merge_state_overrides(base: StateOverrides | None, caller: StateOverrides | None) -> StateOverrides | None:
    """`base` (the bundler's own override) under the caller's eth_estimateUserOperationGas
    stateOverride: for the same address the caller's slots win, and a caller's full `state`
    replacement of an account's storage is kept as given."""
    if not base:
        return caller
    if not caller:
        return base
    merged = dict(caller)
    for address, ours in base.items():
        theirs = merged.get(address)
        if theirs is None:
            merged[address] = ours
        elif theirs.state is None:
            merged[address] = replace(theirs, state_diff={**(ours.state_diff or {}), **(theirs.state_diff or {})})
    return merged
