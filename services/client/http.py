"""The HTTP client of Sundial's API, sync (`Client`) and async (`AsyncClient`), on httpx.

Both build the same requests and read the same answers (the functions below); an answer
of 400 or more is raised as ApiError, which carries the API's detail: for a 422, the
field, value and reason of each problem.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sundial.api.schemas import FINAL_STATUSES
from sundial.core.errors import SundialError


@dataclass(frozen=True)
class Problem:
    """One reason the API refused the input (a 422's detail item)."""

    field: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.field} {self.value!r}: {self.reason}" if self.value is not None \
            else f"{self.field}: {self.reason}"


class ApiError(SundialError):
    """The API refused the request."""

    def __init__(self, method: str, path: str, status: int, detail: Any):
        self.status = status
        self.detail = detail
        self.problems = [Problem(d.get("field", "body"), d.get("value"), d.get("reason", ""))
                         for d in detail if isinstance(d, dict)] if isinstance(detail, list) else []
        said = "; ".join(map(str, self.problems)) if self.problems else str(detail)
        super().__init__(f"{method} {path}: {status}: {said}")

    @property
    def field(self) -> str | None:
        return self.problems[0].field if self.problems else None

    @property
    def value(self) -> Any:
        return self.problems[0].value if self.problems else None

    @property
    def reason(self) -> str | None:
        return self.problems[0].reason if self.problems else None


class WaitTimeout(SundialError, TimeoutError):
    """The run did not reach a final status in time."""


@dataclass(frozen=True)
class Run:
    """A run as the API shows it (`fields`: every field of GET /api/runs/{id})."""

    id: int
    status: str
    replayed: bool = False
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    json: dict[str, Any] | None = None


def _trigger(job: str | int, payload: dict[str, Any] | None, mode: str,
             idempotency_key: str | None, priority: int | None) -> _Request:
    body: dict[str, Any] = {"idempotency_key": idempotency_key, "priority": priority}
    if payload is not None:
        body.update(payload=payload, mode=mode)
    return _Request("POST", f"/api/jobs/{quote(str(job), safe='')}/trigger",
                    {k: v for k, v in body.items() if v is not None})


def _get_run(run_id: int) -> _Request:
    return _Request("GET", f"/api/runs/{int(run_id)}")


def _answer(request: _Request, response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = {"detail": response.text[:500]}
    if response.status_code >= 400:
        raise ApiError(request.method, request.path, response.status_code,
                       data.get("detail") if isinstance(data, dict) else data)
    return data


def _triggered(data: dict[str, Any]) -> Run:
    return Run(data["run_id"], data["status"], data.get("replayed", False), data)


def _run(data: dict[str, Any]) -> Run:
    return Run(data["id"], data["status"], False, data)


def _settings(base_url: str, api_key: str, timeout_s: float) -> dict[str, Any]:
    return {"base_url": base_url.rstrip("/"), "timeout": timeout_s,
            "headers": {"Authorization": f"Bearer {api_key}"}}


class Client:
    """Sundial's API over HTTP: `Client("http://127.0.0.1:8000", api_key)`. A context
    manager (or call close())."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30.0):
        self.http = httpx.Client(**_settings(base_url, api_key, timeout_s))

    def _call(self, request: _Request) -> dict[str, Any]:
        response = self.http.request(request.method, request.path, json=request.json)
        return _answer(request, response)

    def trigger(self, job: str | int, payload: dict[str, Any] | None = None,
                mode: str = "merge", idempotency_key: str | None = None,
                priority: int | None = None) -> Run:
        """Queue a run of the job (id or name) now; `replayed` when the key found one."""
        return _triggered(self._call(_trigger(job, payload, mode, idempotency_key, priority)))

    def run(self, run_id: int) -> Run:
        return _run(self._call(_get_run(run_id)))

    def wait(self, run_id: int, timeout: float = 60.0, interval_s: float = 0.5) -> Run:
        """The run once it is final; WaitTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not (run := self.run(run_id)).final:
            if time.monotonic() >= deadline:
                raise _timeout(run, timeout)
            time.sleep(interval_s)
        return run

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncClient:
    """The async twin of Client: `async with AsyncClient(url, key) as sundial: ...`."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30.0):
        self.http = httpx.AsyncClient(**_settings(base_url, api_key, timeout_s))

    async def _call(self, request: _Request) -> dict[str, Any]:
        response = await self.http.request(request.method, request.path, json=request.json)
        return _answer(request, response)

    async def trigger(self, job: str | int, payload: dict[str, Any] | None = None,
                      mode: str = "merge", idempotency_key: str | None = None,
                      priority: int | None = None) -> Run:
        return _triggered(await self._call(_trigger(job, payload, mode, idempotency_key,
                                                    priority)))

    async def run(self, run_id: int) -> Run:
        return _run(await self._call(_get_run(run_id)))

    async def wait(self, run_id: int, timeout: float = 60.0, interval_s: float = 0.5) -> Run:
        deadline = time.monotonic() + timeout
        while not (run := await self.run(run_id)).final:
            if time.monotonic() >= deadline:
                raise _timeout(run, timeout)
            await asyncio.sleep(interval_s)
        return run

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def _timeout(run: Run, timeout: float) -> WaitTimeout:
    return WaitTimeout(f"run {run.id} is still {run.status} after {timeout:g} s; wait longer "
                       "(timeout=...) or look at the run's worker")
