"""Hostile and odd input at the HTTP API: never a 5xx, a 422 that names field, value and
fix (safely rendered), limits that hold, secrets that never come back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.test_api import Api, noop_job, serving


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def post_raw(api: Api, path: str, text: str, method: str = "POST") -> httpx.Response:
    """A body sent as written: JSON that json.dumps would not produce (NaN, 1e400, "\\ud800")."""
    return await api.call(method, path, content=text.encode(),
                          headers={"content-type": "application/json"})


def problem(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 422, (r.status_code, r.text)
    return r.json()["detail"][0]


# --- no 5xx, and a 422 that cannot crash ------------------------------------------------------

CRON = '{"name": "x", "handler": "noop", "schedules": [{"kind": "cron", "cron": %s, "timezone": %s}]}'

ODD_SCHEDULES = [
    ("zone directory Europe", CRON % ('"* * * * *"', '"Europe"'), "schedules[0].timezone", "Europe"),
    ("zone directory America", CRON % ('"* * * * *"', '"America"'), "schedules[0].timezone",
     "America"),
    ("lone surrogate in timezone", CRON % ('"* * * * *"', r'"\ud800"'), "schedules[0].timezone",
     r"\ud800"),
    ("lone surrogate in cron", CRON % (r'"\ud800 * * * *"', '"UTC"'), "schedules[0].cron",
     r"\ud800 * * * *"),
]


@pytest.mark.parametrize(("case", "body", "field", "shown"), ODD_SCHEDULES,
                         ids=[c[0] for c in ODD_SCHEDULES])
async def test_odd_time_zones_and_cron_get_a_422_naming_field_value_and_fix(
        api: Api, case: str, body: str, field: str, shown: str) -> None:
    p = problem(await post_raw(api, "/api/jobs", body))
    name = field.rpartition(".")[2]
    assert p["field"].endswith(name) and p["value"] == shown, p
    assert "IANA name like" in p["reason"] or "Unicode" in p["reason"], p
    # The same through the schedule routes and the unsaved preview.
    job = (await api.post("/api/jobs", json=noop_job("odd"))).json()
    schedule = body[body.index("[") + 1:body.rindex("]")]
    for path, text in (("/api/schedules", schedule[:-1] + f', "job_id": {job["id"]}}}'),
                       ("/api/schedules/preview", schedule),
                       (f"/api/schedules/{await _a_schedule(api, job['id'])}",
                        schedule.replace('"kind": "cron", ', ""))):
        p = problem(await post_raw(api, path, text, "PATCH" if path[-1].isdigit() else "POST"))
        assert p["field"] == name and p["value"] == shown, (path, p)
    assert await api.count("schedules") == 1


async def _a_schedule(api: Api, job_id: int) -> int:
    r = await api.post("/api/schedules", json={"job_id": job_id, "kind": "cron", "cron": "0 * * * *"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_numbers_json_cannot_carry_get_a_422_not_a_crash(api: Api) -> None:
    p = problem(await post_raw(api, "/api/jobs", '{"name": "x", "handler": "noop", '
                                                 '"timeout_seconds": 1e400}'))
    assert p["field"] == "timeout_seconds" and p["value"] == "Infinity", p
    p = problem(await post_raw(api, "/api/jobs", '{"name": "x", "handler": "sleep", '
                                                 '"payload": {"seconds": NaN}}'))
    assert p["field"] == "payload.seconds" and p["value"] == "NaN", p
    assert "finite" in p["reason"]
    p = problem(await post_raw(api, "/api/jobs", '{"name": "x", "handler": "noop", '
                                                 '"payload": {"n": [1, -Infinity]}}'))
    assert p["field"] == "payload.n[1]" and p["value"] == "-Infinity", p
    p = problem(await post_raw(api, "/api/jobs", r'{"name": "x", "handler": "noop", '
                                                 r'"payload": {"k\udfff": "v\ud800"}}'))
    assert p["value"] == r"k\udfff" and p["field"] == r"payload.k\udfff", p
    assert "Unicode" in p["reason"]
    assert await api.count("jobs") == 0


async def test_after_odd_input_the_next_request_is_answered(api: Api) -> None:
    for body in (CRON % ('"* * * * *"', r'"\ud800"'),
                 '{"name": "x", "handler": "sleep", "payload": {"seconds": NaN}}'):
        assert (await post_raw(api, "/api/jobs", body)).status_code == 422
        assert (await api.get("/api/jobs")).status_code == 200


# --- strict JSON -------------------------------------------------------------------------------

STRICT = [
    ("timeout_seconds", True), ("timeout_seconds", "10"), ("priority", False), ("priority", "1"),
    ("priority", 1.5), ("max_attempts", True), ("enabled", 1), ("enabled", "true"),
    ("retry_backoff_seconds", [1]),
]


@pytest.mark.parametrize(("field", "value"), STRICT, ids=[f"{f}={v!r}" for f, v in STRICT])
async def test_a_number_is_a_number_and_a_boolean_a_boolean(api: Api, field: str,
                                                             value: Any) -> None:
    for method, path, body in (("POST", "/api/jobs", noop_job(**{field: value})),
                               ("PATCH", "/api/jobs/hb", {field: value})):
        p = problem(await api.call(method, path, json=body))
        assert p["field"] == field and p["value"] == value, p
        await api.post("/api/jobs", json=noop_job())


async def test_a_schedule_is_strict_too_and_an_integer_may_be_written_3_0(api: Api) -> None:
    job_id = (await api.post("/api/jobs", json=noop_job())).json()["id"]
    for fields, field in (({"interval_seconds": True}, "interval_seconds"),
                          ({"interval_seconds": 60, "is_active": 0}, "is_active"),
                          ({"interval_seconds": 60, "jitter_seconds": "1"}, "jitter_seconds"),
                          ({"kind": "once", "run_at": 1900000000}, "run_at"),
                          ({"interval_seconds": 60, "job_id": True}, "job_id")):
        body = {"job_id": job_id, "kind": "interval", **fields}
        p = problem(await api.post("/api/schedules", json=body))
        assert p["field"] == field, p
    p = problem(await api.post("/api/jobs", json=noop_job("x", schedules=[
        {"kind": "interval", "interval_seconds": False}])))
    assert p["field"] == "schedules[0].interval_seconds" and "not numbers" in p["reason"], p
    r = await api.post("/api/schedules", json={"job_id": float(job_id), "kind": "interval",
                                               "interval_seconds": 60})
    assert r.status_code == 201 and r.json()["job_id"] == job_id, r.text


async def test_null_is_refused_for_a_field_that_cannot_be_empty(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job())
    p = problem(await api.call("PATCH", "/api/jobs/hb", json={"description": None}))
    assert p["field"] == "description" and "leave it out" in p["reason"], p
    schema = (await api.get("/openapi.json", None)).json()["components"]["schemas"]
    assert schema["JobUpdate"]["properties"]["description"]["type"] == "string"
    for path, model in (("channels/c", "ChannelUpdate"), ("rules/r", "RuleUpdate")):
        p = problem(await api.call("PATCH", f"/api/notifications/{path}", json={"name": None}))
        assert p["field"] == "name" and "leave it out" in p["reason"], p
        assert schema[model]["properties"]["name"]["type"] == "string"


async def test_an_unknown_query_parameter_is_refused_by_name(api: Api) -> None:
    p = problem(await api.get("/api/runs?stauts=failed"))
    assert p["field"] == "stauts" and p["value"] == "failed" and "status" in p["reason"], p
    assert (await api.get("/api/runs?status=failed&limit=5")).status_code == 200
    p = problem(await api.get("/api/me?x=1"))
    assert p["field"] == "x" and "none" in p["reason"], p


async def test_a_query_parameter_of_one_value_given_twice_is_refused(api: Api) -> None:
    p = problem(await api.get("/api/runs?limit=5&limit=7"))
    assert p["field"] == "limit" and p["value"] == ["5", "7"] and "once" in p["reason"], p
    assert (await api.get("/api/runs?status=failed&status=dead")).status_code == 200


async def test_a_body_that_is_not_json_is_a_422_naming_the_body(api: Api) -> None:
    for raw in (b"\xe2x", b"}(y\x84", b'{"name": '):
        r = await api.call("POST", "/api/jobs", content=raw,
                           headers={"content-type": "application/json"})
        p = problem(r)
        assert p["field"] == "body" and "not valid JSON" in p["reason"], p


# --- the documented errors ------------------------------------------------------------------------

ANSWERS = [  # (method, path, role, body or raw bytes, the status it gets)
    ("GET", "/api/jobs", None, None, 401),
    ("POST", "/api/jobs", "viewer", {"name": "x", "handler": "noop"}, 403),
    ("GET", "/api/runs/999", "admin", None, 404),
    ("GET", "/api/runs?job=nope", "admin", None, 404),
    ("POST", "/api/schedules", "admin", {"job_id": 999, "kind": "interval",
                                          "interval_seconds": 60}, 404),
    ("GET", "/api/notifications?channel=nope", "admin", None, 404),
    ("GET", "/api/notifications?rule=nope", "admin", None, 404),
    ("POST", "/api/notifications/rules", "admin", {"name": "r", "kind": "run_failed",
                                                   "channel_id": 999}, 404),
    ("POST", "/api/jobs", "admin", {"name": "hb", "handler": "noop"}, 409),
    ("POST", "/api/jobs", "admin", b"[" + b" " * 2 * 1024 * 1024 + b"]", 413),
    ("PATCH", "/api/jobs/hb", "admin", {"priority": True}, 422),
    ("GET", "/api/schedules?limit=0", "admin", None, 422),
]


async def test_every_error_answered_is_documented_for_its_operation(api: Api) -> None:
    """401, 403, 404, 409, 413 and 422 as they happen, each in the operation's OpenAPI
    responses with the body schema it has."""
    schema = (await api.get("/openapi.json", None)).json()
    await api.post("/api/jobs", json=noop_job())
    for method, path, role, body, status in ANSWERS:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = await api.call(method, path, role, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        documented = schema["paths"][path.partition("?")[0].replace("999", "{run_id}")
                                     .replace("/hb", "/{job}")][method.lower()]["responses"]
        assert str(status) in documented, (method, path, status, sorted(documented))
        ref = documented[str(status)]["content"]["application/json"]["schema"]["$ref"]
        detail = r.json()["detail"]
        if status == 422:
            assert ref.endswith("/Invalid")
            assert all(set(p) == {"field", "value", "reason", "loc", "msg"} for p in detail)
        else:
            assert ref.endswith("/Error") and isinstance(detail, str) and detail
    # By rule: every /api operation documents 401 and 503, every write 403, 409 and 413.
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/"):
                assert {"401", "503"} <= set(operation["responses"]), (method, path)
            if path.startswith("/api/") and method != "get":
                assert {"403", "409", "413", "422"} <= set(operation["responses"]), (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# --- limits -------------------------------------------------------------------------------------


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` deep: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def test_a_payload_nested_too_deeply_is_refused_and_the_limit_is_kept(api: Api) -> None:
    for levels in (33, 300):
        p = problem(await api.post("/api/jobs", json=noop_job("deep", payload=nested(levels))))
        assert p["field"] == "payload" and "at most 32 levels" in p["reason"], p
        p = problem(await api.post("/api/jobs", json=noop_job("deep", payload={"l": [nested(32)]})))
    assert (await api.post("/api/jobs", json=noop_job("deep", payload=nested(32)))).status_code == 201
    p = problem(await api.call("PATCH", "/api/jobs/deep", json={"payload": nested(40)}))
    assert p["field"] == "payload"
    r = await api.get("/api/jobs")
    assert r.status_code == 200 and r.json()[0]["payload"] == nested(32)


def nested_sql(levels: int, inner: str = "1") -> str:
    """jsonb text `levels` objects deep, too deep for Python's json to read or write."""
    return '{"a": ' * levels + inner + "}" * levels


