"""The admin CLI's run commands (`sundial runs|queues`, `jobs trigger`, `schedules backfill`)
as a user runs them, against a real database. The other commands: test_cli.py (two files,
so that the test processes of `make test` share the work)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import service_env


async def test_runs_cancel_retry_and_follow(sundial, db_url, amqp_url, processes) -> None:
    import asyncio

    from tests.conftest import wait_for

    def cli(*args: str):
        return asyncio.to_thread(sundial, *args)

    assert (await cli("jobs", "add", "--name", "hb", "--queue", f"cli{id(db_url)}")).returncode == 0
    queued = json.loads((await cli("jobs", "trigger", "hb", "--json")).stdout)["run_id"]
    waited = await cli("runs", "follow", str(queued), "--timeout", "1")
    assert waited.returncode == 6 and "still queued" in waited.stderr
    cancelled = await cli("runs", "cancel", str(queued))
    assert cancelled.returncode == 0 and f"cancelled run {queued}" in cancelled.stdout
    again = await cli("runs", "cancel", str(queued))
    assert again.returncode == 4 and "already cancelled" in again.stderr
    ended = await cli("runs", "follow", str(queued))
    assert ended.returncode == 5 and "cancelled" in ended.stdout

    # With a scheduler and a worker, a retry runs and `follow` sees it succeed.
    env = service_env(db_url, amqp_url, WORKER_QUEUES=f"cli{id(db_url)}")
    processes(["scheduler"], env)
    worker = processes(["worker"], env)
    await wait_for(lambda: '"worker.consuming"' in worker.output(), timeout=60, what="the worker")
    retried = await cli("runs", "retry", str(queued), "--json")
    assert retried.returncode == 0, retried.stderr
    new_id = json.loads(retried.stdout)["run_id"]
    followed = await cli("runs", "follow", str(new_id), "--timeout", "60")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert followed.stdout.splitlines()[-1].endswith("succeeded, attempt 1")


def test_jobs_trigger_with_arguments_and_a_key(sundial) -> None:
    assert sundial("jobs", "add", "--name", "rep", "--payload", '{"day": "x", "n": 1}'
                   ).returncode == 0
    first = sundial("jobs", "trigger", "rep", "--payload", '{"day": "2024-03-01"}',
                    "--key", "rep-0301", "--json")
    assert first.returncode == 0, first.stderr
    queued = json.loads(first.stdout)
    assert queued["status"] == "queued" and queued["replayed"] is False
    run = json.loads(sundial("runs", "show", str(queued["run_id"]), "--json").stdout)
    assert run["payload"] == {"day": "2024-03-01", "n": 1}
    assert run["idempotency_key"] == "rep-0301"

    again = sundial("jobs", "trigger", "rep", "--payload", '{"day": "2024-03-01"}',
                    "--key", "rep-0301")
    assert again.returncode == 0, again.stderr
    assert f"run {queued['run_id']} has key 'rep-0301' already" in again.stdout
    replaced = sundial("jobs", "trigger", "rep", "--payload", '{"day": "y"}', "--replace",
                       "--priority", "8", "--json")
    run = json.loads(sundial("runs", "show", str(json.loads(replaced.stdout)["run_id"]),
                             "--json").stdout)
    assert run["payload"] == {"day": "y"} and run["priority"] == 8
    assert len(json.loads(sundial("runs", "list", "--json").stdout)) == 2

    lone = sundial("jobs", "trigger", "rep", "--replace")
    assert lone.returncode == 2 and "--replace" in lone.stderr and "--payload" in lone.stderr
    bad = sundial("jobs", "trigger", "rep", "--priority", "10")
    assert bad.returncode == 2 and "priority 10" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_schedules_backfill_makes_each_slot_once(sundial) -> None:
    added = sundial("jobs", "add", "--name", "etl", "--cron", "0 * * * *", "--json")
    schedule_id = json.loads(added.stdout)["schedules"][0]["id"]
    args = ("schedules", "backfill", str(schedule_id), "--from", "2024-03-01T00:00:00Z",
            "--to", "2024-03-01T09:00:00Z")
    dry = sundial(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "10 slot(s) in the range, 0 with a run already; would make 10 run(s)" in dry.stdout
    assert json.loads(sundial("runs", "list", "--json").stdout) == []
    done = json.loads(sundial(*args, "--json").stdout)
    assert done["created"] == 10 and len(done["run_ids"]) == 10
    again = sundial(*args)
    assert "10 with a run already; made 0 run(s)" in again.stdout
    runs = json.loads(sundial("runs", "list", "--json").stdout)
    assert len(runs) == 10 and {r["trigger"] for r in runs} == {"backfill"}
    bad = sundial("schedules", "backfill", str(schedule_id), "--from", "yesterday",
                  "--to", "2024-03-01T09:00:00Z")
    assert bad.returncode == 2 and "from 'yesterday'" in bad.stderr

@pytest.mark.timeout(300)
def test_runs_cancel_and_retry_all_that_the_filters_select(sundial) -> None:
    from sundial.api import commands, schemas

    assert commands.BULK_MAX_RUNS == schemas.BULK_MAX_RUNS
    for name, queue in (("a", "q1"), ("b", "q2")):
        assert sundial("jobs", "add", "--name", name, "--queue", queue).returncode == 0
    for name in ("a", "a", "b"):
        assert sundial("jobs", "trigger", name).returncode == 0
    listed = sundial("runs", "list", "--queue", "q1", "--limit", "1")
    assert listed.returncode == 0 and listed.stdout.splitlines()[-1] == "1 of 2 runs"

    # Without --yes (and no terminal to ask on) nothing changes; the count says what would.
    unconfirmed = sundial("runs", "cancel", "--all", "--queue", "q1")
    assert unconfirmed.returncode == 2
    assert "this would cancel 2 run(s); add --yes to confirm" in unconfirmed.stderr
    dry = json.loads(sundial("runs", "cancel", "--all", "--queue", "q1", "--dry-run",
                             "--json").stdout)
    assert dry["dry_run"] is True and dry["matched"] == 2

    cancelled = sundial("runs", "cancel", "--all", "--queue", "q1", "--yes")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "cancelled 2 run(s)"
    statuses = {r["job"] + ":" + r["status"]
                for r in json.loads(sundial("runs", "list", "--json").stdout)}
    assert statuses == {"a:cancelled", "b:queued"}

    retried = sundial("runs", "retry", "--all", "--job", "a", "--yes", "--json")
    assert retried.returncode == 0, retried.stderr
    assert len(json.loads(retried.stdout)["queued"]) == 2
    assert sundial("runs", "list", "--job", "a").stdout.splitlines()[-1] == "4 of 4 runs"

    # Bad requests say what to give instead.
    for args, words in ((("runs", "cancel"), "give the run's id, or --all"),
                        (("runs", "retry", "1", "--job", "a"), "--job: goes with --all"),
                        (("runs", "retry", "--all", "--status", "succeeded", "--yes"),
                         "status.0 'succeeded': Input should be 'failed', 'dead'")):
        refused = sundial(*args)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stderr)


@pytest.mark.timeout(300)
def test_queues_pause_and_resume_one_or_all(sundial) -> None:
    assert sundial("jobs", "add", "--name", "mailer", "--queue", "mail").returncode == 0
    paused = sundial("queues", "pause", "mail")
    assert paused.returncode == 0 and paused.stdout.strip() == "paused queue 'mail'"
    assert sundial("queues", "pause", "--all").stdout.strip() == "paused every queue"
    listed = json.loads(sundial("queues", "list", "--json").stdout)
    assert listed["all_paused"] and [(x["queue"], x["paused"]) for x in listed["queues"]] == [
        ("mail", True)]
    resumed = sundial("queues", "resume", "mail")
    assert resumed.returncode == 0 and "every queue is paused, so nothing is published" in resumed.stdout
    assert "paused:    all (every queue paused)" in sundial("status").stdout
    assert sundial("queues", "resume", "--all").returncode == 0
    listed = json.loads(sundial("queues", "list", "--json").stdout)
    assert not listed["all_paused"] and not listed["queues"][0]["paused"]

    for args, code, words in ((("queues", "pause"), 2, "give the queue's name, or --all"),
                              (("queues", "pause", "mail", "--all"), 2, "not both"),
                              (("queues", "pause", "nope"), 3, "no job runs on queue 'nope'")):
        refused = sundial(*args)
        assert refused.returncode == code and words in refused.stderr, (args, refused.stderr)
