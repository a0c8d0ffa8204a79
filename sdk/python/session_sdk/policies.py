"""Builders for every policy SessionAccount enforces, the same as the TypeScript SDK's: call and
transfer policies, ERC-20 amounts, typed argument rules named by the function's argument names,
per-use values, lifetime limits and refilling allowances, the window, the usage count, the
wildcard and the gas budget. They only build types.SessionSpec values.

    spec = session_spec(signer, valid_until=now + 3600, period=86400, policies=[
        erc20_transfer_policy(token, to=dex, limit=allowance(100 * 10**18)),
        call_policy(vault, "deposit(uint256 amount)", args={"amount": lte(10**18)}),
    ])
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from eth_utils import function_signature_to_4byte_selector

from .types import (
    NO_LIMIT, ZERO_ADDRESS, ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, LimitKind, SessionSpec,
    TransferPolicy, word,
)
from .rules import check_spec

UINT256_MAX = (1 << 256) - 1
# the TypeScript SDK's DEFAULT_GAS_POLICY: one op may cost at most 0.1 ETH, 1 ETH over the
# session's life, no paymaster (the contract's zero GasPolicy lets a session pay for no gas)
DEFAULT_GAS_POLICY = GasPolicy(max_cost_per_op=10**17, cost_limit=Limit.lifetime(10**18))


def lifetime(amount: int) -> Limit:
    return Limit.lifetime(amount)


def allowance(amount: int) -> Limit:
    """`amount` per period of SessionSpec.period seconds, refilled every period."""
    return Limit.allowance(amount)


@dataclass(frozen=True)
class ArgRule:
    condition: int
    value: int | str | bytes
    limit: Limit = NO_LIMIT


def eq(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.EQ, value, limit)


def neq(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.NEQ, value, limit)


def gt(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.GT, value, limit)


def gte(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.GTE, value, limit)


def lt(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.LT, value, limit)


def lte(value, limit: Limit = NO_LIMIT) -> ArgRule:
    return ArgRule(Condition.LTE, value, limit)


def any_value(limit: Limit) -> ArgRule:
    """No condition, only a cumulative limit on the argument (e.g. an amount)."""
    return ArgRule(Condition.LTE, UINT256_MAX, limit)


_ONE_WORD = re.compile(r"^(address|bool|u?int\d*|bytes([1-9]|[12]\d|3[0-2]))$")
_DYNAMIC = re.compile(r"^(bytes|string)$|\[\d*\]$")


def parse_signature(signature: str) -> tuple[bytes, list[tuple[str, str]]]:
    """(selector, [(type, name)]) of "transfer(address to,uint256 amount)" (names optional)."""
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", signature)
    if not m:
        raise ValueError(f"not a function signature: {signature!r}")
    params = []
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        pieces = part.split()
        params.append((pieces[0], pieces[-1] if len(pieces) > 1 else ""))
    canonical = f"{m.group(1)}({','.join(t for t, _ in params)})"
    return function_signature_to_4byte_selector(canonical), params


def _arg_slot(params: list[tuple[str, str]], key: str | int, where: str) -> tuple[int, str]:
    for i, (type_, name) in enumerate(params):
        if key == i or key == name:
            if not _ONE_WORD.match(type_):
                raise ValueError(f"{where}: argument {key} is {type_}: only elementary static arguments can be constrained")
            return i, type_  # every earlier argument takes one head word (static or an offset)
        if not _ONE_WORD.match(type_) and not _DYNAMIC.search(type_):
            raise ValueError(f"{where}: argument {name or i} ({type_}) spans several words; give word indices")
    raise ValueError(f"{where} has no argument {key!r}")


def call_policy(target: str | None = None, function: str | bytes | None = None, *, max_value_per_use: int = 0,
                value_limit: Limit = NO_LIMIT, args: dict[str | int, ArgRule | Sequence[ArgRule]] | None = None) -> CallPolicy:
    """Calls to `target` (None = any) of `function`: a signature with argument names (then `args`
    names them and the rules are typed), a 4-byte selector, or None (any function)."""
    params: list[tuple[str, str]] | None = None
    if function is None:
        selector = b"\x00" * 4
    elif isinstance(function, bytes):
        selector = function
    else:
        selector, params = parse_signature(function)
    constraints = []
    for key, rules in (args or {}).items():
        for rule in ([rules] if isinstance(rules, ArgRule) else rules):
            if params is not None:
                index, type_ = _arg_slot(params, key, str(function))
                constraints.append(ArgConstraint.typed(rule.condition, index, type_, rule.value, rule.limit))
            elif isinstance(key, int):
                constraints.append(ArgConstraint(rule.condition, key, word(rule.value), rule.limit))
            else:
                raise ValueError(f"argument {key!r}: give the function's signature with argument names")
    return CallPolicy(target=(target or ZERO_ADDRESS).lower(), selector=selector, max_value_per_use=max_value_per_use,
                      value_limit=value_limit, constraints=tuple(constraints))


def transfer_policy(target: str | None = None, *, max_value_per_use: int, value_limit: Limit = NO_LIMIT) -> TransferPolicy:
    """Plain ETH transfers (empty calldata) to `target` (None = any recipient)."""
    return TransferPolicy((target or ZERO_ADDRESS).lower(), max_value_per_use, value_limit)


def erc20_transfer_policy(token: str, *, to: str | None = None, max_per_transfer: int | None = None,
                          limit: Limit | None = None) -> CallPolicy:
    """ERC-20 transfer(to, amount) on `token`: optionally to one recipient, at most
    `max_per_transfer` per call, and a cumulative `limit` on the amount."""
    args: dict[str | int, ArgRule] = {}
    if to:
        args["to"] = eq(to.lower())
    if max_per_transfer is not None:
        args["amount"] = lte(max_per_transfer, limit or NO_LIMIT)
    elif limit is not None:
        args["amount"] = any_value(limit)
    return call_policy(token, "transfer(address to,uint256 amount)", args=args)


def session_spec(signer: str, *, valid_after: int = 0, valid_until: int = 0, period: int = 0, usage_limit: int = 0,
                 wildcard: bool = False, policies: Sequence[CallPolicy | TransferPolicy] = (),
                 gas: GasPolicy = DEFAULT_GAS_POLICY) -> SessionSpec:
    """A SessionSpec, checked the way the account checks it at grant time (ValueError otherwise)."""
    spec = SessionSpec(
        signer=signer.lower(), valid_after=valid_after, valid_until=valid_until, period=period, wildcard=wildcard,
        usage_limit=usage_limit, call_policies=tuple(p for p in policies if isinstance(p, CallPolicy)),
        transfer_policies=tuple(p for p in policies if isinstance(p, TransferPolicy)), gas=gas,
    )
    reason = check_spec(spec)
    if reason is not None:
        raise ValueError(f"InvalidSessionSpec: {reason}")
    return spec


__all__ = ["DEFAULT_GAS_POLICY", "ArgRule", "LimitKind", "allowance", "any_value", "call_policy", "eq",
           "erc20_transfer_policy", "gt", "gte", "lifetime", "lt", "lte", "neq", "parse_signature", "session_spec",
           "transfer_policy"]