async def test_a_stored_row_beyond_the_limits_never_breaks_a_listing(api: Api) -> None:
    """Rows written by SQL (or before a limit existed) still list, show and change: nested
    thousands of levels deep, large, with numbers JSON cannot carry."""
    await api.post("/api/jobs", json=noop_job("deep"))
    await api.post("/api/jobs", json=noop_job("list"))
    await api.post("/api/jobs", json=noop_job("odd"))
    await api.pool.execute("UPDATE jobs SET payload = $1::text::jsonb WHERE name = 'deep'",
                           nested_sql(5000))
    await api.pool.execute("UPDATE jobs SET payload = '[1, 2]' WHERE name = 'list'")
    await api.pool.execute(
        "UPDATE jobs SET payload = jsonb_build_object('big', 1e400::numeric + 0.5, 'text', "
        "repeat('x', 2000000), 'list', $1::text::jsonb) WHERE name = 'odd'",
        "[" * 3000 + "]" * 3000)
    run_id = (await api.post("/api/jobs/deep/trigger")).json()["run_id"]
    await api.pool.execute("UPDATE runs SET result = $1::text::jsonb WHERE id = $2",
                           nested_sql(4000, '"end"'), run_id)

    for who in ("admin", "viewer"):
        listing = await api.get("/api/jobs", who)
        assert listing.status_code == 200, listing.text
    jobs = {job["name"]: job for job in listing.json()}
    assert jobs["list"]["payload"] == {"value": [1, 2]}
    shown = jobs["deep"]["payload"]
    for _ in range(31):
        shown = shown["a"]
    assert shown == {"a": "… (nested deeper than 32 levels; not shown)"}
    odd = jobs["odd"]["payload"]
    assert odd["big"] == "Infinity" and len(odd["text"]) == 2000000
    assert "nested deeper than 32 levels" in str(odd["list"])
    assert (await api.get("/api/jobs/deep")).json()["payload"] == jobs["deep"]["payload"]
    run = await api.get(f"/api/runs/{run_id}")
    assert run.status_code == 200 and "nested deeper than 32 levels" in run.text
    assert (await api.get("/api/runs")).status_code == 200
    for page in ("/jobs", f"/jobs/{jobs['deep']['id']}", "/runs", f"/runs/{run_id}"):
        assert (await api.get(page, None)).status_code == 200, page
    # A change to another field keeps the stored payload as it is, at its full depth.
    r = await api.call("PATCH", "/api/jobs/deep", json={"priority": 3})
    assert r.status_code == 200, r.text
    assert (await api.call("POST", "/api/jobs/deep/pause")).status_code == 200
    assert await api.pool.fetchval("SELECT payload::text FROM jobs WHERE name = 'deep'") == \
        nested_sql(5000)


