"""Alert notifications, the pure part shared by the API (which checks channels and rules)
and the scheduler (which evaluates rules and delivers): the kinds, the message each
channel gets, and the webhook signature.

A webhook receives `payload(...)` as JSON with the header

    Sundial-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">

keyed with the channel's signing secret (docs/notifications.md has a check to copy).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sundial.core.secrets import masked_url

CHANNEL_KINDS = ("webhook", "slack", "email")
RULE_KINDS = ("run_failed", "schedule_silent", "missed_slot", "scheduler_stale",
              "queue_unattended", "outbox_backlog")
FAILED_STATUSES = ("failed", "timed_out", "dead")
# Rule kinds evaluated by the scheduler's loop (run_failed is written with the run).
CONDITION_KINDS = RULE_KINDS[1:]
# Which rule kinds take `within_seconds` and which `threshold` (both required there).
NEEDS_WITHIN = frozenset({"schedule_silent", "missed_slot", "scheduler_stale", "queue_unattended"})
NEEDS_THRESHOLD = frozenset({"outbox_backlog"})
# Which scopes a kind may have (the others must be left out).
SCOPES = {
    "run_failed": ("job_id", "queue", "schedule_id"),
    "schedule_silent": ("job_id", "queue", "schedule_id"),
    "missed_slot": ("job_id", "queue", "schedule_id"),
    "scheduler_stale": (),
    "queue_unattended": ("queue",),
    "outbox_backlog": (),
}
# The fields of each kind beyond the common ones, as (required, allowed): the API's checks
# and its OpenAPI schema (one object per kind) both read these.
CHANNEL_KIND_FIELDS = {
    "webhook": (("url",), ("url", "signing_secret")),
    "slack": (("url",), ("url",)),
    "email": (("to",), ("to",)),
}


def _rule_fields(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    needs = (("within_seconds",) if kind in NEEDS_WITHIN else ()) + (
        ("threshold",) if kind in NEEDS_THRESHOLD else ())
    return needs, needs + SCOPES[kind] + (("statuses",) if kind == "run_failed" else ())


RULE_KIND_FIELDS = {kind: _rule_fields(kind) for kind in RULE_KINDS}

def shown_url(kind: str, url: str) -> str:
    """A channel's URL as it may be shown, stored or logged: a Slack URL is a credential
    from its path on; a webhook's loses its password."""
    if kind == "slack":
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}/***"
    return masked_url(url)


def hidden(text: str, kind: str, url: str) -> str:
    """`text` (an error about `url`) with the URL, and a Slack URL's path, as shown_url
    shows them."""
    text = text.replace(url, shown_url(kind, url)).replace(masked_url(url), shown_url(kind, url))
    secret = urlsplit(url).path if kind == "slack" else ""
    return text.replace(secret, "/***") if len(secret) > 1 else text


SIGNATURE_HEADER = "Sundial-Signature"
PAYLOAD_VERSION = 1


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The Sundial-Signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature matches and is recent (no replay of an old one)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def summary(event: str, state: str, details: Mapping[str, Any]) -> str:
    """One line saying what happened, for Slack, an email's subject and the payload."""
    d = details
    if state == "test":
        return f"Sundial test notification for channel {d.get('channel', '?')!r}"
    if event == "run_failed":
        text = (f"job {d.get('job')!r}: run {d.get('run_id')} {d.get('status')} "
                f"(attempt {d.get('attempt')} of {d.get('max_attempts')})")
        return text + (f": {d['error']}" if d.get("error") else "")
    done = "resolved: " if state == "resolved" else ""
    if event == "schedule_silent":
        last = d.get("last_success_at") or "never"
        return (f"{done}schedule {d.get('schedule_id')} of job {d.get('job')!r} has not succeeded "
                f"for {d.get('within_seconds'):g} s (last success: {last})")
    if event == "missed_slot":
        return (f"{done}schedule {d.get('schedule_id')} of job {d.get('job')!r}: the slot of "
                f"{d.get('next_run_at')} has not fired {d.get('within_seconds'):g} s later")
    if event == "scheduler_stale":
        return (f"{done}no scheduler has passed for {d.get('within_seconds'):g} s "
                f"(last pass: {d.get('last_tick_at') or 'never'})")
    if event == "queue_unattended":
        return (f"{done}queue {d.get('queue')!r} has had no online worker for "
                f"{d.get('within_seconds'):g} s ({d.get('queued')} runs waiting)")
    if event == "outbox_backlog":
        return (f"{done}{d.get('unpublished')} runs wait unpublished in the outbox "
                f"(threshold {d.get('threshold')})")
    return f"{done}{event}"


def payload(notification: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a webhook receives: `notification` is a row of the notifications table
    with the rule's name (`rule_name`)."""
    details = {k: _iso(v) for k, v in dict(notification["details"]).items()}
    rule = None
    if notification.get("rule_id") is not None:
        rule = {"id": notification["rule_id"], "name": notification.get("rule_name")}
    return {
        "version": PAYLOAD_VERSION,
        "id": notification["id"],
        "event": notification["event"],
        "state": notification["state"],
        "summary": summary(notification["event"], notification["state"], details),
        "rule": rule,
        "created_at": _iso(notification["created_at"]),
        "details": details,
    }


def body(data: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str).encode()


def slack_message(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a Slack-compatible incoming webhook takes: text, with the details below."""
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}.get(
        data["state"], ":bell:")
    lines = [f"{icon} *Sundial*: {data['summary']}"]
    for key in ("run_id", "job", "queue", "schedule_id", "worker_id"):
        if data["details"].get(key) is not None:
            lines.append(f"• {key}: `{data['details'][key]}`")
    return {"text": "\n".join(lines)}


def email_text(data: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body)."""
    subject = f"[Sundial] {data['summary']}"[:200]
    lines = [data["summary"], ""]
    lines += [f"{k}: {v}" for k, v in data["details"].items() if v is not None]
    if data.get("rule"):
        lines += ["", f"rule: {data['rule']['name']} ({data['rule']['id']})"]
    lines += [f"notification: {data['id']} ({data['event']}, {data['state']})"]
    return subject, "\n".join(lines) + "\n"
