"""Schedule math: exact fire times (intervals, cron in several zones, DST both ways,
month ends, aliases, bounds), what a tick plans after downtime, and validation.

Expected instants are written with the zone's UTC offset, so a reader can check them
against a wall clock: 2024-03-31T03:00+02:00 is 03:00 in Paris, summer time.
"""

from __future__ import annotations

import os
import random
from collections import deque
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sundial.core.errors import InvalidSchedule
from sundial.core.schedule import (
    DEFAULT_GRACE_S,
    MAX_CATCHUP_RUNS,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    MISFIRE_POLICIES,
    Plan,
    Spec,
    first_fire,
    jittered,
    next_fire,
    plan,
    preview,
    validate,
    validate_cron,
)


def t(text: str) -> datetime:
    """An aware instant from ISO 8601 with an offset (Z for UTC)."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def ts(*texts: str) -> list[datetime]:
    return [t(x) for x in texts]


def interval(seconds: float, **kw: object) -> Spec:
    return Spec("interval", interval_seconds=seconds, **kw)  # type: ignore[arg-type]


def cron(expr: str, tz: str = "UTC", **kw: object) -> Spec:
    return Spec("cron", cron=expr, timezone=tz, **kw)  # type: ignore[arg-type]


def once(run_at: str, **kw: object) -> Spec:
    return Spec("once", run_at=t(run_at), **kw)  # type: ignore[arg-type]


T0 = "2024-01-01T00:00Z"

# (spec, after, count, expected): preview(spec, count, after) == expected. An expected
# list shorter than count means the schedule has nothing more to fire.
FIRE_TIMES = [
    # --- interval: anchored to start_at, or to the creation time -------------------
    pytest.param(interval(60, start_at=t(T0)), "2024-01-01T00:00:30Z", 3,
                 ts("2024-01-01T00:01Z", "2024-01-01T00:02Z", "2024-01-01T00:03Z"),
                 id="interval-between-slots"),
    pytest.param(interval(60, start_at=t(T0)), "2024-01-01T00:01Z", 2,
                 ts("2024-01-01T00:02Z", "2024-01-01T00:03Z"),
                 id="interval-after-exactly-a-slot-is-strict"),
    pytest.param(interval(60, start_at=t(T0)), "2023-12-31T12:00Z", 2,
                 ts("2024-01-01T00:00Z", "2024-01-01T00:01Z"),
                 id="interval-after-before-anchor-fires-at-anchor"),
    pytest.param(interval(3600, created_at=t("2024-01-01T00:00:10Z")), "2024-01-01T05:00Z", 2,
                 ts("2024-01-01T05:00:10Z", "2024-01-01T06:00:10Z"),
                 id="interval-anchored-to-created-at"),
    pytest.param(interval(3600, start_at=t("2024-01-01T00:30Z"),
                          created_at=t("2024-01-01T00:00:10Z")), "2024-01-01T05:00Z", 2,
                 ts("2024-01-01T05:30Z", "2024-01-01T06:30Z"),
                 id="interval-start-at-wins-over-created-at"),
    pytest.param(interval(1.5, start_at=t(T0)), "2024-01-01T00:00:02Z", 3,
                 ts("2024-01-01T00:00:03Z", "2024-01-01T00:00:04.500Z", "2024-01-01T00:00:06Z"),
                 id="interval-fractional-seconds"),
    pytest.param(interval(0.25, start_at=t(T0)), "2024-01-01T00:00:00.100Z", 3,
                 ts("2024-01-01T00:00:00.250Z", "2024-01-01T00:00:00.500Z",
                    "2024-01-01T00:00:00.750Z"),
                 id="interval-sub-second"),
    pytest.param(interval(86400 * 7, start_at=t("2024-01-03T12:00+01:00")), "2024-01-20T00:00Z", 2,
                 ts("2024-01-24T12:00+01:00", "2024-01-31T12:00+01:00"),
                 id="interval-weekly-anchor-with-offset"),
    pytest.param(interval(3600, start_at=t("2024-03-31T00:00+01:00"), timezone="Europe/Paris"),
                 "2024-03-31T00:00+01:00", 3,
                 ts("2024-03-31T01:00+01:00", "2024-03-31T03:00+02:00", "2024-03-31T04:00+02:00"),
                 id="interval-keeps-real-time-spacing-over-spring-forward"),
    pytest.param(interval(3600, start_at=t("2024-10-27T00:00+02:00"), timezone="Europe/Paris"),
                 "2024-10-27T01:30+02:00", 3,
                 ts("2024-10-27T02:00+02:00", "2024-10-27T02:00+01:00", "2024-10-27T03:00+01:00"),
                 id="interval-keeps-real-time-spacing-over-fall-back"),
    pytest.param(interval(600, start_at=t(T0), end_at=t("2024-01-01T00:20Z")), T0, 5,
                 ts("2024-01-01T00:10Z", "2024-01-01T00:20Z"),
                 id="interval-end-at-is-inclusive-then-nothing"),
    pytest.param(interval(600, start_at=t(T0), end_at=t("2024-01-01T00:25Z")),
                 "2024-01-01T00:25Z", 3, [],
                 id="interval-after-end-at-nothing"),

    # --- cron in UTC: fields, day-of-week, aliases -----------------------------------
    pytest.param(cron("*/15 * * * *"), "2024-01-01T10:07:30Z", 4,
                 ts("2024-01-01T10:15Z", "2024-01-01T10:30Z", "2024-01-01T10:45Z",
                    "2024-01-01T11:00Z"),
                 id="cron-every-15-minutes"),
    pytest.param(cron("*/15 * * * *"), "2024-01-01T10:15Z", 1, ts("2024-01-01T10:30Z"),
                 id="cron-after-exactly-a-slot-is-strict"),
    pytest.param(cron("10-40/15 9 * * *"), "2024-01-01T00:00Z", 4,
                 ts("2024-01-01T09:10Z", "2024-01-01T09:25Z", "2024-01-01T09:40Z", "2024-01-02T09:10Z"),
                 id="cron-range-with-step"),
    pytest.param(cron("0 9 * * 1-5"), "2024-01-05T09:00Z", 3,
                 ts("2024-01-08T09:00Z", "2024-01-09T09:00Z", "2024-01-10T09:00Z"),
                 id="cron-weekdays-skip-the-weekend"),
    pytest.param(cron("30 8 * * 0"), "2024-01-01T00:00Z", 2,
                 ts("2024-01-07T08:30Z", "2024-01-14T08:30Z"),
                 id="cron-sunday-as-0"),
    pytest.param(cron("30 8 * * 7"), "2024-01-01T00:00Z", 2,
                 ts("2024-01-07T08:30Z", "2024-01-14T08:30Z"),
                 id="cron-sunday-as-7"),
    pytest.param(cron("0 12 * * MON,FRI"), "2024-01-01T12:00Z", 3,
                 ts("2024-01-05T12:00Z", "2024-01-08T12:00Z", "2024-01-12T12:00Z"),
                 id="cron-named-days"),
    pytest.param(cron("0 0 1 JAN,JUL *"), "2024-03-01T00:00Z", 2,
                 ts("2024-07-01T00:00Z", "2025-01-01T00:00Z"),
                 id="cron-named-months"),
    pytest.param(cron("0 0 13 * 1"), "2024-09-10T00:00Z", 3,
                 ts("2024-09-13T00:00Z", "2024-09-16T00:00Z", "2024-09-23T00:00Z"),
                 id="cron-day-of-month-or-day-of-week-like-cron"),
    pytest.param(cron("0 0 * * 1#2"), "2024-01-01T00:00Z", 2,
                 ts("2024-01-08T00:00Z", "2024-02-12T00:00Z"),
                 id="cron-second-monday"),
    pytest.param(cron("  0   9 * *  * "), "2024-01-01T10:00Z", 1, ts("2024-01-02T09:00Z"),
                 id="cron-extra-whitespace"),
    pytest.param(cron("@hourly"), "2024-01-01T10:30Z", 2,
                 ts("2024-01-01T11:00Z", "2024-01-01T12:00Z"), id="alias-hourly"),
    pytest.param(cron("@daily"), "2024-01-01T10:30Z", 2,
                 ts("2024-01-02T00:00Z", "2024-01-03T00:00Z"), id="alias-daily"),
    pytest.param(cron("@midnight", "Europe/Paris"), "2024-06-01T12:00Z", 1,
                 ts("2024-06-02T00:00+02:00"), id="alias-midnight-in-a-zone"),
    pytest.param(cron("@DAILY", "Asia/Kolkata"), "2024-06-01T12:00Z", 1,
                 ts("2024-06-02T00:00+05:30"), id="alias-is-case-insensitive"),
    pytest.param(cron("@weekly"), "2024-06-01T00:00Z", 2,
                 ts("2024-06-02T00:00Z", "2024-06-09T00:00Z"), id="alias-weekly-is-sunday"),
    pytest.param(cron("@monthly"), "2024-01-31T12:00Z", 3,
                 ts("2024-02-01T00:00Z", "2024-03-01T00:00Z", "2024-04-01T00:00Z"),
                 id="alias-monthly"),
    pytest.param(cron("@yearly"), "2024-06-01T00:00Z", 2,
                 ts("2025-01-01T00:00Z", "2026-01-01T00:00Z"), id="alias-yearly"),
    pytest.param(cron("@annually", "America/New_York"), "2024-06-01T00:00Z", 1,
                 ts("2025-01-01T00:00-05:00"), id="alias-annually-in-a-zone"),

    # --- month ends ------------------------------------------------------------------
    pytest.param(cron("0 0 31 * *"), "2024-01-31T00:00Z", 4,
                 ts("2024-03-31T00:00Z", "2024-05-31T00:00Z", "2024-07-31T00:00Z",
                    "2024-08-31T00:00Z"),
                 id="day-31-skips-short-months"),
    pytest.param(cron("0 0 30 * *"), "2024-01-30T00:00Z", 1, ts("2024-03-30T00:00Z"),
                 id="day-30-skips-february"),
    pytest.param(cron("0 0 L * *"), "2024-01-15T00:00Z", 4,
                 ts("2024-01-31T00:00Z", "2024-02-29T00:00Z", "2024-03-31T00:00Z",
                    "2024-04-30T00:00Z"),
                 id="L-last-day-leap-year"),
    pytest.param(cron("0 0 L 2 *"), "2022-06-01T00:00Z", 3,
                 ts("2023-02-28T00:00Z", "2024-02-29T00:00Z", "2025-02-28T00:00Z"),
                 id="L-february-28-or-29"),
    pytest.param(cron("0 0 29 2 *"), "2023-01-01T00:00Z", 1, ts("2024-02-29T00:00Z"),
                 id="feb-29-next-leap-year"),
    pytest.param(cron("0 0 29 2 *"), "2024-02-29T00:00Z", 2,
                 ts("2028-02-29T00:00Z", "2032-02-29T00:00Z"),
                 id="feb-29-every-four-years"),
    pytest.param(cron("0 0 * * 5L"), "2024-01-01T00:00Z", 2,
                 ts("2024-01-26T00:00Z", "2024-02-23T00:00Z"), id="last-friday"),
    pytest.param(cron("0 23 L * *", "Australia/Sydney"), "2024-02-01T00:00Z", 1,
                 ts("2024-02-29T23:00+11:00"), id="L-in-a-zone-ahead-of-utc"),

    # --- zones without a DST change on the day ---------------------------------------
    pytest.param(cron("0 9 * * *", "Asia/Kolkata"), "2024-01-01T00:00Z", 2,
                 ts("2024-01-01T09:00+05:30", "2024-01-02T09:00+05:30"),
                 id="kolkata-half-hour-offset"),
    pytest.param(cron("0 9 * * *", "Asia/Kolkata"), "2024-06-15T00:00Z", 1,
                 ts("2024-06-15T09:00+05:30"), id="kolkata-no-dst-in-summer"),
    pytest.param(cron("30 2 * * *", "Asia/Kolkata"), "2024-03-30T12:00Z", 2,
                 ts("2024-03-31T02:30+05:30", "2024-04-01T02:30+05:30"),
                 id="kolkata-no-gap-when-europe-springs-forward"),
    pytest.param(cron("0 9 * * *", "America/New_York"), "2024-01-15T00:00Z", 1,
                 ts("2024-01-15T09:00-05:00"), id="new-york-winter"),
    pytest.param(cron("0 9 * * *", "America/New_York"), "2024-07-15T00:00Z", 1,
                 ts("2024-07-15T09:00-04:00"), id="new-york-summer"),
    pytest.param(cron("0 9 * * *", "Australia/Sydney"), "2024-01-15T00:00Z", 1,
                 ts("2024-01-16T09:00+11:00"), id="sydney-summer-is-january"),
    pytest.param(cron("0 9 * * *", "Australia/Sydney"), "2024-07-15T00:00Z", 1,
                 ts("2024-07-16T09:00+10:00"), id="sydney-winter-is-july"),
    pytest.param(cron("0 9 * * *", "Europe/Paris"), "2024-03-30T12:00Z", 3,
                 ts("2024-03-31T09:00+02:00", "2024-04-01T09:00+02:00", "2024-04-02T09:00+02:00"),
                 id="paris-9am-follows-the-wall-clock-over-dst"),

    # --- spring forward: a skipped wall time fires once, at the end of the gap ------
    pytest.param(cron("30 2 * * *", "Europe/Paris"), "2024-03-30T12:00Z", 2,
                 ts("2024-03-31T03:00+02:00", "2024-04-01T02:30+02:00"),
                 id="paris-spring-skipped-time-fires-at-gap-end"),
    pytest.param(cron("0 2 * * *", "Europe/Paris"), "2024-03-30T12:00Z", 2,
                 ts("2024-03-31T03:00+02:00", "2024-04-01T02:00+02:00"),
                 id="paris-spring-gap-start-fires-at-gap-end"),
    pytest.param(cron("*/15 * * * *", "Europe/Paris"), "2024-03-31T01:40+01:00", 3,
                 ts("2024-03-31T01:45+01:00", "2024-03-31T03:00+02:00", "2024-03-31T03:15+02:00"),
                 id="paris-spring-skipped-slots-collapse-with-03:00"),
    pytest.param(cron("*/20 2 * * *", "America/New_York"), "2024-03-09T12:00Z", 4,
                 ts("2024-03-10T03:00-04:00", "2024-03-11T02:00-04:00", "2024-03-11T02:20-04:00",
                    "2024-03-11T02:40-04:00"),
                 id="new-york-spring-three-skipped-slots-fire-once"),
    pytest.param(cron("30 2 * * *", "America/New_York"), "2024-03-09T12:00Z", 2,
                 ts("2024-03-10T03:00-04:00", "2024-03-11T02:30-04:00"),
                 id="new-york-spring-skipped-time"),
    pytest.param(cron("30 2 * * *", "Australia/Sydney"), "2024-10-05T00:00Z", 2,
                 ts("2024-10-06T03:00+11:00", "2024-10-07T02:30+11:00"),
                 id="sydney-spring-in-october"),
    pytest.param(cron("30 2 * * *", "Europe/Paris"), "2024-03-31T01:00:00.000001Z", 1,
                 ts("2024-04-01T02:30+02:00"),
                 id="paris-spring-after-the-gap-end-waits-a-day"),

    # --- fall back: a wall time that occurs twice fires once, at its first occurrence -
    pytest.param(cron("30 2 * * *", "Europe/Paris"), "2024-10-26T12:00Z", 2,
                 ts("2024-10-27T02:30+02:00", "2024-10-28T02:30+01:00"),
                 id="paris-fall-repeated-time-fires-once"),
    pytest.param(cron("*/30 * * * *", "Europe/Paris"), "2024-10-27T01:45+02:00", 3,
                 ts("2024-10-27T02:00+02:00", "2024-10-27T02:30+02:00", "2024-10-27T03:00+01:00"),
                 id="paris-fall-repeated-hour-not-run-twice"),
    pytest.param(cron("0 * * * *", "Europe/Paris"), "2024-10-27T01:30+02:00", 3,
                 ts("2024-10-27T02:00+02:00", "2024-10-27T03:00+01:00", "2024-10-27T04:00+01:00"),
                 id="paris-fall-hourly"),
    pytest.param(cron("*/30 * * * *", "Europe/Paris"), "2024-10-27T02:10+01:00", 1,
                 ts("2024-10-27T03:00+01:00"),
                 id="paris-fall-after-inside-second-occurrence"),
    pytest.param(cron("30 1 * * *", "America/New_York"), "2024-11-02T12:00Z", 2,
                 ts("2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00"),
                 id="new-york-fall-repeated-time-fires-once"),
    pytest.param(cron("30 2 * * *", "Australia/Sydney"), "2024-04-06T00:00Z", 2,
                 ts("2024-04-07T02:30+11:00", "2024-04-08T02:30+10:00"),
                 id="sydney-fall-in-april"),

    # --- once ------------------------------------------------------------------------
    pytest.param(once("2030-01-01T09:00+01:00"), "2029-12-31T00:00Z", 3,
                 ts("2030-01-01T09:00+01:00"), id="once-fires-once"),
    pytest.param(once("2030-01-01T09:00Z"), "2030-01-01T09:00Z", 3, [],
                 id="once-nothing-after-run-at"),
    pytest.param(once("2030-01-01T09:00Z", end_at=t("2029-01-01T00:00Z")), "2028-01-01T00:00Z", 3, [],
                 id="once-beyond-end-at-never"),

    # --- start_at / end_at bounds ----------------------------------------------------
    pytest.param(cron("0 * * * *", start_at=t("2024-01-01T10:30Z")), T0, 2,
                 ts("2024-01-01T11:00Z", "2024-01-01T12:00Z"), id="cron-waits-for-start-at"),
    pytest.param(cron("0 * * * *", start_at=t("2024-01-01T10:00Z")), T0, 1,
                 ts("2024-01-01T10:00Z"), id="cron-slot-at-start-at-fires"),
    pytest.param(cron("0 * * * *", end_at=t("2024-01-01T12:00Z")), "2024-01-01T10:30Z", 5,
                 ts("2024-01-01T11:00Z", "2024-01-01T12:00Z"), id="cron-end-at-inclusive"),
    pytest.param(cron("0 * * * *", end_at=t("2024-01-01T12:00Z")), "2024-01-01T12:00Z", 1, [],
                 id="cron-after-end-at-nothing"),
]


@pytest.mark.parametrize(("spec", "after", "count", "expected"), FIRE_TIMES)
def test_fire_times(spec: Spec, after: str, count: int, expected: list[datetime]) -> None:
    got = preview(spec, count, t(after))
    assert got == expected
    assert all(slot.tzinfo is UTC for slot in got)
    assert next_fire(spec, t(after)) == (expected[0] if expected else None)


def test_preview_zero_is_empty() -> None:
    assert preview(cron("* * * * *"), 0, t(T0)) == []


@pytest.mark.parametrize(("spec", "now", "expected"), [
    pytest.param(cron("0 * * * *"), "2024-01-01T10:00Z", "2024-01-01T10:00Z",
                 id="a-slot-at-creation-time-counts"),
    pytest.param(cron("0 * * * *"), "2024-01-01T10:00:01Z", "2024-01-01T11:00Z", id="cron"),
    pytest.param(interval(60, start_at=t("2024-02-01T00:00Z")), "2024-01-01T10:00Z",
                 "2024-02-01T00:00Z", id="interval-future-start"),
    pytest.param(once("2024-01-01T09:59:59Z"), "2024-01-01T10:00Z", "2024-01-01T09:59:59Z",
                 id="once-run-at-even-if-just-passed"),
])
def test_first_fire(spec: Spec, now: str, expected: str) -> None:
    assert first_fire(spec, t(now)) == t(expected)


# --- properties: random expressions, zones and instants across DST years -------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata",
         "Australia/Lord_Howe"]  # Lord Howe moves its clocks by 30 minutes


def _transitions(zone_name: str, year: int) -> list[datetime]:
    tz = ZoneInfo(zone_name)
    found, moment = [], datetime(year, 1, 1, tzinfo=UTC)
    while moment.year == year:
        step = moment + timedelta(minutes=30)
        if moment.astimezone(tz).utcoffset() != step.astimezone(tz).utcoffset():
            found.append(step)
        moment = step
    return found


TRANSITIONS = [(z, moment) for z in ZONES if z not in ("UTC", "Asia/Kolkata")
               for year in (2023, 2024) for moment in _transitions(z, year)]


def _field(values: range) -> st.SearchStrategy[str]:
    lo, hi = values.start, values.stop - 1
    return st.one_of(
        st.just("*"),
        st.integers(lo, hi).map(str),
        st.integers(2, 20).map(lambda n: f"*/{n}"),
        st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(
            lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(st.integers(lo, hi), min_size=2, max_size=4, unique=True).map(
            lambda xs: ",".join(map(str, sorted(xs)))),
    )


def _valid(expr: str) -> bool:
    try:
        validate_cron(expr)
    except InvalidSchedule:
        return False
    return True


cron_exprs = st.tuples(
    _field(range(0, 60)), _field(range(0, 24)),
    st.sampled_from(["*", "*", "1", "15", "28", "31", "L", "1-7"]),
    st.sampled_from(["*", "*", "*", "2", "3", "10", "11", "3,10"]),
    st.sampled_from(["*", "*", "*", "0", "1-5", "6"]),
).map(" ".join).filter(_valid)

near_transition = st.tuples(st.sampled_from(TRANSITIONS),
                            st.integers(-4 * 3600 * 10**6, 4 * 3600 * 10**6)).map(
    lambda pair: (pair[0][0], pair[0][1] + timedelta(microseconds=pair[1])))
anywhere = st.tuples(st.sampled_from(ZONES),
                     st.datetimes(datetime(2023, 1, 1), datetime(2025, 12, 31)).map(
                         lambda d: d.replace(tzinfo=UTC)))
zone_and_instant = st.one_of(near_transition, anywhere)

# SUNDIAL_EXAMPLES=5000 for a deeper search than the quick default.
PROPERTY = settings(max_examples=int(os.environ.get("SUNDIAL_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _is_gap_end(instant: datetime, tz: ZoneInfo) -> bool:
    before = (instant - timedelta(microseconds=1)).astimezone(tz).utcoffset()
    return before != instant.astimezone(tz).utcoffset()


@PROPERTY
@given(expr=cron_exprs, where=zone_and_instant)
def test_cron_fire_times_are_strictly_increasing_and_match(expr: str,
                                                           where: tuple[str, datetime]) -> None:
    zone_name, after = where
    spec = cron(expr, zone_name)
    slots = preview(spec, 6, after)
    assert slots, f"{expr} never fires"
    assert slots[0] > after
    assert all(a < b for a, b in pairwise(slots)), slots
    tz = ZoneInfo(zone_name)
    for slot in slots:
        wall = slot.astimezone(tz).replace(tzinfo=None)
        matches = next(CronSim(expr, wall - timedelta(minutes=1))) == wall
        assert matches or _is_gap_end(slot, tz), (expr, zone_name, slot)
    # No slot is passed over: asking from anywhere before the first slot finds it.
    midpoint = after + (slots[0] - after) / 2
    assert next_fire(spec, midpoint) == slots[0]
    assert next_fire(spec, slots[0] - timedelta(microseconds=1)) == slots[0]
    assert preview(spec, 5, slots[0]) == slots[1:]


@PROPERTY
@given(seconds=st.floats(0.001, 100_000), anchor=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
       offset_s=st.floats(-10**6, 10**7))
def test_interval_fire_times_are_strictly_increasing(seconds: float, anchor: datetime,
                                                      offset_s: float) -> None:
    start = anchor.replace(tzinfo=UTC)
    after = start + timedelta(seconds=offset_s)
    slots = preview(interval(seconds, start_at=start), 5, after)
    assert len(slots) == 5
    assert slots[0] > after
    assert slots[0] >= start
    assert all(a < b for a, b in pairwise(slots))


# --- plan: what a tick does ------------------------------------------------------------

def m(minutes: float) -> datetime:
    """T0 plus some minutes."""
    return t(T0) + timedelta(minutes=minutes)


def ms(*minutes: float) -> list[datetime]:
    return [m(x) for x in minutes]


def replace_policy(spec: Spec, policy: str) -> Spec:
    return Spec(**{**_fields(spec), "misfire_policy": policy})


def replace_grace(spec: Spec, grace: float) -> Spec:
    return Spec(**{**_fields(spec), "misfire_grace_seconds": grace})


def _fields(spec: Spec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in Spec.__slots__}


EVERY_MINUTE = interval(60, start_at=t(T0))
EVERY_10_MIN = {p: interval(600, start_at=t(T0), misfire_policy=p) for p in MISFIRE_POLICIES}

# (spec, stored next_run_at, now, look_ahead_s, expected Plan)
PLANS = [
    pytest.param(EVERY_MINUTE, m(10), m(10) + timedelta(seconds=2), 0, Plan(ms(10), m(11), 0),
                 id="on-time"),
    pytest.param(EVERY_MINUTE, m(11), m(10) + timedelta(seconds=2), 0, Plan([], m(11), 0),
                 id="not-due-yet"),
    pytest.param(EVERY_MINUTE, m(10), m(10) - timedelta(seconds=5), 10, Plan(ms(10), m(11), 0),
                 id="look-ahead-claims-a-slot-early"),
    pytest.param(EVERY_MINUTE, m(10), m(10), 90, Plan(ms(10, 11), m(12), 0),
                 id="look-ahead-spanning-two-slots"),
    pytest.param(EVERY_MINUTE, m(10), m(11), 60, Plan(ms(10, 11, 12), m(13), 0),
                 id="next-run-at-strictly-after-now-plus-look-ahead"),
    # An hour of downtime on a one-minute schedule; the slot of 01:10 is 30 s late.
    pytest.param(EVERY_MINUTE, m(10), m(70.5), 0, Plan(ms(70), m(71), 60),
                 id="run-once-on-time-slot-replaces-catch-up"),
    pytest.param(replace_policy(EVERY_MINUTE, "skip"), m(10), m(70.5), 0, Plan(ms(70), m(71), 60),
                 id="skip-still-runs-on-time-slot"),
    # Ten-minute schedule, down from 00:10 to 01:05: every due slot is beyond 60 s.
    pytest.param(EVERY_10_MIN["run_once"], m(10), m(65), 0, Plan(ms(60), m(70), 5),
                 id="run-once-one-catch-up-of-latest-missed"),
    pytest.param(EVERY_10_MIN["skip"], m(10), m(65), 0, Plan([], m(70), 6),
                 id="skip-none-jumps-to-next-future-slot"),
    pytest.param(EVERY_10_MIN["run_all"], m(10), m(65), 0, Plan(ms(10, 20, 30, 40, 50, 60), m(70), 0),
                 id="run-all-every-slot-within-a-day"),
    pytest.param(replace_grace(EVERY_10_MIN["run_all"], 1800), m(10), m(65), 0,
                 Plan(ms(40, 50, 60), m(70), 3),
                 id="run-all-bounded-by-its-grace"),
    pytest.param(replace_grace(EVERY_10_MIN["skip"], 1000), m(10), m(65), 0, Plan(ms(50, 60), m(70), 4),
                 id="skip-with-longer-grace"),
    pytest.param(replace_grace(EVERY_10_MIN["skip"], 300), m(10), m(65), 0, Plan(ms(60), m(70), 5),
                 id="slot-exactly-grace-late-is-on-time"),
    pytest.param(replace_grace(EVERY_10_MIN["run_once"], 0), m(10), m(10), 0, Plan(ms(10), m(20), 0),
                 id="zero-grace-slot-at-now-is-on-time"),
    # end_at: the last slot runs and the schedule deactivates.
    pytest.param(interval(600, start_at=t(T0), end_at=m(30)), m(30), m(30.1), 0, Plan(ms(30), None, 0),
                 id="end-at-last-slot-then-deactivate"),
    pytest.param(interval(600, start_at=t(T0), end_at=m(30)), m(10), m(300), 0, Plan(ms(30), None, 2),
                 id="end-at-passed-during-downtime-run-once"),
    pytest.param(interval(600, start_at=t(T0), end_at=m(30), misfire_policy="skip"), m(10), m(300), 0,
                 Plan([], None, 3), id="end-at-passed-during-downtime-skip"),
    # Never planned: the first slot comes from the anchor.
    pytest.param(EVERY_MINUTE, None, t(T0) + timedelta(seconds=5), 0, Plan(ms(0), m(1), 0),
                 id="never-planned-interval-from-start-at"),
    pytest.param(interval(60, created_at=m(0.5)), None, m(0.5), 0, Plan(ms(0.5), m(1.5), 0),
                 id="never-planned-interval-from-created-at"),
    pytest.param(interval(60), None, m(0.25), 0, Plan(ms(0.25), m(1.25), 0),
                 id="never-planned-interval-without-anchor-starts-now"),
    pytest.param(cron("*/10 * * * *", created_at=m(3)), None, m(5), 0, Plan([], m(10), 0),
                 id="never-planned-cron-waits-for-first-slot"),
    pytest.param(cron("*/10 * * * *", created_at=m(3)), None, m(10), 0, Plan(ms(10), m(20), 0),
                 id="never-planned-cron-due"),
    # once after downtime, under each policy: run_at was two hours ago.
    pytest.param(once(T0), t(T0), m(120), 0, Plan(ms(0), None, 0), id="once-late-run-once"),
    pytest.param(once(T0, misfire_policy="skip"), t(T0), m(120), 0, Plan([], None, 1),
                 id="once-late-skip"),
    pytest.param(once(T0, misfire_policy="run_all"), t(T0), m(120), 0, Plan(ms(0), None, 0),
                 id="once-late-run-all-within-a-day"),
    pytest.param(once(T0, misfire_policy="run_all", misfire_grace_seconds=60), t(T0), m(120), 0,
                 Plan([], None, 1), id="once-late-run-all-beyond-its-grace"),
    pytest.param(once(T0, misfire_policy="skip"), t(T0), m(0.5), 0, Plan(ms(0), None, 0),
                 id="once-on-time-runs-under-skip"),
    pytest.param(once(T0), None, m(0.5), 0, Plan(ms(0), None, 0), id="once-never-planned"),
    # Cron after downtime.
    pytest.param(cron("30 2 * * *", "Europe/Paris", misfire_policy="run_all",
                      misfire_grace_seconds=2 * 86400),
                 t("2024-03-30T02:30+01:00"), t("2024-03-31T12:00+02:00"), 0,
                 Plan(ts("2024-03-30T02:30+01:00", "2024-03-31T03:00+02:00"),
                      t("2024-04-01T02:30+02:00"), 0),
                 id="run-all-over-spring-forward-one-run-for-the-skipped-slot"),
    pytest.param(cron("30 1 * * *", "America/New_York", misfire_policy="run_all"),
                 t("2024-11-03T01:30-04:00"), t("2024-11-03T03:00-05:00"), 0,
                 Plan(ts("2024-11-03T01:30-04:00"), t("2024-11-04T01:30-05:00"), 0),
                 id="run-all-over-fall-back-one-run-for-the-repeated-slot"),
]


@pytest.mark.parametrize(("spec", "next_run_at", "now", "look_ahead_s", "expected"), PLANS)
def test_plan(spec: Spec, next_run_at: datetime | None, now: datetime, look_ahead_s: float,
              expected: Plan) -> None:
    got = plan(spec, next_run_at, now, timedelta(seconds=look_ahead_s))
    assert got == expected
    assert got.is_active == (expected.next_run_at is not None)


def test_run_all_caps_one_tick_at_the_latest_slots() -> None:
    spec = interval(1, start_at=t(T0), misfire_policy="run_all")
    now = m(120)
    got = plan(spec, t(T0), now)
    assert len(got.slots) == MAX_CATCHUP_RUNS
    assert got.slots[-1] == now
    assert got.slots[0] == now - timedelta(seconds=MAX_CATCHUP_RUNS - 1)
    assert got.missed == 7201 - MAX_CATCHUP_RUNS
    assert got.next_run_at == now + timedelta(seconds=1)


@pytest.mark.parametrize(("spec", "down"), [
    pytest.param(interval(MIN_INTERVAL_S, start_at=t(T0), misfire_policy="run_all",
                          misfire_grace_seconds=366 * 86400), timedelta(days=365),
                 id="interval-at-the-minimum-a-year-down"),
    pytest.param(cron("* * * * *", "Europe/Paris", misfire_policy="run_all",
                      misfire_grace_seconds=366 * 86400), timedelta(days=365),
                 id="every-minute-cron-a-year-down-across-dst"),
    pytest.param(cron("* * * * *", "Pacific/Apia", misfire_policy="run_all",
                      misfire_grace_seconds=3 * 86400), timedelta(days=2),
                 id="every-minute-cron-over-the-day-samoa-skipped"),
    pytest.param(cron("* * * * *", "America/New_York", misfire_policy="run_once"),
                 timedelta(days=300), id="run-once-after-months"),
])
def test_one_plan_walks_about_max_catchup_slots_whatever_the_downtime(
        spec: Spec, down: timedelta, monkeypatch: pytest.MonkeyPatch) -> None:
    from sundial.core import schedule
    stored = t("2011-12-29T00:00Z") if spec.timezone == "Pacific/Apia" else t(T0)
    now = stored + down
    calls = 0
    real_next_fire = schedule.next_fire

    def counting(*args: object) -> datetime | None:
        nonlocal calls
        calls += 1
        return real_next_fire(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(schedule, "next_fire", counting)
    got = plan(spec, stored, now)
    assert calls < 3 * MAX_CATCHUP_RUNS, f"{calls} slots computed for one plan"
    monkeypatch.undo()
    # The same runs as walking every slot: the latest on-time ones, up to the cap (they
    # lie within the last MAX_CATCHUP_RUNS steps, plus a day for Samoa's skipped one).
    step = timedelta(seconds=spec.interval_seconds or 60)
    reach = MAX_CATCHUP_RUNS * step + (timedelta(days=1) if spec.kind == "cron" else step)
    walk_from = max(stored, now - spec.grace, now - reach)
    on_time: deque[datetime] = deque(maxlen=MAX_CATCHUP_RUNS)
    slot = next_fire(spec, walk_from - timedelta(microseconds=1))
    while slot is not None and slot <= now:
        on_time.append(slot)
        slot = next_fire(spec, slot)
    assert got.slots == list(on_time)
    assert got.next_run_at == next_fire(spec, now)
    assert got.missed >= 1


# After long downtime a cron schedule's missed count is a lower bound (not every old
# slot is enumerated), so these cases check the runs and the next slot only.
@pytest.mark.parametrize(("spec", "next_run_at", "now", "slots", "following"), [
    pytest.param(cron("@monthly"), "2024-01-01T00:00Z", "2024-03-15T00:00Z",
                 ["2024-03-01T00:00Z"], "2024-04-01T00:00Z",
                 id="monthly-run-once-catches-up-a-slot-weeks-back"),
    pytest.param(cron("@monthly", misfire_policy="skip"), "2024-01-01T00:00Z", "2024-03-15T00:00Z",
                 [], "2024-04-01T00:00Z", id="monthly-skip"),
    pytest.param(cron("@monthly", misfire_policy="run_all"), "2024-01-01T00:00Z",
                 "2024-03-01T12:00Z", ["2024-03-01T00:00Z"], "2024-04-01T00:00Z",
                 id="monthly-run-all-only-within-a-day"),
    pytest.param(cron("0 0 29 2 *"), "2016-02-29T00:00Z", "2025-01-01T00:00Z",
                 ["2024-02-29T00:00Z"], "2028-02-29T00:00Z", id="leap-day-run-once-years-back"),
    pytest.param(cron("@hourly", misfire_policy="run_all"), "2024-01-01T00:00Z", "2024-01-10T00:30Z",
                 [f"2024-01-{d:02}T{h:02}:00Z" for d, h in [(9, h) for h in range(1, 24)] + [(10, 0)]],
                 "2024-01-10T01:00Z", id="hourly-run-all-the-last-day-of-nine"),
    pytest.param(cron("0 9 * * *", "Australia/Sydney"), "2024-01-01T09:00+11:00",
                 "2024-07-01T12:00+10:00", ["2024-07-01T09:00+10:00"], "2024-07-02T09:00+10:00",
                 id="sydney-run-once-after-months-across-dst"),
])
def test_plan_after_long_cron_downtime(spec: Spec, next_run_at: str, now: str, slots: list[str],
                                       following: str) -> None:
    got = plan(spec, t(next_run_at), t(now))
    assert got.slots == ts(*slots)
    assert got.next_run_at == t(following)
    assert got.missed >= 1


def test_disabled_job_slots_pass_without_runs() -> None:
    got = plan(EVERY_MINUTE, m(10), m(12.5), enabled=False)
    assert got == Plan([], m(13), 3)
    assert plan(EVERY_10_MIN["run_once"], m(10), m(65), enabled=False) == Plan([], m(70), 6)


def test_default_graces() -> None:
    assert DEFAULT_GRACE_S == {"run_once": 60.0, "skip": 60.0, "run_all": 86400.0}
    assert cron("* * * * *", misfire_policy="run_all").grace == timedelta(days=1)
    assert cron("* * * * *", misfire_grace_seconds=5).grace == timedelta(seconds=5)


specs = st.one_of(
    st.builds(lambda s, p, g: interval(s, start_at=t(T0), misfire_policy=p, misfire_grace_seconds=g),
              st.sampled_from([7.5, 60, 600, 3600, 86400]), st.sampled_from(MISFIRE_POLICIES),
              st.sampled_from([None, 0, 30, 3600])),
    st.builds(lambda e, z, p, g: cron(e, z, misfire_policy=p, misfire_grace_seconds=g),
              st.sampled_from(["*/5 * * * *", "30 2 * * *", "0 * * * *", "@monthly", "0 0 L * *"]),
              st.sampled_from(ZONES), st.sampled_from(MISFIRE_POLICIES),
              st.sampled_from([None, 0, 30, 3600])),
)


@PROPERTY
@given(spec=specs, down_s=st.integers(0, 40 * 86400), look_ahead_s=st.sampled_from([0, 1, 30]),
       start=st.datetimes(datetime(2023, 1, 1), datetime(2025, 1, 1)), enabled=st.booleans())
def test_plan_always_ends_strictly_in_the_future(spec: Spec, down_s: int, look_ahead_s: int,
                                                 start: datetime, enabled: bool) -> None:
    stored = first_fire(spec, start.replace(tzinfo=UTC))
    assert stored is not None
    now = stored + timedelta(seconds=down_s)
    look_ahead = timedelta(seconds=look_ahead_s)
    got = plan(spec, stored, now, look_ahead, enabled=enabled)
    assert got.next_run_at is not None and got.next_run_at > now + look_ahead
    assert all(stored <= s <= now + look_ahead for s in got.slots)
    assert all(a < b for a, b in pairwise(got.slots))
    assert len(got.slots) <= MAX_CATCHUP_RUNS
    if not enabled:
        assert got.slots == []
        return
    # Slots within the grace always run (the latest MAX_CATCHUP_RUNS of them); beyond it,
    # only run_once's one catch-up of the latest missed slot, when nothing is on time.
    earliest = now - spec.grace
    on_time: deque[datetime] = deque(maxlen=MAX_CATCHUP_RUNS)
    slot = next_fire(spec, max(earliest, stored) - timedelta(microseconds=1))
    while slot is not None and slot <= now + look_ahead:
        on_time.append(slot)
        slot = next_fire(spec, slot)
    if spec.misfire_policy == "run_once" and not on_time and stored < earliest:
        assert len(got.slots) == 1 and got.slots[0] < earliest
        assert next_fire(spec, got.slots[0]) >= earliest  # the latest missed one
    else:
        assert got.slots == list(on_time)


# --- jitter --------------------------------------------------------------------------------

def test_jitter_delays_within_bound() -> None:
    slot = t(T0)
    rng = random.Random(7)
    delays = [(jittered(slot, 30, rng) - slot).total_seconds() for _ in range(200)]
    assert all(0 <= d <= 30 for d in delays)
    assert max(delays) - min(delays) > 10  # actually spread, not constant
    assert jittered(slot, 0) == slot


# --- validation: every error names the field, the value and the fix ---------------------

NOW = t("2024-06-01T12:00Z")

INVALID = [
    pytest.param(cron("61 * * * *"), "cron", "'61 * * * *'", "minute '61' must be 0-59",
                 id="minute-out-of-range"),
    pytest.param(cron("0 24 * * *"), "cron", "'0 24 * * *'", "hour '24' must be 0-23", id="hour"),
    pytest.param(cron("0 0 32 * *"), "cron", "'0 0 32 * *'", "day-of-month '32' must be 1-31",
                 id="day-of-month"),
    pytest.param(cron("0 0 * 13 *"), "cron", "'0 0 * 13 *'", "month '13' must be 1-12", id="month"),
    pytest.param(cron("0 0 * * 8"), "cron", "'0 0 * * 8'", "day-of-week '8' must be 0-7",
                 id="day-of-week"),
    pytest.param(cron("0 0 30 2 *"), "cron", "'0 0 30 2 *'", "a day that exists",
                 id="february-30-never-exists"),
    pytest.param(cron("0 0 * * * *"), "cron", "'0 0 * * * *'", "has 6 fields; expected 5",
                 id="six-fields"),
    pytest.param(cron("0 0 *"), "cron", "'0 0 *'", "has 3 fields; expected 5", id="three-fields"),
    pytest.param(cron("@fortnightly"), "cron", "'@fortnightly'", "use one of @annually, @daily",
                 id="unknown-alias"),
    pytest.param(cron(""), "cron", "''", "like '*/5 * * * *'", id="empty-cron"),
    pytest.param(Spec("cron"), "cron", "None", "like '*/5 * * * *'", id="missing-cron"),
    pytest.param(cron("0 9 * * *", "Mars/Olympus"), "timezone", "'Mars/Olympus'",
                 "use an IANA name like 'Europe/Paris'", id="unknown-zone"),
    pytest.param(cron("0 9 * * *", "../etc/passwd"), "timezone", "'../etc/passwd'",
                 "IANA name", id="zone-path-traversal"),
    pytest.param(cron("0 9 * * *", "Europe"), "timezone", "'Europe'", "IANA name like",
                 id="zone-a-folder-of-zones"),
    pytest.param(cron("0 9 * * *", "localtime"), "timezone", "'localtime'", "IANA name like",
                 id="zone-a-host-file"),
    pytest.param(cron("0 9 * * *", "right/UTC"), "timezone", "'right/UTC'", "IANA name like",
                 id="zone-with-leap-seconds-not-in-tzdata"),
    pytest.param(cron("0 9 * * *", "europe/paris"), "timezone", "'europe/paris'",
                 "'Europe/Paris'", id="zone-wrong-case"),
    pytest.param(cron("0 9 * * *", "Europe/Paris\x00"), "timezone", "'Europe/Paris\\x00'",
                 "IANA name", id="zone-with-nul"),
    pytest.param(interval(0, start_at=NOW), "interval_seconds", "0", "from 1 to 316224000",
                 id="interval-zero"),
    pytest.param(interval(-5, start_at=NOW), "interval_seconds", "-5", "from 1 to",
                 id="interval-negative"),
    pytest.param(interval(float("inf"), start_at=NOW), "interval_seconds", "inf", "from 1 to",
                 id="interval-infinite"),
    pytest.param(interval(1e-6, start_at=NOW), "interval_seconds", "1e-06",
                 "from 1 to 316224000 (ten years); for work more often than once a second, "
                 "loop inside one run", id="interval-a-microsecond"),
    pytest.param(interval(0.999, start_at=NOW), "interval_seconds", "0.999", "from 1 to",
                 id="interval-just-below-the-minimum"),
    pytest.param(interval(MAX_INTERVAL_S * 1.01, start_at=NOW), "interval_seconds", "319386240.0",
                 "from 1 to 316224000", id="interval-beyond-ten-years"),
    pytest.param(Spec("interval"), "interval_seconds", "None", "from 1 to", id="interval-missing"),
    pytest.param(once("2024-06-01T11:59Z"), "run_at", "'2024-06-01T11:59:00+00:00'",
                 "is in the past; pick a time after 2024-06-01T12:00:00+00:00", id="once-in-the-past"),
    pytest.param(Spec("once"), "run_at", "None", "a once schedule needs run_at", id="once-no-run-at"),
    pytest.param(once("2025-01-01T00:00Z", end_at=t("2024-12-01T00:00Z")), "run_at",
                 "'2025-01-01T00:00:00+00:00'", "outside start_at/end_at", id="once-beyond-end-at"),
    pytest.param(Spec("once", run_at=datetime(2030, 1, 1, 9)), "run_at", "'2030-01-01T09:00:00'",
                 "needs a UTC offset, e.g. 2030-01-01T09:00:00+00:00", id="naive-run-at"),
    pytest.param(cron("0 9 * * *", start_at=datetime(2030, 1, 1)), "start_at",
                 "'2030-01-01T00:00:00'", "needs a UTC offset", id="naive-start-at"),
    pytest.param(cron("0 9 * * *", end_at=datetime(2030, 1, 1)), "end_at", "'2030-01-01T00:00:00'",
                 "needs a UTC offset", id="naive-end-at"),
    pytest.param(cron("0 9 * * *", start_at=t("2030-01-01T00:00Z"), end_at=t("2030-01-01T00:00Z")),
                 "end_at", "'2030-01-01T00:00:00+00:00'",
                 "must be after start_at (2030-01-01T00:00:00+00:00)", id="end-at-equals-start-at"),
    pytest.param(cron("0 9 * * *", start_at=t("2030-01-02T00:00Z"), end_at=t("2030-01-01T00:00Z")),
                 "end_at", "'2030-01-01T00:00:00+00:00'", "must be after start_at",
                 id="end-at-before-start-at"),
    pytest.param(cron("0 0 1 1 *", start_at=t("2030-02-01T00:00Z"), end_at=t("2030-03-01T00:00Z")),
                 "end_at", "'2030-03-01T00:00:00+00:00'",
                 "would never fire; nothing is left to run after 2024-06-01T12:00:00+00:00",
                 id="cron-with-no-slot-within-its-bounds"),
    pytest.param(interval(60, start_at=t("2024-01-01T00:00Z"), end_at=t("2024-02-01T00:00Z")),
                 "end_at", "'2024-02-01T00:00:00+00:00'", "would never fire",
                 id="interval-whose-end-has-passed"),
    pytest.param(Spec("hourly"), "kind", "'hourly'", "must be one of interval, cron, once",  # type: ignore[arg-type]
                 id="unknown-kind"),
    pytest.param(cron("0 9 * * *", misfire_policy="later"), "misfire_policy", "'later'",
                 "must be one of run_once, skip, run_all", id="unknown-policy"),
    pytest.param(cron("0 9 * * *", jitter_seconds=-1), "jitter_seconds", "-1", "from 0 to 86400",
                 id="negative-jitter"),
    pytest.param(cron("0 9 * * *", jitter_seconds=float("nan")), "jitter_seconds", "nan",
                 "from 0 to 86400", id="nan-jitter"),
    pytest.param(cron("0 9 * * *", jitter_seconds=1e300), "jitter_seconds", "1e+300",
                 "from 0 to 86400 (a day)", id="jitter-beyond-a-day"),
    pytest.param(cron("0 9 * * *", misfire_grace_seconds=1e300), "misfire_grace_seconds",
                 "1e+300", "from 0 to 31622400 (a year)", id="grace-beyond-a-year"),
    pytest.param(cron("0 9 * * *", misfire_grace_seconds=-1), "misfire_grace_seconds", "-1",
                 "or null for the policy's default", id="negative-grace"),
    pytest.param(Spec("cron", cron="0 9 * * *", interval_seconds=60), "kind", "'cron'",
                 "takes cron, not interval_seconds", id="cron-with-interval"),
    pytest.param(Spec("interval", interval_seconds=60, cron="0 9 * * *"), "kind", "'interval'",
                 "takes interval_seconds, not cron", id="interval-with-cron"),
]


@pytest.mark.parametrize(("spec", "field", "value", "fix"), INVALID)
def test_validate_names_field_value_and_fix(spec: Spec, field: str, value: str, fix: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        validate(spec, NOW)
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f"{field} {value}: "), message
    assert fix in message, message


@pytest.mark.parametrize(("spec", "normalised"), [
    pytest.param(cron("@hourly"), "0 * * * *", id="alias-expanded"),
    pytest.param(cron(" 0  9 * *  MON-FRI "), "0 9 * * MON-FRI", id="whitespace"),
    pytest.param(cron("0 0 L * *", "Asia/Kolkata"), "0 0 L * *", id="L"),
])
def test_validate_normalises_cron(spec: Spec, normalised: str) -> None:
    assert validate(spec, NOW).cron == normalised


@pytest.mark.parametrize("spec", [
    pytest.param(interval(1, start_at=NOW, jitter_seconds=10), id="interval-at-the-minimum"),
    pytest.param(interval(MAX_INTERVAL_S, start_at=NOW), id="interval-at-the-maximum"),
    pytest.param(once("2024-06-01T12:00:01Z", start_at=NOW), id="once-in-bounds"),
    pytest.param(cron("*/5 * * * *", "America/New_York", end_at=t("2030-01-01T00:00-05:00")),
                 id="cron-with-end"),
    pytest.param(cron("0 9 * * *", misfire_policy="run_all", misfire_grace_seconds=0), id="zero-grace"),
])
def test_validate_accepts(spec: Spec) -> None:
    assert validate(spec, NOW) == spec


def test_validate_cron_returns_expansion() -> None:
    assert validate_cron("@weekly") == "0 0 * * 0"


def test_from_row_ignores_nulls_and_other_columns() -> None:
    row = {"kind": "cron", "cron": "0 9 * * *", "timezone": "Europe/Paris", "interval_seconds": None,
           "misfire_grace_seconds": None, "id": 12, "next_run_at": t(T0), "created_at": t(T0)}
    assert Spec.from_row(row) == cron("0 9 * * *", "Europe/Paris", created_at=t(T0))
