"""Schedule math, pure: when does a schedule fire, and what does a tick do after downtime.

Kinds
    interval  every `interval_seconds`, anchored to `start_at` (or the creation time)
    cron      a 5-field expression (or @hourly-style alias) in an IANA time zone
    once      at `run_at`, then the schedule deactivates

Time zones (cron): expressions are matched against the wall clock of the schedule's
zone. A wall time that does not exist (spring forward) fires once, at the first valid
instant after it (the end of the gap). A wall time that occurs twice (fall back) fires
once, at its first occurrence. Schedules that need constant real-time spacing across
DST use `interval`.

Misfires: a slot later than the grace when the tick sees it is *missed*. Slots within
the grace always run, under every policy. Missed slots: `run_once` makes one run of the
latest missed slot (unless an on-time slot runs in the same tick); `skip` and `run_all`
make none. The policies differ in their default grace (DEFAULT_GRACE_S): `run_all`
catches up every slot of the last day, so its grace says how far back a catch-up goes.
One tick plans at most MAX_CATCHUP_RUNS runs per schedule, the latest.

All instants are aware datetimes; "now" is always the database's clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from sundial.core.errors import InvalidSchedule

Kind = Literal["interval", "cron", "once"]
MisfirePolicy = Literal["run_once", "skip", "run_all"]
KINDS: tuple[str, ...] = ("interval", "cron", "once")
MISFIRE_POLICIES: tuple[str, ...] = ("run_once", "skip", "run_all")

DEFAULT_GRACE_S: dict[str, float] = {"run_once": 60.0, "skip": 60.0, "run_all": 86400.0}
# A single tick never plans more than this many runs for one schedule; the latest win.
MAX_CATCHUP_RUNS = 1000

CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L, and a day that exists in the chosen months",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday; 5L and 1#2 also work)",
}
# Gaps are at most a few hours long and start on a minute boundary.
_MAX_GAP_MINUTES = 24 * 60
# A cron expression that matches no date in this many candidates is treated as never.
_MAX_CRON_CANDIDATES = 100_000


@dataclass(frozen=True, slots=True)
class Spec:
    """What the schedule math needs of a `schedules` row."""

    kind: Kind
    interval_seconds: float | None = None
    cron: str | None = None
    run_at: datetime | None = None
    timezone: str = "UTC"
    jitter_seconds: float = 0.0
    start_at: datetime | None = None
    end_at: datetime | None = None
    misfire_policy: MisfirePolicy = "run_once"
    misfire_grace_seconds: float | None = None
    # The interval anchor when start_at is unset: the schedule's creation time.
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Spec:
        return cls(**{f: row[f] for f in cls.__slots__ if f in row and row[f] is not None})

    @property
    def grace(self) -> timedelta:
        seconds = self.misfire_grace_seconds
        if seconds is None:
            seconds = DEFAULT_GRACE_S[self.misfire_policy]
        return timedelta(seconds=seconds)


# --- validation --------------------------------------------------------------------


def expand_cron(expr: str) -> str:
    expr = " ".join(expr.split())
    return CRON_ALIASES.get(expr.lower(), expr)


def validate_cron(expr: str) -> str:
    """The expression with aliases expanded; raises InvalidSchedule naming the problem."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidSchedule("cron", expr, "must be a 5-field cron expression like '*/5 * * * *'")
    expanded = expand_cron(expr)
    if expanded.startswith("@"):
        raise InvalidSchedule("cron", expr, "unknown alias; use one of "
                              + ", ".join(sorted(CRON_ALIASES)))
    fields = expanded.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule("cron", expr, f"has {len(fields)} fields; expected 5 "
                              "(minute hour day-of-month month day-of-week)")
    try:
        CronSim(expanded, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise InvalidSchedule("cron", expr, _cron_reason(str(exc), fields)) from None
    return expanded


def _cron_reason(message: str, fields: list[str]) -> str:
    """cronsim says "Bad minute"; say which value is bad and what the field accepts."""
    for index, (field, accepted) in enumerate(_CRON_FIELDS.items()):
        if message.lower().removeprefix("bad ").rstrip(".") == field:
            return f"{field} {fields[index]!r} must be {accepted}"
    return message.rstrip(".")


def zone(name: str) -> ZoneInfo:
    try:
        if not name or name != name.strip() or name.startswith("/") or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # OSError: a directory of the zone data ("Europe") is no zone.
        raise InvalidSchedule("timezone", name, "unknown time zone; use an IANA name like "
                              "'Europe/Paris' or 'UTC'") from None


def validate(spec: Spec, now: datetime | None = None) -> Spec:
    """Check every field; return the spec with the cron expression normalised.

    `now` (if given) refuses a `once` schedule whose run_at has already passed.
    """
    if spec.kind not in KINDS:
        raise InvalidSchedule("kind", spec.kind, "must be one of " + ", ".join(KINDS))
    if spec.misfire_policy not in MISFIRE_POLICIES:
        raise InvalidSchedule("misfire_policy", spec.misfire_policy,
                              "must be one of " + ", ".join(MISFIRE_POLICIES))
    zone(spec.timezone)
    for name in ("start_at", "end_at", "run_at", "created_at"):
        value = getattr(spec, name)
        if value is not None and value.tzinfo is None:
            raise InvalidSchedule(name, value.isoformat(), "needs a UTC offset, "
                                  "e.g. 2030-01-01T09:00:00+00:00")
    if not _finite(spec.jitter_seconds) or spec.jitter_seconds < 0:
        raise InvalidSchedule("jitter_seconds", spec.jitter_seconds,
                              "must be a number of seconds >= 0")
    grace = spec.misfire_grace_seconds
    if grace is not None and (not _finite(grace) or grace < 0):
        raise InvalidSchedule("misfire_grace_seconds", grace, "must be a number of seconds "
                              ">= 0, or null for the policy's default")
    if spec.start_at and spec.end_at and spec.end_at <= spec.start_at:
        raise InvalidSchedule("end_at", spec.end_at.isoformat(), "must be after start_at "
                              f"({spec.start_at.isoformat()})")
    if spec.kind == "interval":
        if not _finite(spec.interval_seconds) or not spec.interval_seconds >= 1e-6:  # type: ignore[operator]
            raise InvalidSchedule("interval_seconds", spec.interval_seconds,
                                  "must be a number of seconds greater than 0 "
                                  "(at least 0.000001)")
        if spec.cron is not None or spec.run_at is not None:
            raise InvalidSchedule("kind", spec.kind, "an interval schedule takes "
                                  "interval_seconds, not cron or run_at")
    elif spec.kind == "cron":
        if spec.interval_seconds is not None or spec.run_at is not None:
            raise InvalidSchedule("kind", spec.kind, "a cron schedule takes cron, "
                                  "not interval_seconds or run_at")
        spec = replace(spec, cron=validate_cron(spec.cron))  # type: ignore[arg-type]
    else:
        if spec.run_at is None:
            raise InvalidSchedule("run_at", None, "a once schedule needs run_at")
        if spec.interval_seconds is not None or spec.cron is not None:
            raise InvalidSchedule("kind", spec.kind, "a once schedule takes run_at, "
                                  "not interval_seconds or cron")
        if ((spec.start_at and spec.run_at < spec.start_at)
                or (spec.end_at and spec.run_at > spec.end_at)):
            raise InvalidSchedule("run_at", spec.run_at.isoformat(), "is outside start_at/end_at; "
                                  "it would never fire (drop the bounds or move run_at)")
        if now is not None and spec.run_at <= now:
            raise InvalidSchedule("run_at", spec.run_at.isoformat(), "is in the past; "
                                  "pick a time after " + now.isoformat())
    return spec


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def known_timezones() -> set[str]:
    return available_timezones()


# --- fire times ----------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    return _utc(wall.replace(tzinfo=tz)).astimezone(tz).replace(tzinfo=None) == wall


def _wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a naive wall time means: first occurrence; a skipped time -> gap end."""
    if not _exists(wall, tz):
        probe = wall.replace(second=0, microsecond=0)
        for _ in range(_MAX_GAP_MINUTES):
            probe += timedelta(minutes=1)
            if _exists(probe, tz):
                wall = probe
                break
    return _utc(wall.replace(tzinfo=tz, fold=0))


def _next_cron(expr: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    after = _utc(after)
    wall_after = after.astimezone(tz).replace(tzinfo=None)
    # Candidates start strictly after the wall clock of `after`: an ambiguous wall time
    # maps to its first occurrence and a skipped one to the end of its gap, so a wall
    # time at or before wall_after never maps to an instant after `after`. The reverse
    # (a later wall time mapping to an earlier instant, after a fall-back) is what the
    # loop skips over.
    candidates = CronSim(expr, wall_after)
    for _ in range(_MAX_CRON_CANDIDATES):
        try:
            wall = next(candidates)
        except StopIteration:
            return None
        instant = _wall_to_instant(wall, tz)
        if instant > after:
            return instant
    return None


def _interval_anchor(spec: Spec) -> datetime:
    anchor = spec.start_at or spec.created_at
    if anchor is None:
        raise InvalidSchedule("start_at", None, "an interval schedule needs start_at "
                              "or a creation time to anchor to")
    return _utc(anchor)


def _next_interval(spec: Spec, after: datetime) -> datetime:
    anchor = _interval_anchor(spec)
    after = _utc(after)
    if after < anchor:
        return anchor
    step_us = round(spec.interval_seconds * 1_000_000)  # type: ignore[operator]
    elapsed_us = (after - anchor) // timedelta(microseconds=1)
    k = elapsed_us // step_us + 1
    return anchor + timedelta(microseconds=k * step_us)


def _latest_interval_at_or_before(spec: Spec, t: datetime) -> datetime | None:
    anchor = _interval_anchor(spec)
    t = _utc(t)
    if t < anchor:
        return None
    step_us = round(spec.interval_seconds * 1_000_000)  # type: ignore[operator]
    k = ((t - anchor) // timedelta(microseconds=1)) // step_us
    return anchor + timedelta(microseconds=k * step_us)


def next_fire(spec: Spec, after: datetime) -> datetime | None:
    """The first slot strictly after `after`, within start_at/end_at; None when none is left."""
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - timedelta(microseconds=1)
    if spec.kind == "interval":
        slot: datetime | None = _next_interval(spec, after)
    elif spec.kind == "cron":
        slot = _next_cron(expand_cron(spec.cron or ""), zone(spec.timezone), after)
    else:
        slot = _utc(spec.run_at) if spec.run_at and spec.run_at > after else None  # type: ignore[arg-type]
    if slot is not None and spec.end_at is not None and slot > spec.end_at:
        return None
    return slot


def first_fire(spec: Spec, now: datetime) -> datetime | None:
    """The first slot of a new schedule: its first slot at or after `now`
    (for `once`, run_at itself, even if the caller lets it be slightly past)."""
    if spec.kind == "once":
        return next_fire(spec, _utc(spec.run_at) - timedelta(microseconds=1))  # type: ignore[arg-type]
    return next_fire(spec, now - timedelta(microseconds=1))


def preview(spec: Spec, count: int, after: datetime) -> list[datetime]:
    """The next `count` fire times strictly after `after`."""
    out: list[datetime] = []
    t: datetime | None = after
    while len(out) < count:
        t = next_fire(spec, t)  # type: ignore[arg-type]
        if t is None:
            break
        out.append(t)
    return out


# --- what a tick does ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What one tick does for one claimed schedule."""

    slots: list[datetime]          # one run per slot (nominal times, UTC)
    next_run_at: datetime | None   # None: nothing left; the schedule deactivates
    missed: int                    # due slots that get no run (a lower bound after
                                   # downtime of more than two days on a cron schedule)

    @property
    def is_active(self) -> bool:
        return self.next_run_at is not None


def plan(spec: Spec, next_run_at: datetime | None, now: datetime,
         look_ahead: timedelta = timedelta(0), *, enabled: bool = True) -> Plan:
    """Runs to create and the new next_run_at for a schedule claimed at `now`.

    `next_run_at` is the stored first pending slot (None for a schedule never planned:
    its first slot is computed from its anchor). The new next_run_at is strictly after
    `now + look_ahead`. A disabled job's slots pass without runs.
    """
    horizon = now + look_ahead
    if next_run_at is None:
        if spec.start_at is None and spec.created_at is None:
            spec = replace(spec, created_at=now)
        next_run_at = first_fire(spec, _utc(spec.start_at or spec.created_at))  # type: ignore[arg-type]
    if next_run_at is None or next_run_at > horizon:
        return Plan([], next_run_at, 0)

    grace = spec.grace
    on_time: list[datetime] = []
    latest_missed: datetime | None = None
    missed = 0
    slots_iter, skipped = _due_slots(spec, next_run_at, horizon, now - grace)
    missed += skipped
    for slot in slots_iter:
        if now - slot <= grace:
            on_time.append(slot)
        else:
            missed += 1
            latest_missed = slot
    following = next_fire(spec, horizon)

    if not enabled:
        return Plan([], following, missed + len(on_time))
    if spec.misfire_policy == "run_once" and not on_time and latest_missed is not None:
        slots = [latest_missed]
        missed -= 1
    else:
        slots = on_time
    if len(slots) > MAX_CATCHUP_RUNS:
        missed += len(slots) - MAX_CATCHUP_RUNS
        slots = slots[-MAX_CATCHUP_RUNS:]
    return Plan(slots, following, missed)


def _due_slots(spec: Spec, first: datetime, horizon: datetime,
               earliest_wanted: datetime) -> tuple[Iterator[datetime], int]:
    """Slots from `first` up to `horizon`, and how many were passed over without being
    enumerated: after long downtime only the latest slot before `earliest_wanted`
    matters (run_once needs it), so the scan starts there."""
    start = first
    skipped = 0
    if spec.kind == "interval" and first < earliest_wanted:
        until = earliest_wanted if spec.end_at is None else min(earliest_wanted, spec.end_at)
        latest_old = _latest_interval_at_or_before(spec, until)
        if latest_old is not None and latest_old > first:
            step_us = round(spec.interval_seconds * 1_000_000)  # type: ignore[operator]
            skipped = ((latest_old - first) // timedelta(microseconds=1)) // step_us
            start = latest_old
    elif spec.kind == "cron":
        # Widen the window back from earliest_wanted until it holds a slot, so the
        # latest missed slot is among those walked (a @monthly one can be weeks back).
        window = timedelta(days=2)
        while earliest_wanted - window > first:
            restart = next_fire(spec, earliest_wanted - window)
            if restart is not None and restart <= earliest_wanted:
                skipped = 1  # at least `first`; the rest are not counted
                start = restart
                break
            window *= 2

    def walk() -> Iterator[datetime]:
        slot: datetime | None = start
        while slot is not None and slot <= horizon:
            yield slot
            slot = next_fire(spec, slot)

    return walk(), skipped


def jittered(slot: datetime, jitter_seconds: float, rng: random.Random | None = None) -> datetime:
    """When a run of `slot` becomes available: the slot plus a uniform random jitter."""
    if jitter_seconds <= 0:
        return slot
    return slot + timedelta(seconds=(rng or random).uniform(0, jitter_seconds))
