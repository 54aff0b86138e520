"""WORKER_COMMAND_ALLOWLIST, WORKER_COMMAND_ENV and WORKER_COMMAND_PATH as the worker loads
them, and how an argv is matched against the allow-list (sundial.core.commandguard)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sundial.core.commandguard import CommandRule, allowed, child_env
from sundial.core.errors import ConfigError, InvalidInput
from sundial.core.settings import load_settings, variables
from sundial.worker.settings import WorkerSettings

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in variables(WorkerSettings):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def worker_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> WorkerSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(WorkerSettings)


def test_entries_are_programs_exact_argvs_or_prefixes(clean_env) -> None:
    s = worker_settings(clean_env, WORKER_COMMAND_ALLOWLIST=(
        "echo, find /srv/tmp -mtime +7 -delete ,pg_dump --schema-only ...,/opt/bin/report"))
    assert s.command_allowlist == (
        CommandRule("echo"),
        CommandRule("find", ("/srv/tmp", "-mtime", "+7", "-delete"), more=False),
        CommandRule("pg_dump", ("--schema-only",), more=True),
        CommandRule("/opt/bin/report"))
    assert [str(r) for r in s.command_allowlist] == [
        "echo", "find /srv/tmp -mtime +7 -delete", "pg_dump --schema-only ...", "/opt/bin/report"]
    s = worker_settings(clean_env, WORKER_COMMAND_ALLOWLIST=(
        '["echo", ["find", "/srv/my files, old", "-delete"], ["tar", "-tf", "..."], ["uptime"]]'))
    assert s.command_allowlist == (
        CommandRule("echo"),
        CommandRule("find", ("/srv/my files, old", "-delete"), more=False),
        CommandRule("tar", ("-tf",), more=True),
        CommandRule("uptime", more=False))
    assert str(s.command_allowlist[3]) == "uptime (no arguments)"
    assert s.command_env == ("HOME", "LANG", "LC_ALL", "TZ")
    assert s.command_path == DEFAULT_PATH


@pytest.mark.parametrize(("name", "value", "named"), [
    ("WORKER_COMMAND_ALLOWLIST", "echo,bin/tool", "entry 'bin/tool'"),
    ("WORKER_COMMAND_ALLOWLIST", "find ... -delete", "entry 'find ... -delete'"),
    ("WORKER_COMMAND_ALLOWLIST", "... -x", "entry '... -x'"),
    ("WORKER_COMMAND_ALLOWLIST", '["echo", 3]', "entry 3"),
    ("WORKER_COMMAND_ALLOWLIST", '["echo"', "not a valid JSON list"),
    ("WORKER_COMMAND_ENV", "LANG,DATABASE_URL", "entry 'DATABASE_URL'"),
    ("WORKER_COMMAND_ENV", "encryption_key", "entry 'encryption_key'"),
    ("WORKER_COMMAND_ENV", "RABBITMQ_URL", "entry 'RABBITMQ_URL'"),
    ("WORKER_COMMAND_ENV", "API_HOST", "entry 'API_HOST'"),
    ("WORKER_COMMAND_ENV", "LD_PRELOAD", "entry 'LD_PRELOAD'"),
    ("WORKER_COMMAND_ENV", "PATH", "entry 'PATH'"),
    ("WORKER_COMMAND_PATH", "/usr/bin::/bin", "directory ''"),
    ("WORKER_COMMAND_PATH", "bin:/usr/bin", "directory 'bin'"),
])
def test_a_bad_entry_stops_start_up_naming_it(clean_env, name: str, value: str,
                                              named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        worker_settings(clean_env, **{name: value})
    message = str(caught.value)
    assert f"{name}=" in message and named in message, message


def program(folder: Path, name: str) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_an_argv_is_matched_against_the_program_it_resolves_to(tmp_path: Path) -> None:
    tool = program(tmp_path / "bin", "tool")
    path = f"{tmp_path / 'bin'}:{DEFAULT_PATH}"
    rules = (CommandRule("tool"), CommandRule("find", ("/srv",), more=False),
             CommandRule("ls", ("-l",), more=True))
    assert allowed(["tool", "-x"], rules, path) == (tool, rules[0])
    assert allowed([tool], rules, path) == (tool, rules[0])
    assert allowed(["ls", "-l", "/srv"], rules, path)[1] == rules[2]
    assert allowed(["find", "/srv"], rules, path)[1] == rules[1]
    with pytest.raises(InvalidInput, match="only as: find /srv"):
        allowed(["find", "/srv", "-exec", "sh", ";"], rules, path)
    with pytest.raises(InvalidInput, match=r"only as: ls -l \.\.\."):
        allowed(["ls", "/"], rules, path)
    with pytest.raises(InvalidInput, match="no such program on WORKER_COMMAND_PATH"):
        allowed(["tool"], rules, DEFAULT_PATH)
    with pytest.raises(InvalidInput, match="not in WORKER_COMMAND_ALLOWLIST"):
        allowed([program(tmp_path / "other", "ls"), "-l"], rules, path)
    with pytest.raises(InvalidInput, match="no such program"):
        allowed(["no-such-program"], (), DEFAULT_PATH)
    with pytest.raises(InvalidInput, match="relative path"):
        allowed(["./tool"], (), path)
    assert allowed(["echo"], (), DEFAULT_PATH) == (shutil.which("echo", path=DEFAULT_PATH), None)


def test_a_programs_environment_is_built_from_nothing() -> None:
    worker = {"HOME": "/home/w", "LANG": "C.UTF-8", "DATABASE_URL": "postgresql://x:pw@db/s",
              "SECRET": "s", "PATH": "/home/w/bin:/usr/bin"}
    env = child_env(("HOME", "LANG", "TZ"), {"LANG": "de_DE.UTF-8", "DATABASE_URL": "mine"},
                    DEFAULT_PATH, environ=worker)
    assert env == {"HOME": "/home/w", "LANG": "de_DE.UTF-8", "DATABASE_URL": "mine",
                   "PATH": DEFAULT_PATH}


def test_the_worker_hides_its_environment_from_processes_of_its_user() -> None:
    """Non-dumpable: /proc/<pid>/environ of the worker (DATABASE_URL, ENCRYPTION_KEY) and
    ptrace are closed to a command job running as the same user."""
    import subprocess
    import sys

    code = ("import ctypes; from sundial.core.secrets import hide_process_secrets; "
            "before = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0); ok = hide_process_secrets(); "
            "print(before, ok, ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["1", "True", "0"]
