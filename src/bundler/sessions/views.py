"""JSON shapes of the session_* RPC answers (pure: state in, dicts out).

Quantities that can exceed 2**53 (wei, token amounts, limits) are 0x-hex strings as everywhere
in ERC-4337 JSON-RPC; indices, timestamps and periods are plain numbers.
"""
from __future__ import annotations

from typing import Any

from session_sdk.types import ZERO_ADDRESS, Condition, LimitKind, Scope, SessionSpec, Status
from .policy import (
    POLICY_TYPES,
    FUNCTION_NAMES, LimitKey, SessionState, arg_type_text, current_period, limit_keys, limit_of, limit_text,
)

CONDITION_NAMES: dict[int, str] = {Condition.EQ: "eq", Condition.NEQ: "neq", Condition.GT: "gt", Condition.GTE: "gte",
                   Condition.LT: "lt", Condition.LTE: "lte"}
KIND_NAMES = {LimitKind.NONE: "none", LimitKind.LIFETIME: "lifetime", LimitKind.ALLOWANCE: "allowance"}
SCOPE_NAMES: dict[int, str] = {Scope.CALL_VALUE: "callValue", Scope.CALL_ARG: "callArgument", Scope.TRANSFER_VALUE: "transferValue",
               Scope.GAS: "gasCost"}


def _limit(lim) -> dict[str, Any]:
    return {"kind": KIND_NAMES.get(lim.kind, int(lim.kind)), "amount": hex(lim.amount)}


def spec_to_json(spec: SessionSpec) -> dict[str, Any]:
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


def gas_report(state: SessionState, now: int, pending: dict[LimitKey, dict[int, int]]) -> dict[str, Any] | None:
    """The gas budget: the per-op cap, the paymasters, and the cumulative budget (limit, used on
    chain, pending in the mempool, remaining; None when the budget is unlimited)."""
    spec = state.spec
    if spec is None:
        return None
    budget = next((item for item in limits_report(state, now, pending) if item["scope"] == "gasCost"), None)
    return {"maxCostPerOp": hex(spec.gas.max_cost_per_op), "paymasters": list(spec.gas.paymasters),
            "budget": budget}


def status_of(state: SessionState, now: int) -> str:
    """active | notYetValid | expired | revoked | unknown"""
    if state.status == Status.NONE or state.spec is None:
        return "unknown"
    if state.status == Status.REVOKED:
        return "revoked"
    spec = state.spec
    if now < spec.valid_after:
        return "notYetValid"
    if spec.valid_until and now > spec.valid_until:
        return "expired"
    return "active"


def limits_report(state: SessionState, now: int, pending: dict[LimitKey, dict[int, int]]) -> list[dict[str, Any]]:
    """Every cumulative limit: limit, used on chain, pending in the mempool, remaining; for an
    allowance, in the period covering `now`."""
    spec = state.spec
    if spec is None:
        return []
    period = current_period(spec, now)
    out = []
    for key in limit_keys(spec):
        lim = limit_of(spec, key)
        counter = state.counters.get(key)
        per_period = pending.get(key, {})
        if lim.kind == LimitKind.ALLOWANCE:
            used = counter.used if counter and counter.period_index == period else 0
            if counter and counter.period_index > period:  # a later period already started on chain
                used = lim.amount
            pend = per_period.get(period, 0)
        else:
            used = counter.used if counter else 0
            pend = sum(per_period.values())
        scope, pi, ci = key
        item = {
            "scope": SCOPE_NAMES[scope],
            "policyType": POLICY_TYPES.get(scope, "call"),
            "policyIndex": pi,
            **({"constraintIndex": ci} if scope == Scope.CALL_ARG else {}),
            "description": limit_text(spec, key),
            "kind": KIND_NAMES[lim.kind],
            "limit": hex(lim.amount),
            "used": hex(used),
            "pending": hex(pend),
            "remaining": hex(max(lim.amount - used - pend, 0)),
        }
        if lim.kind == LimitKind.ALLOWANCE:
            start = spec.valid_after + period * spec.period
            end = start + spec.period - 1
            if spec.valid_until:
                end = min(end, spec.valid_until)
            item.update(periodIndex=period, periodStart=start, periodEnd=end)
        out.append(item)
    return out


def target_text(address: str) -> str:
    return "any" if address == ZERO_ADDRESS else address
