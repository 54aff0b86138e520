"""Request and response bodies of /api/notifications: channels, rules, and the
notifications themselves (the delivery history)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from sundial.api.schemas import (
    MAX_ID,
    NUMBER,
    YEAR_S,
    Change,
    Kept,
    QueueName,
    Seconds,
    Strict,
    Text,
    WithPattern,
    by_kind,
)
from sundial.core import notifications as n

ChannelKind = Literal["webhook", "slack", "email"]
RuleKind = Literal["run_failed", "schedule_silent", "missed_slot", "scheduler_stale",
                   "queue_unattended", "outbox_backlog"]
FailedStatus = Literal["failed", "timed_out", "dead"]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
# Where its host may be (WORKER_HTTP_ALLOWED_NETWORKS) is checked on write.
Url = Annotated[Text, Field(min_length=1, max_length=2000),
                WithPattern(r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00]*$")]
# An address on its own line of a header: no spaces, commas, control characters or line
# breaks. Spelt out rather than \s, which the validator and JSON Schema tools read apart.
_ADDRESS_PART = r"[^\x00-\x20\x7f-\xa0\u2028\u2029,<>@]+"
Email = Annotated[str, StringConstraints(pattern=f"^{_ADDRESS_PART}@{_ADDRESS_PART}$",
                                         max_length=254)]
Id = Annotated[int, Field(ge=1, le=MAX_ID), NUMBER]


class ChannelCreate(Strict):
    """The fields of its `kind` only: a webhook or slack channel has `url`, an email one
    `to`."""

    model_config = ConfigDict(json_schema_extra=by_kind(n.CHANNEL_KIND_FIELDS))

    name: Name
    kind: ChannelKind
    url: Url | None = Field(None, description="webhook and slack: where to POST (secret: "
                                              "stored encrypted, shown masked)")
    signing_secret: Annotated[Text, Field(min_length=16, max_length=200)] | None = Field(
        None, description="webhook: the HMAC key of the Sundial-Signature header; left out, "
                          "one is generated and returned once")
    to: Annotated[list[Email], Field(min_length=1, max_length=50)] | None = Field(
        None, description="email: the recipients")
    enabled: StrictBool = True


class ChannelUpdate(Change):
    """Fields to change; the others keep their values (none may be null)."""

    name: Kept(Name) = None
    url: Kept(Url) = None
    signing_secret: Kept(Annotated[Text, Field(min_length=16, max_length=200)]) = None
    to: Kept(Annotated[list[Email], Field(min_length=1, max_length=50)]) = None
    enabled: Kept(StrictBool) = None


class Channel(BaseModel):
    id: int
    name: str
    kind: ChannelKind
    config: dict[str, Any] = Field(description="what may be shown: the URL masked, the recipients")
    has_signing_secret: bool
    enabled: bool
    created_at: datetime
    updated_at: datetime
    signing_secret: str | None = Field(None, description="only in the answer to a create that "
                                                         "generated it: store it now")


class RuleFields(Strict):
    channel_id: Id
    job_id: Id | None = Field(None, description="scope: this job only")
    queue: QueueName | None = Field(None, description="scope: jobs of this queue only")
    schedule_id: Id | None = Field(None, description="scope: this schedule only")
    statuses: Annotated[list[FailedStatus], Field(min_length=1, max_length=3)] | None = Field(
        None, description="run_failed: which final statuses notify (default all three)")
    within_seconds: Annotated[Seconds, Field(gt=0, le=YEAR_S), NUMBER] | None = Field(
        None, description="schedule_silent, missed_slot, scheduler_stale, queue_unattended: "
                          "for how long the condition must hold")
    threshold: Annotated[int, Field(ge=1, le=100_000_000), NUMBER] | None = Field(
        None, description="outbox_backlog: more unpublished runs than this notify")
    max_per_hour: Annotated[int, Field(ge=1, le=100_000), NUMBER] = 30
    enabled: StrictBool = True


class RuleCreate(RuleFields):
    """The fields of its `kind` only: `within_seconds` for the kinds that wait, `threshold`
    for outbox_backlog, `statuses` for run_failed, and the scopes the kind has."""

    model_config = ConfigDict(json_schema_extra=by_kind(n.RULE_KIND_FIELDS))

    name: Name
    kind: RuleKind


class RuleUpdate(Change):
    """Fields to change; the others keep their values. A scope field set to null widens
    the scope; `name`, `channel_id`, `statuses`, `max_per_hour` and `enabled` may not be
    null."""

    name: Kept(Name) = None
    channel_id: Kept(Id) = None
    job_id: Id | None = None
    queue: QueueName | None = None
    schedule_id: Id | None = None
    statuses: Kept(Annotated[list[FailedStatus], Field(min_length=1, max_length=3)]) = None
    within_seconds: Annotated[Seconds, Field(gt=0, le=YEAR_S), NUMBER] | None = None
    threshold: Annotated[int, Field(ge=1, le=100_000_000), NUMBER] | None = None
    max_per_hour: Kept(Annotated[int, Field(ge=1, le=100_000), NUMBER]) = None
    enabled: Kept(StrictBool) = None


class Rule(BaseModel):
    id: int
    name: str
    kind: RuleKind
    channel_id: int
    channel: str
    job_id: int | None
    job: str | None
    queue: str | None
    schedule_id: int | None
    statuses: list[str]
    within_seconds: float | None
    threshold: int | None
    max_per_hour: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


class Notification(BaseModel):
    id: int
    rule_id: int | None
    rule: str | None
    channel_id: int
    channel: str
    event: str
    state: Literal["firing", "resolved", "test"]
    summary: str
    details: dict[str, Any]
    status: Literal["pending", "delivered", "failed", "suppressed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class TestQueued(BaseModel):
    notification_id: int
    status: Literal["pending"] = "pending"
