"""Liveness for container healthchecks: a heartbeat file per service.

A service touches `<HEALTH_DIR>/sundial-<service>.health` each time its main loop
completes a cycle; `sundial healthcheck <service>` exits 0 while that file is fresh.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SERVICES = ("scheduler", "worker", "api")


def health_file(health_dir: str, service: str) -> Path:
    return Path(health_dir) / f"sundial-{service}.health"


def beat(health_dir: str, service: str) -> None:
    path = health_file(health_dir, service)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(f"{time.time():.3f} {os.getpid()}\n")
    os.replace(tmp, path)


def age_s(health_dir: str, service: str) -> float | None:
    """Seconds since the last beat, or None when there never was one."""
    try:
        return max(0.0, time.time() - health_file(health_dir, service).stat().st_mtime)
    except FileNotFoundError:
        return None


def stale_after_s(service: str, poll_interval_s: float, heartbeat_interval_s: float,
                  healthcheck_interval_s: float) -> float:
    """How old a beat may be before the service counts as unhealthy."""
    cycle = {"scheduler": poll_interval_s, "worker": heartbeat_interval_s}.get(
        service, healthcheck_interval_s)
    return 3 * max(cycle, min(healthcheck_interval_s, 30.0), 10.0)
