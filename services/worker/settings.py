"""The worker's settings: the shared ones plus what only a worker needs."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from sundial.core.commandguard import CommandRule, parse_allowlist, parse_path, worker_variable_refusal
from sundial.core.settings import HttpPolicySettings, ImportSettings, comma_list, env, variables


class WorkerSettings(HttpPolicySettings, ImportSettings):
    """Settings of `sundial worker`."""

    http_max_body_bytes: int = Field(
        1048576, ge=0, validation_alias=env("WORKER_HTTP_MAX_BODY_BYTES"),
        description="bytes of a response body an http job may read at most, >= 0; a job's "
                    "max_body_bytes above it is lowered to it")
    max_result_bytes: int = Field(
        8388608, ge=1, validation_alias=env("WORKER_MAX_RESULT_BYTES"),
        description="bytes of JSON a run's result may take, >= 1; a larger result fails "
                    "the run")
    allow_commands: bool = Field(
        False, validation_alias=env("WORKER_ALLOW_COMMANDS"),
        description="true to let this worker run `command` jobs (argv, never a shell)")
    command_allowlist: Annotated[tuple[CommandRule, ...], NoDecode] = Field(
        (), validation_alias=env("WORKER_COMMAND_ALLOWLIST"),
        description="comma-separated entries, each a program (any arguments), a program with "
                    "its exact arguments, or one with fixed first arguments ending in '...', "
                    "e.g. echo,find /srv/tmp -mtime +7 -delete,pg_dump --schema-only ...; or "
                    "a JSON list of such strings and argv lists; empty = any program")
    command_env: Annotated[tuple[str, ...], NoDecode] = Field(
        ("HOME", "LANG", "LC_ALL", "TZ"), validation_alias=env("WORKER_COMMAND_ENV"),
        description="comma-separated names of the worker's variables `command` programs "
                    "get, e.g. HOME,LANG,LC_ALL,TZ; never a Sundial setting or PATH")
    command_path: str = Field(
        "/usr/local/bin:/usr/bin:/bin", validation_alias=env("WORKER_COMMAND_PATH"),
        description="absolute directories joined by ':' where `command` programs are "
                    "looked up, and their PATH, e.g. /usr/local/bin:/usr/bin:/bin")
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

    @field_validator("command_allowlist", mode="before")
    @classmethod
    def _allowlist(cls, value: object) -> object:
        return parse_allowlist(value) if isinstance(value, str) else value

    @field_validator("command_env", mode="before")
    @classmethod
    def _command_env(cls, value: object) -> object:
        names = comma_list(value)
        for name in names if isinstance(names, tuple) else ():
            why = worker_variable_refusal(name, variables(cls))
            if why:
                raise ValueError(f"entry {name!r}: {why}; remove it")
        return names

    @field_validator("command_path", mode="before")
    @classmethod
    def _command_path(cls, value: object) -> object:
        return parse_path(value) if isinstance(value, str) else value
