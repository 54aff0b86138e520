"""`sundial sync`: write the jobs and schedules declared in code (sundial.core.declarations).

One transaction under one advisory lock, so several syncs at once (each deploy, each
replica) run one after the other and the later ones find nothing to do:

- a declared job is created, or updated by name, with the API's rules (its schema, its
  payload checks, API_ALLOWED_QUEUES, secrets encrypted), and marked managed by code;
- its schedules are found by key; a changed one gets its next slot recomputed from now,
  as an API edit does, so no slot runs twice and none is skipped before now; a schedule
  of the job that the declaration does not hold is made inactive (its runs stay);
- a job code managed and no longer declares is disabled, never deleted: its schedules
  and history stay, and it is open to edits and deletion again;
- what people chose stays: pausing or resuming a job or a schedule is not undone.

A dry run does the same work and rolls it back: the plan it prints is what a sync does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from sundial.api.errors import Conflict
from sundial.api.schemas import JobCreate
from sundial.api.service import JOB_FIELDS, SCHEDULE_FIELDS, Service, db_errors, plan_schedule
from sundial.core.declarations import Declaration
from sundial.core.errors import InvalidDeclaration, InvalidInput
from sundial.core.logging import get_logger
from sundial.core.outbox import wake_scheduler
from sundial.core.sql import q

log = get_logger("api.sync")

# "sync" in ASCII: the advisory lock every sync takes (core.migrate's is "sundial").
SYNC_LOCK_KEY = 0x73796E63
# What a declaration sets; `enabled` and `is_active` stay with the operators.
DECLARED_JOB_FIELDS = tuple(f for f in JOB_FIELDS if f not in ("enabled", "secret_payload"))
DECLARED_SCHEDULE_FIELDS = tuple(f for f in SCHEDULE_FIELDS if f != "is_active")


@dataclass(frozen=True)
class Change:
    """One write of a sync: `create`, `update`, `adopt`, `enable` or `disable` of a job,
    or of one of its schedules (named by its key, or by its id once no longer declared)."""

    action: str
    job: str
    schedule: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        what = f"job {self.job!r}" if self.schedule is None else (
            f"schedule {self.schedule} of job {self.job!r}")
        return f"{self.action} {what}" + (f": {self.detail}" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "job": self.job, "schedule": self.schedule,
                "detail": self.detail}


@dataclass
class SyncResult:
    jobs: int
    schedules: int
    dry_run: bool
    changes: list[Change] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class _Wanted:
    """A declaration checked with the API's rules: the job's values and its schedules'."""

    declaration: Declaration
    values: dict[str, Any]
    public: dict[str, Any]
    secret: dict[str, Any]
    schedules: dict[str, dict[str, Any]]  # key -> fields


class _DryRun(Exception):
    pass


async def sync(service: Service, declarations: Sequence[Declaration], *, actor: str,
               dry_run: bool = False, adopt: bool = False) -> SyncResult:
    """Write `declarations`; return what changed (or would, for a dry run)."""
    wanted = [await _check(service, d) for d in declarations]
    result = SyncResult(jobs=len(wanted), schedules=sum(len(w.schedules) for w in wanted),
                        dry_run=dry_run)
    try:
        async with service.pool.acquire() as conn, conn.transaction():
            await conn.execute(q("sync_lock"), SYNC_LOCK_KEY)
            await _Writer(service, conn, actor, result, adopt).write(wanted)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if result.changes and not dry_run:
        log.info("sync.done", jobs=result.jobs, changes=[str(c) for c in result.changes],
                 actor=actor)
    return result


