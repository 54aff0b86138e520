"""`sundial api` and the admin commands (`keys`, `jobs`, `runs`, `schedules`, `status`,
`sync`, and `notify` in sundial.api.notify_commands).

The admin commands talk to PostgreSQL directly (they work before any API key exists) and
share every rule with the HTTP API through sundial.api.service. Output is a readable table, or
JSON with --json. Exit codes: 0 done, 1 database unreachable or not migrated, 2 invalid input,
3 not found, 4 already exists or not possible in the current state; `runs follow`: 5 the
run ended other than succeeded, 6 --timeout passed first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

EXIT_UNREACHABLE, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_CONFLICT = 1, 2, 3, 4
BULK_MAX_RUNS = 1000  # sundial.api.schemas.BULK_MAX_RUNS; not imported: --help stays fast


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="run the HTTP API (and the dashboard)")
    p.add_argument("--host", help="the address to listen on (default API_HOST, else 0.0.0.0)")
    p.add_argument("--port", type=_port, help="the TCP port (default API_PORT, else 8000)")
    p.set_defaults(func=_api)

    keys = _group(sub, "keys", "API keys: create, list, revoke")
    p = keys.add_parser("create", help="create a key; it is printed once, as the last line")
    p.add_argument("--name", required=True, help="who or what uses it (the audit actor)")
    p.add_argument("--role", required=True, choices=("admin", "viewer"))
    p.add_argument("--expires-in-days", type=int, default=None)
    _json_flag(p).set_defaults(func=_command(_keys_create))
    _json_flag(keys.add_parser("list", help="every key, without secrets")).set_defaults(
        func=_command(_keys_list))
    p = keys.add_parser("revoke", help="revoke a key by id or prefix")
    p.add_argument("key", help="the key's id or prefix")
    _json_flag(p).set_defaults(func=_command(_keys_revoke))

    jobs = _group(sub, "jobs", "jobs: list, show, add, edit, delete, trigger, pause, resume")
    p = jobs.add_parser("list", help="every job with its next slot and latest run")
    _json_flag(p).set_defaults(func=_command(_jobs_list))
    _jobs_add_parser(jobs)
    _jobs_edit_parser(jobs)
    p = jobs.add_parser("trigger", help="run a job now, with arguments if given",
                        description="e.g. sundial jobs trigger report --payload "
                                    "'{\"day\": \"2024-03-01\"}' --key report-2024-03-01")
    p.add_argument("job", help="the job's id or name")
    p.add_argument("--payload", help="the run's arguments (JSON object), merged into the "
                                     "job's payload: its top-level keys replace the job's")
    p.add_argument("--replace", action="store_true",
                   help="the run's payload is --payload alone, not merged into the job's")
    p.add_argument("--key", help="idempotency key: a repeat within 24 hours returns the "
                                 "first run instead of making another")
    p.add_argument("--priority", type=int, help="this run's priority, 0-9 (default the job's)")
    _json_flag(p).set_defaults(func=_command(_jobs_trigger))
    for name, helptext, func in (("show", "one job with its schedules", _jobs_show),
                                 ("pause", "disable a job: its slots pass without runs", _jobs_pause),
                                 ("resume", "enable a job again", _jobs_resume)):
        p = jobs.add_parser(name, help=helptext)
        p.add_argument("job", help="the job's id or name")
        _json_flag(p).set_defaults(func=_command(func))
    p = jobs.add_parser("delete", help="delete a job with its schedules and run history")
    p.add_argument("job", help="the job's id or name")
    p.add_argument("--yes", action="store_true", help="confirm: the history goes too")
    _json_flag(p).set_defaults(func=_command(_jobs_delete))

    runs = _group(sub, "runs", "run history: list, show, follow, cancel, retry")
    p = runs.add_parser("list", help="runs, newest first, and how many the filters select")
    _run_filters(p)
    p.add_argument("--limit", type=int, default=20)
    _json_flag(p).set_defaults(func=_command(_runs_list))
    p = runs.add_parser("show", help="one run with its result, error and output")
    p.add_argument("run_id", type=int)
    _json_flag(p).set_defaults(func=_command(_runs_show))
    for name, helptext, func in (
            ("cancel", "cancel a queued or running run, or with --all every one the filters "
                       "select", _runs_cancel),
            ("retry", "run a failed, dead, timed-out or cancelled run's job again, as a new run; "
                      "with --all, every such run the filters select", _runs_retry)):
        p = runs.add_parser(name, help=helptext, description=helptext + f" (at most "
                            f"{BULK_MAX_RUNS}), e.g. sundial runs {name} --all --job nightly "
                            "--since 2026-12-01T00:00Z --yes")
        p.add_argument("run_id", type=int, nargs="?", help="the run (or --all)")
        p.add_argument("--all", action="store_true", help="every run the filters select")
        _run_filters(p)
        p.add_argument("--dry-run", action="store_true", help="--all: only count them")
        p.add_argument("--yes", action="store_true", help="--all: confirm without a question")
        _json_flag(p).set_defaults(func=_command(func))
    p = runs.add_parser("follow", help="print a run's status as it changes until it ends; "
                                       "exit 0 if it succeeded, 5 if it ended otherwise")
    p.add_argument("run_id", type=int)
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds "
                                                               "(exit 6)")
    _json_flag(p).set_defaults(func=_command(_runs_follow))

    schedules = _group(sub, "schedules", "schedules: list, add, backfill, pause, resume, delete")
    p = schedules.add_parser("list", help="schedules with their next slot")
    p.add_argument("--job", help="only this job's (id or name)")
    _json_flag(p).set_defaults(func=_command(_schedules_list))
    p = schedules.add_parser("add", help="add a schedule to a job",
                             description="e.g. sundial schedules add nightly --cron '0 2 * * *'")
    p.add_argument("job", help="the job's id or name")
    _schedule_options(p, required=True)
    _json_flag(p).set_defaults(func=_command(_schedules_add))
    p = schedules.add_parser("backfill", help="make the runs of a schedule's past slots",
                             description="e.g. sundial schedules backfill 3 --from "
                                         "2024-03-01T00:00:00Z --to 2024-03-02T00:00:00Z")
    p.add_argument("schedule_id", type=int)
    p.add_argument("--from", dest="start", required=True,
                   help="first instant of the range, with its UTC offset (included)")
    p.add_argument("--to", dest="end", required=True,
                   help="last instant of the range, with its UTC offset (included; not in "
                        "the future)")
    p.add_argument("--dry-run", action="store_true", help="list the slots, make no runs")
    _json_flag(p).set_defaults(func=_command(_schedules_backfill))
    for name, helptext, func in (("pause", "stop a schedule firing", _schedules_pause),
                                 ("resume", "let a schedule fire again", _schedules_resume),
                                 ("delete", "delete a schedule (its runs stay)", _schedules_delete)):
        p = schedules.add_parser(name, help=helptext)
        p.add_argument("schedule_id", type=int)
        _json_flag(p).set_defaults(func=_command(func))

    queues = _group(sub, "queues", "queues: list, pause, resume (one queue or all of them)")
    _json_flag(queues.add_parser("list", help="every queue with its pause, jobs and queued runs")
               ).set_defaults(func=_command(_queues_list))
    for name, helptext, func in (
            ("pause", "hold a queue's runs (or with --all every queue's) in the outbox: they "
                      "stay queued and unpublished until resumed", _queues_pause),
            ("resume", "publish a queue's runs again (--all: lift the pause of every queue)",
             _queues_resume)):
        p = queues.add_parser(name, help=helptext, description=helptext)
        p.add_argument("queue", nargs="?", help="the queue (or --all)")
        p.add_argument("--all", action="store_true", help="every queue")
        _json_flag(p).set_defaults(func=_command(func))

    p = sub.add_parser("status", help="scheduler, workers and totals at a glance")
    _json_flag(p).set_defaults(func=_command(_status))

    p = sub.add_parser("sync", help="write the jobs and schedules declared in code "
                                    "(@job(..., cron=...), sundial.declare)",
                       description="Imports the modules of WORKER_IMPORTS (or --import), then "
                                   "creates or updates each declared job by name, in one "
                                   "transaction; jobs code no longer declares are disabled, "
                                   "never deleted. Safe to run again and from several places "
                                   "at once.")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="a module that declares jobs (repeatable; default WORKER_IMPORTS)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--adopt", action="store_true",
                   help="let code manage a declared job that was made through the API")
    _json_flag(p).set_defaults(func=_command(_sync, settings_model="SyncSettings"))

    from sundial.api import notify_commands

    notify_commands.register(sub)


def _group(sub: argparse._SubParsersAction, name: str, helptext: str) -> argparse._SubParsersAction:
    parser = sub.add_parser(name, help=helptext)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _run_filters(p: argparse.ArgumentParser) -> None:
    """The filters of `runs list` and of `runs cancel|retry --all` (those of GET /api/runs)."""
    p.add_argument("--job", help="only this job's runs (id or name)")
    p.add_argument("--status", action="append", help="only runs in this status (repeatable)")
    p.add_argument("--queue", help="only the runs of this queue's jobs")
    p.add_argument("--since", metavar="ISO_TIME", help="created at or after, with a UTC offset")
    p.add_argument("--until", metavar="ISO_TIME", help="created before, with a UTC offset")


def _json_flag(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    return p


def _jobs_add_parser(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser("add", help="create a job, optionally with one schedule",
                        description="e.g. sundial jobs add --name hb --handler noop --every 10")
    p.add_argument("--name", required=True)
    p.add_argument("--handler", default="noop", help="noop, sleep, http, command or python")
    p.add_argument("--payload", default="{}", help="the handler's arguments as a JSON object")
    p.add_argument("--description", default="")
    p.add_argument("--queue", default="default")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds")
    p.add_argument("--max-attempts", type=int, default=None)
    p.add_argument("--concurrency-policy", default="allow", choices=("allow", "forbid", "replace"))
    p.add_argument("--disabled", action="store_true", help="create it paused")
    _schedule_options(p, required=False)
    p.add_argument("--exists-ok", action="store_true",
                   help="exit 0 without changes if a job with this name exists")
    _json_flag(p).set_defaults(func=_command(_jobs_add))


def _schedule_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    when = p.add_mutually_exclusive_group(required=required)
    when.add_argument("--every", type=float, metavar="SECONDS", help="an interval schedule")
    when.add_argument("--cron", help="a cron schedule, e.g. '*/5 * * * *'")
    when.add_argument("--at", metavar="ISO_TIME", help="a one-off schedule, with a UTC offset")
    p.add_argument("--timezone", default="UTC", help="IANA zone of --cron, e.g. Europe/Paris")
    p.add_argument("--jitter", type=float, default=0.0, help="seconds")
    p.add_argument("--misfire-policy", default="run_once", choices=("run_once", "skip", "run_all"))


def _jobs_edit_parser(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser("edit", help="change a job's fields (the others keep their values)",
                        description="e.g. sundial jobs edit nightly --timeout 600 --queue reports")
    p.add_argument("job", help="the job's id or name")
    p.add_argument("--name", help="a new name")
    p.add_argument("--handler", help="noop, sleep, http, command or python")
    p.add_argument("--payload", help="the handler's arguments as a JSON object (replaces it)")
    p.add_argument("--description")
    p.add_argument("--queue")
    p.add_argument("--priority", type=int)
    p.add_argument("--timeout", type=float, help="seconds")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--concurrency-policy", choices=("allow", "forbid", "replace"))
    _json_flag(p).set_defaults(func=_command(_jobs_edit))


# --- `sundial api` -----------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give a number from 1 to 65535")
    return port


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from sundial.api.app import create_app
    from sundial.api.settings import ApiSettings
    from sundial.core import runtime
    from sundial.core.cli import run_async
    from sundial.core.logging import configure_logging
    from sundial.core.settings import load_settings

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # sundial.core.runtime handles SIGTERM/SIGINT like the other services: a clean
            # shutdown exits 0 (uvicorn would re-raise the signal after it).
            yield

    settings = load_settings(ApiSettings)
    settings = settings.model_copy(update={"api_host": args.host or settings.api_host,
                                           "api_port": args.port or settings.api_port})
    configure_logging(settings.log_level, settings.log_format, service="api")
    server = Server(uvicorn.Config(create_app(settings), host=settings.api_host,
                                   port=settings.api_port, log_config=None, access_log=False,
                                   server_header=False))

    def stop() -> None:
        server.should_exit = True

    # Until the lifespan has started (waiting for PostgreSQL or for migrations), SIGTERM
    # abandons start-up: uvicorn would not look at should_exit before it is up.
    return run_async(functools.partial(runtime.serve, announces_start=True), server.serve, stop)


# --- running an admin command -------------------------------------------------------------------


def _command(action: Callable[..., Awaitable[int | None]], settings_model: str = "ApiSettings"
             ) -> Callable[[argparse.Namespace], int]:
    """Run `action(service, args)` with a pool; map errors to one line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        from sundial.api import settings as api_settings
        from sundial.core.cli import run_async
        from sundial.core.logging import configure_logging
        from sundial.core.settings import load_settings

        settings = load_settings(getattr(api_settings, settings_model))
        configure_logging("ERROR", settings.log_format, stream=sys.stderr)
        try:
            return run_async(_with_service, settings, action, args)
        except Exception as exc:
            code, message = _explain(exc)
            if code is None:
                raise
            print(f"sundial: {message}", file=sys.stderr)
            return code

    return run


