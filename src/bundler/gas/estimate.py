"""eth_estimateUserOperationGas: limits measured in simulation, with margins, plus
preVerificationGas from the op's calldata (EIP-7623 floor included)."""
from __future__ import annotations

from typing import Any

from ..chain.head import HeadTracker
from ..entrypoint import EntryPointVersion
from ..pool.admission import MIN_CALL_GAS_LIMIT
from ..userop.model import UserOperation
from .pvg import estimate_pre_verification_gas



class Estimator:
    def __init__(self, *, head: HeadTracker, simulator, config, chain_id: int, sessions=None):
        self.head = head
        self.sessions = sessions  # session ops: policy errors, and a verification gas floor
        self.simulator = simulator
        self.config = config
        self.chain_id = chain_id

    async def estimate(self, op: UserOperation, ep: EntryPointVersion, state_override: Any = None) -> dict[str, str]:
        header = await self.head.fresh()
        floor = await self.sessions.check_estimate(op, ep, header, state_override) if self.sessions else 0
        measured = await self.simulator.estimate_gas(op, ep, header, overrides=state_override)
        result = {
            "preVerificationGas": hex(estimate_pre_verification_gas(op)),
            "verificationGasLimit": hex(max(measured.verification_gas_limit, floor)),
            # never below what admission requires of an op with callData (a cheap call, e.g.
            # one without value to an empty account, measures less)
            "callGasLimit": hex(max(measured.call_gas_limit, MIN_CALL_GAS_LIMIT if op.call_data else 0)),
        }
        if op.paymaster is not None:
            result["paymasterVerificationGasLimit"] = hex(measured.paymaster_verification_gas_limit)
            result["paymasterPostOpGasLimit"] = hex(measured.paymaster_post_op_gas_limit)
        return result
