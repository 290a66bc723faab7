"""Prometheus metrics, aggregated across worker processes.

``python -m ingest_service`` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before any worker starts, so every worker writes its samples to
memory-mapped files there and whichever worker answers ``GET /metrics``
reports the sum over all of them (a scrape that hit one worker's private
registry would see a random share of the traffic).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Unknown X-Tenant values are attacker-controlled: they never become label values.
UNKNOWN_TENANT = "_unknown"

REQUESTS = Counter("ingest_requests_total", "POST /ingest requests by tenant and HTTP status", ["tenant", "status"])
ROWS = Counter("ingest_rows_total", "Rows committed (duplicates included) by tenant", ["tenant"])
BATCH_ROWS = Histogram(
    "ingest_batch_rows", "Rows per committed batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
)
COMMIT_SECONDS = Histogram(
    "ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
QUEUE_ROWS = Gauge("ingest_queue_rows", "Rows waiting for a batch", multiprocess_mode="livesum")
DB_ERRORS = Counter("ingest_db_errors_total", "Batches that failed against the database", ["kind"])

# Counting into a dict and flushing it (every FLUSH_SECONDS and before a scrape) costs a tenth of
# a multiprocess Counter.inc() per request; another worker's counts are at most that much behind.
FLUSH_SECONDS = 0.5
_request_counts: dict[tuple[str, int], int] = {}
_row_counts: dict[str, int] = {}


def count_request(tenant: str, status: int) -> None:
    key = (tenant, status)
    _request_counts[key] = _request_counts.get(key, 0) + 1


def count_rows(tenant: str, rows: int) -> None:
    _row_counts[tenant] = _row_counts.get(tenant, 0) + rows


def flush() -> None:
    if _request_counts:
        counts = list(_request_counts.items())
        _request_counts.clear()
        for (tenant, status), count in counts:
            REQUESTS.labels(tenant, str(status)).inc(count)
    if _row_counts:
        counts = list(_row_counts.items())
        _row_counts.clear()
        for tenant, count in counts:
            ROWS.labels(tenant).inc(count)


def _forget_dead_workers(directory: str) -> None:
    """The supervisor replaces a dead worker without telling us: drop its live gauges (the queue depth)."""
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = int(name.rsplit("_", 1)[1][:-3])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, directory)
            except PermissionError:
                pass


def render() -> tuple[bytes, str]:
    flush()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