async def test_numbers_out_of_bounds_are_refused_with_the_bounds(api: Api) -> None:
    for timeout in (0, -1, 7 * 86400 + 1):
        p = problem(await api.post("/api/jobs", json=noop_job(timeout_seconds=timeout)))
        assert p["field"] == "timeout_seconds" and p["value"] == timeout, p
    url = "https://1.1.1.1/hook"
    for limit in (1e12, 1024 * 1024 + 1, -1, "10"):
        p = problem(await api.post("/api/jobs", json={"name": "h", "handler": "http", "payload": {
            "url": url, "max_body_bytes": limit}}))
        assert p["field"] == "payload.max_body_bytes" and p["value"] == limit, p
    r = await api.post("/api/jobs", json={"name": "h", "handler": "http", "payload": {
        "url": url, "max_body_bytes": 1024 * 1024, "timeout_seconds": 10}})
    assert r.status_code == 201, r.text
    p = problem(await api.post("/api/jobs", json={"name": "h2", "handler": "http", "payload": {
        "url": url, "timeout_seconds": 1e9}}))
    assert p["field"] == "payload.timeout_seconds", p


@pytest.mark.parametrize("queue", ["", "a b", "x" * 101, "../etc", ".hidden", "q\u00e9", "a/b",
                                   "amq.direct*"])
