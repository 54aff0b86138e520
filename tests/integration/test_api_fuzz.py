"""Property-based fuzz of the OpenAPI schema (schemathesis) against a real `sundial api`
process with an admin key: no request it generates gets a server error."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import start_api

EXAMPLES_PER_OPERATION = 12


@pytest.fixture
async def seeded(pool, db_url: str, amqp_url: str) -> str:
    """An admin key, and one job with a schedule and a run so ids 1 exist."""
    from sundial.api.schemas import JobCreate

    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "fuzz", "admin")
    await svc.create_job("test", JobCreate(name="seed", handler="noop",
                                           schedules=[{"kind": "interval", "interval_seconds": 60}]))
    await svc.trigger_job("test", "seed")
    return key


async def test_no_generated_request_gets_a_server_error(processes, db_url, amqp_url,
                                                        seeded) -> None:
    base = await start_api(processes, db_url, amqp_url)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"Authorization": f"Bearer {seeded}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    def fuzz(operation, mode: GenerationMode) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=15)
            if mode is GenerationMode.POSITIVE:
                statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} "
                                f"{str(case.body)[:200]} -> {response.status_code} "
                                f"{response.text[:200]}")

        try:
            check()
        except Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters)

    for operation in operations:
        fuzz(operation, GenerationMode.POSITIVE)
        fuzz(operation, GenerationMode.NEGATIVE)
    assert not failures, "\n".join(failures[:20])
    # With valid requests the key worked and the fuzz reached the handlers, not only the
    # validation layer (negative cases may corrupt the Authorization header itself).
    assert statuses[401] == 0 and statuses[200] > 0 and statuses[202] > 0, statuses
