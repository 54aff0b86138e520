"""Sundial as a user installs it: the wheel, in a fresh venv outside the repository, beside
an application that owns the names `core`, `api` and `worker` itself.

The wheel is built from a copy of what the Dockerfile copies (pyproject.toml, README.md,
services/, sql/) and installed with its dependencies; every process of this test runs the
venv's own `sundial` with the application on PYTHONPATH and as its working directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from sundial.core.migrate import discover
from tests.conftest import ROOT, _with_database, service_env, start_api, wait_for

GREETING = "hello from the application's own core.models"

APPLICATION = {
    "core/__init__.py": "",
    "core/models.py": f"GREETING = {GREETING!r}\n",
    "api/__init__.py": '"""The application\'s own HTTP API package."""\n',
    "worker.py": '"""The application\'s own worker module, as Celery projects have one."""\n'
                 'NAME = "the application\'s worker.py"\n',
    "myapp/__init__.py": "",
    "myapp/tasks.py": """
        from core.models import GREETING

        import worker as app_worker
        from sundial import current_run, job


        @job("scratch.greet")
        def greet(name: str) -> dict:
            run = current_run()
            return {"greeting": f"{GREETING}, {name}", "module": app_worker.NAME,
                    "run_id": run.run_id}
        """,
}


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("services", "sql"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist),
         str(source)])
    (built,) = dist.glob("sundial-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the wheel and its dependencies installed."""
    home = tmp_path_factory.mktemp("venv")
    assert not home.is_relative_to(ROOT)
    run([sys.executable, "-m", "venv", str(home)])
    run([str(home / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         str(wheel)])
    return home / "bin"


@pytest.fixture
def application(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    for name, text in APPLICATION.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return app


@pytest.fixture
async def empty_db_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    """A database with nothing in it: `sundial migrate` makes the schema."""
    name = f"sundial_w_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers[0])
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(servers[0], name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def source_files() -> Iterator[str]:
    """Where each file of the package must stand in the wheel (build by-products aside)."""
    for path in (ROOT / "services").rglob("*"):
        rel = path.relative_to(ROOT / "services")
        if path.is_file() and path.suffix != ".pyc" and not any(
                part == "__pycache__" or part.endswith(".egg-info") for part in rel.parts):
            yield "sundial/" + rel.as_posix()
    for path in (ROOT / "sql").rglob("*"):
        if path.is_file() and path.suffix in (".sql", ".py"):
            yield "sundial/sql/" + path.relative_to(ROOT / "sql").as_posix()


def test_the_wheel_holds_one_package_named_sundial_with_its_sql_and_dashboard(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"sundial"}, tops
    missing = set(source_files()) - names
    assert not missing, f"not in the wheel (add the sub-package to pyproject.toml): {missing}"
    assert {"sundial/sql/migrations/0001_init.sql", "sundial/sql/queries/scheduler.sql",
            "sundial/api/templates/base.html", "sundial/__main__.py"} <= names


async def test_installed_beside_an_application_with_its_own_core_api_and_worker(
        venv: Path, application: Path, empty_db_url: str, amqp_url: str, queue: str,
        processes, tmp_path: Path) -> None:
    env = service_env(empty_db_url, amqp_url, PYTHONPATH=str(application),
                      WORKER_IMPORTS="myapp.tasks", WORKER_QUEUES=queue, HEALTH_DIR=tmp_path,
                      SCHEDULER_POLL_INTERVAL=0.5)
    sundial = [str(venv / "sundial")]
    here = {"env": env, "cwd": application}

    # The application's names stay the application's; Sundial's are under sundial.
    where = run([str(venv / "python"), "-c", "import json, core, api, worker, sundial; print("
                 "json.dumps([m.__file__ for m in (core, api, worker, sundial)]))"], **here)
    core_file, api_file, worker_file, sundial_file = json.loads(where.stdout)
    for own in (core_file, api_file, worker_file):
        assert Path(own).is_relative_to(application), own
    assert Path(sundial_file).is_relative_to(venv.parent), sundial_file

    version = run([*sundial, "--version"], **here).stdout.strip()
    assert version == "sundial 0.1.0"
    assert run([str(venv / "python"), "-m", "sundial", "--version"], **here).stdout.strip() == version
    usage = run([*sundial, "--help"], **here).stdout
    for command in ("migrate", "scheduler", "worker", "api", "jobs", "runs", "status"):
        assert f"    {command}" in usage, command

    # A fresh database: every migration, from the SQL inside the wheel.
    run([*sundial, "migrate"], **here)
    conn = await asyncpg.connect(empty_db_url)
    try:
        applied = [r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
        assert applied == [m.version for m in discover()]

        payload = json.dumps({"function": "scratch.greet", "args": ["Ada"]})
        run([*sundial, "jobs", "add", "--name", "greet", "--handler", "python", "--payload",
             payload, "--queue", queue, "--every", "1"], **here)

        worker = processes(["worker"], env, command=sundial, cwd=application)
        scheduler = processes(["scheduler"], env, command=sundial, cwd=application)

        row = await wait_for(lambda: conn.fetchrow(
            "SELECT r.status, r.result, r.error FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.name = 'greet' AND r.status NOT IN ('queued', 'running') "
            "ORDER BY r.id LIMIT 1"), timeout=60, what="a finished run of the Python job")
        assert row["status"] == "succeeded", row["error"]
        result = json.loads(row["result"]) if isinstance(row["result"], str) else row["result"]
        assert result["greeting"] == f"{GREETING}, Ada"
        assert result["module"] == "the application's worker.py"

        base = await start_api(processes, empty_db_url, amqp_url,
                               how={"command": sundial, "cwd": application},
                               PYTHONPATH=application, HEALTH_DIR=tmp_path)
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            style = await client.get("/static/dashboard.css")
            assert style.status_code == 200 and style.text.strip()
    finally:
        await conn.close()

    for process in (scheduler, worker):
        assert process.stop() == 0, process.output()[-2000:]
