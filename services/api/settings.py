"""Settings of `sundial api`: the shared ones plus where to listen and how much to accept."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from sundial.core.settings import QUEUE_NAME, HttpPolicySettings, ImportSettings, comma_list, env


class ApiSettings(HttpPolicySettings):
    api_host: str = Field("0.0.0.0", min_length=1, validation_alias=env("API_HOST"),
                          description="the address to listen on, e.g. 0.0.0.0 or 127.0.0.1")
    api_port: int = Field(8000, gt=0, lt=65536, validation_alias=env("API_PORT"),
                          description="a TCP port, 1-65535")
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, validation_alias=env("API_MAX_BODY_BYTES"),
        description="the largest request body accepted, in bytes, >= 1024")
    api_max_payload_bytes: int = Field(
        64 * 1024, ge=16, validation_alias=env("API_MAX_PAYLOAD_BYTES"),
        description="the largest job payload accepted (as JSON), in bytes, >= 16")
    api_key_cache_s: float = Field(
        10.0, ge=0, le=3600, validation_alias=env("API_KEY_CACHE_SECONDS"),
        description="how long a verified API key is remembered, in seconds, 0-3600 (0: "
                    "looked up on every request); a change to a key ends it at once")
    metrics_max_jobs: int = Field(
        50, ge=1, le=10000, validation_alias=env("METRICS_MAX_JOBS"),
        description="jobs named in the per-job series of /metrics, 1-10000: the ones with "
                    "the most runs (the others are summed as job_name=\"_other\") and, for "
                    "the last-success gauge, the first scheduled jobs by name")
    # Each new queue name is a durable quorum queue in RabbitMQ: an operator may list them.
    api_allowed_queues: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=env("API_ALLOWED_QUEUES"),
        description="comma-separated queue names jobs may use, e.g. default,reports; empty "
                    "(the default): any name of letters, digits, '_', '.', '-'")

    @field_validator("api_allowed_queues", mode="before")
    @classmethod
    def _queues(cls, value: object) -> object:
        value = comma_list(value)
        for q in value or ():
            if not QUEUE_NAME.fullmatch(q):
                raise ValueError(f"queue name {q!r} must be letters, digits, '_', '.', '-'")
        return value


class SyncSettings(ApiSettings, ImportSettings):
    """Settings of `sundial sync`: the API's rules for jobs, and WORKER_IMPORTS, the modules
    whose declarations it writes."""
