"""The worker's own Prometheus series (served on METRICS_PORT): how long runs take, how
late they start, and this process's run slots. Labels are the queue (one of
WORKER_QUEUES) and the outcome, so the series stay few whatever the number of jobs."""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client as prom

DURATION = prom.Histogram(
    "sundial_run_duration_seconds", "Execution time of runs by queue and outcome",
    ["queue", "status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200, float("inf")))
FIRE_LAG = prom.Histogram(
    "sundial_run_fire_lag_seconds", "How late runs start, from when they were due (slot "
    "plus jitter, or the end of a retry's backoff), by queue", ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf")))
IN_FLIGHT = prom.Gauge("sundial_worker_runs_in_flight", "Runs this worker is executing")
CONCURRENCY = prom.Gauge("sundial_worker_concurrency", "Runs this worker may execute at once "
                         "(WORKER_CONCURRENCY)")


def watch_slots(concurrency: int, in_flight: Callable[[], int]) -> None:
    """Busy slots are read at each scrape, free ones are concurrency minus those."""
    CONCURRENCY.set(concurrency)
    IN_FLIGHT.set_function(in_flight)
