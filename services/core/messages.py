"""The run message: one per run, on exchange `sundial.runs`, routing key = the job's queue.

The JSON Schema of the body is `RunMessage.model_json_schema()`, published as
docs/run-message.schema.json so a consumer in any language can subscribe.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sundial.core import jsonb

MESSAGE_VERSION = 1
CONTENT_TYPE = "application/json"
# PostgreSQL's bigint and integer: a run id or attempt beyond them names no run.
MAX_ID = 2**63 - 1
MAX_ATTEMPT = 2**31 - 1


class RunMessage(BaseModel):
    """The body of a run message (version 1)."""

    model_config = ConfigDict(extra="ignore", frozen=True,
                              json_schema_extra={"title": "Sundial run message"})

    version: Literal[1] = Field(description="Message format version; consumers reject others.")
    run_id: int = Field(ge=1, le=MAX_ID, description="The run's id; also the AMQP message_id.")
    job_id: int = Field(ge=1, le=MAX_ID)
    job: str = Field(description="The job's name.")
    handler: str = Field(description="Which handler executes the run, e.g. http or python.")
    payload: dict[str, Any] = Field(description="The run's payload: the arguments it was "
                                    "triggered with, else its job's (secret fields masked).")
    schedule_id: int | None = Field(description="The schedule that planned it; null for manual runs.")
    scheduled_for: datetime = Field(description="The planned slot (ISO 8601, UTC).")
    attempt: int = Field(ge=1, le=MAX_ATTEMPT,
                         description="1 for the first attempt; retries count up.")
    timeout_seconds: float = Field(gt=0)


def encode_run(row: Any) -> bytes:
    """The message body for a run row (a mapping with the RunMessage fields, `job` = name).

    Built by hand rather than through the model: this is the scheduler's hot path.
    """
    return jsonb.dumps({
        "version": MESSAGE_VERSION,
        "run_id": row["run_id"],
        "job_id": row["job_id"],
        "job": row["job"],
        "handler": row["handler"],
        "payload": row["payload"],
        "schedule_id": row["schedule_id"],
        "scheduled_for": row["scheduled_for"].isoformat(),
        "attempt": row["attempt"],
        "timeout_seconds": row["timeout_seconds"],
    }, separators=(",", ":")).encode()  # jsonb: a payload stored by SQL may be very deep


class ScheduledBodies:
    """The bodies of a tick's run messages (first attempts of scheduled runs), the JSON
    `encode_run` writes but for the payload: PostgreSQL's own text of the job's jsonb
    payload (`payload_json`), put in as is rather than decoded and encoded again. What
    the runs of one job share is written once."""

    def __init__(self) -> None:
        self._jobs: dict[int, tuple[str, str]] = {}

    def body(self, run_id: int, schedule_id: int, scheduled_for: datetime, job: Any) -> bytes:
        """`job`: a mapping with job_id, job (the name), handler, payload_json and
        timeout_seconds."""
        parts = self._jobs.get(job["job_id"])
        if parts is None:
            parts = self._jobs[job["job_id"]] = (
                f',"job_id":{int(job["job_id"])},"job":{json.dumps(job["job"])},'
                f'"handler":{json.dumps(job["handler"])},"payload":{job["payload_json"]},'
                '"schedule_id":',
                f',"attempt":1,"timeout_seconds":{json.dumps(job["timeout_seconds"])}}}')
        head, tail = parts
        return (f'{{"version":{MESSAGE_VERSION},"run_id":{int(run_id)}{head}{int(schedule_id)},'
                f'"scheduled_for":"{scheduled_for.isoformat()}"{tail}').encode()


def decode_run(body: bytes) -> RunMessage:
    """Parse and validate a message body; raises pydantic.ValidationError or ValueError."""
    return RunMessage.model_validate_json(body)


class RunRef(BaseModel):
    """What a Sundial worker takes from a run message: which run, which attempt. Handler,
    payload, timeout and secrets come from the database (the broker is a doorbell), so a
    forged or damaged body can change nothing but which stored run is looked at."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal[1]
    run_id: int = Field(ge=1, le=MAX_ID, strict=True)
    attempt: int = Field(ge=1, le=MAX_ATTEMPT, strict=True)


def decode_ref(body: bytes) -> RunRef:
    """The run and attempt a message names; the rest of the body is not looked at (a
    payload too deep for the JSON parser included). Raises ValueError when they are
    missing, not integers or out of range, or the body is no JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return RunRef.model_validate(data)
