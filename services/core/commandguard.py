"""Which programs a `command` job may run, with which arguments and which environment.

A program is a name, looked up on the worker's fixed WORKER_COMMAND_PATH only, or an
absolute path; WORKER_COMMAND_ALLOWLIST is matched against the program it resolves to, so
`/tmp/echo` is not the `echo` an entry allows. An entry is a program (any arguments), a
program with its exact arguments, or a program with a fixed first part of its arguments
ending in `...` (`pg_dump --schema-only ...`):

    WORKER_COMMAND_ALLOWLIST=echo,find /srv/tmp -mtime +7 -delete,pg_dump --schema-only ...

or, for arguments holding commas or spaces, a JSON list of such strings and of argv lists:

    WORKER_COMMAND_ALLOWLIST='["echo", ["find", "/srv/my files", "-delete"]]'

A program's environment is built from nothing: the worker's variables named in
WORKER_COMMAND_ENV, the job's `env`, and PATH=WORKER_COMMAND_PATH. A job may not set
variables that decide which code a program loads or runs (PATH, LD_PRELOAD, PYTHONPATH,
GIT_SSH_COMMAND, TAR_OPTIONS, ...: `refusal`), and a job whose program is pinned to fixed
arguments may set none at all, so its run is exactly what the operator allowed.

The API applies `check_payload` when a job is written; the worker applies it again, then
`resolve` and `allowed`, before every run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sundial.core.errors import InvalidInput
from sundial.core.health import SERVICES

ANY_ARGUMENTS = "..."

# Variables a job's `env` may not set: each makes a program load or run other code (the
# dynamic loader, shells, interpreters, tools that start helpers), so allowing one program
# would allow any. Refused by exact name, or by the prefixes below.
LOADER_VARIABLES = frozenset({
    "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND",
    "CDPATH", "GLOBIGNORE", "GCONV_PATH", "LOCPATH", "NLSPATH", "GLIBC_TUNABLES",
    "HOSTALIASES", "RESOLV_HOST_CONF", "OPENSSL_CONF", "OPENSSL_ENGINES", "SSLKEYLOGFILE",
    "CLASSPATH", "TAR_OPTIONS", "RSYNC_RSH", "RSYNC_CONNECT_PROG", "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE", "LESSOPEN", "LESSCLOSE", "PAGER", "MANPAGER", "EDITOR", "VISUAL",
    "BROWSER", "PHPRC", "PHP_INI_SCAN_DIR", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS",
})
# Each service's own variables start with its name (WORKER_..., API_...), whether or not
# this process reads them.
SERVICE_PREFIXES = tuple(f"{service.upper()}_" for service in SERVICES)
LOADER_PREFIXES = ("LD_", "DYLD_", "MALLOC_", "BASH_FUNC_", "PYTHON", "PERL", "RUBY", "NODE_",
                   "LUA_", "JAVA_", "_JAVA_", "JDK_JAVA_", "GIT_")


@dataclass(frozen=True, slots=True)
class CommandRule:
    """One WORKER_COMMAND_ALLOWLIST entry: `program` with `args` exactly, or followed by any
    further arguments when `more` (a plain program name: no args, more)."""

    program: str
    args: tuple[str, ...] = ()
    more: bool = True

    @property
    def pinned(self) -> bool:
        return bool(self.args) or not self.more

    def __str__(self) -> str:
        if not self.args and not self.more:
            return f"{shlex.quote(self.program)} (no arguments)"
        return shlex.join([self.program, *self.args, *([ANY_ARGUMENTS] if self.pinned
                                                       and self.more else [])])

    def matches(self, args: list[str]) -> bool:
        fixed = list(self.args)
        return args[:len(fixed)] == fixed if self.more else args == fixed


def parse_allowlist(value: str) -> tuple[CommandRule, ...]:
    """WORKER_COMMAND_ALLOWLIST's entries; ValueError naming a bad one."""
    value = value.strip()
    if not value:
        return ()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid JSON list ({exc}); write comma-separated "
                             "entries, or a JSON list of strings and argv lists") from None
        if not isinstance(items, list):
            raise ValueError("must be a JSON list of strings and argv lists")
        entries: list[tuple[str, list[str], bool]] = []
        for item in items:
            if isinstance(item, str):
                entries.append((item, item.split(), False))
            elif isinstance(item, list) and item and all(isinstance(w, str) for w in item):
                entries.append((json.dumps(item), item, True))
            else:
                raise ValueError(f"entry {json.dumps(item)} must be a string such as "
                                 '"pg_dump --schema-only ..." or a non-empty list of strings')
    else:
        entries = [(e.strip(), e.split(), False) for e in value.split(",") if e.strip()]
    return tuple(_rule(*entry) for entry in entries)


