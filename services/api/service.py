"""What the control plane does, shared by the HTTP routes and the admin CLI.

Every write runs in one transaction with its audit_log row; schedule writes also wake
the schedulers (NOTIFY, delivered on commit). A job that code declares (managed_by
"code", written by `sundial sync`) keeps its declared fields and schedules: writes the next
sync would undo are a Conflict, pausing, resuming and running it now are not. Errors are Sundial errors that the API
maps to statuses (InvalidInput 422, NotFound 404, AlreadyExists/Conflict 409) and the CLI
prints on one line.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import asyncpg

from sundial.api import payloads
from sundial.api.arguments import PayloadRules, trigger_steps
from sundial.api.errors import Conflict
from sundial.api.keys import ROLES, new_key
from sundial.api.schemas import (
    BULK_MAX_RUNS,
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    MAX_ID,
    RETRYABLE_STATUSES,
    CancelRuns,
    JobCreate,
    JobUpdate,
    RetryRuns,
    RunFilters,
    ScheduleCreate,
    ScheduleFields,
    ScheduleUpdate,
    TriggerBody,
)
from sundial.api.settings import ApiSettings
from sundial.core import jsonb
from sundial.core import schedule as sched
from sundial.core.enqueue import RunArguments, Steps, enqueue_steps, run_on_asyncpg, writes_alone
from sundial.core.errors import AlreadyExists, InvalidInput, NotFound
from sundial.core.logging import get_logger
from sundial.core.outbox import publish_runs, wake_scheduler
from sundial.core.sql import q
from sundial.core.zones import TZDATA_VERSION

if TYPE_CHECKING:
    from sundial.api.notifications import Notifications
    from sundial.core.broker import Publisher

log = get_logger("api.service")

JOB_FIELDS = ("name", "description", "handler", "payload", "secret_payload", "queue",
              "priority", "timeout_seconds", "max_attempts", "retry_backoff_seconds",
              "retry_backoff_max_seconds", "concurrency_policy", "enabled")
SCHEDULE_FIELDS = ("kind", "interval_seconds", "cron", "run_at", "timezone", "jitter_seconds",
                   "start_at", "end_at", "misfire_policy", "misfire_grace_seconds", "is_active")
# The row of queue_pauses that pauses every queue (no queue can be named so).
ALL_QUEUES = "*"
SCHEDULE_NULLABLE = frozenset({"interval_seconds", "cron", "run_at", "start_at", "end_at",
                               "misfire_grace_seconds"})
# The run list counts the runs its filters select up to this many (beyond, `total` says
# "at least" this many): a bound on the count's cost whatever the size of the history.
# The counts of runs by status alone are kept by the database and always exact.
TOTAL_COUNT_LIMIT = 10_000

# The sessions of the API's pool (and of the CLI's, which shares its queries): no parallel
# plans. Its statements read a page or a bounded count through indexes; list_runs' page
# branches that a request's filters rule out would still start their parallel workers
# (milliseconds each, and the cores of a busy host) before finding nothing.
SESSION_SETTINGS = {"max_parallel_workers_per_gather": "0"}
# At most this many runs per backfill request; more slots are refused, with their count.
MAX_BACKFILL_SLOTS = 1000
# Counting the slots of a refused backfill stops here ("more than ...").
BACKFILL_COUNT_LIMIT = 100_000


def parse_id(ref: str | int) -> int | None:
    """The id a reference names, if it is one (else it may be a name)."""
    if isinstance(ref, int):
        return ref if 1 <= ref <= MAX_ID else None
    return int(ref) if ref.isascii() and ref.isdigit() and 1 <= int(ref) <= MAX_ID else None


# The pattern of the `window` parameter in the OpenAPI schema too: read as JSON Schema reads
# it (a search, where `$` also matches before a final line break).
WINDOW_PATTERN = r"^([0-9]+(\.[0-9]+)?)([smhd])$"
WINDOW = re.compile(WINDOW_PATTERN)
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 366 * 86400


def parse_window(text: str) -> float:
    """`30m`, `24h`, `7d` as seconds: a number and a unit (s, m, h, d), 1 minute to 366 days."""
    match = WINDOW.search(text)
    if not match:
        raise InvalidInput("window", text, "must be a number and a unit s, m, h or d, "
                                           "e.g. 30m, 24h or 7d")
    seconds = float(match[1]) * WINDOW_UNITS[match[3]]
    if not 60 <= seconds <= MAX_WINDOW_S:
        raise InvalidInput("window", text, "must be from 1m to 366d, e.g. 24h")
    return seconds


def keyset_page(rows: Sequence[asyncpg.Record], limit: int
                ) -> tuple[list[dict[str, Any]], int | None]:
    """The first `limit` of `limit + 1` rows fetched newest first, and the cursor of the
    next page: the last id shown, or None when nothing older is left."""
    items = [dict(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


@contextmanager
def db_errors(what: str) -> Iterator[None]:
    """Translate constraint violations at the database boundary."""
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"{what} already exists") from None
    except asyncpg.CheckViolationError as exc:
        raise InvalidInput(what, exc.constraint_name, "breaks a rule of the data model") from None


class Service:
    def __init__(self, pool: asyncpg.Pool, settings: ApiSettings,
                 publisher: Publisher | None = None):
        self.pool = pool
        self.settings = settings
        self.publisher = publisher
        self.rules = PayloadRules.of(settings)

    @cached_property
    def notifications(self) -> Notifications:
        """Channels, rules and history; loaded on first use (an admin command that does not
        touch them does not pay for their models)."""
        from sundial.api.notifications import Notifications

        return Notifications(self.pool, self.settings, self._audit)

    # --- audit ----------------------------------------------------------------------

    @staticmethod
    async def _audit(conn: asyncpg.Connection, actor: str, action: str, target_type: str,
                     target_id: object, details: Mapping[str, Any] | None = None) -> None:
        await conn.execute(q("audit"), actor, action, target_type,
                           None if target_id is None else str(target_id), dict(details or {}))

    # --- jobs -----------------------------------------------------------------------

    async def list_jobs(self, *, enabled: bool | None = None, limit: int = 100,
                        offset: int = 0) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(q("list_jobs"), enabled, limit, offset)
        return [_public_job(r) for r in rows]

    async def count_jobs(self, *, enabled: bool | None = None) -> int:
        """How many jobs list_jobs pages through with the same filter."""
        return await self.pool.fetchval(q("count_jobs"), enabled)

    async def _job_row(self, conn: asyncpg.Connection, ref: str | int, *,
                       lock: bool = False) -> asyncpg.Record:
        """The job by id or name; `lock`: locked until the transaction ends (an edit)."""
        # A name with NUL (or a lone surrogate) names no job: PostgreSQL cannot even compare it.
        if payloads.unstorable_text(str(ref)):
            raise NotFound(f"no job {ref!r}")
        row = await conn.fetchrow(q("get_job"), parse_id(ref), str(ref))
        if row is not None and lock:
            # Read again once locked: a writer that held the row has committed by then.
            locked = await conn.fetchval(q("lock_job"), row["id"])
            row = None if locked is None else await conn.fetchrow(q("get_job"), locked, None)
        if row is None:
            raise NotFound(f"no job {ref!r}")
        return row

    async def get_job(self, ref: str | int) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            job = _public_job(await self._job_row(conn, ref))
            job["schedules"] = [dict(r) for r in await conn.fetch(
                q("list_schedules"), job["id"], None, 1000, 0)]
        return job

    async def create_job(self, actor: str, body: JobCreate) -> dict[str, Any]:
        values = body.model_dump(exclude={"schedules"})
        self.check_queue(body.queue)
        if values["max_attempts"] is None:
            values["max_attempts"] = self.settings.max_retry_attempts
        values = await self._prepare_job(values, stored_secret={})
        async with self.pool.acquire() as conn, conn.transaction():
            with db_errors(f"a job named {body.name!r}"):
                job_id = await conn.fetchval(q("insert_job"), *(values[f] for f in JOB_FIELDS))
            now = await conn.fetchval(q("db_now"))
            for i, fields in enumerate(body.schedules):
                try:
                    await self._insert_schedule(conn, job_id, fields.model_dump(), now)
                except InvalidInput as exc:
                    raise InvalidInput(f"schedules[{i}].{exc.field}", exc.value, exc.reason) from None
            if body.schedules:
                await wake_scheduler(conn, "schedules")
            await self._audit(conn, actor, "job.create", "job", job_id,
                              {"name": body.name, "handler": body.handler,
                               "schedules": len(body.schedules)})
        log.info("job.created", job_id=job_id, job=body.name, actor=actor)
        return await self.get_job(job_id)

    async def update_job(self, actor: str, ref: str | int, body: JobUpdate) -> dict[str, Any]:
        change = body.model_dump(exclude_unset=True)
        for name, value in change.items():
            if value is None:
                raise InvalidInput(name, None, "must not be null; leave it out to keep the value")
        if "queue" in change:
            self.check_queue(change["queue"])
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._job_row(conn, ref, lock=True)
            if change.keys() - {"enabled"}:
                _check_not_declared(row, "changing " + ", ".join(sorted(change.keys() - {"enabled"})))
            values = {f: row[f] for f in JOB_FIELDS}
            if "payload" in change or "handler" in change:
                stored = self.stored_secrets(row)
                values.update(change)
                values["payload"] = change.get("payload", row["payload"])
                values = await self._prepare_job(values, stored_secret=stored)
            else:
                values.update(change)
            _check_backoff(values)
            with db_errors(f"a job named {values['name']!r}"):
                await conn.execute(q("update_job"), row["id"], *(values[f] for f in JOB_FIELDS))
            if {"enabled", "handler", "queue"} & change.keys():
                await wake_scheduler(conn, "jobs")
            await self._audit(conn, actor, "job.update", "job", row["id"],
                              {"name": values["name"], "fields": sorted(change)})
        return await self.get_job(row["id"])

    async def job_health(self, ref: str | int, window: str) -> dict[str, Any]:
        """Success and error rates, mean and p95 duration of a job's runs that finished
        within `window` (e.g. 30m, 24h, 7d)."""
        window_s = parse_window(window)
        async with self.pool.acquire() as conn:
            job = await self._job_row(conn, ref)
            row = await conn.fetchrow(q("job_health"), job["id"], window_s)
        judged = row["succeeded"] + row["failed"]
        return {"job_id": job["id"], "job": job["name"], "window": window, "window_s": window_s,
                **dict(row),
                "success_rate": round(row["succeeded"] / judged, 4) if judged else None,
                "error_rate": round(row["failed"] / judged, 4) if judged else None}

    async def set_job_enabled(self, actor: str, ref: str | int, enabled: bool) -> dict[str, Any]:
        """Pause (slots pass without runs) or resume a job."""
        return await self.update_job(actor, ref, JobUpdate(enabled=enabled))

    async def delete_job(self, actor: str, ref: str | int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._job_row(conn, ref, lock=True)
            _check_not_declared(row, "deleting it", fix="remove its declaration from code and "
                                "run `sundial sync`, which disables it; then delete it")
            # A concurrent DELETE of the same job waits for this one, then deletes nothing:
            # it is a 404 with no audit row of its own.
            if await conn.fetchval(q("delete_job"), row["id"]) is None:
                raise NotFound(f"no job {ref!r}")
            await wake_scheduler(conn, "schedules")
            await self._audit(conn, actor, "job.delete", "job", row["id"], {"name": row["name"]})
        return row["id"]

    def stored_secrets(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The job's secret values (PayloadRules.stored_secrets)."""
        return self.rules.stored_secrets(row)

    async def _prepare_job(self, values: dict[str, Any], *, stored_secret: dict[str, Any]
                           ) -> dict[str, Any]:
        """Check the payload for its handler; move its secret fields to secret_payload."""
        public, secret = await self.check_job(values, stored_secret=stored_secret)
        return self.with_secrets(values, public, secret)

    async def check_job(self, values: dict[str, Any], *, stored_secret: dict[str, Any]
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check a job's fields beyond its schema (backoff, the payload for its handler);
        return its payload split into (public, secret) values."""
        _check_backoff(values)
        return await self._check_payload(values["handler"], values["payload"],
                                         lambda: stored_secret)

    async def _check_payload(self, handler: str, payload: dict[str, Any],
                             stored_secret: Callable[[], dict[str, Any]]
                             ) -> tuple[dict[str, Any], dict[str, Any]]:
        """PayloadRules.checked, in a thread (the http check resolves the host)."""
        return await asyncio.to_thread(self.rules.checked, handler, payload, stored_secret)

    async def _prepare_payload(self, handler: str, payload: dict[str, Any],
                               stored_secret: Callable[[], dict[str, Any]]
                               ) -> tuple[dict[str, Any], str | None]:
        """(the payload with its secret fields masked, those fields encrypted or None)."""
        public, secret = await self._check_payload(handler, payload, stored_secret)
        return public, self.rules.encrypted(secret)

    def with_secrets(self, values: dict[str, Any], public: dict[str, Any],
                     secret: dict[str, Any]) -> dict[str, Any]:
        """The job's values with its public payload, and its secret values encrypted."""
        return dict(values, payload=public, secret_payload=self.rules.encrypted(secret))

    def check_queue(self, queue: str) -> None:
        allowed = self.settings.api_allowed_queues
        if allowed and queue not in allowed:
            raise InvalidInput("queue", queue, "is not one of the queues this API allows ("
                               + ", ".join(allowed) + "); ask the operator to add it to "
                               "API_ALLOWED_QUEUES")

    async def trigger_job(self, actor: str, ref: str | int, body: TriggerBody | None = None
                          ) -> tuple[dict[str, Any], bool]:
        """Queue a run now, with arguments if given; it reaches a worker without waiting
        for a scheduler pass. Returns (run_id and status, True when a run was made); an
        idempotency key used for this job within IDEMPOTENCY_WINDOW_S (sundial.core.enqueue) returns its run.
        Without arguments it is one INSERT and the publish (trigger_steps)."""
        body = body or TriggerBody()
        return await self._enqueue_steps(
            actor, "job.trigger", body.idempotency_key, lambda lease_s: trigger_steps(
                self.rules, ref, parse_id(ref), body, actor, "job.trigger", lease_s=lease_s))

    async def _enqueue(self, actor: str, job_id: int, action: str, details: dict[str, Any],
                       run: RunArguments | None = None) -> tuple[dict[str, Any], bool]:
        """A manual run of the job and its audit row, then its message. With an
        idempotency key already used for the job, the run that has it, not published again."""
        run = run or RunArguments()
        return await self._enqueue_steps(actor, action, run.key, lambda lease_s: enqueue_steps(
            job_id, actor, action, details, run, lease_s=lease_s))

    async def _enqueue_steps(self, actor: str, action: str, key: str | None,
                             steps: Callable[[float | None], Steps]) -> tuple[dict[str, Any], bool]:
        """Write a manual run (idempotency key `key`) with `steps(lease_s)`, in a
        transaction unless it is one statement (writes_alone), then publish it."""
        lease_s = self.settings.publish_lease_s if self.publisher is not None else None
        async with self.pool.acquire() as conn:
            if writes_alone(key, lease_s=lease_s):
                queued = await run_on_asyncpg(conn, steps(lease_s))
            else:
                async with conn.transaction():
                    queued = await run_on_asyncpg(conn, steps(lease_s))
        job_id = queued.row.get("job_id")
        if queued.replayed:
            log.info("run.trigger_replayed", run_id=queued.run_id, job_id=job_id, actor=actor)
            return {"run_id": queued.run_id, "status": queued.status, "replayed": True}, False
        await self._publish([queued.row])
        log.info("run.queued", run_id=queued.run_id, job_id=job_id, actor=actor, action=action)
        return {"run_id": queued.run_id, "status": "queued", "replayed": False}, True

    async def _publish(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Publish runs just committed (the outbox); on failure their leases are released
        and the woken scheduler's relay publishes them. Without a publisher (the CLI) the
        caller woke the scheduler already."""
        if self.publisher is None or not rows:
            return
        # Rows written by insert_manual_run say whether their queue is paused.
        paused = ({r["queue"] for r in rows if r["queue_paused"]}
                  if all("queue_paused" in r for r in rows) else None)
        result = await publish_runs(self.pool, self.publisher, [dict(r) for r in rows],
                                    paused=paused)
        if result.failed:
            log.warning("run.publish_deferred", run_ids=sorted(result.failed),
                        error=repr(result.first_error))
            async with self.pool.acquire() as conn:
                await wake_scheduler(conn, "manual")

    # --- schedules --------------------------------------------------------------------

    async def list_schedules(self, *, job: str | int | None = None, active: bool | None = None,
                             limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            job_id = (await self._job_row(conn, job))["id"] if job is not None else None
            rows = await conn.fetch(q("list_schedules"), job_id, active, limit, offset)
        return [dict(r) for r in rows]

    async def count_schedules(self, *, job: str | int | None = None,
                              active: bool | None = None) -> int:
        """How many schedules list_schedules pages through with the same filters."""
        async with self.pool.acquire() as conn:
            job_id = (await self._job_row(conn, job))["id"] if job is not None else None
            return await conn.fetchval(q("count_schedules"), job_id, active)

    async def get_schedule(self, schedule_id: int) -> dict[str, Any]:
        row = await self.pool.fetchrow(q("get_schedule"), schedule_id)
        if row is None:
            raise NotFound(f"no schedule {schedule_id}")
        return dict(row)

    async def create_schedule(self, actor: str, body: ScheduleCreate) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            job = await self._job_row(conn, body.job_id, lock=True)
            _check_not_declared(job, "adding a schedule")
            now = await conn.fetchval(q("db_now"))
            fields = body.model_dump(exclude={"job_id"})
            schedule_id = await self._insert_schedule(conn, job["id"], fields, now)
            await wake_scheduler(conn, "schedules")
            await self._audit(conn, actor, "schedule.create", "schedule", schedule_id,
                              {"job": job["name"], "kind": body.kind})
        return await self.get_schedule(schedule_id)

    async def _insert_schedule(self, conn: asyncpg.Connection, job_id: int,
                               fields: dict[str, Any], now: datetime) -> int:
        fields, next_run_at = plan_schedule(fields, created_at=now, now=now)
        with db_errors("schedule"):
            return await conn.fetchval(q("insert_schedule"), job_id,
                                       *(fields[f] for f in SCHEDULE_FIELDS), next_run_at)

    async def update_schedule(self, actor: str, schedule_id: int, body: ScheduleUpdate,
                              action: str = "schedule.update") -> dict[str, Any]:
        change = body.model_dump(exclude_unset=True)
        for name, value in change.items():
            if value is None and name not in SCHEDULE_NULLABLE:
                raise InvalidInput(name, None, "must not be null; leave it out to keep the value")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("lock_schedule"), schedule_id)
            if row is None:
                raise NotFound(f"no schedule {schedule_id}")
            if row["job_managed"] and change.keys() - {"is_active"}:
                raise _declared_conflict(row["job"], f"changing schedule {schedule_id}")
            fields = {f: row[f] for f in SCHEDULE_FIELDS}
            if row["set_aside_at"] is not None and "is_active" not in change:
                # Set aside by the scheduler, not paused by a person: a change that
                # passes validation puts it back.
                fields["is_active"] = True
            if change.get("kind", row["kind"]) != row["kind"]:
                for other in sched.KIND_FIELDS.values():
                    fields[other] = None
            fields.update(change)
            now = await conn.fetchval(q("db_now"))
            fields, next_run_at = plan_schedule(fields, created_at=row["created_at"], now=now)
            with db_errors("schedule"):
                await conn.execute(q("update_schedule"), schedule_id,
                                   *(fields[f] for f in SCHEDULE_FIELDS), next_run_at)
            await wake_scheduler(conn, "schedules")
            await self._audit(conn, actor, action, "schedule", schedule_id,
                              {"fields": sorted(change)})
        return await self.get_schedule(schedule_id)

    async def pause_schedule(self, actor: str, schedule_id: int) -> dict[str, Any]:
        return await self.update_schedule(actor, schedule_id, ScheduleUpdate(is_active=False),
                                          "schedule.pause")

    async def resume_schedule(self, actor: str, schedule_id: int) -> dict[str, Any]:
        """Active again from its next slot after now (slots missed while paused pass)."""
        return await self.update_schedule(actor, schedule_id, ScheduleUpdate(is_active=True),
                                          "schedule.resume")

    async def delete_schedule(self, actor: str, schedule_id: int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("lock_schedule"), schedule_id)
            if row is not None and row["job_managed"] and row["managed_key"] is not None:
                raise _declared_conflict(row["job"], f"deleting schedule {schedule_id}")
            if await conn.fetchval(q("delete_schedule"), schedule_id) is None:
                raise NotFound(f"no schedule {schedule_id}")
            await wake_scheduler(conn, "schedules")
            await self._audit(conn, actor, "schedule.delete", "schedule", schedule_id)
        return schedule_id

    async def preview(self, schedule_id: int, count: int) -> dict[str, Any]:
        row = await self.get_schedule(schedule_id)
        now = await self.pool.fetchval(q("db_now"))
        # A row written with SQL may be one the scheduler set aside: say what is wrong.
        spec = sched.validate(sched.Spec.from_row(row))
        try:
            times = sched.preview(spec, count, now)
        except OverflowError:
            times = []
        return {"schedule_id": schedule_id, "timezone": row["timezone"], "times": times}

    async def preview_unsaved(self, fields: ScheduleFields, count: int) -> dict[str, Any]:
        """Fire times of a schedule not saved yet (the job form's live preview)."""
        now = await self.pool.fetchval(q("db_now"))
        values, _ = plan_schedule(fields.model_dump(), created_at=now, now=now)
        spec = sched.Spec.from_row({**values, "created_at": now})
        try:
            times = sched.preview(spec, count, now)
        except OverflowError:
            times = []
        return {"schedule_id": None, "timezone": values["timezone"], "times": times}

    async def backfill(self, actor: str, schedule_id: int, start: datetime, end: datetime,
                       *, dry_run: bool = False) -> dict[str, Any]:
        """A run for each slot of the schedule from `start` to `end` (both included, not
        in the future) that has none yet: the slot key the tick uses, so a slot already
        run, by the tick or an earlier backfill, is left alone."""
        if end < start:
            raise InvalidInput("to", end.isoformat(), f"is before from ({start.isoformat()}); "
                               "give a range that ends at or after it starts")
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(q("get_schedule"), schedule_id)
            if row is None:
                raise NotFound(f"no schedule {schedule_id}")
            now = await conn.fetchval(q("db_now"))
            if end > now:
                raise InvalidInput("to", end.isoformat(), "is in the future (the database's "
                                   f"clock says {now.isoformat()}); the scheduler runs future "
                                   "slots: end the range at or before now")
            spec = sched.validate(sched.Spec.from_row(row))
            times, more = await asyncio.to_thread(_slots_between, spec, start, end,
                                                  MAX_BACKFILL_SLOTS)
            if more:
                count = (f"more than {BACKFILL_COUNT_LIMIT}" if len(times) > BACKFILL_COUNT_LIMIT
                         else str(len(times)))
                raise InvalidInput("from", start.isoformat(),
                                   f"starts a range with {count} slots of schedule "
                                   f"{schedule_id} up to {end.isoformat()}; at most "
                                   f"{MAX_BACKFILL_SLOTS} per backfill: split the range")
            existing = {r["scheduled_for"] for r in await conn.fetch(
                q("backfill_slots"), schedule_id, times)}
            todo = [t for t in times if t not in existing]
            result = {"schedule_id": schedule_id, "dry_run": dry_run, "slots": len(times),
                      "created": len(todo), "existing": len(existing), "run_ids": [],
                      "times": todo}
            if dry_run or not todo:
                return result
            async with conn.transaction():
                rows = await conn.fetch(q("insert_backfill_runs"), row["job_id"], schedule_id,
                                        todo, actor, {"from": start.isoformat(),
                                                      "to": end.isoformat(),
                                                      "slots": len(times)})
                await wake_scheduler(conn, "backfill")
        log.info("schedule.backfilled", schedule_id=schedule_id, slots=len(times),
                 created=len(rows), actor=actor)
        made = [r["scheduled_for"] for r in rows]
        return dict(result, created=len(rows), existing=len(times) - len(rows),
                    run_ids=[r["id"] for r in rows], times=made)

    # --- runs -----------------------------------------------------------------------

    async def list_runs(self, *, job: str | int | None = None, schedule_id: int | None = None,
                        statuses: Sequence[str] | None = None, since: datetime | None = None,
                        until: datetime | None = None, queue: str | None = None,
                        cursor: int | None = None, limit: int = 50) -> dict[str, Any]:
        """A page of runs, newest first: {"items", "next_cursor" (None: the last page),
        "total" (the runs the filters select, whatever the cursor), "total_exact"}.

        With no filter but the status, `total` is exact (the counts the database keeps);
        otherwise the matching runs are counted up to TOTAL_COUNT_LIMIT, and beyond it
        `total` is that limit and `total_exact` false (at least that many)."""
        async with self.pool.acquire() as conn:
            job_id = (await self._job_row(conn, job))["id"] if job is not None else None
            rows = await conn.fetch(q("list_runs"), job_id, schedule_id,
                                    list(statuses) if statuses else None, since, until,
                                    cursor, limit + 1, queue, TOTAL_COUNT_LIMIT + 1)
        # An empty page is one row of NULLs but `total`.
        items, next_cursor = keyset_page([r for r in rows if r["id"] is not None], limit)
        for item in items:
            del item["total"]
        total = rows[0]["total"]
        by_status_only = all(f is None for f in (job_id, schedule_id, since, until, queue))
        exact = by_status_only or total <= TOTAL_COUNT_LIMIT
        return {"items": items, "next_cursor": next_cursor,
                "total": total if exact else TOTAL_COUNT_LIMIT, "total_exact": exact}

    async def list_audit(self, *, actor: str | None = None, action: str | None = None,
                         target_type: str | None = None, target_id: str | None = None,
                         since: datetime | None = None, until: datetime | None = None,
                         cursor: int | None = None, limit: int = 50
                         ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the audit log, newest first, and the cursor of the next page."""
        if any(payloads.unstorable_text(v) for v in (actor, action, target_type, target_id) if v):
            return [], None  # no entry holds text PostgreSQL cannot even compare
        rows = await self.pool.fetch(q("list_audit"), actor, action, target_type, target_id,
                                     since, cursor, until, limit + 1)
        return keyset_page(rows, limit)

    async def get_run(self, run_id: int) -> dict[str, Any]:
        row = await self.pool.fetchrow(q("get_run"), run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        return dict(row, result=jsonb.render(row["result"]), payload=jsonb.render(row["payload"]))

    async def cancel_run(self, actor: str, run_id: int) -> dict[str, Any]:
        """A queued run is cancelled at once; a running one is asked to stop."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("cancel_run"), run_id)
            if row is None:
                status = await conn.fetchval("SELECT status FROM runs WHERE id = $1", run_id)
                if status is None:
                    raise NotFound(f"no run {run_id}")
                raise Conflict(f"run {run_id} is already {status}; only a queued or running "
                               "run can be cancelled")
            await self._audit(conn, actor, "run.cancel", "run", run_id, {"status": row["status"]})
        return {"id": run_id, "status": row["status"], "cancel_requested": True}

    async def retry_run(self, actor: str, run_id: int) -> int:
        """A new manual run of the same job (attempt 1) with the same arguments and
        priority; the original stays as it ended. A run whose chain has a retry queued,
        running or succeeded already is a Conflict naming it."""
        run = await self.pool.fetchrow(q("run_arguments"), run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        if run["status"] not in FINAL_STATUSES:
            raise Conflict(f"run {run_id} is still {run['status']}; retry a finished run, "
                           "or cancel this one first")
        if run["status"] not in RETRYABLE_STATUSES:
            raise Conflict(f"run {run_id} {run['status']}; only a failed, dead, timed_out or "
                           f"cancelled run can be retried (to run job {run['job']!r} again, "
                           "trigger it)")
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await self._insert_retries(conn, actor, [run_id], "run.retry",
                                              {"retry_of": run_id}, target=run_id)
            if not rows:
                live = await conn.fetchrow(q("live_retry"), run_id)
                if live is None:  # deleted meanwhile (retention)
                    raise NotFound(f"no run {run_id}")
                raise Conflict(f"run {run_id} has a retry {live['status']} already: run "
                               f"{live['id']}; retry that one if it fails")
        await self._publish(rows)
        log.info("run.queued", run_id=rows[0]["run_id"], job_id=run["job_id"], actor=actor,
                 action="run.retry")
        return rows[0]["run_id"]

    async def _insert_retries(self, conn: asyncpg.Connection, actor: str, ids: list[int],
                              action: str, details: dict[str, Any],
                              target: int | None = None) -> list[asyncpg.Record]:
        """insert_retry_runs in the caller's transaction (one new run per chain without a
        live retry), the scheduler woken when this process does not publish them."""
        lease_s = self.settings.publish_lease_s if self.publisher is not None else None
        rows = await conn.fetch(q("insert_retry_runs"), ids, actor, lease_s, details,
                                list(RETRYABLE_STATUSES), action,
                                None if target is None else str(target))
        if rows and self.publisher is None:
            await wake_scheduler(conn, "manual")
        return rows

    # --- many runs at once ----------------------------------------------------------------

    async def _select_runs(self, filters: CancelRuns | RetryRuns,
                           allowed: Sequence[str]) -> list[int]:
        """The ids of the runs the filters select among those in the `allowed` statuses
        (or those of filters.status, which its model keeps among them), at most
        BULK_MAX_RUNS of them (InvalidInput beyond: nothing is changed)."""
        statuses = filters.status or list(allowed)
        page = await self.list_runs(job=filters.job, schedule_id=filters.schedule,
                                    statuses=statuses, since=filters.since, until=filters.until,
                                    queue=filters.queue, limit=BULK_MAX_RUNS)
        if page["total"] > BULK_MAX_RUNS:
            count = page["total"]
            some = "" if page["total_exact"] else "at least "
            raise InvalidInput("filters", count, f"select {some}{count} runs, {some}"
                               f"{count - BULK_MAX_RUNS} "
                               f"more than the {BULK_MAX_RUNS} one request may change; narrow "
                               "them (job, status, queue, since, until) and repeat")
        return [r["id"] for r in page["items"]]

    async def cancel_runs(self, actor: str, body: CancelRuns) -> dict[str, Any]:
        """Cancel every queued or running run the filters select, as cancel_run does."""
        ids = await self._select_runs(body, CANCELLABLE_STATUSES)
        if body.dry_run or not ids:
            return {"dry_run": body.dry_run, "matched": len(ids), "run_ids": ids,
                    "cancelled": 0, "stopping": 0}
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(q("cancel_runs"), ids)
            done = sorted(r["id"] for r in rows)
            await self._audit(conn, actor, "runs.cancel", "run", None,
                              {"filters": _filters(body), "runs": done})
        cancelled = sum(1 for r in rows if r["status"] == "cancelled")
        log.info("runs.cancelled", count=len(done), actor=actor)
        return {"dry_run": False, "matched": len(ids), "run_ids": done, "cancelled": cancelled,
                "stopping": len(done) - cancelled}

    async def retry_runs(self, actor: str, body: RetryRuns) -> dict[str, Any]:
        """Retry every failed, dead, timed_out or cancelled run the filters select, as
        retry_run does: one new manual run per chain that has no retry queued, running or
        succeeded (the others are left out of `queued`)."""
        ids = await self._select_runs(body, RETRYABLE_STATUSES)
        if body.dry_run or not ids:
            return {"dry_run": body.dry_run, "matched": len(ids), "run_ids": ids, "queued": []}
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await self._insert_retries(conn, actor, ids, "runs.retry",
                                              {"filters": _filters(body)})
        await self._publish(rows)
        log.info("runs.retried", count=len(rows), actor=actor)
        return {"dry_run": False, "matched": len(ids), "run_ids": ids,
                "queued": [r["run_id"] for r in rows]}

    # --- queues -----------------------------------------------------------------------

    async def queues(self) -> dict[str, Any]:
        """Every queue with its pause, jobs and queued runs, and the pause of all of them."""
        rows = [dict(r) for r in await self.pool.fetch(q("list_queues"))]
        everything = next((r for r in rows if r["queue"] == ALL_QUEUES), None) or {}
        all_paused = bool(everything)
        return {"all_paused": all_paused, "all_paused_at": everything.get("paused_at"),
                "all_paused_by": everything.get("paused_by"),
                "queues": [dict(r, paused=r["paused_at"] is not None, all_paused=all_paused)
                           for r in rows if r["queue"] != ALL_QUEUES]}

    async def pause_queue(self, actor: str, queue: str) -> dict[str, Any]:
        """Hold the queue's runs in the outbox (ALL_QUEUES: every queue's) until resumed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if queue != ALL_QUEUES and not await conn.fetchval(q("queue_in_use"), queue):
                known = [r["queue"] for r in await conn.fetch(q("list_queues"))
                         if r["queue"] != ALL_QUEUES]
                raise NotFound(f"no job runs on queue {queue!r}; the queues in use are: "
                               + (", ".join(known) or "none"))
            await conn.execute(q("pause_queue"), queue, actor)
            await self._audit(conn, actor, "queue.pause", "queue", queue)
        log.info("queue.paused", queue=queue, actor=actor)
        return await self.queue_state(queue)

    async def resume_queue(self, actor: str, queue: str) -> dict[str, Any]:
        """Publish the queue's runs again (those held meanwhile at once): the relay is woken."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q("resume_queue"), queue)
            await wake_scheduler(conn, "resume")
            await self._audit(conn, actor, "queue.resume", "queue", queue)
        log.info("queue.resumed", queue=queue, actor=actor)
        return await self.queue_state(queue)

    async def queue_state(self, queue: str) -> dict[str, Any]:
        row = await self.pool.fetchrow(q("queue_pause"), queue)
        return {"queue": queue, "paused": row["paused_at"] is not None, **dict(row)}

    # --- scheduler, workers, stats ----------------------------------------------------

    async def scheduler_status(self) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(q("scheduler_status"))
            instances = [dict(r) for r in await conn.fetch(
                q("scheduler_instances"), self.settings.scheduler_stale_after_s)]
        last_run, next_run = _instant(row["last_run"]), _instant(row["next_run"])
        age = (row["db_now"] - last_run).total_seconds() if last_run else None
        if age is None:
            status = "unknown"
        elif age <= self.settings.scheduler_stale_after_s:
            status = "running"
        else:
            status = "stale"
        return {"status": status, "last_run": last_run, "next_run": next_run,
                "seconds_since_last_run": age,
                "stale_after_s": self.settings.scheduler_stale_after_s,
                "trigger_requested": row["trigger_requested"] == "true",
                "tzdata": TZDATA_VERSION, "instances": instances,
                "broker_blocked": any(i["status"] == "running" and i["broker_blocked_since"]
                                      for i in instances)}

    async def trigger_scheduler(self, actor: str) -> None:
        """Ask for a scheduler pass now: one scheduler takes the flag."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q("request_scheduler_trigger"))
            await wake_scheduler(conn, "trigger")
            await self._audit(conn, actor, "scheduler.trigger", "scheduler", None)

    async def workers(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(q("list_workers"), self.settings.worker_offline_threshold_s)
        return [dict(r) for r in rows]

    async def stats(self) -> dict[str, Any]:
        r = await self.pool.fetchrow(q("stats"))
        finished = r["runs_succeeded"] + r["runs_failed"]
        return {
            "jobs": {"total": r["jobs_total"], "enabled": r["jobs_enabled"],
                     "disabled": r["jobs_total"] - r["jobs_enabled"]},
            "executions": {"total": r["runs_total"], "successful": r["runs_succeeded"],
                           "failed": r["runs_failed"], "running": r["runs_running"],
                           "queued": r["runs_queued"],
                           "success_rate": round(r["runs_succeeded"] / finished, 4)
                           if finished else None},
        }

    # --- API keys ---------------------------------------------------------------------

    async def create_key(self, actor: str, name: str, role: str,
                         expires_in_days: int | None = None) -> tuple[dict[str, Any], str]:
        """(the key's record, the key itself: shown once, never stored)."""
        name = name.strip()
        if not name or len(name) > 100 or "\x00" in name:
            raise InvalidInput("name", name, "must be 1-100 characters")
        if role not in ROLES:
            raise InvalidInput("role", role, "must be one of " + ", ".join(ROLES))
        if expires_in_days is not None and not 1 <= expires_in_days <= 36500:
            raise InvalidInput("expires_in_days", expires_in_days, "must be between 1 and 36500")
        key, prefix, key_hash = new_key()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("insert_api_key"), name, prefix, key_hash, role,
                                      expires_in_days)
            await self._audit(conn, actor, "key.create", "api_key", row["id"],
                              {"name": name, "role": role, "prefix": prefix})
        return dict(row), key

    async def list_keys(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch(q("list_api_keys"))]

    async def revoke_key(self, actor: str, ref: str) -> dict[str, Any]:
        """Revoke by id or prefix."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("revoke_api_key"), parse_id(ref), ref)
            if row is None:
                raise NotFound(f"no API key {ref!r} (give its id or prefix)")
            await self._audit(conn, actor, "key.revoke", "api_key", row["id"],
                              {"name": row["name"], "prefix": row["prefix"]})
        return dict(row)


# --- helpers -------------------------------------------------------------------------------


def _public_job(row: Mapping[str, Any]) -> dict[str, Any]:
    job = dict(row)
    job.pop("secret_payload", None)
    payload = job["payload"]
    # A row written by SQL (or before a field became secret) may hold a secret in plain
    # text and break the limits a write through the API keeps: mask it, cut it.
    if isinstance(payload, dict):
        payload = payloads.split_secrets(job["handler"], payload)[0]
    job["payload"] = jsonb.render(payload if isinstance(payload, dict) else {"value": payload})
    return job


def _filters(body: RunFilters) -> dict[str, Any]:
    """The filters a bulk action was given, for its audit row."""
    return body.model_dump(mode="json", exclude_none=True, exclude={"dry_run"})


def _check_not_declared(job: Mapping[str, Any], what: str, fix: str | None = None) -> None:
    """Conflict if code declares the job (get_job's managed_by)."""
    if job["managed_by"] == "code":
        raise _declared_conflict(job["name"], what, fix)


def _declared_conflict(job: str, what: str, fix: str | None = None) -> Conflict:
    fix = fix or "change its declaration in code and run `sundial sync`"
    return Conflict(f"job {job!r} is managed by code: the next `sundial sync` would undo "
                    f"{what}; {fix} (pausing, resuming and running it now stay allowed)")


def _check_backoff(values: Mapping[str, Any]) -> None:
    if values["retry_backoff_max_seconds"] < values["retry_backoff_seconds"]:
        raise InvalidInput("retry_backoff_max_seconds", values["retry_backoff_max_seconds"],
                      f"must be >= retry_backoff_seconds ({values['retry_backoff_seconds']})")


def plan_schedule(fields: dict[str, Any], *, created_at: datetime, now: datetime
                   ) -> tuple[dict[str, Any], datetime | None]:
    """The validated fields and the first slot (None while paused); InvalidInput otherwise."""
    fields = {f: fields.get(f, ScheduleFields.model_fields[f].default) for f in SCHEDULE_FIELDS}
    spec = sched.Spec.from_row({**fields, "created_at": created_at})
    active = fields["is_active"]
    # With `now`, validation also refuses a schedule that would never fire after now.
    spec = sched.validate(spec, now if active else None)
    next_run_at = sched.first_fire(spec, now) if active else None
    fields["cron"] = spec.cron if spec.kind == "cron" else None
    return fields, next_run_at


def _slots_between(spec: sched.Spec, start: datetime, end: datetime, cap: int
                   ) -> tuple[list[datetime], bool]:
    """The slots of `spec` from `start` to `end`, both included, and whether there are
    more than `cap` (then the list holds them counted up to BACKFILL_COUNT_LIMIT)."""
    times: list[datetime] = []
    slot = sched.next_fire(spec, start - timedelta(microseconds=1))
    while slot is not None and slot <= end and len(times) <= BACKFILL_COUNT_LIMIT:
        times.append(slot)
        slot = sched.next_fire(spec, slot)
    return times, len(times) > cap


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None

