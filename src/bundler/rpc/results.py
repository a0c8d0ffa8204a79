"""The wire form of results: the services return dataclasses and ints; the RPC edge writes
them as the camelCase, hex-quantity JSON objects of ERC-7769 here."""
from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from ..chain.lookup import FoundOp
from ..gas.estimate import GasLimits
from ..userop.codec import format_user_operation


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


def encode_found_op(found: FoundOp | None) -> dict[str, Any] | None:
    """eth_getUserOperationByHash's result (null when the op is unknown)."""
    if found is None:
        return None
    return {
        "userOperation": format_user_operation(found.op),
        "entryPoint": to_checksum_address(found.entry_point),
        "transactionHash": found.transaction_hash,
        "blockHash": found.block_hash,
        "blockNumber": found.block_number,
    }
