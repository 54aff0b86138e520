"""`command`: a program run with an argv list, never through a shell.

Off unless WORKER_ALLOW_COMMANDS=true. argv[0] is looked up on WORKER_COMMAND_PATH only
(or is an absolute path), WORKER_COMMAND_ALLOWLIST may restrict the programs and pin their
arguments, and the program's environment holds only WORKER_COMMAND_ENV's variables, the
job's `env` and PATH (sundial.core.commandguard).

Payload: {"argv": ["pg_dump", "--schema-only", "app"], "cwd": "/srv", "env": {"K": "v"},
"max_output_bytes": 65536}. Result: {"exit_code": 0, "stdout": ..., "stderr": ...,
"truncated": bool}; a non-zero exit code fails the attempt with that output kept. While
it runs, the tail of stdout and stderr together is the run's live output.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
from contextlib import suppress
from typing import Any

from sundial.core.commandguard import allowed, check_payload, child_env
from sundial.core.errors import InvalidInput
from sundial.worker.handlers import JobError, PayloadError, RunContext, field
from sundial.worker.live import LiveOutput


async def run(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    settings = ctx.settings
    if not settings.allow_commands:
        raise PayloadError("command jobs are disabled on this worker (WORKER_ALLOW_COMMANDS)")
    argv = field(payload, "argv", list)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise PayloadError("payload.argv must be a non-empty list of strings")
    cwd = field(payload, "cwd", str, None)
    extra_env = {str(k): str(v) for k, v in field(payload, "env", dict, {}).items()}
    limit = int(field(payload, "max_output_bytes", int, 65536))
    try:
        check_payload(payload)
        program, rule = allowed(argv, settings.command_allowlist, settings.command_path)
    except InvalidInput as exc:
        raise PayloadError(str(exc)) from None
    if rule is not None and rule.pinned and extra_env:
        # The program's own variables (TAR_OPTIONS, GIT_*, ...) could undo the pinning.
        raise PayloadError(f"payload.env {sorted(extra_env)}: WORKER_COMMAND_ALLOWLIST pins "
                           f"{program} to fixed arguments ({rule}), so a job may not set its "
                           "environment; remove payload.env or pass the variable with "
                           "WORKER_COMMAND_ENV")
    env = child_env(settings.command_env, extra_env, settings.command_path)

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, executable=program, cwd=cwd, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise PayloadError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    try:
        (stdout, out_cut), (stderr, err_cut) = await asyncio.gather(
            _read_bounded(proc.stdout, limit, ctx.live), _read_bounded(proc.stderr, limit, ctx.live))
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            # Cancelled (timeout, cancel, shutdown): stop the program and its children.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(ProcessLookupError):
                await proc.wait()
    result = {"exit_code": code, "stdout": stdout, "stderr": stderr,
              "truncated": out_cut or err_cut}
    if code != 0:
        raise JobError(f"{argv[0]} exited with code {code}", output=stderr or stdout, result=result)
    return result


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int,
                        live: LiveOutput | None) -> tuple[str, bool]:
    """The first `limit` bytes; the rest is read and dropped so the program never blocks.
    Everything read also goes to the run's live output (which keeps the tail)."""
    assert stream is not None
    data = bytearray()
    cut = False
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(65536):
        if live is not None:
            live.write(decoder.decode(chunk))
        room = limit - len(data)
        if len(chunk) > room:
            cut = True
        data.extend(chunk[:max(room, 0)])
    return data.decode(errors="replace"), cut
