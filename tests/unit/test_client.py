"""sundial.client's pure parts: the requests it builds and the errors it raises."""

from __future__ import annotations

import httpx
import pytest

from sundial.client import ApiError, Run
from sundial.client.http import _answer, _trigger


def test_a_trigger_names_the_job_in_one_path_segment_and_sends_mode_with_a_payload_only() -> None:
    plain = _trigger("reports/daily x", None, "merge", None, None)
    assert plain.path == "/api/jobs/reports%2Fdaily%20x/trigger" and plain.json == {}
    keyed = _trigger(7, {"day": "d"}, "replace", "k", 0)
    assert keyed.json == {"payload": {"day": "d"}, "mode": "replace", "idempotency_key": "k",
                          "priority": 0}


def test_a_422_is_raised_with_each_problems_field_value_and_reason() -> None:
    request = _trigger("nap", {"seconds": -1}, "merge", None, None)
    detail = [{"field": "payload.seconds", "value": -1, "reason": "must be between 0 and 604800",
               "loc": ["payload", "seconds"], "msg": "..."}]
    with pytest.raises(ApiError) as bad:
        _answer(request, httpx.Response(422, json={"detail": detail}))
    assert (bad.value.status, bad.value.field, bad.value.value, bad.value.reason) == (
        422, "payload.seconds", -1, "must be between 0 and 604800")
    assert str(bad.value) == ("POST /api/jobs/nap/trigger: 422: payload.seconds -1: must be "
                              "between 0 and 604800")


def test_other_refusals_carry_the_apis_sentence() -> None:
    request = _trigger("nope", None, "merge", None, None)
    with pytest.raises(ApiError, match=r"^POST /api/jobs/nope/trigger: 404: no job 'nope'$") as bad:
        _answer(request, httpx.Response(404, json={"detail": "no job 'nope'"}))
    assert bad.value.problems == [] and bad.value.field is None
    with pytest.raises(ApiError, match="502: Bad Gateway"):
        _answer(request, httpx.Response(502, text="Bad Gateway"))


def test_a_run_is_final_once_its_status_is() -> None:
    assert not Run(1, "running").final and Run(1, "timed_out").final
    assert Run(1, "succeeded", fields={"result": {"ok": True}})["result"] == {"ok": True}
