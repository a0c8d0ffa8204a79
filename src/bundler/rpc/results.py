"""The wire form of results: the services return dataclasses and ints; the RPC edge writes
them as the camelCase, hex-quantity JSON objects of ERC-7769 here."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_utils import to_checksum_address

from ..chain.fees import GasPrice
from ..chain.lookup import FoundOp
from ..chain.userop_logs import OpReceipt
from ..gas.estimate import GasLimits
from ..pool.reputation import Entry, Status
from ..pool.staking import DepositInfo
from session_sdk.types import Condition, Limit, LimitKind, Scope, SessionSpec
from ..sessions.policy import FUNCTION_NAMES, POLICY_TYPES, arg_type_text, function_name
from ..sessions.views import ActivityItem, LimitUse, SessionReport
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


def encode_gas_prices(prices: dict[str, GasPrice]) -> dict[str, dict[str, str]]:
    """pimlico_getUserOperationGasPrice's result: {slow, standard, fast: {maxFeePerGas, maxPriorityFeePerGas}}."""
    return {tier: {"maxFeePerGas": hex(p.max_fee_per_gas), "maxPriorityFeePerGas": hex(p.max_priority_fee_per_gas)}
            for tier, p in prices.items()}


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


# --- session_* answers. Quantities that can exceed 2**53 (wei, token amounts, limits) are hex
# strings as everywhere in ERC-4337 JSON-RPC; indices, timestamps and periods are plain numbers.

CONDITION_NAMES: dict[int, str] = {Condition.EQ: "eq", Condition.NEQ: "neq", Condition.GT: "gt",
                                   Condition.GTE: "gte", Condition.LT: "lt", Condition.LTE: "lte"}
KIND_NAMES: dict[int, str] = {LimitKind.NONE: "none", LimitKind.LIFETIME: "lifetime", LimitKind.ALLOWANCE: "allowance"}
SCOPE_NAMES: dict[int, str] = {Scope.CALL_VALUE: "callValue", Scope.CALL_ARG: "callArgument",
                               Scope.TRANSFER_VALUE: "transferValue", Scope.GAS: "gasCost"}


def _limit(lim: Limit) -> dict[str, Any]:
    return {"kind": KIND_NAMES.get(lim.kind, int(lim.kind)), "amount": hex(lim.amount)}


def encode_session_spec(spec: SessionSpec) -> dict[str, Any]:
    """A SessionSpec (session_getSession, the relay's grants)."""
    return {
        "signer": spec.signer,
        "validAfter": spec.valid_after,
        "validUntil": spec.valid_until,
        "period": spec.period,
        "wildcard": spec.wildcard,
        "usageLimit": spec.usage_limit,
        "callPolicies": [
            {
                "target": p.target,
                "selector": "0x" + p.selector.hex(),
                **({"function": FUNCTION_NAMES[p.selector][0]} if p.selector in FUNCTION_NAMES else {}),
                "maxValuePerUse": hex(p.max_value_per_use),
                "valueLimit": _limit(p.value_limit),
                "constraints": [
                    {"condition": CONDITION_NAMES.get(c.condition, int(c.condition)), "index": c.index,
                     "type": arg_type_text(c.arg_type, c.arg_size),
                     "refValue": "0x" + c.ref_value.hex(), "limit": _limit(c.limit)}
                    for c in p.constraints
                ],
            }
            for p in spec.call_policies
        ],
        "transferPolicies": [
            {"target": t.target, "maxValuePerUse": hex(t.max_value_per_use), "valueLimit": _limit(t.value_limit)}
            for t in spec.transfer_policies
        ],
        "gas": {"maxCostPerOp": hex(spec.gas.max_cost_per_op), "costLimit": _limit(spec.gas.cost_limit),
                "paymasters": list(spec.gas.paymasters)},
    }


def encode_limit_use(use: LimitUse) -> dict[str, Any]:
    scope, policy_index, constraint_index = use.key
    item: dict[str, Any] = {
        "scope": SCOPE_NAMES[scope],
        "policyType": POLICY_TYPES.get(scope, "call"),
        "policyIndex": policy_index,
        **({"constraintIndex": constraint_index} if scope == Scope.CALL_ARG else {}),
        "description": use.description,
        "kind": KIND_NAMES[use.kind],
        "limit": hex(use.limit),
        "used": hex(use.used),
        "pending": hex(use.pending),
        "remaining": hex(use.remaining),
    }
    if use.period is not None:
        item["periodIndex"], item["periodStart"], item["periodEnd"] = use.period
    return item


def encode_session_report(r: SessionReport) -> dict[str, Any]:
    """session_getSession's result."""
    out: dict[str, Any] = {
        "account": to_checksum_address(r.account), "sessionKey": to_checksum_address(r.session_key),
        "entryPoint": to_checksum_address(r.entry_point) if r.entry_point else None, "accountType": r.account_type,
        "blockNumber": hex(r.block_number), "now": r.now,
        "status": r.status, "grantNonce": r.grant_nonce,
        "spec": encode_session_spec(r.spec) if r.spec else None,
        "uses": {"limit": (r.spec.usage_limit or None) if r.spec else None, "used": r.uses_used,
                 "pending": r.uses_pending, "remaining": r.uses_remaining},
    }
    if r.current_period is not None:
        out["currentPeriod"] = r.current_period
    limits = [encode_limit_use(use) for use in r.limits]
    out["limits"] = limits
    if r.spec is not None:
        # the gas budget: the per-op cap, the paymasters, and the cumulative budget (None: unlimited)
        out["gas"] = {"maxCostPerOp": hex(r.spec.gas.max_cost_per_op), "paymasters": list(r.spec.gas.paymasters),
                      "budget": next((item for item in limits if item["scope"] == "gasCost"), None)}
    out["pendingOps"] = r.pending_ops
    return out


def encode_activity_item(item: ActivityItem) -> dict[str, Any]:
    """One entry of session_getActivity's result."""
    a, record = item.activity, item.record
    entry: dict[str, Any] = {
        "userOpHash": a.op_hash,
        "entryPoint": to_checksum_address(a.entry_point),
        "nonce": hex(a.nonce),
        "mode": a.mode,
        "periodIndex": a.period_index,
        "receivedAt": int(a.received_at),
        "status": record.status.value if record is not None else "unknown",
        "calls": [{"target": c["target"], "value": hex(c["value"]), "data": c["data"],
                   **({"function": function_name(bytes.fromhex(c["data"][2:10]))} if len(c["data"]) >= 10 else {})}
                  for c in a.calls],
        "consumed": [{"scope": SCOPE_NAMES.get(c["scope"], c["scope"]), "policyIndex": c["policyIndex"],
                      **({"constraintIndex": c["constraintIndex"]} if c["scope"] == Scope.CALL_ARG else {}),
                      "amount": hex(c["amount"])} for c in a.consumed],
        "transactionHash": record.tx_hash if record is not None else None,
        "blockNumber": hex(record.block_number) if record is not None and record.block_number is not None else None,
    }
    if record is not None and record.reason:
        entry["reason"] = record.reason
        if record.error_code is not None:
            entry["errorCode"] = record.error_code
    return entry
