"""Sync Python jobs in child processes: a bounded pool of long-lived children, each fed
one call at a time over a pipe, killed and replaced when its run has to stop.

A thread cannot be stopped: a sync job past its timeout would hold one of the default
executor's few threads until it returned on its own. A process can: on a timeout, a
cancel request, a lost lease or a shutdown past its grace, the child (and whatever it
started) gets SIGTERM, then SIGKILL after KILL_GRACE_S, and the next run gets a new one.

Each child is `python -c CHILD_CODE`, started when a run needs one and none is idle. The
pipe carries frames (a 4-byte big-endian length, then the body):

    worker -> child   once: sys.path, WORKER_IMPORTS, the settings without secrets (pickle)
    child  -> worker  {"ready": true} | {"error": "..."}
    worker -> child   {"function", "args", "kwargs", "run": {run_id, job_id, job, attempt,
                      max_attempts}}
    child  -> worker  {"result": ...} | {"unstorable": "..."} | {"error": {type, message,
                      retryable, output, result}}

A job's stdout goes to the worker's stderr, never into the replies.
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import functools
import json
import os
import pickle
import signal
import sys
import traceback
from contextlib import suppress
from typing import Any

from sundial.core.errors import ConfigError
from sundial.core.logging import get_logger
from sundial.core.secrets import hide_process_secrets
from sundial.core.settings import redact_url, variables
from sundial.worker import registry
from sundial.worker.executor import UnstorableResult, unstorable
from sundial.worker.handlers import JobError, PayloadError, RunContext, current
from sundial.worker.settings import WorkerSettings

log = get_logger("worker")

# How long a child may take to end after SIGTERM before it gets SIGKILL.
KILL_GRACE_S = 2.0
CHILD_CODE = "from sundial.worker.processes import serve; serve()"
# What the settings a job sees in its child hold instead of the worker's secrets.
NO_SECRETS = {"database_url_raw": None, "postgres_password": "", "rabbitmq_url_raw": None,
              "rabbitmq_password": "", "encryption_key": None}
PR_SET_PDEATHSIG = 1
_ENCODING_ERRORS = (TypeError, ValueError, RecursionError)


class ProcessExited(JobError):
    """The job's process died while it ran (a crash, os._exit, a kill): the attempt fails
    and the next run gets a new process."""


def exit_description(returncode: int) -> str:
    """`exited with code 1`, `exited with signal 9 (SIGKILL)`."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"exited with signal {-returncode}"
    hint = ": killed, e.g. by the out-of-memory killer" if name == "SIGKILL" else ""
    return f"exited with signal {-returncode} ({name}{hint})"


