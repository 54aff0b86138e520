"""The dashboard's observability in a real headless Chromium against a real `sundial api`:
a job's health, a running run's output, the audit log. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

from playwright.async_api import expect

from sundial.api.schemas import JobCreate
from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import start_api
from tests.e2e.test_dashboard import new_page, pytestmark, shot, sign_in  # noqa: F401
from tests.e2e.test_worker import add_job, trigger, worker_env


async def signed_in(browser, processes, pool, db_url: str, amqp_url: str):
    """A real API and a browser page signed in to it with a viewer key."""
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "viewer")
    base = await start_api(processes, db_url, amqp_url)
    page = await new_page(browser, base)
    await sign_in(page, key)
    return page


async def test_the_job_page_shows_success_rate_and_durations(browser, processes, pool, db_url,
                                                             amqp_url) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    job = await svc.create_job("test", JobCreate(name="nightly", handler="noop"))
    await pool.execute(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, started_at, finished_at)
           SELECT $1, now(), 'schedule', CASE WHEN i <= 3 THEN 'failed' ELSE 'succeeded' END,
                  now() - interval '2 hours' - make_interval(secs => i),
                  now() - interval '2 hours'
           FROM generate_series(1, 12) i""", job["id"])
    page = await signed_in(browser, processes, pool, db_url, amqp_url)
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("#health-success")).to_have_text("75 %")
    await expect(page.locator("#health-error")).to_have_text("25 %")
    await expect(page.locator("#health-finished")).to_have_text("12 finished")
    await expect(page.locator("#health-avg")).to_have_text("6.50 s")
    await shot(page, "20-job-health")
    await page.select_option("#health-window", "1h")
    await expect(page.locator("#health-finished")).to_have_text("0 finished")
    await expect(page.locator("#health-success")).to_have_text("—")



async def test_the_run_page_shows_a_running_runs_output(browser, processes, pool, db_url,
                                                        amqp_url, queue, tmp_path) -> None:
    go = tmp_path / "go"
    processes(["worker"], worker_env(db_url, amqp_url, queue, WORKER_ALLOW_COMMANDS="true"))
    script = f"echo compiling report; while [ ! -e {go} ]; do sleep 0.05; done; echo report sent"
    job = await add_job(pool, queue, "command", {"argv": ["sh", "-c", script]})
    [run_id] = await trigger(pool, amqp_url, job)
    page = await signed_in(browser, processes, pool, db_url, amqp_url)
    await page.goto(f"/runs/{run_id}")
    await expect(page.locator("#run-status")).to_contain_text("running")
    await expect(page.locator("#run-output")).to_have_text("compiling report\n")
    await expect(page.locator("#run-output-at")).to_contain_text("live, last written")
    await shot(page, "21-run-live-output")
    go.touch()
    await expect(page.locator("#run-status")).to_contain_text("succeeded")
    await expect(page.locator("#run-output")).to_have_text("compiling report\nreport sent\n")
    await expect(page.locator("#run-output-at")).to_have_text("")



async def test_the_audit_page_lists_who_changed_what(browser, processes, pool, db_url,
                                                      amqp_url) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    await svc.create_job("ana", JobCreate(name="nightly", handler="noop"))
    await svc.create_job("bo", JobCreate(name="weekly", handler="noop"))
    page = await signed_in(browser, processes, pool, db_url, amqp_url)
    await page.click("nav >> text=Audit")
    rows = page.locator("#audit tbody tr")
    await expect(rows.first).to_contain_text("key.create")  # the viewer key of signed_in
    await expect(rows.nth(1)).to_contain_text("job.create")
    await expect(rows.nth(1)).to_contain_text("bo")
    await shot(page, "22-audit")
    await page.fill("#f-actor", "ana")
    await page.press("#f-actor", "Enter")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("nightly")
    assert page.url.endswith("/audit?actor=ana")
    await page.select_option("#f-action", "key.")
    await expect(rows.first).to_contain_text("No entries match.")
