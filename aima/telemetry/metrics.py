"""Prometheus metrics of one AIMA process, all in one registry that `/metrics` renders.

The registry is this module's own (not prometheus_client's global one), so tests read exactly
what a process exports and nothing a library registered on import.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_HANDLED = Counter(
    "aima_events_handled_total",
    "Events a consumer handled, by outcome: ok, retry (failed, will be redelivered) or dead (gave up).",
    ("consumer", "type", "outcome"),
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "aima_handler_seconds",
    "Time a consumer's handler took for one event.",
    ("consumer",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "aima_http_requests_total",
    "HTTP requests served, by route template and status code.",
    ("service", "method", "route", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "aima_http_request_seconds",
    "Time to answer an HTTP request, by route template.",
    ("service", "route"),
    registry=REGISTRY,
)
COMPONENT_UP = Gauge(
    "aima_component_up",
    "1 if the component's last health check passed, else 0.",
    ("component",),
    registry=REGISTRY,
)
EVENTS_DEAD_LETTERED = Counter(
    "aima_events_dead_lettered_total",
    "Events the bus gave up on for a consumer (after its last attempt, or at once for one that can "
    "never succeed): dead letters.",
    ("consumer", "type"),
    registry=REGISTRY,
)
JOBS_QUEUED = Gauge(
    "aima_jobs_queued",
    "Queued parent jobs free to start (not held until later) after the scheduler's last walk of the "
    "queue, by priority; a walk looks at 5000 jobs at most.",
    ("priority",),
    registry=REGISTRY,
)
JOBS_OLDEST_QUEUED_AGE = Gauge(
    "aima_jobs_oldest_queued_age_seconds",
    "How long the longest-waiting queued job of each priority has waited since it entered the queue "
    "(or its hold ended), as of now; 0 when none waits.",
    ("priority",),
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format: (body, content type)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