def _rule(shown: str, words: list[str], argv: bool) -> CommandRule:
    """An entry's rule; an argv list (`argv`) is exact even with no arguments."""
    if not words:
        raise ValueError(f"entry {shown!r} is empty; name a program")
    program, *args = words
    why = "it must start with a program" if program == ANY_ARGUMENTS else program_form(program)
    if why:
        raise ValueError(f"entry {shown!r}: {why}")
    more = bool(args) and args[-1] == ANY_ARGUMENTS
    if more:
        args = args[:-1]
    if ANY_ARGUMENTS in args:
        raise ValueError(f"entry {shown!r}: '...' may only end an entry (it stands for any "
                         "further arguments)")
    return CommandRule(program, tuple(args), more=more or not (args or argv))


def program_form(program: str) -> str | None:
    """Why `program` cannot name a program (a name or an absolute path), if it cannot."""
    if not program:
        return "the program is empty; give a name such as 'echo' or an absolute path"
    if "/" in program and not program.startswith("/"):
        return (f"program {program!r} is a relative path; give a name found on "
                "WORKER_COMMAND_PATH or an absolute path such as '/opt/bin/tool'")
    return None


def parse_path(value: str) -> str:
    """WORKER_COMMAND_PATH: absolute directories joined by ':'; ValueError otherwise."""
    dirs = value.split(":")
    for d in dirs:
        if not d.startswith("/"):
            raise ValueError(f"directory {d!r} is not an absolute path (an empty or relative "
                             "one would search the job's working directory); e.g. "
                             "/usr/local/bin:/usr/bin:/bin")
    return value


def refusal(name: str) -> str | None:
    """Why a job's `env` may not set `name`, if it may not."""
    if not name or "=" in name:
        return "is not a variable name (it is empty or holds '=')"
    if name in LOADER_VARIABLES or name.startswith(LOADER_PREFIXES):
        return ("decides which code a program loads or runs, so a job may not set it (the "
                "worker sets PATH from WORKER_COMMAND_PATH); remove it from payload.env")
    return None


def check_payload(payload: Mapping[str, Any]) -> None:
    """InvalidInput naming the field when argv[0] or an `env` name cannot be used."""
    argv = payload.get("argv")
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        why = program_form(argv[0])
        if why:
            raise InvalidInput("payload.argv[0]", argv[0], why)
    env = payload.get("env")
    for name in env if isinstance(env, dict) else ():
        why = refusal(name)
        if why:
            raise InvalidInput("payload.env", name, why)


def resolve(program: str, path: str) -> str:
    """The file `program` runs: a name looked up on `path` only, or an absolute path."""
    why = program_form(program)
    if why:
        raise InvalidInput("payload.argv[0]", program, why)
    found = program if program.startswith("/") else shutil.which(program, path=path)
    if found is None or not (os.path.isfile(found) and os.access(found, os.X_OK)):
        where = "" if program.startswith("/") else f" on WORKER_COMMAND_PATH ({path})"
        raise InvalidInput("payload.argv[0]", program, f"no such program{where}")
    return os.path.normpath(found)


def allowed(argv: list[str], rules: Iterable[CommandRule], path: str
            ) -> tuple[str, CommandRule | None]:
    """(the program to run for `argv`, the entry allowing it: one with free arguments when
    there is one; None when `rules` is empty and any program may run). InvalidInput naming
    what is refused otherwise."""
    program = resolve(argv[0], path)
    rules = tuple(rules)
    if not rules:
        return program, None
    mine = [r for r in rules if _resolved(r.program, path) == program]
    if not mine:
        raise InvalidInput("payload.argv[0]", argv[0],
                           f"{program} is not in WORKER_COMMAND_ALLOWLIST "
                           f"({', '.join(str(r) for r in rules)})")
    matching = sorted((r for r in mine if r.matches(argv[1:])), key=lambda r: r.pinned)
    if not matching:
        raise InvalidInput("payload.argv", argv,
                           f"WORKER_COMMAND_ALLOWLIST allows {program} only as: "
                           + "; ".join(str(r) for r in mine))
    return program, matching[0]


def _resolved(program: str, path: str) -> str | None:
    try:
        return resolve(program, path)
    except InvalidInput:
        return None


def child_env(passed: Iterable[str], payload_env: Mapping[str, str], path: str,
              environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A program's whole environment: the worker's `passed` variables, the job's own, PATH."""
    env = {name: environ[name] for name in passed if name in environ}
    env.update(payload_env)
    env["PATH"] = path
    return env


def worker_variable_refusal(name: str, settings: Iterable[str]) -> str | None:
    """Why WORKER_COMMAND_ENV may not pass the worker's `name` to programs, if it may not;
    `settings` are the variables Sundial's settings read."""
    if not name or "=" in name:
        return f"{name!r} is not a variable name"
    if name.upper() in {s.upper() for s in settings} or name.upper().startswith(SERVICE_PREFIXES):
        return (f"{name} is a Sundial setting: a program must never see the worker's "
                "configuration (its database, broker and encryption secrets)")
    if name in LOADER_VARIABLES or name.startswith(LOADER_PREFIXES):
        return (f"{name} decides which code a program loads or runs "
                "(PATH comes from WORKER_COMMAND_PATH)")
    return None
