"""Request and response bodies. Unknown fields are refused (422 naming them)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

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

# The largest id the API takes: what every JSON reader holds exactly (a double; JavaScript's
# Number.MAX_SAFE_INTEGER). A bigint above it would be read as a neighbour by some clients.
MAX_ID = 2**53 - 1
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


_DATE_FIRST = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _as_text(value: Any) -> Any:
    # JSON has no time type: a date and time is a string that starts with its date (pydantic
    # would also take a number of seconds since 1970, or its text, which the schema does not say).
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_FIRST.match(value)):
        return value
    raise ValueError("must be a date and time as text, ISO 8601 with a UTC offset, e.g. "
                     "2030-01-01T09:00:00+00:00")


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null; leave it out to keep the value")
    return value


def Kept(kind: Any) -> Any:
    """A field of a change that cannot be empty: left out to keep the stored value, never
    sent as null."""
    return Annotated[kind, BeforeValidator(_not_null)]


class WithPattern:
    """A pattern in the JSON schema only: the validators check the text, with a message
    that says what is wrong."""

    def __init__(self, pattern: str):
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern  # the outermost says it all
        return schema


# A bound of a filter: before 1970 or after 9000 it selects what those years would.
FIRST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LAST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def _clamped(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # beyond year 9999 or before year 1 once in UTC
        return LAST_INSTANT if value.year > 1970 else FIRST_INSTANT
    return min(max(value, FIRST_INSTANT), LAST_INSTANT)


# What PostgreSQL can store, said to JSON Schema (`_storable` says it to the sender).
STORABLE = WithPattern(r"^[^\x00]*$")
Text = Annotated[str, AfterValidator(_storable), STORABLE]
Instant = Annotated[AwareDatetime, BeforeValidator(_as_text), AfterValidator(_sane_instant)]
Bound = Annotated[AwareDatetime, BeforeValidator(_as_text), AfterValidator(_clamped)]
JobName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
def _number(value: Any) -> Any:
    # JSON's true is not a number, nor is "10" (pydantic would take both); 3.0 is an integer.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number (true, false and text are not numbers)")
    return value


# Last in a field's Annotated[...], after its bounds (which then stay in the JSON schema).
NUMBER = BeforeValidator(_number)
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_null_default(schema: dict[str, Any]) -> None:
    # A field that may be left out but not sent as null: no "default": null in the schema.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and "anyOf" not in prop:
            del prop["default"]


def by_kind(fields: Mapping[str, tuple[Iterable[str], Iterable[str]]]) -> Any:
    """The JSON schema of a body whose fields depend on its `kind` (a json_schema_extra):
    one object per kind (`oneOf`), with the common fields and the kind's own, given as
    `{kind: (required, allowed)}` (required ones not null), and no other field."""
    own = {name for _needs, has in fields.values() for name in has}

    def extra(schema: dict[str, Any]) -> None:
        properties = schema.pop("properties")
        required = set(schema.pop("required", ()))
        schema.pop("type", None)
        schema.pop("additionalProperties", None)
        variants = []
        for kind, (needs, has) in fields.items():
            props = {k: v for k, v in properties.items() if k not in own or k in has}
            props["kind"] = {"type": "string", "const": kind}
            props.update({name: _non_null_schema(properties[name]) for name in needs})
            variants.append({"type": "object", "title": f"{schema.get('title')} ({kind})",
                             "properties": props,
                             "required": [k for k in props if k in required or k in needs],
                             "additionalProperties": False})
        schema["oneOf"] = variants

    return extra


def _non_null_schema(prop: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    branches = [b for b in prop.get("anyOf", [kept]) if b.get("type") != "null"]
    return {**kept, **(branches[0] if len(branches) == 1 else {"anyOf": branches})}


class Change(BaseModel):
    """Fields to change; the others keep their values. A field that cannot be empty is
    left out to keep it, never sent as null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_default)


# --- schedules ------------------------------------------------------------------------


class ScheduleFields(Strict):
    kind: Kind
    interval_seconds: Annotated[Seconds, Field(le=10 * YEAR_S), NUMBER] | None = Field(
        None, description="For kind=interval: seconds between slots, at least 1.")
    cron: Annotated[Text, Field(max_length=200)] | None = Field(
        None, description="For kind=cron: 5 fields or an alias like @hourly.")
    run_at: Instant | None = Field(None, description="For kind=once: when, with a UTC offset.")
    timezone: Annotated[Text, Field(max_length=100)] = Field(
        "UTC", description="IANA time zone of a cron expression, e.g. Europe/Paris.")
    jitter_seconds: Annotated[Seconds, Field(ge=0, le=86400), NUMBER] = 0.0
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_policy: MisfirePolicy = "run_once"
    misfire_grace_seconds: Annotated[Seconds, Field(ge=0, le=YEAR_S), NUMBER] | None = None
    is_active: StrictBool = True


class ScheduleCreate(ScheduleFields):
    job_id: Annotated[int, Field(ge=1, le=MAX_ID), NUMBER]