async def test_queue_names_outside_the_pattern_are_refused(api: Api, queue: str) -> None:
    p = problem(await api.post("/api/jobs", json=noop_job(queue=queue)))
    assert p["field"] == "queue" and "pattern" in p["reason"], p
    assert (await api.post("/api/jobs", json=noop_job(queue="reports.eu-1_a"))).status_code == 201
    p = problem(await api.call("PATCH", "/api/jobs/hb", json={"queue": queue}))
    assert p["field"] == "queue"



# --- secrets and database errors ------------------------------------------------------------


async def test_a_cookie_and_a_password_in_the_url_are_secrets(api: Api) -> None:
    from sundial.core.secrets import decrypt_fields, merge_secrets
    from tests.integration.test_api import ENCRYPTION_KEY

    url = "https://robot:Pa55word@1.1.1.1/hook?x=1"
    body = {"name": "hook", "handler": "http",
            "payload": {"url": url, "headers": {"Cookie": "session=c00kie", "Accept": "*/*"}}}
    r = await api.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    for text in (r.text, (await api.get("/api/jobs/hook", "viewer")).text,
                 (await api.get("/api/jobs", "viewer")).text):
        assert "Pa55word" not in text and "c00kie" not in text
    assert r.json()["payload"]["url"] == "https://robot:***@1.1.1.1/hook?x=1"
    assert r.json()["payload"]["headers"] == {"Cookie": "***", "Accept": "*/*"}
    # jobs.payload is what run messages carry; the worker merges the secrets back.
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM jobs")
    assert "Pa55word" not in str(row["payload"]) and "c00kie" not in str(row["payload"])
    assert "Pa55word" not in row["secret_payload"]
    merged = merge_secrets(row["payload"], decrypt_fields(ENCRYPTION_KEY, row["secret_payload"]))
    assert merged == body["payload"]

    # The masked payload sent back keeps the stored password, on a changed URL too.
    payload = r.json()["payload"]
    payload["url"] = "https://robot:***@1.1.1.1/other"
    r = await api.call("PATCH", "/api/jobs/hook", json={"payload": payload})
    assert r.status_code == 200, r.text
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM jobs")
    merged = merge_secrets(row["payload"], decrypt_fields(ENCRYPTION_KEY, row["secret_payload"]))
    assert merged["url"] == "https://robot:Pa55word@1.1.1.1/other"
    assert merged["headers"]["Cookie"] == "session=c00kie"
    # ... but not to another host: the password belongs to the one it was written for.
    payload["url"] = "https://robot:***@8.8.8.8/other"
    p = problem(await api.call("PATCH", "/api/jobs/hook", json={"payload": payload}))
    assert p["field"] == "payload.url" and "another scheme, host or port" in p["reason"]
    # A masked password with none stored is refused by name.
    p = problem(await api.post("/api/jobs", json={"name": "new", "handler": "http", "payload": {
        "url": "https://robot:***@1.1.1.1/"}}))
    assert p["field"] == "payload.url" and "no stored secret" in p["reason"]


