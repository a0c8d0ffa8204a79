"""Exceptions raised inside the bundler, each carrying its ERC-7769 JSON-RPC error code.

The RPC edge turns them into error objects; nothing else needs to know about JSON-RPC.
"""
from __future__ import annotations

from typing import Any


class BundlerError(Exception):
    code = -32603

    def __init__(self, message: str, data: Any = None):
        super().__init__(message)
        self.message = message
        self.data = data


class InvalidParams(BundlerError):
    code = -32602


class InvalidRequest(BundlerError):
    code = -32600


class ValidationRejected(BundlerError):
    """The account (or factory) rejected the op during validation, e.g. AA23/AA13."""

    code = -32500


class PaymasterRejected(BundlerError):
    code = -32501


class OpcodeViolation(BundlerError):
    """ERC-7562 opcode or storage rule broken."""

    code = -32502


class TimeRangeInvalid(BundlerError):
    code = -32503


class EntityThrottled(BundlerError):
    code = -32504


class StakeTooLow(BundlerError):
    code = -32505


class AggregatorUnsupported(BundlerError):
    code = -32506


class SignatureInvalid(BundlerError):
    code = -32507


class PaymasterDepositTooLow(BundlerError):
    code = -32508


class ExecutionReverted(BundlerError):
    """The op's execution phase reverted during gas estimation."""

    code = -32521


class NodeError(BundlerError):
    """The node failed or answered with an error we could not attribute to the caller."""

    code = -32603


class OpDropped(BundlerError):
    """Looked up an op that was acknowledged and later dropped; keeps the original code."""

    def __init__(self, op_hash: str, reason: str, code: int | None):
        super().__init__(f"UserOperation {op_hash} was dropped: {reason}",
                         {"userOpHash": op_hash, "status": "dropped", "reason": reason})
        self.code = code if code is not None else ValidationRejected.code
