"""Sponsorship policies: which ops the paymaster pays for, and how much per period.

A client names a policy in the ERC-7677 context ({"policyId": "..."}); without one the
bundler's default policy applies, if it has one. Policies come from a TOML file
(--paymaster-policies-file), one table per policy id:

    [policies.my-app]
    senders = ["0x..."]          # only these accounts (empty or missing: any)
    factories = ["0x..."]        # an op deploying its account must use one of these ([]: no deployment)
    targets = ["0x..."]          # every call of the op (execute / executeBatch) goes to one of these
    session_keys = ["0x..."]     # SessionAccount ops signed by one of these session keys (mode 0x01)
    entry_points = ["0.7", "0.8", "0.9"]   # missing: every version the bundler serves
    max_cost_per_op = "0.01 ether"   # also signed, so the paymaster enforces it on chain
    global_budget = "1 ether"        # all sponsored ops of this policy, per period
    account_budget = "0.05 ether"    # each sender, per period
    period = "day"               # hour | day | week | 30d | a number of seconds
    valid_from = 0               # unix seconds; the policy sponsors nothing outside its window
    valid_until = 0              # 0: open-ended

Amounts are wei (an integer, or a string with a unit: wei, gwei, ether). Budgets count an op's
maximum cost when it is sponsored and its actual cost once it is mined; a dropped or unused
sponsorship counts nothing.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from session_sdk.signatures import MODE_SESSION
from session_sdk.calldata import decode_calls

from ..entrypoint import VERSIONS as EP_VERSIONS
from ..userop.model import UserOperation

PERIODS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400, "30d": 30 * 86_400}
UNITS = {"wei": 1, "gwei": 10**9, "ether": 10**18, "eth": 10**18}
_AMOUNT = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.I)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
VERSIONS = EP_VERSIONS


class PolicyError(ValueError):
    """A policy definition that cannot be used; the message names the policy and the key."""


@dataclass(frozen=True)
class Policy:
    id: str
    senders: frozenset[str] = frozenset()
    factories: frozenset[str] | None = None  # None: any factory
    targets: frozenset[str] = frozenset()
    session_keys: frozenset[str] = frozenset()
    entry_points: tuple[str, ...] = VERSIONS
    max_cost_per_op: int = 0
    global_budget: int = 0
    account_budget: int = 0
    period_s: int = 86_400
    valid_from: int = 0
    valid_until: int = 0

    def period_start(self, now: int) -> int:
        return now - now % self.period_s

    def period_end(self, now: int) -> int:
        return self.period_start(now) + self.period_s


@dataclass(frozen=True)
class Refusal:
    """Why a policy does not sponsor an op: the rule, and the figures that say what is left."""

    policy_id: str
    rule: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"policyId": self.policy_id, "rule": self.rule, **self.details}


def parse_amount(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected an amount of wei")
    if isinstance(value, int):
        if value < 0:
            raise PolicyError(f"{where}: must not be negative")
        return value
    m = _AMOUNT.match(value) if isinstance(value, str) else None
    if not m or m.group(2).lower() not in UNITS | {"": 1}:
        raise PolicyError(f"{where}: expected wei as an integer or a string like '0.1 ether' or '20 gwei'")
    try:
        wei = Decimal(m.group(1).replace("_", "")) * UNITS.get(m.group(2).lower(), 1)
    except InvalidOperation:
        raise PolicyError(f"{where}: not a number") from None
    if wei != wei.to_integral_value():
        raise PolicyError(f"{where}: is not a whole number of wei")
    return int(wei)


def _addresses(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) and _ADDRESS.match(a) for a in value):
        raise PolicyError(f"{where}: expected a list of 0x-prefixed 20-byte addresses")
    return frozenset(a.lower() for a in value)


def _period(value: Any, where: str) -> int:
    if isinstance(value, str) and value in PERIODS:
        return PERIODS[value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise PolicyError(f"{where}: expected one of {', '.join(PERIODS)} or a number of seconds")


_KEYS = {"senders", "factories", "targets", "session_keys", "entry_points", "max_cost_per_op", "global_budget",
         "account_budget", "period", "valid_from", "valid_until"}


def parse_policy(policy_id: str, table: Any, source: str = "policy") -> Policy:
    where = f"{source}: policy {policy_id!r}"
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: expected a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {"id": policy_id}
    for key in ("senders", "targets", "session_keys"):
        if key in table:
            kw[key] = _addresses(table[key], f"{where} {key}")
    if "factories" in table:
        kw["factories"] = _addresses(table["factories"], f"{where} factories")
    if "entry_points" in table:
        eps = table["entry_points"]
        if not isinstance(eps, list) or not eps or any(v not in VERSIONS for v in eps):
            raise PolicyError(f"{where} entry_points: expected a list of " + " / ".join(f'"{v}"' for v in VERSIONS))
        kw["entry_points"] = tuple(eps)
    for key in ("max_cost_per_op", "global_budget", "account_budget"):
        if key in table:
            kw[key] = parse_amount(table[key], f"{where} {key}")
    if "period" in table:
        kw["period_s"] = _period(table["period"], f"{where} period")
    for key in ("valid_from", "valid_until"):
        if key in table:
            v = table[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise PolicyError(f"{where} {key}: expected unix seconds")
            kw[key] = v
    return Policy(**kw)


def load_policies(path: str) -> dict[str, Policy]:
    """Every [policies.<id>] table of a TOML file."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as e:
        raise PolicyError(f"cannot read the paymaster policies file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"paymaster policies file {path} is not valid TOML: {e}") from None
    tables = doc.get("policies")
    if not isinstance(tables, dict) or set(doc) - {"policies"}:
        raise PolicyError(f"{path}: expected only [policies.<id>] tables")
    return {pid: parse_policy(pid, table, path) for pid, table in tables.items()}


SPONSOR_EVERYTHING = "sponsor-everything"


def session_key_of(op: UserOperation) -> str | None:
    """The session key a SessionAccount op claims (signature mode 0x01), if it is one."""
    sig = op.signature
    if len(sig) >= 21 and sig[0] == MODE_SESSION:
        return "0x" + sig[1:21].hex()
    return None


def check_op(policy: Policy, op: UserOperation, entry_point_version: str, now: int,
             session_key: str | None) -> Refusal | None:
    """The rules that depend only on the op (budgets are the store's, checked after)."""
    pid = policy.id

    def refuse(rule: str, message: str, **details) -> Refusal:
        return Refusal(pid, rule, f"policy {pid!r} does not sponsor this UserOperation: {message}", details)

    if entry_point_version not in policy.entry_points:
        return refuse("entryPoint", f"EntryPoint v{entry_point_version} is not one of its EntryPoints "
                                    f"({', '.join(policy.entry_points)})", allowed=list(policy.entry_points))
    if policy.valid_from and now < policy.valid_from:
        return refuse("validity", f"the policy is valid from {policy.valid_from} (now {now})",
                      validFrom=policy.valid_from, now=now)
    if policy.valid_until and now >= policy.valid_until:
        return refuse("validity", f"the policy expired at {policy.valid_until} (now {now})",
                      validUntil=policy.valid_until, now=now)
    if policy.senders and op.sender not in policy.senders:
        return refuse("senders", f"sender {op.sender} is not one of its senders", sender=op.sender)
    if op.deploys_account and policy.factories is not None and op.factory not in policy.factories:
        return refuse("factories", f"factory {op.factory} is not one of its factories", factory=op.factory)
    if policy.targets:
        try:
            calls = decode_calls(op.call_data)
        except ValueError as e:
            return refuse("targets", f"its callData cannot be checked against the call targets ({e})")
        outside = sorted({c.target for c in calls} - policy.targets)
        if outside:
            return refuse("targets", f"it calls {', '.join(outside)}, not among its call targets", targets=outside)
    if policy.session_keys:
        if session_key is None:
            return refuse("sessionKeys", "it sponsors session-key ops only (SessionAccount signature mode 0x01 "
                                         "with one of its session keys, or context.sessionKey)")
        if session_key not in policy.session_keys:
            return refuse("sessionKeys", f"session key {session_key} is not one of its session keys",
                          sessionKey=session_key)
    if policy.max_cost_per_op and op.max_cost() > policy.max_cost_per_op:
        return refuse("maxCostPerOp", f"the op may cost up to {op.max_cost()} wei, above its limit of "
                                      f"{policy.max_cost_per_op} wei per op",
                      limit=str(policy.max_cost_per_op), requested=str(op.max_cost()))
    return None