async def _with_service(settings: Any, action: Callable[..., Awaitable[int | None]],
                        args: argparse.Namespace) -> int:
    from sundial.api.service import SESSION_SETTINGS, Service
    from sundial.core.db import create_pool
    from sundial.core.migrate import check_migrated

    pool = await create_pool(settings.database_url, min_size=1, max_size=2, attempts=3,
                             server_settings=SESSION_SETTINGS)
    try:
        await check_migrated(pool)
        return int(await action(Service(pool, settings), args) or 0)
    finally:
        await pool.close()


def _explain(exc: BaseException) -> tuple[int | None, str]:
    import asyncpg
    from pydantic import ValidationError

    from sundial.api.errors import Conflict
    from sundial.core.db import CONNECTION_ERRORS
    from sundial.core.errors import AlreadyExists, InvalidInput, MigrationError, NotFound

    if isinstance(exc, InvalidInput):
        shown = "" if exc.value is None else f" {_short(exc.value)}"
        return EXIT_INVALID, f"{exc.field}{shown}: {exc.reason}"
    if isinstance(exc, ValidationError):
        return EXIT_INVALID, "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} {_short(e.get('input'))}: "
            f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, AlreadyExists | Conflict):
        return EXIT_CONFLICT, str(exc)
    if isinstance(exc, (*CONNECTION_ERRORS, asyncpg.PostgresConnectionError)):
        return EXIT_UNREACHABLE, f"cannot reach the database: {exc}"
    if isinstance(exc, MigrationError):
        return EXIT_UNREACHABLE, str(exc)
    return None, ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# --- output ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def _fields(row: dict[str, Any], *, as_json: Sequence[str], skip: str) -> list[str]:
    """`name: value` lines of a row, aligned; the fields `as_json` printed as JSON."""
    width = max(len(k) for k in row) + 2
    return [f"{k + ':':<{width}}{json.dumps(v) if k in as_json else _cell(v)}"
            for k, v in row.items() if k != skip]


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, default=str, indent=2) if args.json else text)


