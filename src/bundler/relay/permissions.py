"""What a backend may do, as JSON, to the account's SessionSpec (through bundler.sessions, the one
implementation of the encoding).

    {"validAfter": 1795280000, "validUntil": 1795290800,   # or "expiresIn": 10800 (seconds from now)
     "usageLimit": 10, "period": 86400,
     "anyTarget": {"maxValuePerUse": "0x0"},               # any contract, any function
     "calls": [{"target": "0x…", "function": "mint(address,uint256)",   # or "selector": "0x40c10f19"
                "maxValuePerUse": "0x0", "valueLimit": {"kind": "lifetime", "amount": "0x…"},
                "constraints": [{"condition": "lte", "index": 1, "value": "1000", "limit": {…}}]}],
     "transfers": [{"target": "0x…", "maxValuePerUse": "0x…", "valueLimit": {…}}],
     "gasBudget": "0x…"}   # wei: the session's lifetime gas budget, also the cap per op; or
                           # {"maxCostPerOp": "0x…", "costLimit": {…}, "paymasters": ["0x…"]}

Without gasBudget a grant gets DEFAULT_GAS_POLICY (the relay's default; SessionSpec's own default
allows no gas at all).

Quantities are JSON integers, 0x-hex or decimal strings. Every error names the field.
"""
from __future__ import annotations

import re
from typing import Any

from eth_utils import function_signature_to_4byte_selector

from session_sdk.types import (
    ZERO_ADDRESS, ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, LimitKind, SessionSpec, TransferPolicy, word,
)

# One op may cost (gas limits x maxFeePerGas) at most 0.1 ETH, 1 ETH over the session's life; no
# paymaster (the same default as the TypeScript SDK's DEFAULT_GAS_POLICY).
DEFAULT_GAS_POLICY = GasPolicy(max_cost_per_op=10**17, cost_limit=Limit.lifetime(10**18))

UINT48_MAX = (1 << 48) - 1
UINT32_MAX = (1 << 32) - 1
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KNOWN = {"validAfter", "validUntil", "expiresIn", "usageLimit", "period", "anyTarget", "calls", "transfers",
          "gasBudget"}


class InvalidPermissions(ValueError):
    """Bad permissions input (HTTP 400); the message names the field."""


def _quantity(value: Any, name: str, maximum: int = (1 << 256) - 1) -> int:
    if isinstance(value, bool):
        raise InvalidPermissions(f"{name} must be a number")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]+", value):
        n = int(value, 16)
    elif isinstance(value, str) and value.isdigit():
        n = int(value)
    else:
        raise InvalidPermissions(f"{name} must be an integer, a 0x-hex or a decimal string")
    if not 0 <= n <= maximum:
        raise InvalidPermissions(f"{name} is out of range (0..{maximum})")
    return n


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise InvalidPermissions(f"{name} must be a 20-byte 0x-hex address")
    return value.lower()


def _limit(value: Any, name: str) -> Limit:
    if value is None:
        return Limit()
    if not isinstance(value, dict):
        raise InvalidPermissions(f"{name} must be an object {{kind, amount}}")
    kind = value.get("kind", "lifetime")
    kinds = {"none": LimitKind.NONE, "lifetime": LimitKind.LIFETIME, "allowance": LimitKind.ALLOWANCE}
    if kind not in kinds:
        raise InvalidPermissions(f"{name}.kind must be one of {', '.join(kinds)}")
    return Limit(kinds[kind], _quantity(value.get("amount", 0), f"{name}.amount"))


def _selector(policy: dict, name: str) -> bytes:
    if "function" in policy:
        fn = policy["function"]
        if not isinstance(fn, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\(.*\)", fn):
            raise InvalidPermissions(f"{name}.function must be a signature like transfer(address,uint256)")
        return function_signature_to_4byte_selector(fn.replace(" ", ""))
    sel = policy.get("selector")
    if sel is None:
        return b"\x00" * 4
    if not isinstance(sel, str) or not re.fullmatch(r"0x[0-9a-fA-F]{8}", sel):
        raise InvalidPermissions(f"{name}.selector must be 4 bytes of 0x-hex")
    return bytes.fromhex(sel[2:])


def _ref_word(value: Any, name: str) -> bytes:
    if isinstance(value, str) and _ADDRESS.match(value):
        return word(value)
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value[2:])
    return word(_quantity(value, name))


def _constraint(c: Any, name: str) -> ArgConstraint:
    if not isinstance(c, dict):
        raise InvalidPermissions(f"{name} must be an object")
    cond = c.get("condition")
    names = {x.name.lower(): x for x in Condition}
    if cond not in names:
        raise InvalidPermissions(f"{name}.condition must be one of {', '.join(names)}")
    return ArgConstraint(names[cond], _quantity(c.get("index"), f"{name}.index", UINT32_MAX),
                         _ref_word(c.get("value"), f"{name}.value"), _limit(c.get("limit"), f"{name}.limit"))


