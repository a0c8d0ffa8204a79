"""What the session_* RPC answers say, as values (pure: state in, dataclasses out). The wire form
(camelCase names, hex quantities) is written at the RPC edge, rpc/results.py."""
from __future__ import annotations

from dataclasses import dataclass

from session_sdk.types import LimitKind, SessionSpec, Status
from ..store.records import OpRecord, SessionActivity
from .policy import LimitKey, SessionState, current_period, limit_keys, limit_of, limit_text


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One cumulative limit: limit, used on chain, pending in the mempool, remaining; for an
    allowance, in the period covering `now` (period = (index, first second, last second))."""

    key: LimitKey  # (scope, policy index, constraint index)
    description: str
    kind: LimitKind
    limit: int
    used: int
    pending: int
    remaining: int
    period: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class SessionReport:
    """session_getSession's answer: the account, the session's spec and status, its uses and
    every cumulative limit at the block read."""

    account: str
    session_key: str
    entry_point: str | None  # None for a counterfactual account without an EntryPoint given
    account_type: str  # counterfactual | clone | eip7702
    block_number: int
    now: int
    status: str
    grant_nonce: int
    spec: SessionSpec | None
    uses_used: int
    uses_pending: int
    uses_remaining: int | None  # None when the session has no usage limit
    current_period: int | None  # only for a session with periods
    limits: list[LimitUse]
    pending_ops: list[str]


@dataclass(frozen=True, slots=True)
class ActivityItem:
    """One op of session_getActivity: what the session key sent, and the op's record now
    (None when the op index no longer has it)."""

    activity: SessionActivity
    record: OpRecord | None


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


def limit_uses(state: SessionState, now: int, pending: dict[LimitKey, dict[int, int]]) -> list[LimitUse]:
    """Every cumulative limit of the session (see LimitUse)."""
    spec = state.spec
    if spec is None:
        return []
    period = current_period(spec, now)
    out = []
    for key in limit_keys(spec):
        lim = limit_of(spec, key)
        counter = state.counters.get(key)
        per_period = pending.get(key, {})
        window = None
        if lim.kind == LimitKind.ALLOWANCE:
            used = counter.used if counter and counter.period_index == period else 0
            if counter and counter.period_index > period:  # a later period already started on chain
                used = lim.amount
            pend = per_period.get(period, 0)
            start = spec.valid_after + period * spec.period
            end = start + spec.period - 1
            if spec.valid_until:
                end = min(end, spec.valid_until)
            window = (period, start, end)
        else:
            used = counter.used if counter else 0
            pend = sum(per_period.values())
        out.append(LimitUse(key=key, description=limit_text(spec, key), kind=lim.kind, limit=lim.amount, used=used,
                            pending=pend, remaining=max(lim.amount - used - pend, 0), period=window))
    return out
