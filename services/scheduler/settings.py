"""The scheduler's settings: the shared ones plus the delivery of notifications (whose
webhooks obey the SSRF policy of http jobs, WORKER_HTTP_ALLOWED_NETWORKS) and the SMTP
server email notifications go through."""

from __future__ import annotations

import socket

from pydantic import Field

from sundial.core.settings import HttpPolicySettings, env


class SchedulerSettings(HttpPolicySettings):
    """Settings of `sundial scheduler`."""

    notify_check_interval_s: float = Field(
        15.0, gt=0, le=3600, validation_alias=env("NOTIFY_CHECK_INTERVAL"),
        description="seconds between evaluations of the notification rules, > 0 and <= 3600")
    notify_timeout_s: float = Field(
        10.0, gt=0, le=300, validation_alias=env("NOTIFY_TIMEOUT"),
        description="seconds one delivery may take (connect, send, answer), > 0 and <= 300")
    notify_max_attempts: int = Field(
        10, ge=1, le=100, validation_alias=env("NOTIFY_MAX_ATTEMPTS"),
        description="delivery attempts of one notification before it is marked failed, 1-100")
    notify_retry_backoff_s: float = Field(
        10.0, gt=0, validation_alias=env("NOTIFY_RETRY_BACKOFF"),
        description="seconds before the second attempt, doubling after each failure, > 0")
    notify_retry_backoff_max_s: float = Field(
        3600.0, gt=0, validation_alias=env("NOTIFY_RETRY_BACKOFF_MAX"),
        description="the longest wait between two attempts, in seconds, > 0")

    smtp_host: str | None = Field(
        None, validation_alias=env("SMTP_HOST"),
        description="the SMTP server email notifications go through, e.g. smtp.example.com")
    smtp_port: int = Field(587, gt=0, lt=65536, validation_alias=env("SMTP_PORT"),
                           description="a TCP port, 1-65535")
    smtp_starttls: bool = Field(
        True, validation_alias=env("SMTP_STARTTLS"),
        description="true to require STARTTLS (the certificate is checked), false for a "
                    "plain connection (a relay on localhost)")
    smtp_user: str | None = Field(None, validation_alias=env("SMTP_USER"),
                                  description="the user to log in as, if the server needs one")
    smtp_password: str | None = Field(None, validation_alias=env("SMTP_PASSWORD"))
    smtp_from: str | None = Field(
        None, min_length=3, validation_alias=env("SMTP_FROM"),
        description="the From address of email notifications, e.g. sundial@example.com "
                    "(default sundial@<hostname>)")

    @property
    def smtp_sender(self) -> str:
        return self.smtp_from or f"sundial@{socket.gethostname()}"
