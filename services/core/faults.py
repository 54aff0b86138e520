"""Fault injection for the fault-injection suite (tests/chaos, tests/e2e): kill this
process with SIGKILL, or raise an error, when it reaches a named point of the outbox's
path or of a scheduler loop's round.

    SUNDIAL_FAULT_KILL_AT=after_commit:0.2,before_mark_published:0.1
    SUNDIAL_FAULT_RAISE_AT=reap,relay:0.5

Each entry is a point and the probability (default 1) that reaching it kills the
process (KILL) or raises `InjectedFault` there (RAISE). Unset, as in every deployment,
`reached()` is two dictionary lookups. A name that is not a point stops the process at
start-up with the list of points.
"""

from __future__ import annotations

import os
import random
import signal

ENV = "SUNDIAL_FAULT_KILL_AT"
RAISE_ENV = "SUNDIAL_FAULT_RAISE_AT"

POINTS = {
    "after_claim": "a tick has locked due schedules; nothing planned or inserted yet",
    "after_commit": "a tick committed its runs; none published",
    "after_publish": "the first message of a batch is confirmed, the rest in flight",
    "before_mark_published": "every message of a batch is confirmed; published_at not set",
}
# Where a scheduler loop's round can be made to fail (RAISE only, besides the above).
LOOP_POINTS = {
    "reap": "a round of the scheduler's reaper begins",
    "relay": "a round of the scheduler's relay begins",
    "retention": "a round of the scheduler's retention begins",
    "status": "the scheduler is about to record its status",
}


class InjectedFault(RuntimeError):
    """An error raised on purpose at a fault point (SUNDIAL_FAULT_RAISE_AT)."""


def parse(value: str, env: str = ENV, points: dict[str, str] = POINTS) -> dict[str, float]:
    at: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        point, _, probability = entry.partition(":")
        if point not in points:
            raise ValueError(f"{env}: {point!r} is not a fault point; "
                             f"use one of {', '.join(points)}")
        try:
            p = float(probability) if probability else 1.0
        except ValueError:
            p = -1.0
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{env}: probability {probability!r} of {point} must be "
                             f"a number from 0 to 1")
        at[point] = p
    return at


_KILL_AT = parse(os.environ.get(ENV, ""))
_RAISE_AT = parse(os.environ.get(RAISE_ENV, ""), RAISE_ENV, POINTS | LOOP_POINTS)


def reached(point: str) -> None:
    """Die here, as a SIGKILL would, or raise `InjectedFault`, if the environment asks."""
    probability = _KILL_AT.get(point)
    if probability is not None and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
    probability = _RAISE_AT.get(point)
    if probability is not None and random.random() < probability:
        raise InjectedFault(f"{RAISE_ENV}: injected at {point}")