class ScheduleUpdate(Change):
    """Fields to change; the others keep their values. Changing `kind` clears the fields
    of the former kind; `interval_seconds`, `cron`, `run_at`, `start_at`, `end_at` and
    `misfire_grace_seconds` may be null (none)."""

    kind: Kept(Kind) = None
    interval_seconds: Annotated[Seconds, Field(le=10 * YEAR_S), NUMBER] | None = None
    cron: Annotated[Text, Field(max_length=200)] | None = None
    run_at: Instant | None = None
    timezone: Kept(Annotated[Text, Field(max_length=100)]) = None
    jitter_seconds: Kept(Annotated[Seconds, Field(ge=0, le=86400), NUMBER]) = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_policy: Kept(MisfirePolicy) = None
    misfire_grace_seconds: Annotated[Seconds, Field(ge=0, le=YEAR_S), NUMBER] | None = None
    is_active: Kept(StrictBool) = None


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
    managed_key: str | None = Field(
        None, description="The schedule's key in its job's declaration in code (`sundial "
                          "sync`), by which a sync finds it again; null for a schedule made "
                          "through the API and for one code no longer declares.")
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
    priority: Annotated[int, Field(ge=0, le=9), NUMBER] = 0
    timeout_seconds: Annotated[Seconds, Field(gt=0, le=7 * 86400), NUMBER] = 300.0
    max_attempts: Annotated[int, Field(ge=1, le=100), NUMBER] | None = Field(
        None,                                      description="Default: MAX_RETRY_ATTEMPTS.")
    retry_backoff_seconds: Annotated[Seconds, Field(ge=0, le=86400), NUMBER] = 10.0
    retry_backoff_max_seconds: Annotated[Seconds, Field(ge=0, le=7 * 86400), NUMBER] = 3600.0
    concurrency_policy: ConcurrencyPolicy = "allow"
    enabled: StrictBool = True


class JobCreate(JobFields):
    name: JobName
    handler: Handler
    schedules: list[ScheduleFields] = Field(
        default_factory=list, max_length=100,
        description="Schedules created in the same transaction as the job.")


class JobUpdate(Change):
    name: Kept(JobName) = None
    description: Kept(Annotated[Text, Field(max_length=2000)]) = None
    handler: Kept(Handler) = None
    payload: Kept(dict[str, Any]) = None
    queue: Kept(QueueName) = None
    priority: Kept(Annotated[int, Field(ge=0, le=9), NUMBER]) = None
    timeout_seconds: Kept(Annotated[Seconds, Field(gt=0, le=7 * 86400), NUMBER]) = None
    max_attempts: Kept(Annotated[int, Field(ge=1, le=100), NUMBER]) = None
    retry_backoff_seconds: Kept(Annotated[Seconds, Field(ge=0, le=86400), NUMBER]) = None
    retry_backoff_max_seconds: Kept(Annotated[Seconds, Field(ge=0, le=7 * 86400), NUMBER]) = None
    concurrency_policy: Kept(ConcurrencyPolicy) = None
    enabled: Kept(StrictBool) = None


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
    managed_by: Literal["code"] | None = Field(
        None, description="\"code\" while the job is declared in code and written by "
                          "`sundial sync`: its declared fields and schedules are then changed "
                          "in code (edits and deletion here are a 409), while pause, resume "
                          "and trigger stay open. null for a job made through the API.")
    undeclared_at: datetime | None = Field(
        None, description="When `sundial sync` found the job no longer declared in code and "
                          "disabled it; null otherwise.")
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
    total: int = Field(description="How many runs match the filters, on every page: exact "
                                   "when `total_exact`, else at least that many (filters "
                                   "other than `status` are counted up to 10,000).")
    total_exact: bool = Field(description="Whether `total` is the exact count.")


class RunFilters(Strict):
    """Which runs: the filters of `GET /api/runs` but `status`, all optional."""
    job: str | None = Field(None, min_length=1, max_length=200, description="A job's id or name.")
    schedule: Annotated[int, Field(ge=1, le=MAX_ID), NUMBER] | None = None
    queue: QueueName | None = Field(None, description="Runs of the jobs of this queue.")
    since: Annotated[Bound, BeforeValidator(_as_text)] | None = Field(
        None, description="Created at or after (ISO 8601 with a UTC offset).")
    until: Annotated[Bound, BeforeValidator(_as_text)] | None = Field(
        None, description="Created before (ISO 8601 with a UTC offset).")


class RunSelection(RunFilters):
    status: list[RunStatus] | None = Field(None, description="Any of these statuses.")


class CancelRuns(RunFilters):
    """The runs to cancel: those of the filters that are queued or running."""
    status: list[Literal["queued", "running"]] | None = Field(
        None, description="Any of these statuses (both if left out).")
    dry_run: StrictBool = Field(False, description="Only count the runs it would change.")


class RetryRuns(RunFilters):
    """The runs to retry: those of the filters that failed, are dead, timed out or were
    cancelled."""
    status: list[Literal["failed", "dead", "timed_out", "cancelled"]] | None = Field(
        None, description="Any of these statuses (all four if left out).")
    dry_run: StrictBool = Field(False, description="Only count the runs it would change.")


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


# --- errors ---------------------------------------------------------------------------------


class Error(BaseModel):
    """401, 403, 404, 409, 413, 503: what went wrong, in words."""

    detail: str


class Problem(BaseModel):
    field: str = Field(description="The field at fault, e.g. schedules[0].cron "
                                   "(`body` for the request as a whole).")
    value: Any = Field(description="The value sent, made safe to show (secrets as \"***\", "
                                   "long values cut); null for a missing field.")
    reason: str = Field(description="Why it is refused and what is accepted.")
    loc: list[str] = Field(description="`field` as a path.")
    msg: str = Field(description="`field: reason`.")


class Invalid(BaseModel):
    """422: every field refused, each naming its value and the fix."""

    detail: list[Problem]
