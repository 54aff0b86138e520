"""/api/notifications: channels (where alerts go), rules (when), the delivery history, and
"send a test". Viewers read everything but secrets (never returned); admins write."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from sundial.api.auth import Caller
from sundial.api.notification_schemas import (
    Channel,
    ChannelCreate,
    ChannelUpdate,
    Notification,
    Rule,
    RuleCreate,
    RuleUpdate,
    TestQueued,
)
from sundial.api.routes import Svc
from sundial.api.schemas import MAX_ID, Deleted

router = APIRouter(prefix="/notifications", tags=["notifications"])
Ref = Annotated[str, Path(min_length=1, max_length=100, description="An id or a name.")]


@router.get("/channels", response_model=list[Channel])
async def list_channels(svc: Svc):
    return await svc.notifications.list_channels()


@router.post("/channels", response_model=Channel, status_code=status.HTTP_201_CREATED)
async def create_channel(body: ChannelCreate, svc: Svc, who: Caller):
    """A webhook without `signing_secret` gets one generated, returned in this answer only."""
    return await svc.notifications.create_channel(who.name, body)


@router.get("/channels/{channel}", response_model=Channel)
async def get_channel(channel: Ref, svc: Svc):
    return await svc.notifications.get_channel(channel)


@router.patch("/channels/{channel}", response_model=Channel)
async def update_channel(channel: Ref, body: ChannelUpdate, svc: Svc, who: Caller):
    return await svc.notifications.update_channel(who.name, channel, body)


@router.delete("/channels/{channel}", response_model=Deleted)
async def delete_channel(channel: Ref, svc: Svc, who: Caller):
    """Delete the channel with its rules and their notifications."""
    return {"id": await svc.notifications.delete_channel(who.name, channel)}


@router.post("/channels/{channel}/test", response_model=TestQueued,
             status_code=status.HTTP_202_ACCEPTED)
async def test_channel(channel: Ref, svc: Svc, who: Caller):
    """Send a test notification; GET /api/notifications/{id} tells how its delivery went."""
    return {"notification_id": await svc.notifications.test_channel(who.name, channel)}


@router.get("/rules", response_model=list[Rule])
async def list_rules(svc: Svc):
    return await svc.notifications.list_rules()


@router.post("/rules", response_model=Rule, status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleCreate, svc: Svc, who: Caller):
    return await svc.notifications.create_rule(who.name, body)


@router.get("/rules/{rule}", response_model=Rule)
async def get_rule(rule: Ref, svc: Svc):
    return await svc.notifications.get_rule(rule)


@router.patch("/rules/{rule}", response_model=Rule)
async def update_rule(rule: Ref, body: RuleUpdate, svc: Svc, who: Caller):
    return await svc.notifications.update_rule(who.name, rule, body)


@router.delete("/rules/{rule}", response_model=Deleted)
async def delete_rule(rule: Ref, svc: Svc, who: Caller):
    return {"id": await svc.notifications.delete_rule(who.name, rule)}


@router.post("/rules/{rule}/test", response_model=TestQueued, status_code=status.HTTP_202_ACCEPTED)
async def test_rule(rule: Ref, svc: Svc, who: Caller):
    """Send a test notification of the rule's kind to its channel."""
    return {"notification_id": await svc.notifications.test_rule(who.name, rule)}


@router.get("", response_model=list[Notification])
async def list_notifications(
        svc: Svc,
        status_: Annotated[Literal["pending", "delivered", "failed", "suppressed"] | None,
                           Query(alias="status")] = None,
        channel: Annotated[str | None, Query(max_length=100)] = None,
        rule: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="ids below this")] = None):
    """The delivery history, newest first."""
    return await svc.notifications.list_notifications(status=status_, channel=channel, rule=rule,
                                                      limit=limit, before=before)


@router.get("/{notification_id}", response_model=Notification)
async def get_notification(notification_id: Annotated[int, Path(ge=1, le=MAX_ID - 1)], svc: Svc):
    return await svc.notifications.get_notification(notification_id)
