"""Session keys: the SessionAccount ABI and everything the bundler does with it.

    abi        the contract's ABI in Python: spec dataclasses, encoders/decoders, signatures
    policy     the off-chain evaluator (mirror of SessionAccount's validation, differential-tested)
    recover    coincurve ECDSA recovery with the contract's rules
    ledger     pending usage of session ops in the mempool
    state      batched, per-block cached reads of session accounts through the node
    registry   known implementations / factories (dev-chain defaults)
    gas        the fast path's verification-gas bound
    service    recognition, admission hooks, fast path, revocation/expiry watcher, RPC answers
    views      JSON shapes of the session_* RPC answers
"""
from . import abi
from .abi import (
    ArgConstraint, Call, CallPolicy, Condition, Limit, LimitKind, SessionSpec, TransferPolicy,
)

__all__ = ["ArgConstraint", "Call", "CallPolicy", "Condition", "Limit", "LimitKind", "SessionSpec",
           "TransferPolicy", "abi"]
