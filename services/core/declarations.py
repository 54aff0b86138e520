"""Jobs and schedules declared in code, which `sundial sync` writes to the database.

    from sundial import declare, job

    @job("reports.daily", cron="0 2 * * *", timezone="Europe/Paris", queue="reports")
    def daily(day: str | None = None) -> dict: ...

    declare("site.ping", handler="http", payload={"url": "https://example.com/health"},
            every=60)

A declaration names the job and holds its fields and schedules, under the API's field
names. `cron=` and `every=` (one or a list) are the short forms of `schedules=[...]`,
whose items are objects like an API schedule plus an optional `key`: a sync finds a
schedule again by its key (default: its position), so a changed cron updates the same
schedule. What can be checked without the database (the schedules, with the schedule
math's own validation; option names and types) is checked here, when the module is
imported; the rest, the API's rules, when `sundial sync` writes it (sundial.api.sync).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sundial.core import schedule as sched
from sundial.core.errors import ConfigError, InvalidDeclaration, InvalidInput, InvalidSchedule

# The job fields a declaration may give, as the API names them; `enabled` is not among
# them: pausing and resuming stay with the operators, and a sync keeps what they chose.
JOB_OPTIONS = ("description", "queue", "priority", "timeout_seconds", "max_attempts",
               "retry_backoff_seconds", "retry_backoff_max_seconds", "concurrency_policy")
SCHEDULE_OPTIONS = ("key", "kind", "interval_seconds", "cron", "run_at", "timezone",
                    "jitter_seconds", "start_at", "end_at", "misfire_policy",
                    "misfire_grace_seconds")
_INSTANTS = ("run_at", "start_at", "end_at")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


@dataclass(frozen=True)
class Declaration:
    """One job as code declares it: its fields (only those given) and its schedules."""

    name: str
    handler: str
    payload: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    # Each: "key" and the schedule's fields under the API's names (only those given).
    schedules: tuple[dict[str, Any], ...] = ()
    where: str = "?"

    def same_as(self, other: Declaration) -> bool:
        return (self.name, self.handler, self.payload, self.options, self.schedules) == (
            other.name, other.handler, other.payload, other.options, other.schedules)


_declared: dict[str, Declaration] = {}


def declare(name: str, *, handler: str, payload: Mapping[str, Any] | None = None,
            **options: Any) -> Declaration:
    """Declare the job `name` of any handler, with its schedules, for `sundial sync`.

    Options: `cron` (an expression or a list), `every` (seconds or a timedelta, or a
    list), `timezone` (of the cron expressions), `schedules` (a list of objects with the
    fields of an API schedule and an optional `key`), and the job fields of the API:
    description, queue, priority, timeout_seconds, max_attempts, retry_backoff_seconds,
    retry_backoff_max_seconds, concurrency_policy.
    """
    where = sys._getframe(1).f_globals.get("__name__", "?")
    return register(build(name, handler=handler, payload=payload, where=where, **options))


def build(name: str, *, handler: str, payload: Mapping[str, Any] | None, where: str,
          **options: Any) -> Declaration:
    """The declaration, checked as far as it can be without the database."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("name", name, "a declared job needs a name, e.g. 'reports.daily'")
    if not isinstance(handler, str) or not handler:
        raise InvalidDeclaration(name, "handler", handler, "must name a handler, e.g. 'http'")
    if payload is not None and not isinstance(payload, Mapping):
        raise InvalidDeclaration(name, "payload", payload, "must be a dict of the handler's "
                                 "arguments")
    cron = options.pop("cron", None)
    every = options.pop("every", None)
    timezone = options.pop("timezone", None)
    given = options.pop("schedules", None)
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        raise InvalidDeclaration(name, unknown[0], options[unknown[0]], "is not an option of "
                                 "a declared job; use cron, every, timezone, schedules, "
                                 + ", ".join(JOB_OPTIONS))
    if timezone is not None and cron is None and given is None:
        raise InvalidDeclaration(name, "timezone", timezone, "applies to cron schedules; "
                                 "add cron='...' or leave it out")
    schedules = _schedules(name, cron, every, timezone, given)
    return Declaration(name=name, handler=handler, payload=dict(payload or {}),
                       options={k: v for k, v in options.items() if v is not None},
                       schedules=schedules, where=where)


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _schedules(job: str, cron: Any, every: Any, timezone: Any, given: Any
               ) -> tuple[dict[str, Any], ...]:
    items: list[dict[str, Any]] = []
    for expr in _listed(cron):
        items.append({"kind": "cron", "cron": expr})
    for step in _listed(every):
        seconds = step.total_seconds() if isinstance(step, timedelta) else step
        items.append({"kind": "interval", "interval_seconds": seconds})
    if given is not None and not isinstance(given, list | tuple):
        raise InvalidDeclaration(job, "schedules", given, "must be a list of schedules, "
                                 "e.g. [{'cron': '0 2 * * *'}]")
    for i, item in enumerate(given or ()):
        if not isinstance(item, Mapping):
            raise InvalidDeclaration(job, f"schedules[{i}]", item, "must be a dict with the "
                                     "fields of a schedule, e.g. {'cron': '0 2 * * *'}")
        items.append(dict(item))
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    for i, item in enumerate(items):
        if "timezone" not in item and timezone is not None and item.get("kind", "cron") != "interval":
            item["timezone"] = timezone
        item.setdefault("key", str(i))
        out.append(_schedule(job, i, item))
        if out[-1]["key"] in keys:
            raise InvalidDeclaration(job, f"schedules[{i}].key", out[-1]["key"],
                                     "is used twice in this job; give each schedule its own key")
        keys.add(out[-1]["key"])
    return tuple(out)


