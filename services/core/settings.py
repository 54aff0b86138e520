"""Configuration from the environment (12-factor), validated once at start-up.

Every variable of DESIGN.md is here. Field names carry their units; the environment
names are the documented ones. A bad value stops the process with one clear line
(see `load_settings`).
"""

from __future__ import annotations

import os
import re
import socket
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sundial.core.database_url import EXAMPLE as DATABASE_URL_EXAMPLE
from sundial.core.database_url import check_database_url
from sundial.core.errors import ConfigError
from sundial.core.netguard import Network, parse_networks

# The same rule as the jobs_queue_format constraint of sql/migrations/0001_init.sql.
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Settings shared by every Sundial service."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False,
                                      allow_inf_nan=False)

    # --- PostgreSQL: DATABASE_URL, or the split POSTGRES_* form -------------------
    database_url_raw: str | None = Field(
        None, validation_alias=env("DATABASE_URL"),
        description=f"a postgresql:// URL, e.g. {DATABASE_URL_EXAMPLE}")
    postgres_host: str = Field("localhost", validation_alias=env("POSTGRES_HOST"))
    postgres_port: int = Field(5432, gt=0, lt=65536, validation_alias=env("POSTGRES_PORT"),
                               description="a TCP port, 1-65535")
    postgres_db: str = Field("sundial", min_length=1, validation_alias=env("POSTGRES_DB"))
    postgres_user: str = Field("postgres", min_length=1, validation_alias=env("POSTGRES_USER"))
    postgres_password: str = Field("", validation_alias=env("POSTGRES_PASSWORD"))
    db_pool_min: int = Field(1, ge=0, validation_alias=env("DATABASE_POOL_MIN"),
                             description="a number of connections >= 0")
    db_pool_max: int = Field(10, ge=1, validation_alias=env("DATABASE_POOL_MAX"),
                             description="a number of connections >= 1")

    # --- RabbitMQ: RABBITMQ_URL, or the split RABBITMQ_* form ---------------------
    rabbitmq_url_raw: str | None = Field(
        None, validation_alias=env("RABBITMQ_URL"),
        description="an amqp:// URL, e.g. amqp://guest:guest@localhost:5672/, or one per node "
                    "of a cluster separated by commas, e.g. "
                    "amqp://app:pw@mq1:5672/sundial,amqp://app:pw@mq2:5672/sundial")
    rabbitmq_host: str = Field("localhost", validation_alias=env("RABBITMQ_HOST"))
    rabbitmq_port: int = Field(5672, gt=0, lt=65536, validation_alias=env("RABBITMQ_PORT"),
                               description="a TCP port, 1-65535")
    rabbitmq_user: str = Field("guest", validation_alias=env("RABBITMQ_USER"))
    rabbitmq_password: str = Field("guest", validation_alias=env("RABBITMQ_PASSWORD"))
    rabbitmq_vhost: str = Field("/", validation_alias=env("RABBITMQ_VHOST"))
    delivery_limit: int = Field(
        5, ge=1, validation_alias=env("RABBITMQ_DELIVERY_LIMIT"),
        description="how many deliveries of one message before it is dead-lettered, >= 1")

    # --- scheduler --------------------------------------------------------------
    poll_interval_s: float = Field(
        5.0, gt=0, le=3600, validation_alias=env("SCHEDULER_POLL_INTERVAL"),
        description="seconds between ticks at most, > 0 and <= 3600")
    batch_size: int = Field(
        500, ge=1, le=10000, validation_alias=env("SCHEDULER_BATCH_SIZE"),
        description="schedules claimed per transaction, 1-10000")
    look_ahead_s: float = Field(
        0.0, ge=0, le=300, validation_alias=env("SCHEDULER_LOOK_AHEAD"),
        description="seconds before a slot the tick may claim it, 0-300")
    publish_lease_s: float = Field(
        30.0, gt=0, validation_alias=env("SCHEDULER_PUBLISH_LEASE"),
        description="seconds a publisher holds unconfirmed runs before the relay takes them, > 0")
    scheduler_stale_after_s: float = Field(
        60.0, gt=0, validation_alias=env("SCHEDULER_STALE_AFTER"),
        description="seconds without a tick before the scheduler is reported stale, > 0")

    # --- worker -----------------------------------------------------------------
    # NoDecode: a comma-separated list, not JSON.
    worker_queues: Annotated[tuple[str, ...], NoDecode] = Field(
        ("default",), validation_alias=env("WORKER_QUEUES"),
        description="a comma-separated list of queue names, e.g. default,reports")
    worker_concurrency: int = Field(
        10, ge=1, le=10000, validation_alias=env("WORKER_CONCURRENCY"),
        description="runs executed at once per worker process, 1-10000")
    worker_heartbeat_interval_s: float = Field(
        10.0, gt=0, validation_alias=env("WORKER_HEARTBEAT_INTERVAL"),
        description="seconds between worker heartbeats, > 0")
    run_lease_s: float = Field(
        60.0, gt=0, validation_alias=env("RUN_LEASE_SECONDS"),
        description="seconds without a heartbeat before a running run is rescued, > 0")
    run_republish_after_s: float = Field(
        300.0, ge=1, validation_alias=env("RUN_REPUBLISH_AFTER_SECONDS"),
        description="seconds a published run may wait unstarted before the scheduler sends a "
                    "fresh message (doubling each time), >= 1")
    run_expire_without_worker_s: float = Field(
        86400.0, ge=0, validation_alias=env("RUN_EXPIRE_WITHOUT_WORKER_SECONDS"),
        description="seconds a queued run may wait while no worker that can take it (of its "
                    "queue, with its handler) is online; then it fails saying so. 0 = never")
    max_retry_attempts: int = Field(
        3, ge=1, validation_alias=env("MAX_RETRY_ATTEMPTS"),
        description="default attempts per run for new jobs, >= 1")
    cleanup_retention_days: float = Field(
        30.0, gt=0, validation_alias=env("CLEANUP_RETENTION_DAYS"),
        description="days finished runs are kept, > 0")
    worker_offline_threshold_s: float = Field(
        60.0, gt=0, validation_alias=env("WORKER_OFFLINE_THRESHOLD"),
        description="seconds without a heartbeat before a worker is marked offline, > 0")

    forget_after_s: float = Field(
        86400.0, gt=0, validation_alias=env("FORGET_AFTER"),
        description="seconds a worker or scheduler instance not heard from stays listed "
                    "before its row is deleted, > 0")

    # --- operations -------------------------------------------------------------
    healthcheck_interval_s: float = Field(
        30.0, gt=0, validation_alias=env("HEALTHCHECK_INTERVAL"),
        description="seconds between healthcheck log events, > 0")
    health_dir: str = Field(
        "/tmp", validation_alias=env("HEALTH_DIR"),
        description="a writable directory for the heartbeat files `sundial healthcheck` reads")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=env("LOG_LEVEL"),
        description="one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias=env("LOG_FORMAT"), description="json or console")
    metrics_port: int = Field(
        0, ge=0, lt=65536, validation_alias=env("METRICS_PORT"),
        description="a TCP port for /metrics of the scheduler and worker, 0 to turn it off")
    encryption_key: str | None = Field(
        None, validation_alias=env("ENCRYPTION_KEY"),
        description="a Fernet key: 32 url-safe base64-encoded bytes "
                    "(python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())')")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(q.strip() for q in value.split(",") if q.strip())
        if not value:
            raise ValueError("at least one queue is needed")
        for q in value:
            if not QUEUE_NAME.fullmatch(q):
                raise ValueError(f"queue name {q!r} must be letters, digits, '_', '.', '-'")
        return value

    @field_validator("database_url_raw")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)

    @field_validator("rabbitmq_url_raw")
    @classmethod
    def _check_amqp_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_nodes(value)
        return value

    @field_validator("encryption_key")
    @classmethod
    def _check_fernet(cls, value: str | None) -> str | None:
        if value:
            from cryptography.fernet import Fernet

            try:
                Fernet(value.encode())
            except (ValueError, TypeError):
                raise ValueError("is not a Fernet key") from None
        return value or None

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(f"DATABASE_POOL_MIN={self.db_pool_min} must not exceed "
                             f"DATABASE_POOL_MAX={self.db_pool_max}")
        return self

    @cached_property
    def database_url(self) -> str:
        if self.database_url_raw:
            return self.database_url_raw
        auth = quote(self.postgres_user, safe="")
        if self.postgres_password:
            auth += ":" + quote(self.postgres_password, safe="")
        return f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"

    @cached_property
    def rabbitmq_url(self) -> str:
        if self.rabbitmq_url_raw:
            return self.rabbitmq_url_raw
        auth = quote(self.rabbitmq_user, safe="") + ":" + quote(self.rabbitmq_password, safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        return f"amqp://{auth}@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"

    @cached_property
    def rabbitmq_nodes(self) -> tuple[str, ...]:
        """The URL of each RabbitMQ node (RABBITMQ_URL may list several, core.nodes)."""
        return parse_nodes(self.rabbitmq_url)


class HttpPolicySettings(Settings):
    """The SSRF policy of http jobs, read by the workers (which enforce it at every run)
    and the API (which refuses at creation what the workers would refuse)."""

    http_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_HTTP_ALLOWED_NETWORKS"),
        description="comma-separated CIDRs http jobs may call although not public, "
                    "e.g. 10.0.0.0/8,127.0.0.1/32; empty by default")

    @field_validator("http_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        return parse_networks(value) if isinstance(value, str) else value


class ImportSettings(Settings):
    """The modules that hold the Python jobs and the declarations: imported by the worker
    (which runs their @job functions) and by `sundial sync` (which writes what they
    declare)."""

    imports: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_IMPORTS"),
        description="comma-separated Python modules whose @job functions this worker runs")

    @field_validator("imports", mode="before")
    @classmethod
    def _split_imports(cls, value: object) -> object:
        return comma_list(value)