class Child:
    """One child process and its pipe."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.pid = proc.pid

    async def send(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
        await self.proc.stdin.drain()

    async def receive(self) -> bytes:
        assert self.proc.stdout is not None
        header = await self.proc.stdout.readexactly(4)
        return await self.proc.stdout.readexactly(int.from_bytes(header, "big"))

    async def call(self, request: bytes) -> dict[str, Any]:
        """The child's reply to one request; ProcessExited if it dies first."""
        try:
            await self.send(request)
            return json.loads(await self.receive())
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await self.proc.wait()
            raise ProcessExited(f"the job's process {exit_description(code)}") from None

    def kill_now(self) -> None:
        _signal_group(self.pid, signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM, then SIGKILL after KILL_GRACE_S: the child and whatever it started."""
        _signal_group(self.pid, signal.SIGTERM)
        with suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), KILL_GRACE_S)
        _signal_group(self.pid, signal.SIGKILL)  # what the job started and left behind
        return await self.proc.wait()

    async def quit(self) -> int:
        """An idle child ends when its pipe closes; one that does not is stopped."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), KILL_GRACE_S)
        except TimeoutError:
            return await self.stop()


def _signal_group(pid: int, sig: int) -> None:
    # Each child leads its own process group (start_new_session).
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class SyncPool:
    """Up to `size` child processes for sync jobs (WORKER_SYNC_PROCESSES), each started
    when a run needs one and none is idle, and kept for the next run. A child being
    stopped still counts, so there are never more than `size` at once."""

    def __init__(self, settings: WorkerSettings):
        self.size = settings.sync_processes
        # Sundial's own variables (DATABASE_URL, ENCRYPTION_KEY, ...) reach a child through
        # its pipe, once it has made itself non-dumpable: never in the environment it
        # starts with, which /proc/<pid>/environ shows to any process of this user.
        ours = {name.upper() for name in variables(type(settings))}
        self._env = {k: v for k, v in os.environ.items() if k.upper() not in ours}
        self._init = pickle.dumps({"sys_path": list(sys.path), "imports": settings.imports,
                                   "settings": without_secrets(settings),
                                   "environ": {k: v for k, v in os.environ.items()
                                               if k not in self._env},
                                   "parent": os.getpid()})
        self._slots = asyncio.Semaphore(self.size)
        self._idle: list[Child] = []
        self._busy: set[Child] = set()
        self._stopping: set[asyncio.Task] = set()
        self._closed = False

    async def start(self) -> None:
        """Start a first child if any job is sync: a child that cannot start stops the
        worker at start-up instead of failing every sync run."""
        if all(registry.is_async(registry.lookup(name)) for name in registry.names()):
            return
        try:
            self._idle.append(await self._spawn())
        except JobError as exc:
            raise ConfigError(f"WORKER_SYNC_PROCESSES={self.size}: {exc} (set "
                              "WORKER_SYNC_PROCESSES=0 to run sync jobs in threads)") from None

    async def call(self, function: str, args: list[Any], kwargs: dict[str, Any],
                   ctx: RunContext) -> Any:
        """Run the sync job `function` in a child; cancelling this kills the child."""
        request = json.dumps({"function": function, "args": args, "kwargs": kwargs,
                              "run": {"run_id": ctx.run_id, "job_id": ctx.job_id, "job": ctx.job,
                                      "attempt": ctx.attempt,
                                      "max_attempts": ctx.max_attempts}}).encode()
        await self._slots.acquire()
        try:
            child = self._take_idle() or await self._spawn()
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(child)
        try:
            reply = await child.call(request)
        except ProcessExited:
            self._busy.discard(child)
            child.kill_now()  # what the job started dies with it
            self._slots.release()
            log.warning("sync_process.exited", pid=child.pid, run_id=ctx.run_id,
                        returncode=child.proc.returncode)
            raise
        except BaseException:  # stopped (timeout, cancel, lost lease, shutdown) or a bad reply
            self._busy.discard(child)
            self._retire(child, ctx.run_id)
            raise
        self._busy.discard(child)
        self._idle.append(child)
        self._slots.release()
        return _value(reply)

    async def close(self) -> None:
        """Stop every child: idle ones end, running ones are killed."""
        self._closed = True
        idle, self._idle = self._idle, []
        busy, self._busy = list(self._busy), set()
        await asyncio.gather(*(c.quit() for c in idle), *(c.stop() for c in busy),
                             *self._stopping, return_exceptions=True)

    def _take_idle(self) -> Child | None:
        while self._idle:
            child = self._idle.pop()
            if child.proc.returncode is None:
                return child
            child.kill_now()
            log.warning("sync_process.exited", pid=child.pid, run_id=None,
                        returncode=child.proc.returncode)
        return None

    async def _spawn(self) -> Child:
        if self._closed:
            raise JobError("the worker is stopping")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD_CODE, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, start_new_session=True, env=self._env)
        except OSError as exc:
            raise JobError(f"cannot start a process for the job: {exc}") from None
        child = Child(proc)
        try:
            await child.send(self._init)
            ready = json.loads(await child.receive())
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await proc.wait()
            raise JobError(f"the job's process {exit_description(code)} while starting") from None
        except BaseException:
            child.kill_now()
            raise
        if "error" in ready:
            child.kill_now()
            raise JobError(f"the job's process cannot start: {ready['error']}")
        log.info("sync_process.started", pid=child.pid)
        return child

    def _retire(self, child: Child, run_id: int) -> None:
        """Kill the child in the background; its slot frees once it is gone."""
        async def retire() -> None:
            try:
                code = await child.stop()
                log.info("sync_process.killed", pid=child.pid, run_id=run_id, returncode=code)
            finally:
                self._slots.release()

        task = asyncio.create_task(retire(), name=f"retire-{child.pid}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)


def without_secrets(settings: WorkerSettings) -> WorkerSettings:
    """The settings a job sees in its child: the connection URLs redacted, no passwords,
    no ENCRYPTION_KEY (the child never needs them: it only runs the function)."""
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    copy = type(settings).model_construct(**{**values, **NO_SECRETS})
    copy.__dict__["database_url"] = redact_url(settings.database_url)
    copy.__dict__["rabbitmq_url"] = ",".join(redact_url(u) for u in settings.rabbitmq_nodes)
    return copy


def _value(reply: dict[str, Any]) -> Any:
    if "result" in reply:
        return reply["result"]
    if "unstorable" in reply:
        raise UnstorableResult(reply["unstorable"])
    error = reply["error"]
    raise _error_type(error["type"], error["retryable"])(
        error["message"], output=error["output"], result=error["result"])


@functools.cache
def _error_type(name: str, retryable: bool) -> type[JobError]:
    """A JobError named as the child's exception: the run's error reads `ValueError: ...`,
    its output is the child's traceback, and retrying follows the exception's own rule."""
    return type(name, (JobError if retryable else PayloadError,),
                {"retryable": retryable, "__module__": __name__})


# --- the child ---------------------------------------------------------------------------


def serve() -> None:
    """A child's life: take the init, import the modules, then one call at a time until
    the worker closes the pipe."""
    calls, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    _die_with_parent()
    hide_process_secrets()  # before the worker's own variables arrive: see SyncPool
    faulthandler.enable()
    frame = _read(calls)
    if frame is None:
        return
    init = pickle.loads(frame)
    if os.getppid() != init["parent"]:  # the worker died before the parent-death signal was set
        return
    sys.path[:] = init["sys_path"]
    os.environ.update(init["environ"])  # a job sees the worker's environment, as in a thread
    try:
        registry.import_modules(init["imports"])
    except Exception as exc:
        _write(replies, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    _write(replies, b'{"ready": true}')
    settings = init["settings"]
    while (frame := _read(calls)) is not None:
        _write(replies, _run(json.loads(frame), settings))


def _run(request: dict[str, Any], settings: WorkerSettings) -> bytes:
    token = current.set(RunContext(settings, **request["run"]))
    try:
        value = registry.lookup(request["function"])(*request["args"], **request["kwargs"])
    except BaseException as exc:  # SystemExit included: the child goes on to the next run
        return _error_reply(exc)
    finally:
        current.reset(token)
    try:
        return _encode({"result": value})
    except _ENCODING_ERRORS as exc:
        return _encode({"unstorable": unstorable(exc)})


def _error_reply(exc: BaseException) -> bytes:
    if isinstance(exc, JobError):
        output, result = exc.output, exc.result
    else:
        output, result = "".join(traceback.format_exception(exc)), None
    error = {"type": type(exc).__name__, "message": str(exc),
             "retryable": bool(getattr(exc, "retryable", True)), "output": output,
             "result": result}
    try:
        return _encode({"error": error})
    except _ENCODING_ERRORS as bad:
        return _encode({"error": {**error, "result": {"error": unstorable(bad)}}})


def _encode(reply: dict[str, Any]) -> bytes:
    # Anything else JSON cannot encode becomes its string, as for a job run in the worker.
    return json.dumps(reply, default=str).encode()


def _die_with_parent() -> None:
    """Linux: SIGKILL when the worker dies, even by SIGKILL, so no job runs on beside the
    retry that another worker starts."""
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _read(fd: int) -> bytes | None:
    """One frame, or None once the worker has closed the pipe."""
    header = _read_exactly(fd, 4)
    return None if header is None else _read_exactly(fd, int.from_bytes(header, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write(fd: int, body: bytes) -> None:
    view = memoryview(len(body).to_bytes(4, "big") + body)
    while view:
        view = view[os.write(fd, view):]
