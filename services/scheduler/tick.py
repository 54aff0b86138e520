"""A tick: claim due schedules, record one run per due slot, advance every schedule —
in one transaction, set-based — and return the runs to publish after the commit.

A claimed schedule that cannot be planned (a bad cron, zone or interval written with
SQL) is set aside with its error, in the same transaction; the others go on."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from sundial.core import faults, schedule, zones
from sundial.core.errors import InvalidSchedule
from sundial.core.logging import get_logger
from sundial.core.messages import ScheduledBodies
from sundial.core.schedule import Plan, Spec, jittered, plan, validate
from sundial.core.sql import q

log = get_logger("scheduler.tick")
# A schedule whose planning failed for a reason validation does not know is tried again
# this many seconds later.
POSTPONE_S = 60.0


@dataclass
class TickResult:
    claimed: int = 0
    created: int = 0
    missed: int = 0
    deactivated: int = 0
    set_aside: int = 0
    full: bool = False              # the batch was full: more may be due right now
    to_publish: list[dict[str, Any]] = field(default_factory=list)
    run_schedules: dict[int, int] = field(default_factory=dict)  # run id -> schedule id


async def tick(pool: asyncpg.Pool, *, batch_size: int, look_ahead_s: float, lease_s: float,
               rng: random.Random | None = None) -> TickResult:
    """One batch. Commits before returning; publishing is the caller's (outbox)."""
    result = TickResult()
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetch(q("claim_due_schedules"), batch_size, look_ahead_s)
        if not claimed:
            return result
        result.claimed = len(claimed)
        result.full = sum(1 for r in claimed if r["due"]) >= batch_size
        faults.reached("after_claim")
        now: datetime = claimed[0]["db_now"]
        look_ahead = timedelta(seconds=look_ahead_s)

        slot_schedule: list[int] = []
        slot_job: list[int] = []
        slot_at: list[datetime] = []
        slot_available: list[datetime] = []
        slot_attempts: list[int] = []
        advance: list[tuple[int, datetime | None, bool]] = []
        set_aside: dict[int, str] = {}
        postponed: dict[int, str] = {}
        by_schedule: dict[int, asyncpg.Record] = {}
        for row in claimed:
            by_schedule[row["id"]] = row
            try:
                p, available = _plan_row(row, now, look_ahead, rng)
            except InvalidSchedule as exc:
                set_aside[row["id"]] = (f"schedule {row['id']}: {exc}; set aside until fixed "
                                        f"(PATCH /api/schedules/{row['id']}, or edit it in "
                                        "the dashboard)")
                continue
            except Exception as exc:
                # Not a value validation knows to refuse: a fault as likely as a bad row (a
                # bug, a broken zone database), so the row is not set aside for good but
                # tried again later, and the traceback goes to the log.
                log.exception("schedule.unplannable", schedule_id=row["id"])
                postponed[row["id"]] = (f"schedule {row['id']}: could not be planned "
                                        f"({type(exc).__name__}: {exc}); tried again in "
                                        f"{POSTPONE_S:g} s")
                continue
            result.missed += p.missed
            if not p.is_active:
                result.deactivated += 1
            advance.append((row["id"], p.next_run_at, p.is_active))
            for slot, at in zip(p.slots, available, strict=True):
                slot_schedule.append(row["id"])
                slot_job.append(row["job_id"])
                slot_at.append(slot)
                slot_available.append(at)
                slot_attempts.append(row["max_attempts"])
        if set_aside:
            await conn.execute(q("set_aside_schedules"), list(set_aside),
                               list(set_aside.values()))
            result.set_aside = len(set_aside)
        if postponed:
            await conn.execute(q("postpone_schedules"), list(postponed),
                               list(postponed.values()), POSTPONE_S)

        inserted = []
        if advance:
            ids, nexts, actives = zip(*advance, strict=True)
            inserted = await conn.fetch(q("record_runs_and_advance"), slot_schedule, slot_job,
                                        slot_at, slot_available, slot_attempts, lease_s,
                                        list(ids), list(nexts), list(actives))
        bodies = ScheduledBodies()
        for run in inserted:
            sid = run["schedule_id"]
            result.run_schedules[run["id"]] = sid
            if run["leased"]:
                job = by_schedule[sid]
                result.to_publish.append({
                    "run_id": run["id"], "schedule_id": sid, "queue": job["queue"],
                    "attempt": 1,
                    "body": bodies.body(run["id"], sid, run["scheduled_for"], job),
                })
        result.created = len(inserted)
    faults.reached("after_commit")
    for sid, reason in set_aside.items():
        log.error("schedule.set_aside", schedule_id=sid, error=reason)
    return result


def _plan_interval(row: asyncpg.Record, now: datetime,
                   horizon: datetime) -> tuple[datetime, datetime | None] | None:
    """The common case in plain arithmetic: an interval schedule of an enabled job whose
    stored slot is due and on time and the only one due. Its one slot and the next slot
    (None past end_at), as `plan` makes them; None for any other schedule, and for any
    value `validate` might refuse (`_plan_row` decides)."""
    if row["kind"] != "interval" or not row["enabled"]:
        return None
    slot: datetime | None = row["next_run_at"]
    seconds = row["interval_seconds"]
    policy = row["misfire_policy"]
    grace_s = row["misfire_grace_seconds"]
    jitter = row["jitter_seconds"]
    start_at, end_at = row["start_at"], row["end_at"]
    anchor = start_at or row["created_at"]
    if (slot is None or anchor is None or slot < anchor or slot > horizon
            or row["cron"] is not None or row["run_at"] is not None
            or type(seconds) is not float
            or not schedule.MIN_INTERVAL_S <= seconds <= schedule.MAX_INTERVAL_S
            or type(jitter) is not float or not 0 <= jitter <= schedule.MAX_JITTER_S
            or policy not in schedule.MISFIRE_POLICIES
            or (grace_s is not None and not 0 <= grace_s <= schedule.MAX_GRACE_S)
            or row["timezone"] not in zones.names()
            or (end_at is not None and (slot > end_at
                                        or (start_at is not None and end_at <= start_at)))):
        return None
    grace = timedelta(seconds=schedule.DEFAULT_GRACE_S[policy] if grace_s is None else grace_s)
    if now - slot > grace:
        return None  # missed: the misfire policy decides
    step = timedelta(microseconds=round(seconds * 1_000_000))
    try:
        following = anchor + ((slot - anchor) // step + 1) * step
    except OverflowError:
        return None  # beyond the calendar: `_plan_row` says so
    if following <= horizon:
        return None  # more than one slot due
    return slot, (None if end_at is not None and following > end_at else following)


def _plan_row(row: asyncpg.Record, now: datetime, look_ahead: timedelta,
              rng: random.Random | None) -> tuple[Plan, list[datetime]]:
    """The plan of a claimed schedule and when each of its runs becomes available;
    raises (InvalidSchedule, or whatever the row's values make the math raise) for a
    schedule that cannot be planned."""
    quick = _plan_interval(row, now, now + look_ahead)
    if quick is not None:
        slot, following = quick
        return Plan([slot], following, 0), [jittered(slot, row["jitter_seconds"], rng)]
    spec = validate(Spec.from_row(row))
    p = plan(spec, row["next_run_at"], now, look_ahead, enabled=row["enabled"])
    return p, [jittered(slot, spec.jitter_seconds, rng) for slot in p.slots]
