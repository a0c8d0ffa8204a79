"""Errors the bundler answers with, and the typed session refusal inside them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AMOUNT_FIELDS = ("limit", "used", "pending", "inOp", "requested", "remaining", "value", "max")


class RpcError(Exception):
    """A JSON-RPC error answer: code, message and data as sent."""

    def __init__(self, method: str, error: dict):
        self.method = method
        self.code = error.get("code")
        self.message = error.get("message") or ""
        self.data = error.get("data")
        super().__init__(f"{method}: {self.code} {self.message}")

    @property
    def refusal(self) -> "SessionRefusal | None":
        return SessionRefusal.from_error(self)


@dataclass(frozen=True)
class SessionRefusal:
    """Which session rule an op broke, with the numbers (amounts as ints)."""

    code: int
    message: str
    rule: str
    limit: int | None = None
    used: int | None = None
    pending: int | None = None
    in_op: int | None = None
    requested: int | None = None
    remaining: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_error(cls, error: RpcError) -> "SessionRefusal | None":
        data = error.data
        if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
            return None
        amounts = {k: int(v, 16) for k, v in data.items() if k in AMOUNT_FIELDS and isinstance(v, str)}
        return cls(code=error.code, message=error.message, rule=data["rule"], limit=amounts.get("limit"),
                   used=amounts.get("used"), pending=amounts.get("pending"), in_op=amounts.get("inOp"),
                   requested=amounts.get("requested"), remaining=amounts.get("remaining"), data=data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]
