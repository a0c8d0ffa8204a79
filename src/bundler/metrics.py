"""Prometheus metrics of one bundler instance (its own registry, so several instances in one
process, as in the tests, do not mix). Served at GET /metrics; docs/metrics.md lists them.

Label values are bounded: rejection reasons come from a fixed table or an error class name,
error codes outside the ERC-7769 / JSON-RPC set become "other", executors are the configured
keys' addresses.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the HTTP route)

from .errors import BundlerError
from .logs import op_context

log = logging.getLogger(__name__)

KNOWN_CODES = frozenset({
    -32700, -32600, -32601, -32602, -32603, -32005,
    -32500, -32501, -32502, -32503, -32504, -32505, -32506, -32507, -32508, -32521,
})

# InvalidParams covers many refusals; its message says which (first match wins)
_INVALID_PARAMS_REASONS: list[tuple[re.Pattern, str]] = [(re.compile(p, re.I), r) for p, r in [
    (r"^mempool is full", "mempool_full"),
    (r"UserOperations pending \(the limit", "sender_limit"),
    (r"^replacement underpriced", "replacement_underpriced"),
    (r"^replacement refused", "replacement_in_flight"),
    (r"already known", "duplicate"),
    (r"unsupported entryPoint", "unsupported_entry_point"),
    (r"preVerificationGas", "pre_verification_gas"),
    (r"below the current base fee", "max_fee_below_base_fee"),
    (r"maxPriorityFeePerGas", "priority_fee"),
    (r"verificationGasLimit", "verification_gas_limit"),
    (r"callGasLimit", "call_gas_limit"),
    (r"total gas", "gas_limit"),
    (r"7702", "eip7702"),
    (r"^(invalid|missing|unknown field|expected)", "malformed"),
]]
_CLASS_NAME = re.compile(r"(?<!^)(?=[A-Z])")


def rejection_labels(exc: BaseException) -> tuple[str, str]:
    """(code, reason) labels of a refused eth_sendUserOperation."""
    if not isinstance(exc, BundlerError):
        return "-32603", "internal"
    code = str(exc.code) if exc.code in KNOWN_CODES else "other"
    name = type(exc).__name__
    if name in ("InvalidParams", "MempoolFull"):
        for pattern, reason in _INVALID_PARAMS_REASONS:
            if pattern.search(exc.message):
                return code, reason
        return code, "invalid_params"
    return code, _CLASS_NAME.sub("_", name).lower()[:40]


def _ep_label(entry_point) -> str:
    from . import entrypoint as eps

    ep = eps.by_address(entry_point) if isinstance(entry_point, str) else None
    return ep.version if ep is not None else "unsupported"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.ops_received = Counter(
            "bundler_userops_received", "eth_sendUserOperation calls", ["entry_point"], registry=r)
        self.ops_accepted = Counter(
            "bundler_userops_accepted", "UserOperations admitted to the mempool", ["entry_point"], registry=r)
        self.ops_rejected = Counter(
            "bundler_userops_rejected", "UserOperations refused, by JSON-RPC error code and reason",
            ["code", "reason"], registry=r)
        self.ops_dropped = Counter(
            "bundler_userops_dropped", "admitted UserOperations removed without inclusion, by reason",
            ["reason"], registry=r)
        self.validation_seconds = Histogram(
            "bundler_userop_validation_seconds",
            "time to answer eth_sendUserOperation (checks, simulation, mempool rules)", ["result"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.task_up = Gauge(
            "bundler_task_up", "1 while a long-running task (head, builder, chain-watcher, ...) runs, 0 while "
            "it is down waiting to be restarted", ["task"], registry=r)
        self.task_failures = Counter(
            "bundler_task_failures", "times a long-running task died (and was restarted)", ["task"], registry=r)
        self.mempool_ops = Gauge("bundler_mempool_ops", "UserOperations pending in the mempool", registry=r)
        self.mempool_capacity = Gauge("bundler_mempool_capacity", "max_mempool_ops", registry=r)
        self.bundles = Counter(
            "bundler_bundles", "bundle transactions by outcome: sent (first broadcast), replaced (fee "
            "bump), mined, reverted (mined with status 0), failed (not sent or abandoned)",
            ["status"], registry=r)
        self.bundle_ops = Histogram(
            "bundler_bundle_ops", "UserOperations per sent bundle",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.bundles_in_flight = Gauge(
            "bundler_bundles_in_flight", "bundles being simulated, sent or awaiting inclusion", registry=r)
        self.executor_balance = Gauge(
            "bundler_executor_balance_wei", "balance of each executor account (refreshed periodically)",
            ["executor"], registry=r)
        self.executor_busy = Gauge(
            "bundler_executor_busy", "1 while the executor has a bundle in flight", ["executor"], registry=r)
        self.node_up = Gauge("bundler_node_up", "1 if the last node check succeeded", registry=r)
        self.rate_limited = Counter(
            "bundler_rpc_rate_limited", "HTTP requests refused by the per-client rate limit", registry=r)
        self.paymaster_deposit = Gauge(
            "bundler_paymaster_deposit_wei", "EntryPoint deposit of each sponsoring paymaster (refreshed periodically)",
            ["entry_point", "paymaster"], registry=r)
        self.sponsorships = Counter(
            "bundler_paymaster_sponsorships", "sponsorships by policy and outcome: sponsored or refused (by rule) "
            "by pm_getPaymasterData, then settled (mined) or released (dropped, unused)",
            ["policy", "outcome", "rule"], registry=r)
        self.second_validations = Counter(
            "bundler_second_validations", "safe mode's second validations at bundle time, by how each was decided: "
            "same_block (admission's block), reused (every value admission read is unchanged), simulated",
            ["how"], registry=r)
        for status in ("sent", "replaced", "mined", "reverted", "failed"):
            self.bundles.labels(status)
        # entry point string as sent -> (received, accepted, accepted seconds) children
        self._submission_children: dict[str, tuple] = {}

    def expose(self) -> bytes:
        return generate_latest(self.registry)

    # -- hooks ----------------------------------------------------------------
    @contextlib.contextmanager
    def submission(self, entry_point):
        """Around eth_sendUserOperation: counts it, times it, and puts its hash (once admission
        sets it) on the log lines logged inside."""
        children = self._submission_children.get(entry_point) if isinstance(entry_point, str) else None
        if children is None:
            # the labelled children of the accepted path, looked up once per entry point
            # string (prometheus_client's labels() costs more than the increment itself)
            label = _ep_label(entry_point)
            children = (self.ops_received.labels(label), self.ops_accepted.labels(label),
                        self.validation_seconds.labels("accepted"))
            if isinstance(entry_point, str) and len(self._submission_children) < 64:
                self._submission_children[entry_point] = children
        received, accepted, accepted_seconds = children
        received.inc()
        start = time.perf_counter()
        with op_context():
            try:
                yield
            except Exception as e:
                code, reason = rejection_labels(e)
                log.debug("refused op (%s %s): %s", code, reason, getattr(e, "message", e))
                self.ops_rejected.labels(code, reason).inc()
                self.validation_seconds.labels("rejected").observe(time.perf_counter() - start)
                raise
        accepted.inc()
        accepted_seconds.observe(time.perf_counter() - start)

    def op_dropped(self, reason: str) -> None:
        self.ops_dropped.labels(reason).inc()

    def bundle(self, status: str, ops: int | None = None) -> None:
        self.bundles.labels(status).inc()
        if ops is not None:
            self.bundle_ops.observe(ops)


class NullMetrics:
    """For services built without an app (tests, tools): every hook does nothing."""

    def op_dropped(self, reason: str) -> None:
        pass

    def bundle(self, status: str, ops: int | None = None) -> None:
        pass

    def __getattr__(self, name):  # gauges and counters used with .labels(...).set/inc
        return _Null()


class _Null:
    def __getattr__(self, name):
        return self

    def __call__(self, *a, **k):
        return self


def drop_reason_label(reason: str) -> str:
    """Bounded label of a free-text drop reason (builder / admission)."""
    text = reason.lower()
    for prefix, label in (("expired", "expired"), ("failed in bundle simulation", "bundle_simulation"),
                          ("evicted", "evicted"), ("replaced", "replaced")):
        if text.startswith(prefix):
            return label
    return "other"
