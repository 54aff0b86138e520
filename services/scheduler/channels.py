"""Sending one notification through its channel: a signed JSON webhook, a Slack-compatible
incoming webhook, or email over SMTP.

Webhooks obey the SSRF policy of http jobs: the URL's host is resolved once, every
address must be public or allowed by WORKER_HTTP_ALLOWED_NETWORKS, and the request goes
to a checked address (sundial.core.pinned). Redirects are not followed: a receiver
answers 2xx or the attempt failed.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import httpx

from sundial.core import notifications as n
from sundial.core.netguard import checked_addresses
from sundial.core.pinned import pinned_request
from sundial.core.secrets import decrypt_fields
from sundial.scheduler.settings import SchedulerSettings

USER_AGENT = "Sundial-Notifications/1"
MAX_ERROR_CHARS = 500


class DeliveryError(Exception):
    """The attempt failed; a later one may succeed."""


class Refused(DeliveryError):
    """The notification can never be sent as configured (e.g. a webhook target the SSRF
    policy refuses): marked failed at once."""


async def send(notification: Mapping[str, Any], settings: SchedulerSettings) -> None:
    """Deliver one claimed notification (a row of claim_notifications); raises
    DeliveryError when it was not accepted."""
    data = n.payload(notification)
    kind = notification["channel_kind"]
    config = dict(notification["channel_config"] or {})
    secret = _secrets(notification, settings)
    if kind == "webhook":
        raw = n.body(data)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Sundial-Event": data["event"], "Sundial-Delivery": str(data["id"])}
        if secret.get("signing_secret"):
            headers[n.SIGNATURE_HEADER] = n.signature(secret["signing_secret"], raw, int(time.time()))
        await _post(kind, secret["url"], headers, raw, settings)
    elif kind == "slack":
        raw = n.body(n.slack_message(data))
        await _post(kind, secret["url"], {"Content-Type": "application/json", "User-Agent": USER_AGENT},
                    raw, settings)
    elif kind == "email":
        subject, text = n.email_text(data)
        await asyncio.to_thread(_send_email, settings, list(config.get("to", [])), subject, text)
    else:
        raise Refused(f"unknown channel kind {kind!r}")


def _secrets(notification: Mapping[str, Any], settings: SchedulerSettings) -> dict[str, Any]:
    token = notification["channel_secret"]
    if not token:
        return {}
    try:
        return decrypt_fields(settings.encryption_key, token)
    except Exception as exc:  # ConfigError (no key) or SecretError (another key)
        raise DeliveryError(f"channel {notification['channel_name']!r}: {exc}") from None


async def _post(kind: str, url: str, headers: dict[str, str], raw: bytes,
                settings: SchedulerSettings) -> None:
    """POST to the channel's URL; an error shows the URL as viewers may see it (a Slack
    URL's path is its credential: errors are stored, logged and shown)."""
    shown = n.shown_url(kind, url)
    try:
        addresses = await asyncio.to_thread(checked_addresses, url, settings.http_allowed_networks)
    except ValueError as exc:
        message = n.hidden(str(exc), kind, url)
        if "does not resolve" in message:
            raise DeliveryError(message) from None   # DNS may answer next time
        raise Refused(f"refused: {message}") from None
    try:
        async with pinned_request("POST", httpx.URL(url), headers, {"content": raw}, addresses,
                                  settings.notify_timeout_s) as response:
            status = response.status_code
            answer = (await response.aread())[:200].decode(errors="replace") if status >= 300 else ""
    except httpx.HTTPError as exc:
        raise DeliveryError(f"POST {shown}: {type(exc).__name__}: "
                            f"{n.hidden(str(exc), kind, url)}"[:MAX_ERROR_CHARS]) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"POST {shown} answered {status}: {answer}"[:MAX_ERROR_CHARS])


def _send_email(settings: SchedulerSettings, to: list[str], subject: str, text: str) -> None:
    if not settings.smtp_host:
        raise DeliveryError("SMTP_HOST is not set on the scheduler: email notifications need it")
    if not to:
        raise Refused("the channel has no recipients (config.to)")
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(text)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                          timeout=settings.notify_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: "
                            f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]) from None