def _list(value: Any, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPermissions(f"{name} must be an array")
    return value


def to_spec(permissions: Any, signer: str, now: int, *, max_policies: int = 32) -> SessionSpec:
    if not isinstance(permissions, dict):
        raise InvalidPermissions("permissions must be an object")
    unknown = set(permissions) - _KNOWN
    if unknown:
        raise InvalidPermissions(f"unknown permissions field(s): {', '.join(sorted(unknown))}")
    gas = _gas_policy(permissions.get("gasBudget"))
    valid_after = _quantity(permissions.get("validAfter", now), "validAfter", UINT48_MAX)
    if "expiresIn" in permissions and "validUntil" in permissions:
        raise InvalidPermissions("give validUntil or expiresIn, not both")
    if "expiresIn" in permissions:
        valid_until = now + _quantity(permissions["expiresIn"], "expiresIn", UINT48_MAX - now)
    else:
        valid_until = _quantity(permissions.get("validUntil", 0), "validUntil", UINT48_MAX)
    if valid_until and valid_until < valid_after:
        raise InvalidPermissions("validUntil is before validAfter")
    calls: list[CallPolicy] = []
    if permissions.get("anyTarget") is not None:
        any_target = permissions["anyTarget"]
        if not isinstance(any_target, dict):
            raise InvalidPermissions("anyTarget must be an object {maxValuePerUse, valueLimit}")
        calls.append(CallPolicy(ZERO_ADDRESS, b"\x00" * 4,
                                _quantity(any_target.get("maxValuePerUse", 0), "anyTarget.maxValuePerUse"),
                                _limit(any_target.get("valueLimit"), "anyTarget.valueLimit")))
    for i, p in enumerate(_list(permissions.get("calls"), "calls")):
        name = f"calls[{i}]"
        if not isinstance(p, dict):
            raise InvalidPermissions(f"{name} must be an object")
        target = ZERO_ADDRESS if p.get("target") is None else _address(p["target"], f"{name}.target")
        calls.append(CallPolicy(target, _selector(p, name),
                                _quantity(p.get("maxValuePerUse", 0), f"{name}.maxValuePerUse"),
                                _limit(p.get("valueLimit"), f"{name}.valueLimit"),
                                tuple(_constraint(c, f"{name}.constraints[{j}]")
                                      for j, c in enumerate(_list(p.get("constraints"), f"{name}.constraints")))))
    transfers = []
    for i, t in enumerate(_list(permissions.get("transfers"), "transfers")):
        name = f"transfers[{i}]"
        if not isinstance(t, dict):
            raise InvalidPermissions(f"{name} must be an object")
        target = ZERO_ADDRESS if t.get("target") is None else _address(t["target"], f"{name}.target")
        transfers.append(TransferPolicy(target, _quantity(t.get("maxValuePerUse", 0), f"{name}.maxValuePerUse"),
                                        _limit(t.get("valueLimit"), f"{name}.valueLimit")))
    if not calls and not transfers:
        raise InvalidPermissions("permissions allow nothing: give anyTarget, calls or transfers")
    if len(calls) + len(transfers) > max_policies:
        raise InvalidPermissions(f"at most {max_policies} call and transfer policies")
    period = _quantity(permissions.get("period", 0), "period", UINT48_MAX)
    uses_allowance = any(
        lim.kind == LimitKind.ALLOWANCE
        for lim in [*(p.value_limit for p in calls), *(c.limit for p in calls for c in p.constraints),
                    *(t.value_limit for t in transfers)])
    uses_allowance = uses_allowance or gas.cost_limit.kind == LimitKind.ALLOWANCE
    if uses_allowance and not period:
        raise InvalidPermissions("allowance limits need a period (seconds)")
    return SessionSpec(signer=signer, valid_after=valid_after, valid_until=valid_until, period=period,
                       wildcard=False, usage_limit=_quantity(permissions.get("usageLimit", 0), "usageLimit", UINT32_MAX),
                       call_policies=tuple(calls), transfer_policies=tuple(transfers), gas=gas)


def _gas_policy(value: Any) -> GasPolicy:
    if value is None:
        return DEFAULT_GAS_POLICY
    if not isinstance(value, dict):
        budget = _quantity(value, "gasBudget")
        return GasPolicy(max_cost_per_op=budget, cost_limit=Limit.lifetime(budget))
    unknown = set(value) - {"maxCostPerOp", "costLimit", "paymasters"}
    if unknown:
        raise InvalidPermissions(f"unknown gasBudget field(s): {', '.join(sorted(unknown))}")
    return GasPolicy(_quantity(value.get("maxCostPerOp", 0), "gasBudget.maxCostPerOp"),
                     _limit(value.get("costLimit"), "gasBudget.costLimit"),
                     tuple(_address(a, f"gasBudget.paymasters[{i}]")
                           for i, a in enumerate(_list(value.get("paymasters"), "gasBudget.paymasters"))))
