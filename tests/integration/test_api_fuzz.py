"""Property-based fuzz of the OpenAPI schema (schemathesis) against a real `sundial api`
process with an admin key, with every check schemathesis has (`--checks all`): no server
error, every status and content type documented, every response body matching its
schema (422s included), invalid requests refused, valid ones accepted.

Valid by the schema is not always valid: some rules cannot be written in JSON Schema (a
cron expression, an IANA time zone, what each handler needs in its payload, a schedule
that would never fire, years 1970-9000 (a backfill's `from` and `to` too), a health
window from 1m to 366d, a notification URL whose host resolves to a private address, a
channel PATCH field that belongs to another kind than the stored channel's, a trigger's
`mode` sent without the `payload` it applies to). A valid request may get a 422 only when
every problem names such a field; schemathesis's positive_data_acceptance is replaced by
that stricter reading of it (`accepted`).

An invalid request must be refused, unless what made it invalid never reached the API
(`undone_on_the_wire`): this test sends its own Authorization header in place of the
generated one, and an empty list or object in a query string is no parameter at all.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import start_api

EXAMPLES_PER_OPERATION = 12
# Fields whose rules go beyond the schema (see the module's docstring).
BEYOND_SCHEMA = re.compile(r"(schedules\[\d+\]\.)?(cron|timezone|interval_seconds|run_at|"
                           r"start_at|end_at|kind|misfire_grace_seconds)|payload([.\[].*)?|"
                           r"retry_backoff_max_seconds|window|url|from|to|signing_secret|mode")
ACCEPTED = {200, 201, 202, 404, 409}
NEGATIVE_ACCEPTED = "Schema-violating request accepted"


async def seed(pool, db_url: str, amqp_url: str) -> str:
    """An admin key, and one job with a schedule and a run so ids 1 exist."""
    from sundial.api.schemas import JobCreate

    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "fuzz", "admin")
    await svc.create_job("test", JobCreate(name="seed", handler="noop",
                                           schedules=[{"kind": "interval", "interval_seconds": 60}]))
    await svc.trigger_job("test", "seed")
    return key


def accepted(case: Any, response: Any) -> str | None:
    """Why a valid request's answer is wrong, if it is."""
    if response.status_code in ACCEPTED:
        return None
    if response.status_code == 422:
        detail = response.json()["detail"]
        if all(BEYOND_SCHEMA.fullmatch(p["field"]) for p in detail):
            return None
        return f"valid request refused: 422 {detail}"
    return f"valid request answered {response.status_code}"


def undone_on_the_wire(case: Any) -> bool:
    """Whether every negation of a negative case was undone before it reached the API."""
    mutations = getattr(case.meta.phase.data, "mutations", None) if case.meta else None
    if not mutations:
        return False
    for mutation in mutations:
        where = mutation.parameter_location
        if where is ParameterLocation.HEADER and "authorization" in (
                str(mutation.parameter).lower(), str(mutation.original_value).lower()):
            continue
        if where is ParameterLocation.QUERY and (case.query or {}).get(mutation.parameter) in (
                [], {}):
            continue
        return False
    return True


async def fuzz_every_operation(processes, pool, db_url: str, amqp_url: str,
                               mode: GenerationMode) -> dict[int, int]:
    """Every check on every operation with `mode`'s requests (valid ones, or invalid ones:
    one test each, in two files, so that the test processes of `make test` share the
    work); how many answers of each status the valid requests got."""
    key = await seed(pool, db_url, amqp_url)
    base = await start_api(processes, db_url, amqp_url)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    failures: dict[tuple[str, str, str], str] = {}
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        def failed(case: Any, title: str, message: str) -> None:
            failures.setdefault((operation.label, mode.value, title),
                                f"{case.method} {case.formatted_path} query={case.query} "
                                f"body={str(case.body)[:200]}: {message[:400]}")

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            try:
                response = case.call_and_validate(base_url=base, headers=headers, timeout=30,
                                                  excluded_checks=[positive_data_acceptance])
            except (FailureGroup, Failure) as error:
                for failure in getattr(error, "exceptions", [error]):
                    if not (failure.title == NEGATIVE_ACCEPTED and undone_on_the_wire(case)):
                        failed(case, failure.title, failure.message)
                return
            if mode is GenerationMode.POSITIVE:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if (why := accepted(case, response)) is not None:
                    failed(case, "Schema-valid request rejected", why)

        try:
            check()
        except Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters)

    started = time.monotonic()
    for operation in operations:
        fuzz(operation, mode)
    print(f"fuzz ({mode.value}): {len(operations)} operations in "
          f"{time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
    return statuses


@pytest.mark.timeout(600)
async def test_every_check_passes_for_every_operation_with_valid_requests(
        processes, pool, db_url, amqp_url) -> None:
    statuses = await fuzz_every_operation(processes, pool, db_url, amqp_url,
                                          GenerationMode.POSITIVE)
    # With valid requests the key worked and the fuzz reached the handlers, not only the
    # validation layer.
    assert statuses.get(401, 0) == 0 and statuses.get(200) and statuses.get(202), statuses
