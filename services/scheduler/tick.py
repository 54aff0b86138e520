"""A tick: claim due schedules, record one run per due slot, advance every schedule —
in one transaction, set-based — and return the runs to publish after the commit."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from sundial.core import faults
from sundial.core.logging import get_logger
from sundial.core.schedule import Spec, jittered, plan
from sundial.core.sql import q

log = get_logger("scheduler.tick")


@dataclass
class TickResult:
    claimed: int = 0
    created: int = 0
    missed: int = 0
    deactivated: int = 0
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
        by_schedule: dict[int, asyncpg.Record] = {}
        for row in claimed:
            by_schedule[row["id"]] = row
            p = plan(Spec.from_row(row), row["next_run_at"], now, look_ahead,
                     enabled=row["enabled"])
            result.missed += p.missed
            if not p.is_active:
                result.deactivated += 1
            advance.append((row["id"], p.next_run_at, p.is_active))
            for slot in p.slots:
                slot_schedule.append(row["id"])
                slot_job.append(row["job_id"])
                slot_at.append(slot)
                slot_available.append(jittered(slot, row["jitter_seconds"], rng))
                slot_attempts.append(row["max_attempts"])

        inserted = []
        if slot_schedule:
            inserted = await conn.fetch(q("insert_scheduled_runs"), slot_schedule, slot_job,
                                        slot_at, slot_available, slot_attempts, lease_s)
        runs_per_schedule: dict[int, int] = {}
        last_slot: dict[int, datetime] = {}
        for run in inserted:
            sid = run["schedule_id"]
            runs_per_schedule[sid] = runs_per_schedule.get(sid, 0) + 1
            last_slot[sid] = max(run["scheduled_for"], last_slot.get(sid, run["scheduled_for"]))
            result.run_schedules[run["id"]] = sid
            if run["leased"]:
                job = by_schedule[sid]
                result.to_publish.append({
                    "run_id": run["id"], "job_id": job["job_id"], "job": job["job"],
                    "handler": job["handler"], "payload": job["payload"], "queue": job["queue"],
                    "schedule_id": sid, "scheduled_for": run["scheduled_for"], "attempt": 1,
                    "timeout_seconds": job["timeout_seconds"],
                })
        result.created = len(inserted)

        ids, nexts, actives = zip(*advance, strict=True)
        await conn.execute(q("advance_schedules"), list(ids), list(nexts), list(actives),
                           [last_slot.get(i) for i in ids],
                           [runs_per_schedule.get(i, 0) for i in ids])
    faults.reached("after_commit")
    return result
