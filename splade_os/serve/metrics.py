"""The service's Prometheus metrics (prometheus-client), in a registry of its own so that two services in one
process (tests, an application embedding the app) count apart."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "splade_os_requests",
            "Requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "splade_os_errors",
            "Requests refused or failed (status 400 and above), by endpoint and error type.",
            ["endpoint", "error_type"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "splade_os_request_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "splade_os_batch_texts",
            "Texts per encoder run (dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "splade_os_requests_in_flight",
            "Requests being answered now, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.queue_depth = Gauge("splade_os_queue_texts", "Texts waiting for a batch.", registry=self.registry)
        self.queue_depth.set_function(queue_depth)

    def observe(self, endpoint: str, status: int, seconds: float, error_type: str | None = None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, error_type or "Unknown").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
