"""Counters and the Prometheus text of ``GET /metrics``; the pixel's bytes.

Routes are labelled by their first path segment so that tokens never become label values.
Counters are per process; with ``--workers N`` Prometheus scrapes whichever worker answers,
which is the usual trade-off of multi-process servers without a shared registry.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
]

_ROUTES = {
    "o": "/o", "c": "/c", "u": "/u", "v": "/v", "events": "/events", "webhooks": "/webhooks",
    "health": "/health", "metrics": "/metrics",
}


def route_label(path: str) -> str:
    """A low-cardinality label for a request path."""
    first = path[1:].split("/", 1)[0]
    label = _ROUTES.get(first, "other")
    if label == "/webhooks":
        return path if path in ("/webhooks/sms/status", "/webhooks/email/bounce") else "other"
    return label


class Metrics:
    """The counters one process keeps."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.events_recorded = 0  # rows written by POST /events


def render(
    metrics: Metrics,
    *,
    queue_depth: int,
    written: dict[str, int],
    flush_errors: int,
    spooled: int,
    spool_waiting: int,
    orphans: int,
) -> str:
    """The Prometheus text exposition (format 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, Any]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    family("reach_tracking_requests_total", "counter", "HTTP responses by route and status.",
           [(f'{{route="{route}",status="{status}"}}', count)
            for (route, status), count in sorted(metrics.requests.items())])
    family("reach_tracking_events_written_total", "counter",
           "Engagements written to the database by this process, by kind.",
           [(f'{{kind="{kind}"}}', count) for kind, count in sorted(written.items())])
    family("reach_tracking_events_recorded_total", "counter",
           "Events recorded through POST /events.", [("", metrics.events_recorded)])
    family("reach_tracking_queue_depth", "gauge", "Operations waiting in memory.",
           [("", queue_depth)])
    family("reach_tracking_flush_errors_total", "counter", "Failed batch writes (retried).",
           [("", flush_errors)])
    family("reach_tracking_spooled_total", "counter",
           "Operations this process moved to the local spool.", [("", spooled)])
    family("reach_tracking_spool_waiting", "gauge", "Operations waiting in spool files.",
           [("", spool_waiting)])
    family("reach_tracking_orphan_events_total", "counter",
           "Events dropped because their message no longer exists.", [("", orphans)])
    return "\n".join(lines) + "\n"