# --- keys ------------------------------------------------------------------------------------------

KEY_COLUMNS = ("id", "name", "prefix", "role", "created_at", "expires_at", "revoked_at",
               "last_used_at")


async def _keys_create(svc: Any, args: argparse.Namespace) -> None:
    row, key = await svc.create_key(_actor(), args.name, args.role, args.expires_in_days)
    if args.json:
        _print(args, {**row, "key": key}, "")
        return
    print(f"created {row['role']} key {row['id']} {row['name']!r} (prefix {row['prefix']})"
          + (f", expires {_cell(row['expires_at'])}" if row["expires_at"] else ""))
    print("store it now: it is shown only once")
    print(key)


async def _keys_list(svc: Any, args: argparse.Namespace) -> None:
    rows = await svc.list_keys()
    _print(args, rows, table(rows, KEY_COLUMNS))


async def _keys_revoke(svc: Any, args: argparse.Namespace) -> None:
    row = await svc.revoke_key(_actor(), args.key)
    _print(args, row, f"revoked key {row['id']} {row['name']!r} (prefix {row['prefix']})")


# --- jobs ------------------------------------------------------------------------------------------

JOB_COLUMNS = ("id", "name", "handler", "queue", "enabled", "managed_by", "schedule_count",
               "next_run_at", "last_run_status")


