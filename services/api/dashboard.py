"""The web dashboard: HTML shells served at /, /jobs, /runs, /alerts, /audit and /login.

The pages carry no data and need no key. Their scripts (static/) call the JSON API under
/api with the key the user pasted at /login, kept in the browser's sessionStorage, so the
dashboard sees exactly what that key may see and can do nothing the API would refuse.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")

# The key lives in sessionStorage, so no script but ours may run on these pages.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
Id = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


@cache
def static_url(name: str) -> str:
    """/static/<name>?v=<content hash>: a changed file is never served from a stale cache."""
    path = STATIC / name
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else "0"
    return f"/static/{name}?v={version}"


templates.env.globals["static_url"] = static_url


def _page(request: Request, template: str, title: str, nav: str, **context: object) -> HTMLResponse:
    """The shell of a page; its script is the static file named like its template."""
    script = template.removesuffix(".html") + ".js"
    return templates.TemplateResponse(
        request, template, {"title": title, "nav": nav, "script": script, **context},
        headers=SECURITY_HEADERS)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """For clients that ask at the conventional place (the pages link /static/favicon.svg)."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    return _page(request, "overview.html", "Overview", "overview")


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "Sign in", "")


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html", "Jobs", "jobs")


@router.get("/jobs/new", response_class=HTMLResponse)
async def new_job(request: Request) -> HTMLResponse:
    return _page(request, "job.html", "New job", "jobs", job_id=None)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(request: Request, job_id: Id) -> HTMLResponse:
    return _page(request, "job.html", "Job", "jobs", job_id=job_id)


@router.get("/runs", response_class=HTMLResponse)
async def runs(request: Request) -> HTMLResponse:
    return _page(request, "runs.html", "Runs", "runs")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(request: Request, run_id: Id) -> HTMLResponse:
    return _page(request, "run.html", "Run", "runs", run_id=run_id)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts(request: Request) -> HTMLResponse:
    return _page(request, "alerts.html", "Alerts", "alerts")


@router.get("/audit", response_class=HTMLResponse)
async def audit(request: Request) -> HTMLResponse:
    return _page(request, "audit.html", "Audit log", "audit")
