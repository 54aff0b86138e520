"""The tick's plain-arithmetic planning of the common interval case agrees with the
schedule math (`plan`) wherever it answers, and leaves every other row to it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sundial.core.errors import InvalidSchedule
from sundial.core.schedule import Spec, plan, validate
from sundial.scheduler.tick import _plan_interval, _plan_row

NOW = datetime(2026, 3, 29, 0, 59, 58, 250_000, tzinfo=UTC)


def _row(rng: random.Random) -> dict:
    """A claimed row: times around NOW, most values valid, any of them possibly not."""
    def pick(good: list, bad: list):
        return rng.choice(bad) if bad and rng.random() < 0.1 else rng.choice(good)

    every = pick([1.0, 1.5, 7.3, 60.0, 3600.0],
                 [0.5, float("nan"), float("inf"), 10 * 366 * 86400.0 + 1, 3600])
    anchor = NOW - timedelta(seconds=rng.uniform(-30, 4000))
    start_at = rng.choice([anchor, None])
    created_at = anchor if start_at is None else anchor - timedelta(days=1)
    if isinstance(every, float) and 1 <= every < 1e9:
        step = timedelta(microseconds=round(every * 1_000_000))
        on_grid = anchor + max(0, (NOW - anchor) // step - rng.choice([0, 0, 0, 1, 3, 70])) * step
    else:
        on_grid = anchor
    next_run_at = pick([on_grid], [anchor - timedelta(seconds=5), NOW + timedelta(seconds=3),
                                   NOW - timedelta(seconds=rng.uniform(0, 200)), None])
    end_at = pick([None, NOW + timedelta(days=1), NOW + timedelta(seconds=rng.uniform(-100, 100))],
                  [anchor - timedelta(seconds=1)])
    return {
        "id": 1, "job_id": 1, "kind": pick(["interval"], ["cron", "once"]),
        "interval_seconds": every, "cron": pick([None], ["* * * * *"]),
        "run_at": pick([None], [NOW]), "timezone": pick(["UTC", "Europe/Paris"], ["Nowhere/Atlantis"]),
        "jitter_seconds": pick([0.0, 2.5], [-1.0, float("nan"), 86401.0]),
        "start_at": start_at, "end_at": end_at,
        "misfire_policy": pick(["run_once", "skip", "run_all"], ["sometimes"]),
        "misfire_grace_seconds": pick([None, 0.0, 5.0, 300.0], [-1.0, float("nan"), 1e12]),
        "created_at": created_at, "next_run_at": next_run_at, "enabled": pick([True], [False]),
    }


def test_quick_plan_agrees_with_the_schedule_math():
    rng = random.Random(7)
    answered = 0
    for _ in range(20_000):
        row = _row(rng)
        look_ahead = timedelta(seconds=rng.choice([0.0, 0.0, 2.0, 30.0]))
        quick = _plan_interval(row, NOW, NOW + look_ahead)
        if quick is None:
            continue
        answered += 1
        try:
            spec = validate(Spec.from_row(row))
        except InvalidSchedule as exc:
            raise AssertionError(f"{row}: planned quickly, yet invalid: {exc}") from None
        planned = plan(spec, row["next_run_at"], NOW, look_ahead, enabled=row["enabled"])
        assert (planned.slots, planned.next_run_at, planned.missed) == ([quick[0]], quick[1], 0), row
        assert _plan_row(row, NOW, look_ahead, None)[0] == planned
    assert answered > 1_000, "the common case is answered without the schedule math"


def test_quick_plan_leaves_catch_up_and_bad_rows_to_the_schedule_math():
    row = {"kind": "interval", "interval_seconds": 10.0, "cron": None, "run_at": None,
           "timezone": "UTC", "jitter_seconds": 0.0, "start_at": NOW - timedelta(seconds=3605),
           "end_at": None, "misfire_policy": "run_all", "misfire_grace_seconds": None,
           "created_at": NOW - timedelta(days=1), "enabled": True,
           "next_run_at": NOW - timedelta(seconds=35)}
    assert _plan_interval(row, NOW, NOW) is None, "four slots due: plan() walks them"
    on_time = {**row, "next_run_at": NOW - timedelta(seconds=5)}
    assert _plan_interval(on_time, NOW, NOW) == (on_time["next_run_at"],
                                                  on_time["next_run_at"] + timedelta(seconds=10))
    assert _plan_interval({**on_time, "timezone": "Nowhere"}, NOW, NOW) is None
    assert _plan_interval({**on_time, "interval_seconds": 0.5}, NOW, NOW) is None
    ending = {**on_time, "end_at": NOW + timedelta(seconds=1)}
    assert _plan_interval(ending, NOW, NOW) == (on_time["next_run_at"], None)
