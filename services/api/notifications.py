"""Notification channels and rules, shared by the HTTP routes and the CLI (`sundial notify`).

A channel's secrets (a webhook's URL and signing secret, a Slack URL) are encrypted with
ENCRYPTION_KEY like a job's secret fields, and never returned: `config` shows the URL
masked. A generated signing secret is returned once, by the create that made it.
Webhook and Slack targets are checked against the SSRF policy of http jobs
(WORKER_HTTP_ALLOWED_NETWORKS) on every write, as the schedulers do at every delivery.
Every write has its audit_log row in the same transaction.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from sundial.api.errors import Conflict
from sundial.api.notification_schemas import ChannelCreate, ChannelUpdate, RuleCreate, RuleUpdate
from sundial.api.payloads import unstorable_text
from sundial.api.settings import ApiSettings
from sundial.core import notifications as n
from sundial.core.errors import AlreadyExists, ConfigError, InvalidInput, NotFound
from sundial.core.netguard import check_url
from sundial.core.secrets import decrypt_fields, encrypt_fields
from sundial.core.sql import q

CHANNEL_FIELDS = frozenset(name for _, has in n.CHANNEL_KIND_FIELDS.values() for name in has)
RULE_KIND_OWN = tuple(dict.fromkeys(f for _, has in n.RULE_KIND_FIELDS.values() for f in has))
RULE_FIELDS = ("name", "kind", "channel_id", "job_id", "queue", "schedule_id", "statuses",
               "within_seconds", "threshold", "max_per_hour", "enabled")
# Why a field a kind needs is missing (or null).
_NEEDED = {
    "url": "a {kind} channel needs the URL to POST to",
    "to": "an {kind} channel needs recipients, e.g. [\"ops@example.com\"]",
    "within_seconds": "a {kind} rule needs it: for how many seconds the condition must hold, "
                      "e.g. 3600",
    "threshold": "a {kind} rule needs it: how many unpublished runs are too many, e.g. 1000",
}
Audit = Callable[[asyncpg.Connection, str, str, str, object, Mapping[str, Any]], Awaitable[None]]


def _id(ref: str | int) -> int | None:
    from sundial.api.service import parse_id

    return parse_id(ref)


def public_channel(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "kind": row["kind"], "config": row["config"],
            "has_signing_secret": row["kind"] == "webhook" and row["has_secret"],
            "enabled": row["enabled"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}


def public_notification(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["summary"] = n.summary(row["event"], row["state"], row["details"])
    return out


class Notifications:
    def __init__(self, pool: asyncpg.Pool, settings: ApiSettings, audit: Audit):
        self.pool = pool
        self.settings = settings
        self._audit = audit

    # --- channels ---------------------------------------------------------------------

    async def list_channels(self) -> list[dict[str, Any]]:
        return [public_channel(r) for r in await self.pool.fetch(q("list_channels"))]

    async def _channel_row(self, conn: asyncpg.Connection, ref: str | int, *,
                           lock: bool = False) -> asyncpg.Record:
        """The channel by id or name; `lock`: locked until the transaction ends (an edit
        writes every field of the row it read), and read again once locked."""
        row = None if unstorable_text(str(ref)) else await conn.fetchrow(
            q("get_channel"), _id(ref), str(ref))
        if row is not None and lock:
            locked = await conn.fetchval(q("lock_channel"), row["id"])
            row = None if locked is None else await conn.fetchrow(q("get_channel"), locked, None)
        if row is None:
            raise NotFound(f"no notification channel {ref!r}")
        return row

    async def get_channel(self, ref: str | int) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            return public_channel(await self._channel_row(conn, ref))

    async def create_channel(self, actor: str, body: ChannelCreate) -> dict[str, Any]:
        generated = None
        fields = {name: getattr(body, name) for name in CHANNEL_FIELDS & body.model_fields_set}
        if body.kind == "webhook" and not body.signing_secret:
            generated = fields["signing_secret"] = secrets.token_urlsafe(32)
        config, secret = await self._prepare_channel(body.kind, fields)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                channel_id = await conn.fetchval(q("insert_channel"), body.name, body.kind, config,
                                                 secret, body.enabled)
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"a notification channel named {body.name!r} already exists") from None
            await self._audit(conn, actor, "channel.create", "notification_channel", channel_id,
                              {"name": body.name, "kind": body.kind})
        channel = await self.get_channel(channel_id)
        if generated:
            channel["signing_secret"] = generated
        return channel

    async def update_channel(self, actor: str, ref: str | int, body: ChannelUpdate) -> dict[str, Any]:
        change = body.model_dump(exclude_unset=True)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._channel_row(conn, ref, lock=True)
            config, secret = row["config"], row["secret_config"]
            if CHANNEL_FIELDS & change.keys():
                stored = {**(self._decrypt(secret) if secret else {}), "to": config.get("to")}
                fields = {k: v for k, v in stored.items() if k in CHANNEL_FIELDS and v is not None}
                fields.update({k: v for k, v in change.items() if k in CHANNEL_FIELDS})
                config, secret = await self._prepare_channel(row["kind"], fields)
            name = change.get("name", row["name"])
            enabled = change.get("enabled", row["enabled"])
            try:
                await conn.execute(q("update_channel"), row["id"], name, config, secret, enabled)
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"a notification channel named {name!r} already exists") from None
            await self._audit(conn, actor, "channel.update", "notification_channel", row["id"],
                              {"name": name, "fields": sorted(change)})
        return await self.get_channel(row["id"])

    async def delete_channel(self, actor: str, ref: str | int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._channel_row(conn, ref)
            if await conn.fetchval(q("delete_channel"), row["id"]) is None:
                raise NotFound(f"no notification channel {ref!r}")
            await self._audit(conn, actor, "channel.delete", "notification_channel", row["id"],
                              {"name": row["name"]})
        return row["id"]

    async def test_channel(self, actor: str, ref: str | int) -> int:
        """Queue a test notification to the channel; the schedulers deliver it."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._channel_row(conn, ref)
            notification_id = await conn.fetchval(
                q("insert_test_notification"), row["id"], None, "test",
                {"channel": row["name"], "requested_by": actor})
            await self._audit(conn, actor, "channel.test", "notification_channel", row["id"],
                              {"name": row["name"], "notification_id": notification_id})
        return notification_id

    async def _prepare_channel(self, kind: str, fields: Mapping[str, Any]
                               ) -> tuple[dict[str, Any], str | None]:
        """(config to show, encrypted secrets) of a channel, its fields checked for its kind:
        `fields` holds those sent or stored, a null one included (refused if not the kind's)."""
        needs, has = n.CHANNEL_KIND_FIELDS[kind]
        for name in sorted(fields.keys() - set(has)):
            owners = " and ".join(k for k, (_, own) in n.CHANNEL_KIND_FIELDS.items() if name in own)
            raise InvalidInput(name, "***" if name != "to" else fields[name],
                               f"is for {owners} channels; a {kind} channel has "
                               + " and ".join(f"`{f}`" for f in has))
        for name in needs:
            if fields.get(name) is None:
                raise InvalidInput(name, None, _NEEDED[name].format(kind=kind))
        url, to, signing = fields.get("url"), fields.get("to"), fields.get("signing_secret")
        if kind in ("webhook", "slack"):
            try:
                await asyncio.to_thread(check_url, url, self.settings.http_allowed_networks)
            except ValueError as exc:
                raise InvalidInput("url", n.shown_url(kind, url),
                                   n.hidden(str(exc), kind, url)) from None
            secret = {"url": url, **({"signing_secret": signing} if signing else {})}
            try:
                token = encrypt_fields(self.settings.encryption_key, secret)
            except ConfigError:
                raise InvalidInput("url", n.shown_url(kind, url),
                                   "is stored encrypted, and ENCRYPTION_KEY is not set on the API; "
                                   "set it (on the schedulers too)") from None
            return {"url": n.shown_url(kind, url)}, token
        return {"to": list(to)}, None

    def _decrypt(self, token: str) -> dict[str, Any]:
        try:
            return decrypt_fields(self.settings.encryption_key, token)
        except ConfigError:
            raise Conflict("this channel's secrets are encrypted and ENCRYPTION_KEY is not set on "
                           "the API; set it to change the channel") from None

    # --- rules ------------------------------------------------------------------------

    async def list_rules(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch(q("list_rules"), None, None)]

    async def _rule_row(self, conn: asyncpg.Connection, ref: str | int, *,
                        lock: bool = False) -> asyncpg.Record:
        """The rule by id or name; `lock` as for _channel_row."""
        rows = [] if unstorable_text(str(ref)) else await conn.fetch(
            q("list_rules"), _id(ref), str(ref))
        if rows and lock:
            row = next((r for r in rows if r["id"] == _id(ref)), rows[0])
            locked = await conn.fetchval(q("lock_rule"), row["id"])
            rows = [] if locked is None else await conn.fetch(q("list_rules"), locked, None)
        if not rows:
            raise NotFound(f"no notification rule {ref!r}")
        return next((r for r in rows if r["id"] == _id(ref)), rows[0])

    async def get_rule(self, ref: str | int) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            return dict(await self._rule_row(conn, ref))

    async def create_rule(self, actor: str, body: RuleCreate) -> dict[str, Any]:
        values = body.model_dump()
        values["statuses"] = values["statuses"] or list(n.FAILED_STATUSES)
        check_rule(values, sent=body.model_fields_set)
        async with self.pool.acquire() as conn, conn.transaction():
            rule_id = await self._write_rule(conn, values, None)
            await self._audit(conn, actor, "rule.create", "notification_rule", rule_id,
                              {"name": body.name, "kind": body.kind})
        return await self.get_rule(rule_id)

    async def update_rule(self, actor: str, ref: str | int, body: RuleUpdate) -> dict[str, Any]:
        change = body.model_dump(exclude_unset=True)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._rule_row(conn, ref, lock=True)
            values = {f: row[f] for f in RULE_FIELDS}
            values.update(change)
            # A null scope widens it, whatever the kind.
            check_rule(values, sent={k for k, v in change.items() if v is not None})
            await self._write_rule(conn, values, row["id"])
            await self._audit(conn, actor, "rule.update", "notification_rule", row["id"],
                              {"name": values["name"], "fields": sorted(change)})
        return await self.get_rule(row["id"])

    async def _write_rule(self, conn: asyncpg.Connection, values: dict[str, Any],
                          rule_id: int | None) -> int:
        args = [values[f] for f in RULE_FIELDS]
        try:
            if rule_id is None:
                return await conn.fetchval(q("insert_rule"), *args)
            await conn.execute(q("update_rule"), rule_id, *(a for f, a in zip(RULE_FIELDS, args,
                                                                             strict=True)
                                                           if f != "kind"))
            return rule_id
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a notification rule named {values['name']!r} already exists") from None
        except asyncpg.ForeignKeyViolationError as exc:
            field = next((f for f in ("channel_id", "job_id", "schedule_id")
                          if f in (exc.constraint_name or "")), "channel_id")
            what = {"channel_id": "notification channel", "job_id": "job",
                    "schedule_id": "schedule"}[field]
            raise NotFound(f"no {what} {values[field]} (the rule's {field})") from None

    async def delete_rule(self, actor: str, ref: str | int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._rule_row(conn, ref)
            if await conn.fetchval(q("delete_rule"), row["id"]) is None:
                raise NotFound(f"no notification rule {ref!r}")
            await self._audit(conn, actor, "rule.delete", "notification_rule", row["id"],
                              {"name": row["name"]})
        return row["id"]

    async def test_rule(self, actor: str, ref: str | int) -> int:
        """Queue a test notification of the rule's kind to its channel."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._rule_row(conn, ref)
            notification_id = await conn.fetchval(
                q("insert_test_notification"), row["channel_id"], row["id"], row["kind"],
                {"channel": row["channel"], "rule": row["name"], "requested_by": actor})
            await self._audit(conn, actor, "rule.test", "notification_rule", row["id"],
                              {"name": row["name"], "notification_id": notification_id})
        return notification_id

    # --- history ----------------------------------------------------------------------

    async def list_notifications(self, *, status: str | None = None, channel: str | int | None = None,
                                 rule: str | int | None = None, limit: int = 50,
                                 before: int | None = None) -> list[dict[str, Any]]:
        channel_id = rule_id = None
        async with self.pool.acquire() as conn:
            if channel is not None:
                channel_id = (await self._channel_row(conn, channel))["id"]
            if rule is not None:
                rule_id = (await self._rule_row(conn, rule))["id"]
            rows = await conn.fetch(q("list_notifications"), status, channel_id, rule_id, limit,
                                    before)
        return [public_notification(r) for r in rows]

    async def get_notification(self, notification_id: int) -> dict[str, Any]:
        rows = await self.pool.fetch(q("list_notifications"), None, None, None, 1,
                                     notification_id + 1)
        if not rows or rows[0]["id"] != notification_id:
            raise NotFound(f"no notification {notification_id}")
        return public_notification(rows[0])


_NOT_OF_KIND = {"within_seconds": "a {kind} rule has no time; leave it out",
                "threshold": "a {kind} rule has no threshold; leave it out",
                "statuses": "only run_failed rules have statuses"}


def check_rule(values: Mapping[str, Any], *, sent: set[str]) -> None:
    """Each kind with the fields it needs, and none of another kind's among those `sent`;
    InvalidInput names the field, its value and the fix."""
    kind = values["kind"]
    needs, has = n.RULE_KIND_FIELDS[kind]
    for name in needs:
        if values.get(name) is None:
            raise InvalidInput(name, None, _NEEDED[name].format(kind=kind))
    for name in RULE_KIND_OWN:
        if name in sent and name not in has:
            allowed = ", ".join(n.SCOPES[kind]) or "none: it watches everything"
            raise InvalidInput(name, values.get(name), _NOT_OF_KIND.get(
                name, f"a {kind} rule cannot be scoped so (its scopes: {allowed})").format(kind=kind))
