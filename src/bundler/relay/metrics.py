"""The relay's Prometheus counters, in the bundler's own registry (served at /metrics). Labels
are bounded: route templates, HTTP status codes, a fixed set of call outcomes."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

CALL_OUTCOMES = ("accepted", "refused", "mined", "dropped")


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry or CollectorRegistry()
        self.requests = Counter("bundler_relay_requests", "relay HTTP requests by route template and HTTP status",
                                ["route", "status"], registry=registry)
        self.calls = Counter("bundler_relay_calls", "relay calls by outcome: accepted (in the pool or queued), "
                             "refused (by the session policy or the pool), mined, dropped", ["status"], registry=registry)
        for outcome in CALL_OUTCOMES:
            self.calls.labels(outcome)

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def call(self, outcome: str) -> None:
        self.calls.labels(outcome).inc()
