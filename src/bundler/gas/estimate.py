"""eth_estimateUserOperationGas: limits measured in simulation, with margins, plus
preVerificationGas from the op's calldata (EIP-7623 floor included)."""
from __future__ import annotations

from typing import Any

from ..chain.head import HeadTracker
from ..entrypoint import EntryPointVersion
from ..errors import ExecutionReverted
from ..userop.model import UserOperation
from .pvg import estimate_pre_verification_gas

VERIFICATION_MARGIN_PERCENT = 30
CALL_MARGIN_PERCENT = 20
MIN_CALL_GAS = 21_000
POST_OP_DEFAULT = 0


def with_margin(gas: int, percent: int, floor: int = 0) -> int:
    return max(gas * (100 + percent) // 100, floor)


class Estimator:
    def __init__(self, *, head: HeadTracker, simulator, config, chain_id: int):
        self.head = head
        self.simulator = simulator
        self.config = config
        self.chain_id = chain_id

    async def estimate(self, op: UserOperation, ep: EntryPointVersion, state_override: Any = None) -> dict[str, str]:
        header = await self.head.fresh()
        # fees do not change the gas used; zero fees keep the account's prefund at 0 so an
        # account without deposit can still be estimated
        probe = op.with_changes(max_fee_per_gas=0, max_priority_fee_per_gas=0)
        measured = await self.simulator.measure_gas(probe, ep, header, state_override=state_override)
        if not measured.execution_success:
            raise ExecutionReverted(
                f"execution reverted during estimation: {measured.execution_revert_reason}",
                {"revertData": "0x" + (measured.execution_revert_data or b"").hex()},
            )
        verification = with_margin(measured.verification_gas, VERIFICATION_MARGIN_PERCENT, 50_000)
        call = with_margin(measured.call_gas, CALL_MARGIN_PERCENT, MIN_CALL_GAS)
        result = {
            "preVerificationGas": hex(estimate_pre_verification_gas(op)),
            "verificationGasLimit": hex(verification),
            "callGasLimit": hex(call),
        }
        if op.paymaster is not None:
            result["paymasterVerificationGasLimit"] = hex(
                with_margin(measured.paymaster_verification_gas, VERIFICATION_MARGIN_PERCENT, 20_000)
            )
            result["paymasterPostOpGasLimit"] = hex(
                with_margin(measured.paymaster_post_op_gas, CALL_MARGIN_PERCENT, POST_OP_DEFAULT)
            )
        return result
