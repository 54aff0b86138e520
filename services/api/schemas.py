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
# The runs a person may cancel, and those worth retrying (a succeeded or skipped run is
# not: run its job again instead).
CANCELLABLE_STATUSES: tuple[str, ...] = ("queued", "running")
RETRYABLE_STATUSES: tuple[str, ...] = ("failed", "dead", "timed_out", "cancelled")
BULK_MAX_RUNS = 1000

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


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page.")
    total: int = Field(description="How many runs match the filters, on every page.")


class RunFilters(Strict):
    """Which runs: the filters of `GET /api/runs`, all optional."""
    job: str | None = Field(None, min_length=1, max_length=200, description="A job's id or name.")
    schedule: int | None = Field(None, ge=1, le=MAX_ID)
    status: list[RunStatus] | None = Field(None, description="Any of these statuses.")
    queue: QueueName | None = Field(None, description="Runs of the jobs of this queue.")
    since: Instant | None = Field(None, description="Created at or after.")
    until: Instant | None = Field(None, description="Created before.")


class BulkRuns(RunFilters):
    dry_run: bool = Field(False, description="Only count the runs it would change.")


class BulkResult(BaseModel):
    dry_run: bool
    matched: int = Field(description="The runs the filters select (at most "
                                     f"{BULK_MAX_RUNS}).")
    run_ids: list[int] = Field(description="Those runs' ids (changed unless dry_run).")
    cancelled: int | None = Field(None, description="cancel: queued runs ended at once.")
    stopping: int | None = Field(None, description="cancel: running runs asked to stop.")
    queued: list[int] | None = Field(None, description="retry: the new runs.")


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


# --- queues ---------------------------------------------------------------------------------


class QueueState(BaseModel):
    queue: str = Field(description="The queue's name; `*` for every queue.")
    paused: bool = Field(description="This queue (or, for `*`, every queue) is paused itself.")
    paused_at: datetime | None
    paused_by: str | None
    all_paused: bool = Field(description="Every queue is paused (`POST /api/queues/pause`): "
                                         "no run is published, whatever `paused` says.")


class QueueInfo(QueueState):
    jobs: int = Field(description="The jobs on this queue.")
    queued: int = Field(description="Its queued runs, published or held by a pause.")


class Queues(BaseModel):
    all_paused: bool
    all_paused_at: datetime | None
    all_paused_by: str | None
    queues: list[QueueInfo]


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