async def _jobs_list(svc: Any, args: argparse.Namespace) -> None:
    rows = await svc.list_jobs(limit=1000)
    _print(args, rows, table(rows, JOB_COLUMNS) + f"\n{len(rows)} of {await svc.count_jobs()} jobs")


def _job_body(args: argparse.Namespace) -> Any:
    from sundial.api.schemas import JobCreate

    payload = _payload(args.payload)
    schedule = _schedule_fields(args)
    return JobCreate.model_validate({
        "name": args.name, "handler": args.handler, "payload": payload,
        "description": args.description, "queue": args.queue, "priority": args.priority,
        "timeout_seconds": args.timeout, "max_attempts": args.max_attempts,
        "concurrency_policy": args.concurrency_policy, "enabled": not args.disabled,
        "schedules": [schedule] if schedule else []})


def _payload(text: str) -> Any:
    from sundial.core.errors import InvalidInput

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("--payload", text, f"is not JSON ({exc.msg})") from None


def _schedule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule that --every, --cron or --at describe ({} for none)."""
    schedule: dict[str, Any] = {"timezone": args.timezone, "jitter_seconds": args.jitter,
                                "misfire_policy": args.misfire_policy}
    if args.every is not None:
        return {**schedule, "kind": "interval", "interval_seconds": args.every}
    if args.cron is not None:
        return {**schedule, "kind": "cron", "cron": args.cron}
    if args.at is not None:
        return {**schedule, "kind": "once", "run_at": args.at}
    return {}


async def _jobs_add(svc: Any, args: argparse.Namespace) -> None:
    from sundial.core.errors import AlreadyExists

    body = _job_body(args)
    try:
        job = await svc.create_job(_actor(), body)
    except AlreadyExists:
        if not args.exists_ok:
            raise
        job = await svc.get_job(args.name)
        _print(args, job, f"job {job['id']} {job['name']!r} exists already; left as it is")
        return
    when = ", ".join(f"next run {_cell(s['next_run_at'])}" for s in job["schedules"])
    _print(args, job, f"created job {job['id']} {job['name']!r}" + (f" ({when})" if when else ""))


SCHEDULE_COLUMNS = ("id", "job", "kind", "interval_seconds", "cron", "run_at", "timezone",
                    "is_active", "next_run_at", "managed_key", "last_error")


async def _jobs_show(svc: Any, args: argparse.Namespace) -> None:
    job = await svc.get_job(args.job)
    lines = _fields(job, as_json=("payload",), skip="schedules")
    lines += ["", table(job["schedules"], SCHEDULE_COLUMNS) if job["schedules"] else "no schedules"]
    _print(args, job, "\n".join(lines))


async def _jobs_edit(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.schemas import JobUpdate
    from sundial.core.errors import InvalidInput

    given = {"name": args.name, "handler": args.handler, "description": args.description,
             "queue": args.queue, "priority": args.priority, "timeout_seconds": args.timeout,
             "max_attempts": args.max_attempts, "concurrency_policy": args.concurrency_policy}
    change = {k: v for k, v in given.items() if v is not None}
    if args.payload is not None:
        change["payload"] = _payload(args.payload)
    if not change:
        raise InvalidInput("options", None, "name at least one field to change, e.g. --timeout 600")
    job = await svc.update_job(_actor(), args.job, JobUpdate.model_validate(change))
    _print(args, job, f"changed job {job['id']} {job['name']!r}: {', '.join(sorted(change))}")


async def _jobs_delete(svc: Any, args: argparse.Namespace) -> None:
    from sundial.core.errors import InvalidInput

    if not args.yes:
        raise InvalidInput("--yes", None, f"deleting job {args.job!r} deletes its schedules and "
                                          "run history too; add --yes to confirm")
    job_id = await svc.delete_job(_actor(), args.job)
    _print(args, {"id": job_id, "deleted": True}, f"deleted job {job_id} ({args.job!r})")


async def _jobs_trigger(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.schemas import TriggerBody
    from sundial.core.errors import InvalidInput

    if args.replace and args.payload is None:
        raise InvalidInput("--replace", None, "replaces the job's payload with --payload; "
                                              "give --payload too ('{}' for none)")
    given = {"payload": None if args.payload is None else _payload(args.payload),
             "mode": "replace" if args.replace else None, "idempotency_key": args.key,
             "priority": args.priority}
    body = TriggerBody.model_validate({k: v for k, v in given.items() if v is not None})
    queued, created = await svc.trigger_job(_actor(), args.job, body)
    text = (f"queued run {queued['run_id']}" if created else
            f"run {queued['run_id']} has key {args.key!r} already (it is {queued['status']}); "
            "no new run")
    _print(args, queued, text)


async def _jobs_pause(svc: Any, args: argparse.Namespace) -> None:
    job = await svc.set_job_enabled(_actor(), args.job, False)
    _print(args, job, f"paused job {job['id']} {job['name']!r}")


async def _jobs_resume(svc: Any, args: argparse.Namespace) -> None:
    job = await svc.set_job_enabled(_actor(), args.job, True)
    _print(args, job, f"resumed job {job['id']} {job['name']!r}")


# --- runs ------------------------------------------------------------------------------------------

RUN_COLUMNS = ("id", "job", "status", "trigger", "attempt", "scheduled_for", "started_at",
               "duration_s", "worker_id")


async def _runs_list(svc: Any, args: argparse.Namespace) -> None:
    from sundial.core.errors import InvalidInput

    if not 1 <= args.limit <= 500:
        raise InvalidInput("--limit", args.limit, "must be between 1 and 500")
    filters = _filters(args)
    page = await svc.list_runs(job=filters.job, statuses=filters.status, queue=filters.queue,
                               since=filters.since, until=filters.until, limit=args.limit)
    rows = page["items"]
    for row in rows:
        if row["duration_s"] is not None:
            row["duration_s"] = round(row["duration_s"], 3)
    _print(args, rows, table(rows, RUN_COLUMNS) + f"\n{len(rows)} of {page['total']} runs")


async def _runs_show(svc: Any, args: argparse.Namespace) -> None:
    run = await svc.get_run(args.run_id)
    lines = _fields(run, as_json=("result", "payload"), skip="output")
    if run["output"]:
        lines += ["output:", run["output"]]
    _print(args, run, "\n".join(lines))


def _filters(args: argparse.Namespace, model: str = "RunSelection") -> Any:
    """The run filters given on the command line, checked as the API checks them (`model`:
    RunSelection for a list, CancelRuns or RetryRuns for a bulk action)."""
    from sundial.api import schemas

    given = {"job": args.job, "status": args.status, "queue": args.queue, "since": args.since,
             "until": args.until}
    if model != "RunSelection":
        given["dry_run"] = args.dry_run
    return getattr(schemas, model).model_validate(
        {k: v for k, v in given.items() if v is not None})


def _one_or_all(args: argparse.Namespace) -> bool:
    """True for --all (with its filters), False for one run id; InvalidInput otherwise."""
    from sundial.core.errors import InvalidInput

    filters = [f"--{k.replace('_', '-')}" for k in ("job", "status", "queue", "since", "until",
                                                    "dry_run") if getattr(args, k)]
    if args.all and args.run_id is not None:
        raise InvalidInput("--all", args.run_id, "give one run id or --all with filters, not both")
    if not args.all and args.run_id is None:
        raise InvalidInput("run_id", None, "give the run's id, or --all (with --job, --status, "
                                           "--queue, --since, --until to narrow it)")
    if not args.all and filters:
        raise InvalidInput(filters[0], None, "goes with --all, not with one run id")
    return args.all


async def _runs_bulk(svc: Any, args: argparse.Namespace, action: str) -> int:
    """`runs cancel|retry --all`: count, confirm (--yes, or a question on a terminal), act."""
    import asyncio

    from sundial.core.errors import InvalidInput

    verb = action
    act = svc.cancel_runs if action == "cancel" else svc.retry_runs
    body = _filters(args, "CancelRuns" if action == "cancel" else "RetryRuns")
    if not args.yes or body.dry_run:
        dry = await act(_actor(), body.model_copy(update={"dry_run": True}))
        count = dry["matched"]
        if body.dry_run or not count:
            _print(args, dry, f"would {verb} {count} run(s)"
                              + (": " + " ".join(map(str, dry["run_ids"])) if count else ""))
            return 0
        if not sys.stdin.isatty():
            raise InvalidInput("--yes", None, f"this would {verb} {count} run(s); add --yes to "
                                              "confirm, or --dry-run to list them")
        answer = (await asyncio.to_thread(input, f"{verb} {count} run(s)? [y/N] ")).strip().lower()
        if answer not in ("y", "yes"):
            print("nothing changed")
            return EXIT_INVALID
    done = await act(_actor(), body)
    if action == "cancel":
        text = (f"cancelled {done['cancelled']} run(s)"
                + (f", asked {done['stopping']} running run(s) to stop" if done["stopping"] else ""))
    else:
        text = f"queued {len(done['queued'])} new run(s), retries of {len(done['run_ids'])}"
    _print(args, done, text)
    return 0


async def _runs_cancel(svc: Any, args: argparse.Namespace) -> int | None:
    if _one_or_all(args):
        return await _runs_bulk(svc, args, "cancel")
    done = await svc.cancel_run(_actor(), args.run_id)
    text = (f"cancelled run {args.run_id}" if done["status"] == "cancelled"
            else f"asked run {args.run_id} to stop (it is {done['status']})")
    _print(args, done, text)
    return None


async def _runs_retry(svc: Any, args: argparse.Namespace) -> int | None:
    if _one_or_all(args):
        return await _runs_bulk(svc, args, "retry")
    run_id = await svc.retry_run(_actor(), args.run_id)
    _print(args, {"run_id": run_id, "status": "queued", "retry_of": args.run_id},
           f"queued run {run_id} (a retry of run {args.run_id})")


EXIT_RUN_UNSUCCESSFUL, EXIT_TIMEOUT = 5, 6


async def _runs_follow(svc: Any, args: argparse.Namespace) -> int:
    import asyncio
    import time

    from sundial.api.schemas import FINAL_STATUSES

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = None
    while True:
        run = await svc.get_run(args.run_id)
        state = (run["status"], run["attempt"])
        if state != seen and not args.json:
            where = f" on {run['worker_id']}" if run["status"] == "running" else ""
            print(f"run {run['id']} ({run['job']}): {run['status']}{where}, attempt {run['attempt']}",
                  flush=True)
        seen = state
        if run["status"] in FINAL_STATUSES:
            if args.json:
                _print(args, run, "")
            elif run["error"]:
                print(f"error: {run['error']}")
            return 0 if run["status"] == "succeeded" else EXIT_RUN_UNSUCCESSFUL
        if deadline is not None and time.monotonic() >= deadline:
            print(f"sundial: run {args.run_id} is still {run['status']} after {args.timeout:g} s",
                  file=sys.stderr)
            return EXIT_TIMEOUT
        await asyncio.sleep(0.5)


# --- schedules -------------------------------------------------------------------------------------


async def _schedules_list(svc: Any, args: argparse.Namespace) -> None:
    rows = await svc.list_schedules(job=args.job, limit=1000)
    total = await svc.count_schedules(job=args.job)
    _print(args, rows, table(rows, SCHEDULE_COLUMNS) + f"\n{len(rows)} of {total} schedules")


async def _schedules_add(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.schemas import ScheduleCreate

    job = await svc.get_job(args.job)
    body = ScheduleCreate.model_validate({**_schedule_fields(args), "job_id": job["id"]})
    row = await svc.create_schedule(_actor(), body)
    _print(args, row, f"added schedule {row['id']} to job {job['name']!r} "
                      f"(next run {_cell(row['next_run_at'])})")


async def _schedules_backfill(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.schemas import BackfillBody

    body = BackfillBody.model_validate({"from": args.start, "to": args.end,
                                        "dry_run": args.dry_run})
    done = await svc.backfill(_actor(), args.schedule_id, body.from_, body.to,
                              dry_run=body.dry_run)
    verb = "would make" if done["dry_run"] else "made"
    lines = [f"schedule {args.schedule_id}: {done['slots']} slot(s) in the range, "
             f"{done['existing']} with a run already; {verb} {done['created']} run(s)"]
    lines += [f"  {_cell(t)}" for t in done["times"]]
    _print(args, done, "\n".join(lines))


async def _schedules_pause(svc: Any, args: argparse.Namespace) -> None:
    row = await svc.pause_schedule(_actor(), args.schedule_id)
    _print(args, row, f"paused schedule {row['id']} of job {row['job']!r}")


async def _schedules_resume(svc: Any, args: argparse.Namespace) -> None:
    row = await svc.resume_schedule(_actor(), args.schedule_id)
    _print(args, row, f"resumed schedule {row['id']} of job {row['job']!r} "
                      f"(next run {_cell(row['next_run_at'])})")


async def _schedules_delete(svc: Any, args: argparse.Namespace) -> None:
    schedule_id = await svc.delete_schedule(_actor(), args.schedule_id)
    _print(args, {"id": schedule_id, "deleted": True}, f"deleted schedule {schedule_id}")


# --- queues ----------------------------------------------------------------------------------------

QUEUE_COLUMNS = ("queue", "paused", "paused_at", "paused_by", "jobs", "queued")


async def _queues_list(svc: Any, args: argparse.Namespace) -> None:
    state = await svc.queues()
    head = (f"every queue paused since {_cell(state['all_paused_at'])} by {state['all_paused_by']}"
            "\n\n" if state["all_paused"] else "")
    _print(args, state, head + table(state["queues"], QUEUE_COLUMNS))


def _queue_arg(args: argparse.Namespace) -> str:
    """The queue named, or "*" for --all."""
    from sundial.api.schemas import QueueName
    from sundial.api.service import ALL_QUEUES
    from sundial.core.errors import InvalidInput

    if args.all == (args.queue is not None):
        raise InvalidInput("queue", args.queue, "give one queue's name or --all, not both"
                           if args.all else "give the queue's name, or --all for every queue")
    if args.all:
        return ALL_QUEUES
    import pydantic

    try:
        return pydantic.TypeAdapter(QueueName).validate_python(args.queue)
    except pydantic.ValidationError:
        raise InvalidInput("queue", args.queue, "is not a queue name (letters, digits, '_', "
                                                "'.', '-')") from None


def _queue_text(state: dict[str, Any], done: str) -> str:
    what = "every queue" if state["queue"] == "*" else f"queue {state['queue']!r}"
    text = f"{done} {what}"
    if state["queue"] != "*" and state["all_paused"]:
        text += "; every queue is paused, so nothing is published (sundial queues resume --all)"
    return text


async def _queues_pause(svc: Any, args: argparse.Namespace) -> None:
    state = await svc.pause_queue(_actor(), _queue_arg(args))
    _print(args, state, _queue_text(state, "paused"))


async def _queues_resume(svc: Any, args: argparse.Namespace) -> None:
    state = await svc.resume_queue(_actor(), _queue_arg(args))
    _print(args, state, _queue_text(state, "resumed"))


# --- sync ------------------------------------------------------------------------------------------


async def _sync(svc: Any, args: argparse.Namespace) -> None:
    from sundial.api.sync import sync
    from sundial.core import declarations
    from sundial.core.errors import InvalidInput

    modules = args.imports or svc.settings.imports
    if not modules:
        raise InvalidInput("--import", None, "name the modules that declare jobs, e.g. "
                           "--import myapp.jobs, or set WORKER_IMPORTS as for the worker")
    declarations.import_modules(modules, "--import" if args.imports else "WORKER_IMPORTS")
    result = await sync(svc, declarations.declared(), actor=_actor(), dry_run=args.dry_run,
                        adopt=args.adopt)
    counts = f"{result.jobs} declared job(s), {result.schedules} schedule(s)"
    if result.unchanged:
        text = f"unchanged: {counts}"
    else:
        lines = [("would " if result.dry_run else "") + str(c) for c in result.changes]
        text = "\n".join([*lines, f"dry run: nothing written ({counts})" if result.dry_run
                          else f"synced {counts}: {len(result.changes)} change(s)"])
    _print(args, {"dry_run": result.dry_run, "unchanged": result.unchanged,
                  "jobs": result.jobs, "schedules": result.schedules,
                  "changes": [c.as_dict() for c in result.changes]}, text)


# --- status ----------------------------------------------------------------------------------------


async def _status(svc: Any, args: argparse.Namespace) -> int:
    scheduler = await svc.scheduler_status()
    workers = await svc.workers()
    stats = await svc.stats()
    queues = await svc.queues()
    paused = ("all (every queue paused)" if queues["all_paused"]
              else ", ".join(x["queue"] for x in queues["queues"] if x["paused"]) or "none")
    ex = stats["executions"]
    rate = "-" if ex["success_rate"] is None else f"{ex['success_rate']:.1%}"
    online = sum(1 for w in workers if w["online"])
    instances = scheduler["instances"]
    running = sum(1 for i in instances if i["status"] == "running")
    blocked = [i for i in instances if i["status"] == "running" and i["broker_blocked_since"]]
    text = "\n".join([
        f"scheduler: {scheduler['status']} (last pass {_cell(scheduler['last_run'])}, "
        f"{running} of {len(instances)} instance(s) running)",
        *([f"broker:    blocks publishing since {_cell(blocked[0]['broker_blocked_since'])} "
           f"({blocked[0]['broker_blocked_reason']}): runs wait in the outbox"] if blocked else []),
        f"workers:   {online} online of {len(workers)}",
        f"paused:    {paused}",
        f"jobs:      {stats['jobs']['total']} ({stats['jobs']['enabled']} enabled)",
        f"runs:      {ex['total']} total, {ex['running']} running, {ex['queued']} queued, "
        f"{ex['successful']} succeeded, {ex['failed']} failed (success rate {rate})",
        "",
        table(workers, ("id", "online", "queues", "handlers", "running", "last_heartbeat"))
        if workers else "no workers registered",
    ])
    _print(args, {"scheduler": scheduler, "workers": workers, "stats": stats, "queues": queues},
           text)
    return 0
