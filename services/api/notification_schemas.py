"""Request and response bodies of /api/notifications: channels, rules, and the
notifications themselves (the delivery history)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from sundial.api.schemas import MAX_ID, YEAR_S, QueueName, Seconds, Strict, Text

ChannelKind = Literal["webhook", "slack", "email"]
RuleKind = Literal["run_failed", "schedule_silent", "missed_slot", "scheduler_stale",
                   "queue_unattended", "outbox_backlog"]
FailedStatus = Literal["failed", "timed_out", "dead"]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
Url = Annotated[Text, Field(min_length=1, max_length=2000)]
# An address on its own line of a header: no spaces, commas or line breaks.
Email = Annotated[str, StringConstraints(pattern=r"^[^\s,<>@]+@[^\s,<>@]+$", max_length=254)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class ChannelCreate(Strict):
    name: Name
    kind: ChannelKind
    url: Url | None = Field(None, description="webhook and slack: where to POST (secret: "
                                              "stored encrypted, shown masked)")
    signing_secret: Annotated[Text, Field(min_length=16, max_length=200)] | None = Field(
        None, description="webhook: the HMAC key of the Sundial-Signature header; left out, "
                          "one is generated and returned once")
    to: Annotated[list[Email], Field(min_length=1, max_length=50)] | None = Field(
        None, description="email: the recipients")
    enabled: bool = True


class ChannelUpdate(Strict):
    """Fields to change; the others keep their values."""

    name: Name | None = None
    url: Url | None = None
    signing_secret: Annotated[Text, Field(min_length=16, max_length=200)] | None = None
    to: Annotated[list[Email], Field(min_length=1, max_length=50)] | None = None
    enabled: bool | None = None


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
    within_seconds: Annotated[Seconds, Field(gt=0, le=YEAR_S)] | None = Field(
        None, description="schedule_silent, missed_slot, scheduler_stale, queue_unattended: "
                          "for how long the condition must hold")
    threshold: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        None, description="outbox_backlog: more unpublished runs than this notify")
    max_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 30
    enabled: bool = True


class RuleCreate(RuleFields):
    name: Name
    kind: RuleKind


class RuleUpdate(Strict):
    """Fields to change; the others keep their values. A scope field set to null widens
    the scope."""

    name: Name | None = None
    channel_id: Id | None = None
    job_id: Id | None = None
    queue: QueueName | None = None
    schedule_id: Id | None = None
    statuses: Annotated[list[FailedStatus], Field(min_length=1, max_length=3)] | None = None
    within_seconds: Annotated[Seconds, Field(gt=0, le=YEAR_S)] | None = None
    threshold: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    max_per_hour: Annotated[int, Field(ge=1, le=100_000)] | None = None
    enabled: bool | None = None


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
