"""Prometheus metrics of the message path, served by the HTTP app's GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "switchboard_events_total", "Incoming events by platform and outcome", ["platform", "outcome"]
)
LATENCY = Histogram(
    "switchboard_message_seconds",
    "Time from dispatch to the last reply of a message",
    ["platform"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