def comma_list(value: object) -> object:
    """A comma-separated variable as a tuple of its non-empty, stripped items."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def variables(model: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name, for every field of a settings model."""
    found = {}
    for field, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for name in alias.choices:
                found.setdefault(str(name), field)
    return found


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def parse_nodes(value: str) -> tuple[str, ...]:
    """The node URLs of a RABBITMQ_URL; ValueError naming the node at fault and the fix."""
    urls = tuple(u.strip() for u in value.split(","))
    if not any(urls):
        raise ValueError("needs an amqp:// URL, e.g. amqp://guest:guest@localhost:5672/")
    vhosts: dict[str, int] = {}
    for n, url in enumerate(urls, 1):
        if not url:
            raise ValueError(f"node {n} of {len(urls)} is empty: separate the node URLs with "
                             "single commas, and write a comma inside a password as %2C")
        # Which node is at fault, when there are several: "node 2 of 3 ('amqp://...') ".
        node = f"node {n} of {len(urls)} ({redact_url(url)!r}) " if len(urls) > 1 else ""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"{node}must start with amqp:// or amqps://")
        try:
            host, _port = parts.hostname, parts.port
        except ValueError as exc:
            raise ValueError(f"{node}has a bad port: {exc}") from None
        if not host:
            raise ValueError(f"{node}names no host, e.g. amqp://guest:guest@mq1:5672/")
        vhosts.setdefault(unquote(parts.path[1:]) or "/", n)
    twice = next((u for n, u in enumerate(urls) if u in urls[:n]), None)
    if twice is not None:
        raise ValueError(f"names node {redact_url(twice)!r} twice: list each node once")
    if len(vhosts) > 1:
        raise ValueError("names several vhosts (" + ", ".join(sorted(vhosts)) + "): every "
                         "node of the cluster must name the same vhost")
    return urls


def format_validation_error(exc: ValidationError, model: type[BaseSettings]) -> str:
    """One line naming each bad variable, its value, and what would be accepted."""
    by_name: dict[str, tuple[str, object]] = {}
    for field, info in model.model_fields.items():
        alias = info.validation_alias
        names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        for name in [field, *names]:
            by_name[name.lower()] = (names[0] if names else field.upper(), info)
    problems = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else ""
        name, info = by_name.get(loc.lower(), (loc.upper(), None))
        secret = any(s in name.lower() for s in ("password", "url", "key"))
        shown = "***" if secret else repr(err.get("input"))
        msg = err["msg"].removeprefix("Value error, ")
        description = getattr(info, "description", None)
        hint = f" (expected {description})" if description else ""
        problems.append(f"{name}={shown}: {msg}{hint}" if loc else msg + hint)
    return "configuration error: " + "; ".join(problems)


def load_settings(model: type[Settings] = Settings, **overrides: object) -> Settings:
    """Build settings from the environment; raise ConfigError with one clear line."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model)) from None


def instance_id(service: str) -> str:
    """A name for this process, unique across hosts: service@host:pid."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}"
