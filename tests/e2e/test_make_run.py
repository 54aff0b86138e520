"""`make run` as a newcomer uses it: scripts/run-local.sh (what `make run` executes after
installing) against a database of its own brings up API, worker and scheduler with the
demo jobs and a printed admin key; the demo heartbeat and the http check of the API's
own /health succeed; the README's examples succeed as written; the container healthchecks
pass; a second `make run` meanwhile leaves the first alone; Ctrl-C stops everything with
exit code 0, says so, and leaves no process behind; a second run works on the same
database."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ARTIFACTS, ROOT, _with_database, free_port, service_env, wait_for

pytestmark = pytest.mark.timeout(300)

SUNDIAL = Path(sys.executable).parent / "sundial"
# The jobs the script adds, and those examples/reports.py declares (`sundial sync`).
DEMO_JOBS = {"demo-heartbeat", "demo-api-health", "demo-cron", "reports.summary",
             "reports.cleanup"}


class RunLocal:
    """`bash scripts/run-local.sh` in a session of its own, like a terminal's job."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["bash", "scripts/run-local.sh"], cwd=ROOT, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
            # A terminal's job: SIGINT at its default, whatever the test runner ignores.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ctrl_c(self, timeout: float) -> int:
        """SIGINT to the whole process group, as Ctrl-C in a terminal; the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def admin_key(self) -> str | None:
        match = re.search(r"^ *│ +admin key +(\S+)$", self.output(), re.MULTILINE)
        return match[1] if match else None


def processes_with(marker: str) -> list[int]:
    """Processes whose environment contains `marker` (this test's database URL)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def succeeded_runs(db_url: str, job: str) -> int:
    try:
        conn = await asyncpg.connect(db_url)
    except (OSError, asyncpg.PostgresError):
        return 0  # not created yet
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.name = $1 AND r.status = 'succeeded'", job)
    except asyncpg.UndefinedTableError:
        return 0  # not migrated yet
    finally:
        await conn.close()


async def healthy_within(env: dict[str, str], service: str, seconds: int) -> bool:
    """Whether `sundial healthcheck <service>` passes within `seconds`."""
    for attempt in range(seconds + 1):
        if attempt:
            await asyncio.sleep(1)
        check = await asyncio.create_subprocess_exec(
            str(SUNDIAL), "healthcheck", service, env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if await asyncio.wait_for(check.wait(), 30) == 0:
            return True
    return False


async def test_make_run_brings_up_the_demo_and_ctrl_c_stops_everything(
        servers, amqp_url: str, tmp_path: Path) -> None:
    admin_url = servers[0]
    db_url = _with_database(admin_url, f"sundial_run_{uuid.uuid4().hex[:10]}")
    port = free_port()
    env = service_env(db_url, amqp_url, API_PORT=port, HEALTH_DIR=tmp_path, SUNDIAL=SUNDIAL)
    env.pop("LOG_FORMAT")  # the script's own default: readable console lines
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # --- first run: a fresh database ------------------------------------------------
        run = RunLocal(env, logs / "test_make_run-1.log")
        try:
            await wait_for(lambda: succeeded_runs(db_url, "demo-heartbeat"), timeout=120,
                           interval=1, what="a succeeded run of demo-heartbeat")
            await wait_for(lambda: succeeded_runs(db_url, "demo-api-health"), timeout=60,
                           interval=1, what="the demo's http check of the API's /health")
            await wait_for(lambda: succeeded_runs(db_url, "reports.summary"), timeout=60,
                           interval=1, what="a succeeded run of the job declared in examples/")
            key = run.admin_key()
            assert key, "the admin key is printed"
            async with httpx.AsyncClient(base_url=base, timeout=15) as http:
                response = await http.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.text
            assert {j["name"] for j in response.json()} == DEMO_JOBS
            # What each image's HEALTHCHECK runs, against the same heartbeat directory.
            health = {}
            for service in ("scheduler", "worker", "api"):
                health[service] = await healthy_within(env, service, seconds=30)
            # The README's examples, as written (but the port), succeed.
            for block in readme_examples():
                done = await asyncio.to_thread(
                    subprocess.run,
                    ["bash", "-euo", "pipefail", "-c", block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
                    cwd=ROOT, env={**env, "PATH": f"{SUNDIAL.parent}:{os.environ['PATH']}"},
                    capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
            for job in ("nightly-report", "ping"):
                await wait_for(lambda job=job: succeeded_runs(db_url, job), timeout=60, interval=1,
                               what=f"a succeeded run of the README's job {job}")
            # A second `make run` meanwhile says where the first is and leaves it alone.
            again = await asyncio.to_thread(
                subprocess.run, ["bash", "scripts/run-local.sh"], cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=60)
            assert again.returncode == 1, again.stdout + again.stderr
            assert "already running" in again.stdout and f"127.0.0.1:{port}" in again.stdout
            assert str(run.proc.pid) in again.stdout
            async with httpx.AsyncClient(base_url=base, timeout=15) as http:
                response = await http.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, "the first run's admin key still works"
        except BaseException:
            run.proc.kill()
            raise
        code = run.ctrl_c(timeout=60)
        output = run.output()
        assert code == 0, output[-3000:]
        assert "Ctrl-C: stopping scheduler, worker and API" in output, output[-3000:]
        assert "exited on its own" not in output, output[-3000:]
        for service in ("scheduler", "worker", "api"):
            assert re.search(rf"^{service} +\| ", output, re.MULTILINE), (
                f"{service}'s log lines are prefixed with its name")
        assert processes_with(db_url) == [], "a process of `make run` outlived it"

        # --- second run: same database; jobs kept, a new key replaces the old one -------
        run = RunLocal(env, logs / "test_make_run-2.log")
        try:
            await wait_for(lambda: "Ctrl-C stops everything" in run.output(), timeout=120,
                           interval=0.5, what="the second run to start its services")
            new_key = run.admin_key()
            assert new_key and new_key != key
            async with httpx.AsyncClient(base_url=base, timeout=15) as http:
                await wait_for(lambda: _answers(http), timeout=30, what="the API")
                old = await http.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
                new = await http.get("/api/jobs", headers={"Authorization": f"Bearer {new_key}"})
            assert old.status_code == 401
            assert new.status_code == 200, new.text
            assert {j["name"] for j in new.json()} == DEMO_JOBS | {"nightly-report", "ping"}
        except BaseException:
            run.proc.kill()
            raise
        code = run.ctrl_c(timeout=60)
        assert code == 0, run.output()[-3000:]
        assert processes_with(db_url) == []
        assert health == {"scheduler": True, "worker": True, "api": True}, (
            f"`sundial healthcheck <service>` (each image's HEALTHCHECK) while running: {health}")
    finally:
        for pid in processes_with(db_url):  # only this test's own processes
            os.kill(pid, signal.SIGKILL)
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()


def readme_examples() -> list[str]:
    """The shell blocks of the README's "Adding a job"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Adding a job"):text.index("## Running the services")]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 2, "the README's CLI and HTTP examples"
    return blocks


async def _answers(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.HTTPError:
        return False