async def _check(service: Service, d: Declaration) -> _Wanted:
    """The declaration through the API's rules; InvalidDeclaration naming the job."""
    body = {"name": d.name, "handler": d.handler, "payload": d.payload, **d.options,
            "schedules": [{k: v for k, v in s.items() if k != "key"} for s in d.schedules]}
    try:
        job = JobCreate.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidDeclaration(d.name, _where(error["loc"]), error.get("input"),
                                 error["msg"].removeprefix("Value error, ")) from None
    values = job.model_dump(exclude={"schedules"})
    if values["max_attempts"] is None:
        values["max_attempts"] = service.settings.max_retry_attempts
    try:
        service.check_queue(values["queue"])
        public, secret = await service.check_job(values, stored_secret={})
    except InvalidInput as exc:
        raise InvalidDeclaration(d.name, exc.field, exc.value, exc.reason) from None
    schedules = {}
    for i, (s, fields) in enumerate(zip(d.schedules, job.schedules, strict=True)):
        try:
            # Checked inactive, without a clock: the write checks it against now.
            checked, _ = plan_schedule({**fields.model_dump(), "is_active": False},
                                       created_at=datetime.now(UTC), now=datetime.now(UTC))
        except InvalidInput as exc:
            raise InvalidDeclaration(d.name, f"schedules[{i}].{exc.field}", exc.value,
                                     exc.reason) from None
        schedules[s["key"]] = {f: checked[f] for f in DECLARED_SCHEDULE_FIELDS}
    return _Wanted(d, values, public, secret, schedules)


