"""Request and response bodies. Unknown fields are refused (422 naming them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from sundial.api.payloads import unstorable_text

HANDLERS: tuple[str, ...] = ("noop", "sleep", "http", "command", "python")
Handler = Literal["noop", "sleep", "http", "command", "python"]
ConcurrencyPolicy = Literal["allow", "forbid", "replace"]
Kind = Literal["interval", "cron", "once"]
MisfirePolicy = Literal["run_once", "skip", "run_all"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled",
                    "skipped", "dead"]
FINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "timed_out", "cancelled", "skipped",
                                   "dead")

MAX_ID = 2**63 - 1
YEAR_S = 366 * 86400


def _storable(value: str) -> str:
    reason = unstorable_text(value)
    if reason:
        raise ValueError(reason)
    return value


def _sane_instant(value: datetime) -> datetime:
    # Schedule math steps around these instants; far ends of the calendar overflow.
    if not 1970 <= value.year <= 9000:
        raise ValueError("must be between the years 1970 and 9000")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Instant = Annotated[AwareDatetime, AfterValidator(_sane_instant)]
JobName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- schedules ------------------------------------------------------------------------


class ScheduleFields(Strict):
    kind: Kind
    interval_seconds: Annotated[Seconds, Field(le=10 * YEAR_S)] | None = Field(
        None, description="For kind=interval: seconds between slots, at least 1.")
    cron: Annotated[Text, Field(max_length=200)] | None = Field(
        None, description="For kind=cron: 5 fields or an alias like @hourly.")
    run_at: Instant | None = Field(None, description="For kind=once: when, with a UTC offset.")
    timezone: Annotated[Text, Field(max_length=100)] = Field(
        "UTC", description="IANA time zone of a cron expression, e.g. Europe/Paris.")
    jitter_seconds: Annotated[Seconds, Field(ge=0, le=86400)] = 0.0
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_policy: MisfirePolicy = "run_once"
    misfire_grace_seconds: Annotated[Seconds, Field(ge=0, le=YEAR_S)] | None = None
    is_active: bool = True


class ScheduleCreate(ScheduleFields):
    job_id: int = Field(ge=1, le=MAX_ID)


class ScheduleUpdate(Strict):
    """Fields to change; the others keep their values. Changing `kind` clears the fields
    of the former kind."""

    kind: Kind | None = None
    interval_seconds: Annotated[Seconds, Field(le=10 * YEAR_S)] | None = None
    cron: Annotated[Text, Field(max_length=200)] | None = None
    run_at: Instant | None = None
    timezone: Annotated[Text, Field(max_length=100)] | None = None
    jitter_seconds: Annotated[Seconds, Field(ge=0, le=86400)] | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_policy: MisfirePolicy | None = None
    misfire_grace_seconds: Annotated[Seconds, Field(ge=0, le=YEAR_S)] | None = None
    is_active: bool | None = None


class Schedule(BaseModel):
    id: int
    job_id: int
    job: str
    kind: Kind
    interval_seconds: float | None
    cron: str | None
    run_at: datetime | None
    timezone: str
    jitter_seconds: float
    start_at: datetime | None
    end_at: datetime | None
    misfire_policy: MisfirePolicy
    misfire_grace_seconds: float | None
    is_active: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    run_count: int
    failure_count: int
    last_error: str | None
    set_aside_at: datetime | None = Field(
        description="When the scheduler set this schedule aside because it cannot be "
                    "planned (is_active is then false; last_error says what to fix). A "
                    "change that passes validation clears it and makes the schedule "
                    "active again.")
    created_at: datetime
    updated_at: datetime


class Preview(BaseModel):
    schedule_id: int | None = Field(description="None for a schedule not saved yet.")
    timezone: str
    times: list[datetime]


# --- jobs --------------------------------------------------------------------------------


class JobFields(Strict):
    description: Annotated[Text, Field(max_length=2000)] = ""
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="Handler arguments: at most API_MAX_PAYLOAD_BYTES as JSON and 32 levels "
                    "deep. Secret values (http `Authorization`, `Proxy-Authorization` and "
                    "`Cookie` headers, headers named in `secret_headers`, the password in the "
                    "http `url`, and everything under `secrets`) are encrypted at rest and "
                    "shown as \"***\".")
    queue: QueueName = "default"
    priority: int = Field(0, ge=0, le=9)
    timeout_seconds: Annotated[Seconds, Field(gt=0, le=7 * 86400)] = 300.0
    max_attempts: int | None = Field(None, ge=1, le=100,
                                     description="Default: MAX_RETRY_ATTEMPTS.")
    retry_backoff_seconds: Annotated[Seconds, Field(ge=0, le=86400)] = 10.0
    retry_backoff_max_seconds: Annotated[Seconds, Field(ge=0, le=7 * 86400)] = 3600.0
    concurrency_policy: ConcurrencyPolicy = "allow"
    enabled: bool = True


class JobCreate(JobFields):
    name: JobName
    handler: Handler
    schedules: list[ScheduleFields] = Field(
        default_factory=list, max_length=100,
        description="Schedules created in the same transaction as the job.")


class JobUpdate(Strict):
    """Fields to change; the others keep their values."""

    name: JobName | None = None
    description: Annotated[Text, Field(max_length=2000)] | None = None
    handler: Handler | None = None
    payload: dict[str, Any] | None = None
    queue: QueueName | None = None
    priority: int | None = Field(None, ge=0, le=9)
    timeout_seconds: Annotated[Seconds, Field(gt=0, le=7 * 86400)] | None = None
    max_attempts: int | None = Field(None, ge=1, le=100)
    retry_backoff_seconds: Annotated[Seconds, Field(ge=0, le=86400)] | None = None
    retry_backoff_max_seconds: Annotated[Seconds, Field(ge=0, le=7 * 86400)] | None = None
    concurrency_policy: ConcurrencyPolicy | None = None
    enabled: bool | None = None


class Job(BaseModel):
    id: int
    name: str
    description: str
    handler: str
    payload: dict[str, Any]
    has_secrets: bool
    queue: str
    priority: int
    timeout_seconds: float
    max_attempts: int
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    concurrency_policy: ConcurrencyPolicy
    enabled: bool
    created_at: datetime
    updated_at: datetime


class JobSummary(Job):
    schedule_count: int
    next_run_at: datetime | None
    last_run_status: str | None
    last_run_finished_at: datetime | None


class JobDetail(Job):
    schedules: list[Schedule]


class Deleted(BaseModel):
    id: int
    deleted: Literal[True] = True


# --- runs -----------------------------------------------------------------------------


class JobHealth(BaseModel):
    job_id: int
    job: str
    window: str = Field(description="The window as asked, e.g. 24h.")
    window_s: float
    since: datetime = Field(description="Runs that finished at or after this instant count.")
    finished: int = Field(description="Runs that finished in the window, in any final status.")
    succeeded: int
    failed: int = Field(description="failed, timed_out and dead.")
    cancelled: int
    skipped: int
    success_rate: float | None = Field(
        description="succeeded / (succeeded + failed), 0-1; null without either.")
    error_rate: float | None = Field(
        description="failed / (succeeded + failed), 0-1; null without either.")
    avg_duration_s: float | None = Field(
        description="Mean time from start to end of the runs that succeeded or failed.")
    p95_duration_s: float | None = Field(description="95th percentile of the same.")
    last_success_at: datetime | None = Field(description="The latest success, in or before "
                                                         "the window.")


class Queued(BaseModel):
    run_id: int
    status: Literal["queued"] = "queued"


PayloadMode = Literal["merge", "replace"]
IdempotencyKey = Annotated[Text, StringConstraints(min_length=1, max_length=200)]


class TriggerBody(Strict):
    """Arguments of a manual run (all optional: no body runs the job as stored)."""

    payload: dict[str, Any] | None = Field(
        None, description="The run's arguments, checked like a job's payload. With `mode` "
                          "merge (the default) its top-level keys replace the job's and the "
                          "job's other keys stay; with replace it is the whole payload. "
                          "\"***\" where the job has a secret keeps the stored secret.")
    mode: PayloadMode = "merge"
    idempotency_key: IdempotencyKey | None = Field(
        None, description="A repeat with the same key for the same job within 24 hours "
                          "returns the first run (200) instead of making another (202).")
    priority: int | None = Field(None, ge=0, le=9,
                                 description="This run's priority; default: the job's.")


class Triggered(BaseModel):
    run_id: int
    status: RunStatus = Field(description="queued for a new run; a repeated key gives the "
                                          "first run's status now.")
    replayed: bool = Field(False, description="True when an idempotency key found an earlier "
                                              "run (HTTP 200) and no run was made.")


class BackfillBody(Strict):
    from_: Instant = Field(alias="from", description="First instant of the range (inclusive).")
    to: Instant = Field(description="Last instant of the range (inclusive), not in the future.")
    dry_run: bool = Field(False, description="Only count and list the slots; write nothing.")


class Backfill(BaseModel):
    schedule_id: int
    dry_run: bool
    slots: int = Field(description="Slots of the schedule in the range.")
    created: int = Field(description="Runs made (on a dry run: that would be made).")
    existing: int = Field(description="Slots that have their run already (the tick's or an "
                                      "earlier backfill's): left alone.")
    run_ids: list[int] = Field(description="The runs made (empty on a dry run).")
    times: list[datetime] = Field(description="The slots without a run, that get one.")


class RunSummary(BaseModel):
    id: int
    job_id: int
    job: str
    schedule_id: int | None
    scheduled_for: datetime
    trigger: str
    triggered_by: str | None
    status: RunStatus
    attempt: int
    max_attempts: int
    available_at: datetime
    published_at: datetime | None
    cancel_requested: bool
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker_id: str | None
    error: str | None
    priority: int
    created_at: datetime
    updated_at: datetime
    duration_s: float | None


class Run(RunSummary):
    handler: str
    result: Any
    output: str | None = Field(description=(
        "While running: the tail of what the run printed (command jobs' stdout and stderr, "
        "in-process Python jobs' prints and logs), at most 65,536 characters, written at "
        "each worker heartbeat. Once finished: its final output, or that tail."))
    output_at: datetime | None = Field(description="When `output` was last written.")
    payload: dict[str, Any] | None = Field(
        description="The arguments this run executes (secret fields shown as \"***\"); "
                    "null: its job's payload as it is when the run starts.")
    idempotency_key: str | None


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page.")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="The API key's name, or cli:<user>.")
    action: str = Field(description="e.g. job.create, schedule.pause, run.cancel, key.revoke.")
    target_type: str
    target_id: str | None
    details: dict[str, Any] = Field(description="What changed; never a secret value.")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page.")


class CancelResult(BaseModel):
    id: int
    status: RunStatus
    cancel_requested: bool


# --- scheduler, workers, stats --------------------------------------------------------------


class Me(BaseModel):
    name: str
    role: Literal["admin", "viewer"]


class SchedulerInstance(BaseModel):
    id: str
    host: str
    pid: int
    started_at: datetime
    last_tick_at: datetime | None
    next_tick_at: datetime | None
    ticks: int
    dispatched: int
    failures: int
    status: Literal["running", "stale", "stopped"] = Field(
        description="stale: it has not passed for SCHEDULER_STALE_AFTER (killed or cut off)")
    tzdata: str | None = Field(description="The IANA release of the time-zone rules this "
                                           "instance computes fire times with, e.g. 2026a.")
    broker_blocked_since: datetime | None = Field(
        description="Since when RabbitMQ blocks this instance's publishing (a memory or disk "
                    "alarm: runs wait in the outbox while ticking goes on); null if it does not.")
    broker_blocked_reason: str | None = Field(
        description="The reason RabbitMQ gave for the block, e.g. 'low on memory'.")


class SchedulerStatus(BaseModel):
    status: Literal["running", "stale", "unknown"]
    last_run: datetime | None
    next_run: datetime | None
    seconds_since_last_run: float | None
    stale_after_s: float
    trigger_requested: bool
    tzdata: str = Field(description="The IANA release of the time-zone rules (the pinned "
                                    "tzdata package) this API computes first slots and "
                                    "previews with, e.g. 2026a.")
    instances: list[SchedulerInstance]
    broker_blocked: bool = Field(
        description="Whether RabbitMQ blocks the publishing of a running scheduler instance.")


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class Worker(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    handlers: list[str]
    concurrency: int
    status: str
    online: bool
    running: int
    started_at: datetime
    last_heartbeat: datetime
    runs_started: int
    runs_succeeded: int
    runs_failed: int


class JobStats(BaseModel):
    total: int
    enabled: int
    disabled: int


class ExecutionStats(BaseModel):
    total: int
    successful: int
    failed: int
    running: int
    queued: int
    success_rate: float | None = Field(
        description="successful / (successful + failed), 0-1; null before any finished run.")


class Stats(BaseModel):
    jobs: JobStats
    executions: ExecutionStats