def _schedule(job: str, index: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"schedules[{index}]"
    unknown = sorted(set(item) - set(SCHEDULE_OPTIONS))
    if unknown:
        raise InvalidDeclaration(job, f"{where}.{unknown[0]}", item[unknown[0]],
                                 "is not a field of a schedule; use " + ", ".join(SCHEDULE_OPTIONS))
    key = item["key"]
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidDeclaration(job, f"{where}.key", key, "must be 1-100 letters, digits, "
                                 "'_', '.', ':' or '-', e.g. 'nightly'")
    if "kind" not in item:
        kinds = [k for k, f in sched.KIND_FIELDS.items() if item.get(f) is not None]
        if len(kinds) != 1:
            raise InvalidDeclaration(job, where, item, "needs exactly one of cron, "
                                     "interval_seconds or run_at")
        item["kind"] = kinds[0]
    for name in _INSTANTS:
        if isinstance(item.get(name), str):
            try:
                item[name] = datetime.fromisoformat(item[name])
            except ValueError:
                raise InvalidDeclaration(job, f"{where}.{name}", item[name], "must be an "
                                         "ISO time with a UTC offset, e.g. "
                                         "2030-01-01T09:00:00+00:00") from None
    spec_fields = {k: v for k, v in item.items() if k != "key"}
    try:
        spec = sched.validate(sched.Spec(**spec_fields))
    except InvalidSchedule as exc:
        raise InvalidDeclaration(job, f"{where}.{exc.field}", exc.value, exc.reason) from None
    except TypeError as exc:  # a value of the wrong type the math cannot compare
        raise InvalidDeclaration(job, where, item, f"has a value of the wrong type ({exc})") from None
    if spec.kind == "cron":
        item["cron"] = spec.cron
    return item


def register(declaration: Declaration) -> Declaration:
    existing = _declared.get(declaration.name)
    if existing is not None and not existing.same_as(declaration):
        raise InvalidDeclaration(declaration.name, "name", declaration.name,
                                 f"is declared twice ({existing.where} and {declaration.where}); "
                                 "rename one")
    _declared[declaration.name] = declaration
    return declaration


def declared() -> list[Declaration]:
    """Every declaration made by the modules imported so far, by name."""
    return [_declared[n] for n in sorted(_declared)]


def import_modules(modules: Iterable[str], source: str = "WORKER_IMPORTS") -> None:
    """Import the modules that hold jobs; one that does not import is one clear line."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{source}={module!r}: cannot import it ({exc})") from None


def clear() -> None:
    """Forget every declaration (for tests)."""
    _declared.clear()