async def test_a_secret_stored_in_plain_text_is_never_shown(api: Api) -> None:
    """A row written by SQL, or before Cookie and URL passwords became secrets, keeps them
    in the plain payload: a viewer sees them masked all the same."""
    from sundial.core.secrets import decrypt_fields, merge_secrets
    from tests.integration.test_api import ENCRYPTION_KEY

    await api.post("/api/jobs", json=noop_job("old"))
    await api.pool.execute(
        "UPDATE jobs SET handler = 'http', payload = $1 WHERE name = 'old'",
        {"url": "https://u:pl4in@1.1.1.1/x", "headers": {"Cookie": "s=c00kie", "X-A": "1"},
         "secrets": {"token": "t0ken"}})
    for r in (await api.get("/api/jobs/old"), await api.get("/api/jobs")):
        assert r.status_code == 200, r.text
        assert "pl4in" not in r.text and "c00kie" not in r.text and "t0ken" not in r.text
    shown = (await api.get("/api/jobs/old")).json()["payload"]
    assert shown == {"url": "https://u:***@1.1.1.1/x", "headers": {"Cookie": "***", "X-A": "1"},
                     "secrets": {"token": "***"}}
    # Saved back as shown, the secrets move out of the plain payload, their values kept.
    r = await api.call("PATCH", "/api/jobs/old", json={"payload": shown})
    assert r.status_code == 200, r.text
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM jobs WHERE name = 'old'")
    assert row["payload"] == shown and row["secret_payload"]
    assert merge_secrets(row["payload"], decrypt_fields(ENCRYPTION_KEY, row["secret_payload"])) == {
        "url": "https://u:pl4in@1.1.1.1/x", "headers": {"Cookie": "s=c00kie", "X-A": "1"},
        "secrets": {"token": "t0ken"}}


