"""The wire form of results: the services return dataclasses and ints; the RPC edge writes
them as the camelCase, hex-quantity JSON objects of ERC-7769 here."""
from __future__ import annotations

from ..gas.estimate import GasLimits


def encode_gas_limits(limits: GasLimits) -> dict[str, str]:
    """eth_estimateUserOperationGas's result (the paymaster limits only for a sponsored op)."""
    out = {
        "preVerificationGas": hex(limits.pre_verification_gas),
        "verificationGasLimit": hex(limits.verification_gas_limit),
        "callGasLimit": hex(limits.call_gas_limit),
    }
    if limits.paymaster_verification_gas_limit is not None:
        out["paymasterVerificationGasLimit"] = hex(limits.paymaster_verification_gas_limit)
    if limits.paymaster_post_op_gas_limit is not None:
        out["paymasterPostOpGasLimit"] = hex(limits.paymaster_post_op_gas_limit)
    return out