def _where(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Writer:
    """The writes of one sync, inside its transaction."""

    def __init__(self, service: Service, conn: asyncpg.Connection, actor: str,
                 result: SyncResult, adopt: bool):
        self.svc = service
        self.conn = conn
        self.actor = actor
        self.result = result
        self.adopt = adopt

    def _note(self, change: Change, notes: list[Change]) -> None:
        self.result.changes.append(change)
        notes.append(change)

    async def write(self, wanted: Sequence[_Wanted]) -> None:
        names = [w.declaration.name for w in wanted]
        jobs = {r["name"]: r for r in await self.conn.fetch(q("sync_jobs"), names)}
        schedules: dict[int, list[asyncpg.Record]] = {}
        for row in await self.conn.fetch(q("sync_schedules"), [r["id"] for r in jobs.values()]):
            schedules.setdefault(row["job_id"], []).append(row)
        self.now = await self.conn.fetchval(q("db_now"))
        for w in wanted:
            row = jobs.get(w.declaration.name)
            await self._job(w, row, schedules.get(row["id"], []) if row else [])
        declared = set(names)
        for name, row in jobs.items():
            if name not in declared and row["managed_by"] == "code" and row["undeclared_at"] is None:
                notes: list[Change] = []
                await self.conn.execute(q("undeclare_job"), row["id"])
                self._note(Change("disable", name, detail="no longer declared in code; its "
                                  "schedules and runs stay"), notes)
                await self._audit(row["id"], name, notes)
        if self.result.changes:
            await wake_scheduler(self.conn, "sync")

    async def _job(self, w: _Wanted, row: asyncpg.Record | None,
                   stored: list[asyncpg.Record]) -> None:
        d = w.declaration
        notes: list[Change] = []
        if row is None:
            values = self.svc.with_secrets({**w.values, "enabled": True}, w.public, w.secret)
            with db_errors(f"a job named {d.name!r}"):
                job_id = await self.conn.fetchval(q("insert_job"), *(values[f] for f in JOB_FIELDS))
            await self.conn.execute(q("manage_job"), job_id)
            self._note(Change("create", d.name, detail=f"{d.handler} job, queue {values['queue']}"),
                       notes)
        else:
            job_id = row["id"]
            await self._update_job(w, row, notes)
        await self._schedules(w, job_id, stored, notes)
        await self._audit(job_id, d.name, notes)

    async def _update_job(self, w: _Wanted, row: asyncpg.Record, notes: list[Change]) -> None:
        d = w.declaration
        if row["managed_by"] != "code" and not self.adopt:
            raise Conflict(f"job {d.name!r} exists and is not managed by code (it was made "
                           f"through the API, the CLI or the dashboard): rename the declaration "
                           f"({d.where}), delete that job, or run `sundial sync --adopt` to let "
                           "code manage it")
        changed = [f for f in DECLARED_JOB_FIELDS if f != "payload" and row[f] != w.values[f]]
        if row["payload"] != w.public or self.svc.stored_secrets(row) != w.secret:
            changed.append("payload")
        redeclared = row["undeclared_at"] is not None
        if changed or redeclared or row["managed_by"] != "code":
            enabled = True if redeclared else row["enabled"]
            values = self.svc.with_secrets({**w.values, "enabled": enabled}, w.public, w.secret)
            with db_errors(f"a job named {d.name!r}"):
                await self.conn.execute(q("update_job"), row["id"],
                                        *(values[f] for f in JOB_FIELDS))
            await self.conn.execute(q("manage_job"), row["id"])
        if row["managed_by"] != "code":
            self._note(Change("adopt", d.name, detail="managed by code from now on"
                              + (f"; changed {', '.join(sorted(changed))}" if changed else "")),
                       notes)
        elif redeclared:
            self._note(Change("enable", d.name, detail="declared again"
                              + (f"; changed {', '.join(sorted(changed))}" if changed else "")),
                       notes)
        elif changed:
            self._note(Change("update", d.name, detail=", ".join(sorted(changed))), notes)

    async def _schedules(self, w: _Wanted, job_id: int, stored: list[asyncpg.Record],
                         notes: list[Change]) -> None:
        name = w.declaration.name
        by_key = {r["managed_key"]: r for r in stored if r["managed_key"] is not None}
        for i, (key, fields) in enumerate(w.schedules.items()):
            row = by_key.get(key)
            try:
                if row is None:
                    await self._create_schedule(job_id, name, key, fields, notes)
                else:
                    await self._update_schedule(row, name, key, fields, notes)
            except InvalidInput as exc:
                raise InvalidDeclaration(name, f"schedules[{i}].{exc.field}", exc.value,
                                         exc.reason) from None
        gone = [r for r in stored
                if (r["managed_key"] is not None and r["managed_key"] not in w.schedules)
                or (r["managed_key"] is None and r["is_active"])]
        if gone:
            await self.conn.execute(q("release_schedules"), [r["id"] for r in gone])
            for r in gone:
                self._note(Change("disable", name, f"{r['id']}",
                                  f"{_describe(r)} is not declared; its runs stay"), notes)

    async def _create_schedule(self, job_id: int, job: str, key: str, fields: Mapping[str, Any],
                               notes: list[Change]) -> None:
        values, next_run_at = plan_schedule({**fields, "is_active": True}, created_at=self.now,
                                            now=self.now)
        with db_errors("schedule"):
            schedule_id = await self.conn.fetchval(
                q("insert_schedule"), job_id, *(values[f] for f in SCHEDULE_FIELDS), next_run_at)
        await self.conn.execute(q("key_schedule"), schedule_id, key)
        self._note(Change("create", job, key, f"{_describe(values)}, next run "
                          f"{_instant(next_run_at)}"), notes)

    async def _update_schedule(self, row: asyncpg.Record, job: str, key: str,
                               fields: Mapping[str, Any], notes: list[Change]) -> None:
        changed = sorted(f for f in DECLARED_SCHEDULE_FIELDS if row[f] != fields[f])
        if not changed:
            return
        # Paused stays paused; one the scheduler set aside is back once it validates.
        active = row["is_active"] or row["set_aside_at"] is not None
        values, next_run_at = plan_schedule({**fields, "is_active": active},
                                            created_at=row["created_at"], now=self.now)
        with db_errors("schedule"):
            await self.conn.execute(q("update_schedule"), row["id"],
                                    *(values[f] for f in SCHEDULE_FIELDS), next_run_at)
        when = f"next run {_instant(next_run_at)}" if active else "paused"
        self._note(Change("update", job, key, f"{', '.join(changed)}: {_describe(values)}, "
                          f"{when}"), notes)

    async def _audit(self, job_id: int, name: str, notes: list[Change]) -> None:
        if notes:
            await self.svc._audit(self.conn, self.actor, "job.sync", "job", job_id,
                                 {"name": name, "changes": [str(c) for c in notes]})


def _describe(schedule: Mapping[str, Any]) -> str:
    if schedule["kind"] == "cron":
        return f"cron {schedule['cron']!r} {schedule['timezone']}"
    if schedule["kind"] == "interval":
        return f"every {schedule['interval_seconds']:g} s"
    return f"once at {_instant(schedule['run_at'])}"


def _instant(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
