"""The worker's settings: the shared ones plus what only a worker needs."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from sundial.core.netguard import Network, parse_networks
from sundial.core.settings import Settings, env


def _names(value: object) -> object:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


class WorkerSettings(Settings):
    """Settings of `sundial worker`."""

    http_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_HTTP_ALLOWED_NETWORKS"),
        description="comma-separated CIDRs http jobs may call although not public, "
                    "e.g. 10.0.0.0/8,127.0.0.1/32; empty by default")
    allow_commands: bool = Field(
        False, validation_alias=env("WORKER_ALLOW_COMMANDS"),
        description="true to let this worker run `command` jobs (argv, never a shell)")
    command_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_COMMAND_ALLOWLIST"),
        description="comma-separated program names `command` jobs may run; empty = any")
    imports: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_IMPORTS"),
        description="comma-separated Python modules whose @job functions this worker runs")
    sync_processes_raw: int | None = Field(
        None, ge=0, le=10000, validation_alias=env("WORKER_SYNC_PROCESSES"),
        description="child processes for sync Python jobs, 0-10000; default "
                    "WORKER_CONCURRENCY; 0 runs them in threads, which no timeout can stop")
    shutdown_grace_s: float = Field(
        30.0, ge=0, validation_alias=env("WORKER_SHUTDOWN_GRACE"),
        description="seconds in-flight runs may take to finish after SIGTERM, >= 0")

    @property
    def sync_processes(self) -> int:
        """How many sync Python jobs run at once, each in a process of its own (0: threads)."""
        if self.sync_processes_raw is None:
            return self.worker_concurrency
        return self.sync_processes_raw

    @field_validator("http_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_networks(value)
        return value

    @field_validator("command_allowlist", "imports", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _names(value)
