"""The admin CLI (`sundial keys|jobs|runs|status`) as a user runs it, against a real database;
the run commands are in test_cli_runs.py (two files, so that the test processes of
`make test` share the work)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port, service_env, several_hosts


def test_keys_create_prints_the_key_last_and_list_revoke_work(sundial, pool) -> None:
    created = sundial("keys", "create", "--name", "ops", "--role", "admin",
                      "--expires-in-days", "30")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sdl_") and len(key) > 40

    listed = sundial("keys", "list", "--json")
    assert listed.returncode == 0
    [row] = json.loads(listed.stdout)
    assert row["name"] == "ops" and row["role"] == "admin" and row["expires_at"]
    assert key not in listed.stdout and "key_hash" not in listed.stdout
    header, line = sundial("keys", "list").stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "PREFIX", "ROLE"] and "ops" in line.split()

    revoked = sundial("keys", "revoke", row["prefix"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert json.loads(sundial("keys", "list", "--json").stdout)[0]["revoked_at"]

    bad = sundial("keys", "create", "--name", "x", "--role", "root")
    assert bad.returncode == 2 and "root" in bad.stderr


def test_jobs_add_list_trigger_pause_resume_and_runs(sundial) -> None:
    added = sundial("jobs", "add", "--name", "hb", "--handler", "noop", "--every", "10")
    assert added.returncode == 0, added.stderr
    assert "created job" in added.stdout and "next run" in added.stdout
    cron = sundial("jobs", "add", "--name", "paris", "--cron", "*/5 * * * *",
                   "--timezone", "Europe/Paris", "--payload", '{"k": 1}', "--json")
    assert cron.returncode == 0, cron.stderr
    job = json.loads(cron.stdout)
    assert job["payload"] == {"k": 1} and job["schedules"][0]["timezone"] == "Europe/Paris"

    again = sundial("jobs", "add", "--name", "hb", "--every", "10")
    assert again.returncode == 4 and "hb" in again.stderr and len(again.stderr.splitlines()) == 1
    assert sundial("jobs", "add", "--name", "hb", "--every", "10", "--exists-ok").returncode == 0

    listed = sundial("jobs", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "HANDLER"] and len(lines) == 4
    assert lines[-1] == "2 of 2 jobs"

    triggered = sundial("jobs", "trigger", "hb", "--json")
    assert triggered.returncode == 0, triggered.stderr
    run_id = json.loads(triggered.stdout)["run_id"]
    shown = sundial("runs", "show", str(run_id), "--json")
    run = json.loads(shown.stdout)
    assert run["trigger"] == "manual" and run["triggered_by"].startswith("cli")
    runs = sundial("runs", "list", "--job", "hb")
    assert runs.returncode == 0 and str(run_id) in runs.stdout

    assert sundial("jobs", "pause", "hb").returncode == 0
    assert json.loads(sundial("jobs", "list", "--json").stdout)[0]["enabled"] is False
    assert sundial("jobs", "resume", "hb").returncode == 0

    status = sundial("status")
    assert status.returncode == 0 and "scheduler: unknown" in status.stdout


def test_errors_are_one_line_with_meaningful_exit_codes(sundial) -> None:
    missing = sundial("jobs", "trigger", "nope")
    assert missing.returncode == 3 and missing.stderr.strip() == "sundial: no job 'nope'"
    invalid = sundial("jobs", "add", "--name", "c", "--cron", "61 * * * *")
    assert invalid.returncode == 2 and len(invalid.stderr.splitlines()) == 1
    assert "cron" in invalid.stderr and "61 * * * *" in invalid.stderr
    zone = sundial("jobs", "add", "--name", "z", "--cron", "* * * * *", "--timezone", "Mars/X")
    assert zone.returncode == 2 and "Mars/X" in zone.stderr
    tiny = sundial("jobs", "add", "--name", "t", "--every", "0.000001")
    assert tiny.returncode == 2 and len(tiny.stderr.splitlines()) == 1
    assert "interval_seconds 1e-06: must be a number of seconds from 1" in tiny.stderr
    payload = sundial("jobs", "add", "--name", "p", "--payload", "{oops")
    assert payload.returncode == 2 and "--payload" in payload.stderr
    assert sundial("runs", "show", "12345").returncode == 3


def test_an_unreachable_database_is_exit_1(db_url: str, amqp_url: str) -> None:
    env = service_env("postgresql://postgres@127.0.0.1:1/nothing", amqp_url)
    done = subprocess.run([sys.executable, "-m", "sundial", "jobs", "list"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("sundial: cannot reach the database")


async def test_api_listens_where_host_and_port_say(db_url: str, amqp_url: str) -> None:
    """`sundial api --host --port` wins over API_HOST/API_PORT; a bad port is refused by name."""
    import asyncio

    import httpx

    from tests.conftest import free_port, wait_for

    port, other = free_port(), free_port()
    # 127.0.0.2: were --host ignored, nothing would answer on 127.0.0.1.
    env = service_env(db_url, amqp_url, API_HOST="127.0.0.2", API_PORT=other)
    bad = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sundial", "api", "--port", "70000"], env=env,
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--port: '70000' is not a TCP port" in bad.stderr
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sundial", "api", "--host", "127.0.0.1", "--port", str(port),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            async def answers() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(answers, timeout=60, interval=0.2, what="the API on --port")
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{other}/health")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_jobs_show_edit_delete_and_schedules(sundial) -> None:
    assert sundial("jobs", "add", "--name", "nightly", "--cron", "0 2 * * *", "--timezone",
                   "Europe/Paris").returncode == 0
    shown = json.loads(sundial("jobs", "show", "nightly", "--json").stdout)
    assert shown["name"] == "nightly" and len(shown["schedules"]) == 1
    assert "Europe/Paris" in sundial("jobs", "show", "nightly").stdout

    edited = sundial("jobs", "edit", "nightly", "--timeout", "600", "--queue", "reports",
                     "--payload", '{"a": 1}', "--json")
    assert edited.returncode == 0, edited.stderr
    job = json.loads(edited.stdout)
    assert (job["timeout_seconds"], job["queue"], job["payload"]) == (600, "reports", {"a": 1})
    nothing = sundial("jobs", "edit", "nightly")
    assert nothing.returncode == 2 and "name at least one field" in nothing.stderr
    bad = sundial("jobs", "edit", "nightly", "--timeout", "-1")
    assert bad.returncode == 2 and "timeout_seconds" in bad.stderr

    added = sundial("schedules", "add", "nightly", "--every", "3600", "--json")
    assert added.returncode == 0, added.stderr
    schedule_id = json.loads(added.stdout)["id"]
    listed = json.loads(sundial("schedules", "list", "--job", "nightly", "--json").stdout)
    assert sorted(s["kind"] for s in listed) == ["cron", "interval"]
    assert sundial("schedules", "pause", str(schedule_id)).returncode == 0
    assert json.loads(sundial("schedules", "list", "--json").stdout)[-1]["is_active"] is False
    assert sundial("schedules", "resume", str(schedule_id)).returncode == 0
    assert sundial("schedules", "delete", str(schedule_id)).returncode == 0
    assert sundial("schedules", "pause", str(schedule_id)).returncode == 3

    refused = sundial("jobs", "delete", "nightly")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert sundial("jobs", "show", "nightly").returncode == 0
    assert sundial("jobs", "delete", "nightly", "--yes").returncode == 0
    assert sundial("jobs", "show", "nightly").returncode == 3


def test_several_hosts_in_database_url_reach_the_one_that_answers(db_url, amqp_url) -> None:
    env = service_env(several_hosts(db_url, free_port()), amqp_url)

    def sundial(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sundial", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    migrated = sundial("migrate")
    assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stderr
    assert sundial("jobs", "add", "--name", "ha", "--handler", "noop").returncode == 0
    assert "ha" in sundial("jobs", "list").stdout
    env["DATABASE_URL"] = several_hosts(db_url, 99999)
    bad = sundial("jobs", "list")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert ("configuration error: DATABASE_URL=***: host '127.0.0.1' port '99999' must be a "
            "number 1-65535") in bad.stderr, bad.stderr


def test_an_admin_command_loads_neither_the_web_framework_nor_the_broker_client(
        db_url, amqp_url) -> None:
    # Each admin command is a process of its own: what it imports is paid at every call.
    code = ("import sys\nfrom sundial.core.cli import main\ncode = main(['jobs', 'trigger', 'x'])\n"
            "print(code, sorted(m for m in ('fastapi', 'aio_pika', 'aiormq', 'starlette') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], env=service_env(db_url, amqp_url),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "3 []", (done.stdout, done.stderr)
