"""Fault injection for the fault-injection suite (tests/chaos): kill this process with
SIGKILL when it reaches a named point of the outbox's path.

    SUNDIAL_FAULT_KILL_AT=after_commit:0.2,before_mark_published:0.1

Each entry is a point and the probability (default 1) that reaching it kills the
process. Unset, as in every deployment, `reached()` is one dictionary lookup. A name
that is not a point stops the process at start-up with the list of points.
"""

from __future__ import annotations

import os
import random
import signal

ENV = "SUNDIAL_FAULT_KILL_AT"

POINTS = {
    "after_claim": "a tick has locked due schedules; nothing planned or inserted yet",
    "after_commit": "a tick committed its runs; none published",
    "after_publish": "the first message of a batch is confirmed, the rest in flight",
    "before_mark_published": "every message of a batch is confirmed; published_at not set",
}


def parse(value: str) -> dict[str, float]:
    kill_at: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        point, _, probability = entry.partition(":")
        if point not in POINTS:
            raise ValueError(f"{ENV}: {point!r} is not a fault point; "
                             f"use one of {', '.join(POINTS)}")
        try:
            p = float(probability) if probability else 1.0
        except ValueError:
            p = -1.0
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{ENV}: probability {probability!r} of {point} must be "
                             f"a number from 0 to 1")
        kill_at[point] = p
    return kill_at


_KILL_AT = parse(os.environ.get(ENV, ""))


def reached(point: str) -> None:
    """Die here, as a SIGKILL would, if the environment asks for it."""
    probability = _KILL_AT.get(point)
    if probability is not None and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
