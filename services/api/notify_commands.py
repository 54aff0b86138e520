"""`sundial notify channels|rules|history`: notification channels and rules from the shell,
with the rules of the HTTP API (sundial.api.notifications) and its exit codes."""

from __future__ import annotations

import argparse
from typing import Any

from sundial.api.commands import _actor, _command, _fields, _group, _json_flag, _print, table
from sundial.core.notifications import CHANNEL_KINDS, FAILED_STATUSES, RULE_KINDS

CHANNEL_COLUMNS = ("id", "name", "kind", "config", "enabled")
RULE_COLUMNS = ("id", "name", "kind", "channel", "job", "queue", "schedule_id", "within_seconds",
                "threshold", "max_per_hour", "enabled")
HISTORY_COLUMNS = ("id", "created_at", "rule", "channel", "state", "status", "attempts", "summary")


def register(sub: argparse._SubParsersAction) -> None:
    notify = sub.add_parser("notify", help="alert notifications: channels, rules, history")
    groups = notify.add_subparsers(dest="notify_command", metavar="WHAT", required=True)

    channels = _group(groups, "channels", "where notifications go: list, show, add, edit, "
                                          "delete, test")
    _json_flag(channels.add_parser("list", help="every channel (secrets never shown)")
               ).set_defaults(func=_command(_channels_list))
    p = channels.add_parser("add", help="add a webhook, slack or email channel",
                            description="e.g. sundial notify channels add ops --kind slack "
                                        "--url https://hooks.slack.com/services/...")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=CHANNEL_KINDS)
    _channel_options(p)
    _json_flag(p).set_defaults(func=_command(_channels_add))
    p = channels.add_parser("edit", help="change a channel (the other fields keep their values)")
    p.add_argument("channel", help="the channel's id or name")
    p.add_argument("--name", help="a new name")
    _channel_options(p)
    p.add_argument("--enable", dest="enabled", action="store_true", default=None)
    p.add_argument("--disable", dest="enabled", action="store_false")
    _json_flag(p).set_defaults(func=_command(_channels_edit))
    for name, helptext, func in (
            ("show", "one channel", _channels_show),
            ("delete", "delete a channel with its rules", _channels_delete),
            ("test", "send a test notification through it", _channels_test)):
        p = channels.add_parser(name, help=helptext)
        p.add_argument("channel", help="the channel's id or name")
        _json_flag(p).set_defaults(func=_command(func))

    rules = _group(groups, "rules", "when notifications are sent: list, show, add, edit, "
                                    "delete, test")
    _json_flag(rules.add_parser("list", help="every rule")).set_defaults(func=_command(_rules_list))
    p = rules.add_parser("add", help="add a rule",
                         description="e.g. sundial notify rules add nightly-silent --kind "
                                     "schedule_silent --channel ops --job nightly --within 90000")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=RULE_KINDS)
    p.add_argument("--channel", required=True, help="the channel's id or name")
    _rule_options(p)
    _json_flag(p).set_defaults(func=_command(_rules_add))
    p = rules.add_parser("edit", help="change a rule (the other fields keep their values)")
    p.add_argument("rule", help="the rule's id or name")
    p.add_argument("--name", help="a new name")
    p.add_argument("--channel", help="the channel's id or name")
    _rule_options(p)
    p.add_argument("--enable", dest="enabled", action="store_true", default=None)
    p.add_argument("--disable", dest="enabled", action="store_false")
    _json_flag(p).set_defaults(func=_command(_rules_edit))
    for name, helptext, func in (
            ("show", "one rule", _rules_show),
            ("delete", "delete a rule", _rules_delete),
            ("test", "send a test notification of the rule's kind to its channel", _rules_test)):
        p = rules.add_parser(name, help=helptext)
        p.add_argument("rule", help="the rule's id or name")
        _json_flag(p).set_defaults(func=_command(func))

    p = groups.add_parser("history", help="notifications sent or waiting, newest first")
    p.add_argument("--status", choices=("pending", "delivered", "failed", "suppressed"))
    p.add_argument("--channel", help="only this channel's (id or name)")
    p.add_argument("--rule", help="only this rule's (id or name)")
    p.add_argument("--limit", type=int, default=20)
    _json_flag(p).set_defaults(func=_command(_history))


def _channel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="webhook, slack: where to POST (stored encrypted)")
    p.add_argument("--signing-secret", help="webhook: the HMAC key (default: one is generated "
                                            "and printed once)")
    p.add_argument("--to", action="append", help="email: a recipient (repeatable)")


def _rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", help="scope: this job only (id or name)")
    p.add_argument("--queue", help="scope: this queue only")
    p.add_argument("--schedule", type=int, help="scope: this schedule only (id)")
    p.add_argument("--status", action="append", choices=FAILED_STATUSES,
                   help="run_failed: a final status that notifies (repeatable; default all)")
    p.add_argument("--within", type=float, metavar="SECONDS",
                   help="how long the condition must hold (schedule_silent, missed_slot, "
                        "scheduler_stale, queue_unattended)")
    p.add_argument("--threshold", type=int, help="outbox_backlog: unpublished runs that are too many")
    p.add_argument("--max-per-hour", type=int, help="notifications of this rule per hour at most "
                                                   "(default 30)")


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# --- channels ------------------------------------------------------------------------------


