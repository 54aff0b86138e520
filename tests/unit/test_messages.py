"""The run message contract: the published JSON Schema matches the model, and what the
scheduler encodes is what the schema and the worker's decoder accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema_rs
import pytest
from pydantic import ValidationError

from sundial.core.messages import (
    CONTENT_TYPE,
    MESSAGE_VERSION,
    RunMessage,
    ScheduledBodies,
    decode_run,
    encode_run,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "run-message.schema.json"
REGENERATE = ('.venv/bin/python -c "import json; from sundial.core.messages import RunMessage; '
              'print(json.dumps(RunMessage.model_json_schema(), indent=2))" '
              "> docs/run-message.schema.json")


def published_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(published_schema(), validate_formats=True)


def test_published_schema_matches_the_model() -> None:
    assert published_schema() == RunMessage.model_json_schema(), (
        f"docs/run-message.schema.json is out of date with sundial.core.messages.RunMessage; "
        f"regenerate it: {REGENERATE}")


def test_schema_requires_every_body_field() -> None:
    assert set(published_schema()["required"]) == {
        "version", "run_id", "job_id", "job", "handler", "payload", "schedule_id",
        "scheduled_for", "attempt", "timeout_seconds"}


ROWS = [
    pytest.param({"run_id": 42, "job_id": 7, "job": "nightly-report", "handler": "http",
                  "payload": {"url": "https://example.com/hook", "headers": {"X-A": "1"},
                              "retries": [1, 2], "dry": False, "note": None},
                  "schedule_id": 3, "scheduled_for": datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
                  "attempt": 1, "timeout_seconds": 300},
                 id="scheduled"),
    pytest.param({"run_id": 43, "job_id": 7, "job": "nightly-report", "handler": "noop",
                  "payload": {}, "schedule_id": None,
                  "scheduled_for": datetime(2024, 1, 1, 9, 30, 15, 250000, tzinfo=UTC),
                  "attempt": 3, "timeout_seconds": 0.5},
                 id="manual-retry-fractional"),
    pytest.param({"run_id": 2**53, "job_id": 1, "job": "ünïcode ☀", "handler": "python",
                  "payload": {"text": "line\nbreak \"quoted\""}, "schedule_id": 9,
                  "scheduled_for": datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
                  "attempt": 1, "timeout_seconds": 3600.0, "queue": "reports"},
                 id="unicode-and-offset"),
]


@pytest.mark.parametrize("row", ROWS)
def test_encoded_run_validates_against_the_model_and_the_schema(row: dict) -> None:
    body = encode_run(row)
    message = decode_run(body)
    assert isinstance(message, RunMessage)
    assert message.version == MESSAGE_VERSION == 1
    for field in ("run_id", "job_id", "job", "handler", "payload", "schedule_id", "attempt",
                  "timeout_seconds"):
        assert getattr(message, field) == row[field], field
    assert message.scheduled_for == row["scheduled_for"]
    assert message.scheduled_for.utcoffset() is not None, "scheduled_for keeps its offset"
    assert validator().is_valid(json.loads(body)), list(validator().iter_errors(json.loads(body)))


def test_body_is_compact_utf8_json_with_exactly_the_documented_fields() -> None:
    body = encode_run(ROWS[0].values[0])
    decoded = json.loads(body.decode("utf-8"))
    assert list(decoded) == ["version", "run_id", "job_id", "job", "handler", "payload",
                             "schedule_id", "scheduled_for", "attempt", "timeout_seconds"]
    assert decoded["scheduled_for"] == "2024-03-31T01:00:00+00:00"
    assert b": " not in body and b", " not in body
    assert CONTENT_TYPE == "application/json"


@pytest.mark.parametrize("row", [r for r in ROWS if r.values[0]["schedule_id"] is not None])
def test_the_ticks_bodies_are_the_encoded_runs_with_the_payload_as_postgresql_writes_it(
        row: dict) -> None:
    bodies = ScheduledBodies()
    compact = {**row, "payload_json": json.dumps(row["payload"], separators=(",", ":"))}
    # PostgreSQL's jsonb text: spaces after separators, other characters as they are.
    spaced = {**row, "payload_json": json.dumps(row["payload"], ensure_ascii=False)}
    made = bodies.body(row["run_id"], row["schedule_id"], row["scheduled_for"], compact)
    assert made == encode_run(row)
    other = ScheduledBodies().body(row["run_id"], row["schedule_id"], row["scheduled_for"], spaced)
    assert json.loads(other) == json.loads(encode_run(row))
    assert validator().is_valid(json.loads(other))
    # A second run of the same job: the job's part is reused, the run's own is not.
    again = bodies.body(row["run_id"] + 1, row["schedule_id"], row["scheduled_for"] + timedelta(1),
                        compact)
    assert again == encode_run({**row, "run_id": row["run_id"] + 1,
                                "scheduled_for": row["scheduled_for"] + timedelta(1)})


GOOD = json.loads(encode_run(ROWS[0].values[0]))


@pytest.mark.parametrize(("change", "field"), [
    pytest.param({"version": 2}, "version", id="future-version"),
    pytest.param({"attempt": 0}, "attempt", id="attempt-zero"),
    pytest.param({"timeout_seconds": 0}, "timeout_seconds", id="no-timeout"),
    pytest.param({"run_id": "forty-two"}, "run_id", id="run-id-not-a-number"),
    pytest.param({"payload": [1, 2]}, "payload", id="payload-not-an-object"),
    pytest.param({"scheduled_for": "tomorrow"}, "scheduled_for", id="bad-date"),
    pytest.param({"job": None}, "job", id="job-missing"),
])
def test_bad_bodies_are_refused_by_decoder_and_schema(change: dict, field: str) -> None:
    body = {**GOOD, **change}
    if change.get(field, 0) is None:
        del body[field]
    with pytest.raises(ValidationError) as caught:
        decode_run(json.dumps(body).encode())
    assert field in str(caught.value)
    assert not validator().is_valid(body)


def test_undecodable_body_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_run(b"\x00not json")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = json.dumps({**GOOD, "added_in_a_later_release": True}).encode()
    assert decode_run(body).run_id == GOOD["run_id"]
    assert validator().is_valid(json.loads(body)), "the schema allows additional properties too"
