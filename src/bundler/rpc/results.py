"""The wire form of results: the services return dataclasses and ints; the RPC edge writes
them as the camelCase, hex-quantity JSON objects of ERC-7769 here."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_utils import to_checksum_address

from ..chain.lookup import FoundOp
from ..chain.userop_logs import OpReceipt
from ..gas.estimate import GasLimits
from ..pool.reputation import Entry, Status
from ..pool.staking import DepositInfo
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


def encode_receipt(receipt: OpReceipt | None) -> dict[str, Any] | None:
    """eth_getUserOperationReceipt's result (null while the op is not mined)."""
    if receipt is None:
        return None
    return {
        "userOpHash": receipt.op_hash,
        "entryPoint": to_checksum_address(receipt.entry_point),
        "sender": to_checksum_address(receipt.sender),
        "nonce": hex(receipt.nonce),
        "paymaster": to_checksum_address(receipt.paymaster),
        "actualGasCost": hex(receipt.actual_gas_cost),
        "actualGasUsed": hex(receipt.actual_gas_used),
        "success": receipt.success,
        "reason": "0x" + receipt.reason.hex(),
        "logs": receipt.logs,
        "receipt": receipt.receipt,
    }


# the bundler spec's numbers (docs/reputation.md lists the names)
REPUTATION_STATUS_CODES = {"ok": 0, "throttled": 1, "banned": 2}


def encode_reputation(rows: Iterable[tuple[str, Entry, Status]]) -> list[dict[str, str]]:
    """debug_bundler_dumpReputation's result from ReputationBook.dump rows (address, entry, status):
    exactly the spec's schema, since tools build typed records and break on extra keys."""
    return [
        {"address": to_checksum_address(address), "opsSeen": hex(entry.ops_seen),
         "opsIncluded": hex(entry.ops_included), "status": hex(REPUTATION_STATUS_CODES[status.value])}
        for address, entry, status in rows
    ]


def encode_stake_status(address: str, info: DepositInfo, staked: bool) -> dict[str, Any]:
    """debug_bundler_getStakeStatus's result. Stake values are decimal strings, as the ERC-4337
    compliance suite expects ("0", "1000000000000000000")."""
    return {
        "stakeInfo": {"addr": to_checksum_address(address), "stake": str(info.stake),
                      "unstakeDelaySec": str(info.unstake_delay_sec)},
        "isStaked": staked,
    }
