"""Jobs declared in code (`@job(..., cron=...)`, `sundial.declare`): what a declaration
holds, and the clear error a bad one raises when its module is imported."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from sundial import declare, job
from sundial.core import declarations
from sundial.core.errors import InvalidDeclaration
from sundial.worker import registry


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    declarations.clear()
    yield
    declarations.clear()


def _name() -> str:
    return f"t.{uuid.uuid4().hex[:8]}"


def test_a_decorated_function_with_a_cron_declares_its_python_job() -> None:
    name = _name()

    @job(name, cron="0 2 * * *", timezone="Europe/Paris", queue="reports", timeout_seconds=600,
         kwargs={"day": None})
    def daily(day: str | None = None) -> str:
        return "done"

    [d] = declarations.declared()
    assert registry.lookup(name) is daily
    assert (d.name, d.handler) == (name, "python")
    assert d.payload == {"function": name, "kwargs": {"day": None}}
    assert d.options == {"queue": "reports", "timeout_seconds": 600}
    assert d.schedules == ({"key": "0", "kind": "cron", "cron": "0 2 * * *",
                            "timezone": "Europe/Paris"},)
    assert d.where.endswith("daily")


def test_a_bare_decorator_declares_nothing() -> None:
    @job(_name())
    def plain() -> None: ...

    assert declarations.declared() == []


def test_an_empty_schedule_list_declares_a_job_run_only_when_triggered() -> None:
    name = _name()

    @job(name, schedules=[])
    def by_hand() -> None: ...

    [d] = declarations.declared()
    assert (d.name, d.schedules) == (name, ())


def test_several_schedules_each_with_a_key() -> None:
    name = _name()
    declare(name, handler="noop", cron=["0 2 * * *", "@hourly"], every=timedelta(minutes=5),
            schedules=[{"key": "noon", "cron": "0 12 * * 1-5", "timezone": "UTC"},
                       {"interval_seconds": 30, "jitter_seconds": 5}])
    [d] = declarations.declared()
    assert [(s["key"], s["kind"]) for s in d.schedules] == [
        ("0", "cron"), ("1", "cron"), ("2", "interval"), ("noon", "cron"), ("4", "interval")]
    assert d.schedules[1]["cron"] == "0 * * * *"  # aliases expanded as the API stores them
    assert d.schedules[2]["interval_seconds"] == 300
    assert d.where == __name__


def test_the_same_declaration_twice_is_one_and_another_is_an_error() -> None:
    name = _name()
    declare(name, handler="noop", every=60)
    declare(name, handler="noop", every=60)  # a module imported twice
    with pytest.raises(InvalidDeclaration, match=rf"job '{name}': name .* is declared twice"):
        declare(name, handler="noop", every=120)


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "61 2 * * *"},
     "schedules[0].cron '61 2 * * *': minute '61' must be 0-59"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"},
     "schedules[0].timezone 'Mars/Olympus': unknown time zone; use an IANA name"),
    ({"every": 0.5},
     "schedules[0].interval_seconds 0.5: must be a number of seconds from 1"),
    ({"timezone": "Europe/Paris"},
     "timezone 'Europe/Paris': applies to cron schedules; add cron='...' or leave it out"),
    ({"every": 60, "queues": "x"},
     "queues 'x': is not an option of a declared job; use cron, every"),
    ({"schedules": [{"every": 60}]},
     "schedules[0].every 60: is not a field of a schedule; use key, kind"),
    ({"schedules": [{"timezone": "UTC"}]},
     "schedules[0] {'timezone': 'UTC', 'key': '0'}: needs exactly one of cron"),
    ({"schedules": [{"key": "a", "cron": "@daily"}, {"key": "a", "every": 1}]},
     "schedules[1].every"),
    ({"schedules": [{"key": "a", "cron": "@daily"}, {"key": "a", "cron": "@hourly"}]},
     "schedules[1].key 'a': is used twice in this job; give each schedule its own key"),
    ({"schedules": [{"cron": "@daily", "start_at": "tomorrow"}]},
     "schedules[0].start_at 'tomorrow': must be an ISO time with a UTC offset"),
    ({"schedules": "0 2 * * *"},
     "schedules '0 2 * * *': must be a list of schedules"),
])
def test_a_bad_declaration_names_the_job_the_field_the_value_and_the_fix(
        options: dict, message: str) -> None:
    name = _name()
    with pytest.raises(InvalidDeclaration) as raised:
        declare(name, handler="noop", **options)
    assert str(raised.value).startswith(f"job '{name}': "), str(raised.value)
    assert message in str(raised.value)
    assert declarations.declared() == []


def test_a_bad_decorator_fails_the_import_and_registers_nothing() -> None:
    name = _name()
    with pytest.raises(InvalidDeclaration, match="minute '99' must be 0-59"):
        @job(name, cron="99 * * * *")
        def never() -> None: ...
    assert name not in registry.names()