async def test_a_422_never_echoes_a_secret(api: Api) -> None:
    bodies = [
        # the URL refused (a private address), its password in the value
        {"name": "x", "handler": "http", "payload": {"url": "http://u:Pa55word@10.0.0.1/"}},
        # a header of the wrong type
        {"name": "x", "handler": "http", "payload": {"url": "https://1.1.1.1/",
                                                     "headers": {"Cookie": ["c00kie"]}}},
        # a missing name: the error is about the whole body, which holds the secrets
        {"handler": "http", "payload": {"url": "https://u:Pa55word@1.1.1.1/", "headers": {
            "Cookie": "c00kie", "Authorization": "Bearer t0ken"}}},
        # an unknown field whose value holds them
        {"name": "x", "handler": "noop", "extra": {"url": "https://u:Pa55word@h/",
                                                   "cookie": "c00kie"}},
    ]
    for body in bodies:
        r = await api.post("/api/jobs", json=body)
        assert r.status_code == 422, r.text
        for secret in ("Pa55word", "c00kie", "t0ken"):
            assert secret not in r.text, (body, r.text)


async def test_no_database_error_text_reaches_a_client(api: Api) -> None:
    """Whatever PostgreSQL refuses is answered in Sundial's words; its text goes to the log."""
    await api.pool.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.description = 'data' THEN
                RAISE EXCEPTION 'internal detail 1234' USING ERRCODE = '22023';
            END IF;
            RAISE EXCEPTION 'internal detail 5678' USING ERRCODE = '23503';
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    r = await api.post("/api/jobs", json=noop_job(description="data"))
    assert r.status_code == 422, r.text
    p = r.json()["detail"][0]
    assert "internal detail" not in r.text and p["reason"], p
    r = await api.post("/api/jobs", json=noop_job())
    assert r.status_code == 409 and "internal detail" not in r.text, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert await api.count("jobs") == 0


async def test_only_the_queues_an_operator_allows(db_url: str, amqp_url: str) -> None:
    async with serving(db_url, amqp_url, API_ALLOWED_QUEUES="default, reports") as api:
        p = problem(await api.post("/api/jobs", json=noop_job(queue="adhoc-1")))
        assert p["field"] == "queue" and p["value"] == "adhoc-1" and "API_ALLOWED_QUEUES" in p["reason"]
        assert "default, reports" in p["reason"]
        assert (await api.post("/api/jobs", json=noop_job(queue="reports"))).status_code == 201
        p = problem(await api.call("PATCH", "/api/jobs/hb", json={"queue": "adhoc-2"}))
        assert p["field"] == "queue"
        # A job already on a queue since dropped from the list can still be changed.
        await api.pool.execute("UPDATE jobs SET queue = 'old'")
        assert (await api.call("PATCH", "/api/jobs/hb", json={"priority": 5})).status_code == 200


# --- concurrency ------------------------------------------------------------------------------


async def test_two_concurrent_deletes_of_a_job_delete_and_audit_once(api: Api) -> None:
    import asyncio

    from tests.conftest import wait_for

    job_id = (await api.post("/api/jobs", json=noop_job("twice"))).json()["id"]
    async with api.pool.acquire() as holder, holder.transaction():
        # Both requests find the job, then wait on its row until this lock is let go.
        await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        deletes = [asyncio.create_task(api.call("DELETE", "/api/jobs/twice")) for _ in range(2)]

        async def both_waiting() -> bool:
            await holder.execute("SELECT pg_stat_clear_snapshot()")  # fresh within a transaction
            return await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE '%FROM jobs%'") == 2
        await wait_for(both_waiting, 10, what="both deletes to wait on the row")
    statuses = sorted(r.status_code for r in await asyncio.gather(*deletes))
    assert statuses == [200, 404], statuses
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'job.delete'") == 1


# --- docs -----------------------------------------------------------------------------------


async def test_docs_page_and_its_assets_are_served_from_this_api(api: Api) -> None:
    page = await api.get("/docs", None)
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert f"/docs-assets/{asset}" in page.text
        r = await api.get(f"/docs-assets/{asset}", None)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert (await api.get("/redoc", None)).status_code == 404
