"""Session keys: the SessionAccount ABI (`abi`); policy evaluation and the pending-usage
ledger build on it."""
from . import abi
from .abi import (
    ArgConstraint, Call, CallPolicy, Condition, Limit, LimitKind, SessionSpec, TransferPolicy,
)

__all__ = ["ArgConstraint", "Call", "CallPolicy", "Condition", "Limit", "LimitKind", "SessionSpec",
           "TransferPolicy", "abi"]