async def _channels_list(svc: Any, args: argparse.Namespace) -> None:
    rows = await svc.notifications.list_channels()
    _print(args, rows, table(rows, CHANNEL_COLUMNS))


async def _channels_show(svc: Any, args: argparse.Namespace) -> None:
    row = await svc.notifications.get_channel(args.channel)
    _print(args, row, "\n".join(_fields(row, as_json="config", skip="signing_secret")))


async def _channels_add(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.notification_schemas import ChannelCreate

    body = ChannelCreate.model_validate(_given({
        "name": args.name, "kind": args.kind, "url": args.url,
        "signing_secret": args.signing_secret, "to": args.to}))
    row = await svc.notifications.create_channel(_actor(), body)
    text = f"created {row['kind']} channel {row['id']} {row['name']!r}"
    if row.get("signing_secret"):
        text += ("\nits signing secret (shown only once: the receiver verifies "
                 f"Sundial-Signature with it):\n{row['signing_secret']}")
    _print(args, row, text)


async def _channels_edit(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.notification_schemas import ChannelUpdate
    from sundial.core.errors import InvalidInput

    change = _given({"name": args.name, "url": args.url, "signing_secret": args.signing_secret,
                     "to": args.to, "enabled": args.enabled})
    if not change:
        raise InvalidInput("options", None, "name at least one field to change, e.g. --disable")
    row = await svc.notifications.update_channel(_actor(), args.channel,
                                                 ChannelUpdate.model_validate(change))
    _print(args, row, f"changed channel {row['id']} {row['name']!r}: {', '.join(sorted(change))}")


async def _channels_delete(svc: Any, args: argparse.Namespace) -> None:
    channel_id = await svc.notifications.delete_channel(_actor(), args.channel)
    _print(args, {"id": channel_id, "deleted": True}, f"deleted channel {channel_id} ({args.channel!r})")


async def _channels_test(svc: Any, args: argparse.Namespace) -> None:
    notification_id = await svc.notifications.test_channel(_actor(), args.channel)
    _print(args, {"notification_id": notification_id, "status": "pending"},
           f"queued test notification {notification_id}; a scheduler delivers it "
           "(see: sundial notify history)")


# --- rules ---------------------------------------------------------------------------------


async def _rule_values(svc: Any, args: argparse.Namespace) -> dict[str, Any]:
    values = _given({"name": args.name, "queue": args.queue, "schedule_id": args.schedule,
                     "statuses": args.status, "within_seconds": args.within,
                     "threshold": args.threshold, "max_per_hour": args.max_per_hour,
                     "enabled": getattr(args, "enabled", None)})
    if args.channel is not None:
        values["channel_id"] = (await svc.notifications.get_channel(args.channel))["id"]
    if args.job is not None:
        values["job_id"] = (await svc.get_job(args.job))["id"]
    return values


async def _rules_list(svc: Any, args: argparse.Namespace) -> None:
    rows = await svc.notifications.list_rules()
    _print(args, rows, table(rows, RULE_COLUMNS))


async def _rules_show(svc: Any, args: argparse.Namespace) -> None:
    row = await svc.notifications.get_rule(args.rule)
    _print(args, row, "\n".join(_fields(row, as_json="statuses", skip="")))


async def _rules_add(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.notification_schemas import RuleCreate

    body = RuleCreate.model_validate({**await _rule_values(svc, args), "kind": args.kind})
    row = await svc.notifications.create_rule(_actor(), body)
    _print(args, row, f"created {row['kind']} rule {row['id']} {row['name']!r} "
                      f"(to channel {row['channel']!r})")


async def _rules_edit(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.notification_schemas import RuleUpdate
    from sundial.core.errors import InvalidInput

    change = await _rule_values(svc, args)
    if not change:
        raise InvalidInput("options", None, "name at least one field to change, e.g. --within 3600")
    row = await svc.notifications.update_rule(_actor(), args.rule, RuleUpdate.model_validate(change))
    _print(args, row, f"changed rule {row['id']} {row['name']!r}: {', '.join(sorted(change))}")


async def _rules_delete(svc: Any, args: argparse.Namespace) -> None:
    rule_id = await svc.notifications.delete_rule(_actor(), args.rule)
    _print(args, {"id": rule_id, "deleted": True}, f"deleted rule {rule_id} ({args.rule!r})")


async def _rules_test(svc: Any, args: argparse.Namespace) -> None:
    notification_id = await svc.notifications.test_rule(_actor(), args.rule)
    _print(args, {"notification_id": notification_id, "status": "pending"},
           f"queued test notification {notification_id}; a scheduler delivers it "
           "(see: sundial notify history)")


# --- history -------------------------------------------------------------------------------


async def _history(svc: Any, args: argparse.Namespace) -> None:
    from sundial.core.errors import InvalidInput

    if not 1 <= args.limit <= 500:
        raise InvalidInput("--limit", args.limit, "must be between 1 and 500")
    rows = await svc.notifications.list_notifications(status=args.status, channel=args.channel,
                                                      rule=args.rule, limit=args.limit)
    _print(args, rows, table(rows, HISTORY_COLUMNS))
