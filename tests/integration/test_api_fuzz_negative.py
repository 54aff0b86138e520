"""The fuzz of tests/integration/test_api_fuzz.py with invalid requests: each must be refused
(unless what made it invalid never reached the API), with every other check passing."""

from __future__ import annotations

import pytest
from schemathesis import GenerationMode

from tests.integration.test_api_fuzz import fuzz_every_operation


@pytest.mark.timeout(600)
async def test_every_check_passes_for_every_operation_with_invalid_requests(
        processes, pool, db_url, amqp_url) -> None:
    await fuzz_every_operation(processes, pool, db_url, amqp_url, GenerationMode.NEGATIVE)
