"""Relay errors: an HTTP status, a stable code and a message that says what to fix; policy
refusals carry the pool's numeric ERC-7769 code and its structured data unchanged."""
from __future__ import annotations

from typing import Any


class RelayError(Exception):
    status = 400
    code: str | int = "invalid_request"

    def __init__(self, message: str, data: Any = None, *, code: str | int | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return {"error": err}


class InvalidRequest(RelayError):
    pass


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class Refused(RelayError):
    """The pool refused the op (policy, time range, signature, ...): HTTP 422 with the pool's
    own code and data (rule, limit, used, pending, requested, ...)."""

    status = 422
