"""ERC-7562 validation rules enforced inside the py-evm simulation (no debug API needed).

    factory = TracerFactory.for_op(op, ep.address)          # picklable, built in the worker
    result = await simulator.validate(op, ep, block, tracer=factory)
    ctx = RuleContext.for_op(op, ep.address, result, min_stake=..., mempool_senders=...)
    violations = check(result.trace, ctx)                   # [] when the op is clean
    raise violation_error(violations[0], ctx)
"""
from .rules import CheckedTrace, RuleContext, Violation, check, checked, storage_touched, violation_error
from .trace import PhaseTrace, Trace, TracerFactory


def __getattr__(name: str):
    if name == "ValidationTracer":  # py-evm: loaded only where a tracer runs (the workers)
        from .tracer import ValidationTracer
        return ValidationTracer
    raise AttributeError(name)

__all__ = [
    "CheckedTrace", "PhaseTrace", "RuleContext", "checked", "Trace", "TracerFactory", "ValidationTracer", "Violation", "check",
    "storage_touched", "violation_error",
]
